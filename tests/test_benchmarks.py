"""The benchmark tools run end to end (tiny sizes; the numbers are not checked), the harness's
per-process mode and its ranges, and the allocator set up at ``import rnnlab``.

The tools run as subprocesses (``RNNLAB_ALLOCATOR=system``: they must not replace the test
process, and the older tests keep their setting). PyTorch is optional: the harness's tests time
rnnlab alone when it is absent, and PyTorch beside it when it is installed.
"""

import importlib.util
import json
import os
import pathlib
import statistics
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # every test runs a benchmark tool in a fresh subprocess (> 1.5 s)

ROOT = pathlib.Path(__file__).resolve().parents[1]
HAVE_TORCH = importlib.util.find_spec("torch") is not None


def run(args, tmp_path):
    env = dict(os.environ, RNNLAB_ALLOCATOR="system", JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_kernels_lists_the_loop_kernels(tmp_path):
    script = ROOT / "benchmarks" / "kernels.py"
    args = ["--cell", "gru", "--hidden", "16", "--steps-per-seq", "10", "--steps", "2"]
    text = run([str(script), *args, "--out", str(tmp_path)], tmp_path)
    assert "kernels in the time loop (run T=10 times per step)" in text
    assert "| loop |" in text  # some kernel ran T times per step: the scan body was found
    assert (tmp_path / "kernels-rnnlab-gru-16-train.md").exists()


def test_ab_compares_a_constant(tmp_path):
    script = ROOT / "benchmarks" / "ab.py"
    args = ["--set", "FUSED_MIN_HIDDEN=10**9", "--cell", "lstm", "--hidden", "16"]
    text = run([str(script), *args, "--repeats", "2"], tmp_path)
    assert "B: FUSED_MIN_HIDDEN=10**9" in text
    for work in ("train_step", "forward", "probe"):
        assert f"| {work} |" in text


def test_ab_rejects_an_unknown_constant(tmp_path):
    script = ROOT / "benchmarks" / "ab.py"
    env = dict(os.environ, RNNLAB_ALLOCATOR="system")
    out = subprocess.run(
        [sys.executable, str(script), "--set", "NO_SUCH=1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode != 0
    assert "rnnlab.engine.plan.THRESHOLDS has no constant 'no_such'" in out.stderr


def test_ab_compares_an_older_cell_file(tmp_path):
    """--old-cell: side A builds the bench model with the Cell of another file (here a copy)."""
    old = tmp_path / "lstm_old.py"
    old.write_text((ROOT / "rnnlab" / "cells" / "lstm.py").read_text())
    script = ROOT / "benchmarks" / "ab.py"
    args = ["--old-cell", str(old), "--cell", "lstm", "--hidden", "16", "--repeats", "2"]
    text = run([str(script), *args], tmp_path)
    assert f"A: {old}" in text and "B: working tree" in text
    assert "| train_step |" in text


def test_ab_compares_bf16_matmuls_and_takes_spec_fields(tmp_path):
    script = ROOT / "benchmarks" / "ab.py"
    tiny = ["--cell", "gru", "--hidden", "16", "--repeats", "2"]
    text = run([str(script), "--matmul-dtype", "bfloat16", *tiny], tmp_path)
    assert "A: matmul_dtype=None" in text and "B: matmul_dtype='bfloat16'" in text
    args = ["--spec", "matmul_dtype=bfloat16", "--set", "FUSED_MIN_HIDDEN=10**9", *tiny]
    text = run([str(script), *args], tmp_path)
    assert "B: FUSED_MIN_HIDDEN=10**9" in text and "| probe |" in text


def test_harness_times_the_matmuls_alone(tmp_path):
    """The train table has the matmuls-alone column, timed with the systems; nothing else runs."""
    script = ROOT / "benchmarks" / "harness.py"
    args = ["--workloads", "train,forward", "--systems", "rnnlab", "--cells", "lstm,gru"]
    args += ["--hidden", "16", "--steps", "5", "--repeats", "2", "--warmup", "1"]
    run([str(script), *args, "--out", str(tmp_path / "out")], tmp_path)
    text = (tmp_path / "out.md").read_text()
    assert "| floor ms | matmuls alone ms |" in text
    rows = json.loads((tmp_path / "out.json").read_text())["rows"]
    alone = [r for r in rows if r["system"] == "matmuls-alone"]
    assert {(r["workload"], r["cell"]) for r in alone} == {
        (w, c) for w in ("train", "forward") for c in ("lstm", "gru")
    }
    assert all(r["median_s"] > 0 for r in alone)


def test_a_missed_target_says_how_far_the_matmuls_alone_are():
    sys.path.insert(0, str(ROOT))
    from benchmarks import report

    row = lambda system, s: dict(
        workload="train", cell="gru", hidden=512, steps=100, system=system, median_s=s
    )
    out = {"rows": [row("rnnlab", 0.090), row("torch", 0.075), row("matmuls-alone", 0.072)]}
    (line,) = report.targets(out)
    assert line.startswith("- MISS: train gru H=512: rnnlab / torch = 1.20x (target <= 0.45x)")
    assert line.endswith("; the step's matmuls alone: 0.96x torch, rnnlab 1.25x its matmuls")


def test_matmul_shapes_times_each_shape_in_both_dtypes(tmp_path):
    script = ROOT / "benchmarks" / "matmul_shapes.py"
    args = ["--batch", "4", "--hidden", "16", "--steps-per-seq", "5", "--repeats", "2"]
    text = run([str(script), *args], tmp_path)
    rows = [line for line in text.splitlines() if line.startswith("| ") and "GFLOP" not in line]
    assert len(rows) == 8  # forward, backward x2, weight grad; float32 and bf16 operands
    assert all(float(r.split("|")[-2]) > 0 for r in rows)


# ------------------------------------------------------------------- the per-process harness

TINY = ["--workloads", "train", "--cells", "lstm", "--hidden", "16", "--steps", "5"]
TINY += ["--repeats", "2", "--warmup", "1"]
SYSTEMS = "rnnlab,torch" if HAVE_TORCH else "rnnlab"


def test_harness_runs_each_system_in_its_own_process_with_ranges(tmp_path):
    script = ROOT / "benchmarks" / "harness.py"
    args = [*TINY, "--systems", SYSTEMS, "--rounds", "3", "--out", str(tmp_path / "out")]
    run([str(script), *args], tmp_path)
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["mode"] == "per-process"
    rows = {r["system"]: r for r in out["rows"] if r["workload"] == "train"}
    mine = rows["rnnlab"]
    assert len(mine["rounds_s"]) == 3 and len(set(mine["pids"])) == 3  # a process per round
    assert mine["median_s"] == pytest.approx(statistics.median(mine["rounds_s"]))
    assert len(mine["runs_s"]) == 3 * 2  # every timed run of every round kept
    text = (tmp_path / "out.md").read_text()
    assert "**Per process**" in text and "ONE PROCESS" not in text
    lo, hi = min(mine["rounds_s"]), max(mine["rounds_s"])
    assert f"{1e3 * mine['median_s']:.1f} ({1e3 * lo:.1f}-{1e3 * hi:.1f})" in text
    assert "Load average" in text
    if HAVE_TORCH:  # PyTorch in processes of its own, never in rnnlab's
        assert not set(rows["torch"]["pids"]) & set(mine["pids"])
        per_round = [a / b for a, b in zip(mine["rounds_s"], rows["torch"]["rounds_s"])]
        ratio = mine["median_s"] / rows["torch"]["median_s"]
        assert f"{ratio:.2f}x ({min(per_round):.2f}-{max(per_round):.2f})" in text


def test_harness_one_process_mode_is_labelled(tmp_path):
    script = ROOT / "benchmarks" / "harness.py"
    args = [*TINY, "--systems", SYSTEMS, "--one-process", "--out", str(tmp_path / "out")]
    run([str(script), *args], tmp_path)
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["mode"] == "one-process"
    assert len({pid for r in out["rows"] for pid in r["pids"]}) == 1  # all in one process
    assert all("rounds_s" not in r for r in out["rows"])
    assert "**ONE PROCESS**" in (tmp_path / "out.md").read_text()


def test_ratio_range_is_over_the_per_round_ratios():
    sys.path.insert(0, str(ROOT))
    from benchmarks import harness, report

    def row(system, r, seconds):
        return dict(workload="train", cell="gru", hidden=512, steps=100, layers=1, batch=32,
                    system=system, median_s=seconds, runs_s=[seconds], round=r, position=0,
                    pids=[r])  # fmt: skip

    rows = [row("rnnlab", 0, 0.040), row("rnnlab", 1, 0.050), row("rnnlab", 2, 0.045)]
    rows += [row("torch", 0, 0.100), row("torch", 1, 0.080), row("torch", 2, 0.090)]
    merged = {r["system"]: r for r in harness.aggregate(rows)}
    assert merged["rnnlab"]["rounds_s"] == [0.040, 0.050, 0.045]
    assert merged["rnnlab"]["median_s"] == 0.045 and merged["torch"]["median_s"] == 0.090
    value, (lo, hi) = report.ratio(merged["rnnlab"], merged["torch"])
    assert value == pytest.approx(0.5)  # the ratio of the medians
    assert (lo, hi) == pytest.approx((0.4, 0.625))  # round 0: 0.04/0.1; round 1: 0.05/0.08
    (line,) = report.targets({"rows": list(merged.values())})
    assert line == (
        "- MISS: train gru H=512: rnnlab / torch = 0.50x, rounds 0.40-0.62 (target <= 0.45x)"
    )


# ----------------------------------------------------------------- the allocator at import

# After `import rnnlab`: blocks of 1, 2, ..., 40 MiB, each written and freed. glibc's default
# serves each one (larger than the last freed) by a fresh mmap, so every page faults in again;
# tuned, they come from the kept heap, and about the largest block's pages fault once.
PROBE = """
import ctypes, json, resource
import rnnlab
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for mib in range(1, 41):
    p = libc.malloc(mib << 20)
    ctypes.memset(p, 1, mib << 20)
    libc.free(p)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
print(json.dumps(dict(rnnlab.devices.allocator(), faults=faults)))
"""


def probe(**env):
    base = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "RNNLAB_ALLOCATOR")}
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=dict(base, **env), capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip


def test_import_tunes_malloc_before_jax_and_the_opt_out_leaves_it():
    from rnnlab import devices

    out = probe()
    assert out.returncode == 0, out.stderr[-2000:]
    tuned = json.loads(out.stdout)
    assert tuned["mode"] == "tuned" and tuned["mallopt"] == devices.MALLOPT
    assert tuned["jax_imported_first"] is False  # mallopt ran before JAX was imported
    system = json.loads(probe(RNNLAB_ALLOCATOR="system").stdout)
    assert system["mode"] == "system" and system["mallopt"] == {}
    pages = sum(range(1, 41)) << 8  # 4 KiB pages written in all: 209,920
    assert system["faults"] > 0.8 * pages  # glibc's default: every block faults in afresh
    assert tuned["faults"] < 0.2 * pages  # tuned: the heap is kept (~40 MiB faults once)


def test_a_bad_allocator_setting_is_refused_with_the_choices():
    out = probe(RNNLAB_ALLOCATOR="jemalloc")
    assert out.returncode != 0
    assert "RNNLAB_ALLOCATOR must be one of tuned, system, tcmalloc; got 'jemalloc'" in out.stderr
