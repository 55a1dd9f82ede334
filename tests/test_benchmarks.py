"""The rnnlab-only benchmark tools run end to end (tiny sizes; the numbers are not checked).

They run as subprocesses with ``RNNLAB_ALLOCATOR=system``: the tools re-exec themselves under
tcmalloc when it is installed, which must not replace the test process.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # every test runs a benchmark tool in a fresh subprocess (> 1.5 s)

ROOT = pathlib.Path(__file__).resolve().parents[1]


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
        workload="train", cell="lstm", hidden=512, steps=100, system=system, median_s=s
    )
    out = {"rows": [row("rnnlab", 0.090), row("torch", 0.075), row("matmuls-alone", 0.072)]}
    (line,) = report.targets(out)
    assert line.startswith("- MISS: train lstm H=512: rnnlab / torch = 1.20x (target <= 0.9x)")
    assert line.endswith("; the step's matmuls alone: 0.96x torch, rnnlab 1.25x its matmuls")


def test_matmul_shapes_times_each_shape_in_both_dtypes(tmp_path):
    script = ROOT / "benchmarks" / "matmul_shapes.py"
    args = ["--batch", "4", "--hidden", "16", "--steps-per-seq", "5", "--repeats", "2"]
    text = run([str(script), *args], tmp_path)
    rows = [line for line in text.splitlines() if line.startswith("| ") and "GFLOP" not in line]
    assert len(rows) == 8  # forward, backward x2, weight grad; float32 and bf16 operands
    assert all(float(r.split("|")[-2]) > 0 for r in rows)
