"""What a run guarantees (docs/reliability.md): corruption, concurrency, preemption, divergence,
disk full, workdir ownership. Each test breaks one thing the way it breaks in the field."""

import errno
import glob
import json
import os
import pathlib
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from rnnlab import checkpoint, cli, registry, sample, train, viz
from rnnlab import config as config_lib
from rnnlab import data as data_lib
from rnnlab import workdir as workdir_lib
from rnnlab.metrics import CorruptFileError

HERE = pathlib.Path(__file__).parent
TEXT = "".join(f"{i % 7} the cat sat on the mat; the dog ate the log.\n" for i in range(40))
# reading a corrupt checkpoint leaves a TensorStore future unraisable at garbage collection
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def tiny_config(*overrides):
    return config_lib.apply_overrides(
        config_lib.get_config(),
        [
            "model.hidden_size=8",
            "model.embed_dim=4",
            "data.seq_length=6",
            "data.batch_size=3",
            "train.num_steps=8",
            "train.eval_every=4",
            "train.log_every=2",
            "train.checkpoint_every=4",
            "train.progress=false",
            *overrides,
        ],
    )


def tiny_text(path):
    return data_lib.make("text", path=str(path), seq_length=6, batch_size=3)


def latest_arrays(workdir):
    ck = checkpoint.Checkpoints(pathlib.Path(workdir) / "checkpoints", read_only=True)
    try:
        step, state = ck.restore()
    finally:
        ck.close()
    return step, state


def assert_bitwise_equal(a, b):
    la, lb = jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for (path, x), y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(path))


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """A finished tiny text run trained from a file: (workdir, corpus file, config)."""
    root = tmp_path_factory.mktemp("reliability")
    corpus = root / "corpus.txt"
    corpus.write_text(TEXT)
    config = tiny_config(f"data.path={corpus}")
    train.train_and_evaluate(config, root / "run", dataset=tiny_text(corpus))
    return root / "run", corpus, config


def copy_run(text_run, tmp_path):
    workdir, corpus, config = text_run
    dst = tmp_path / "run"
    shutil.copytree(workdir, dst)
    return dst, corpus, config


# ------------------------------------------------------------------------------ corruption


def random_state(seed=0):
    w = jax.random.normal(jax.random.PRNGKey(seed), (2000,))  # incompressible: raw bytes on disk
    return {"step": jnp.int32(seed), "params": {"w": w}}


def flip_bit_in_array_file(step_dir: pathlib.Path) -> pathlib.Path:
    files = glob.glob(str(step_dir / "state" / "ocdbt.process_0" / "d" / "*"))
    target = pathlib.Path(max(files, key=os.path.getsize))  # the one holding params.w
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 1
    target.write_bytes(bytes(raw))
    return target


@pytest.mark.slow
def test_flipped_bit_is_refused_and_the_previous_checkpoint_used(tmp_path):
    ck = checkpoint.Checkpoints(tmp_path / "checkpoints", keep=3)
    for s in (1, 2):
        ck.save(s, random_state(s), val_loss=float(s))
    ck.close()
    flip_bit_in_array_file(tmp_path / "checkpoints" / "2")

    lines = []
    reader = checkpoint.Checkpoints(tmp_path / "checkpoints", read_only=True, log=lines.append)
    with pytest.raises(checkpoint.CorruptCheckpointError, match="params/w"):
        reader.restore(step=2)
    step, state = reader.restore()  # read-only: skipped, not moved
    assert step == 1 and "step 2" in lines[-1] and "content hash mismatch" in lines[-1]
    assert_bitwise_equal(state, random_state(1))
    assert not (tmp_path / "corrupt_checkpoints").exists()

    lines.clear()
    writer = checkpoint.Checkpoints(tmp_path / "checkpoints", log=lines.append)
    step, _ = writer.restore(jax.eval_shape(lambda: random_state(0)))
    assert step == 1 and writer.steps() == [1]
    assert "checkpoint at step 2" in lines[0] and str(tmp_path / "checkpoints") in lines[0]
    assert [p.name.split("-")[0] for p in (tmp_path / "corrupt_checkpoints").iterdir()] == ["2"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["metrics/metrics", "_CHECKPOINT_METADATA", "state/_METADATA"])
def test_garbled_orbax_files_fall_back_in_resume_and_sample(text_run, tmp_path, name, capsys):
    workdir, corpus, config = copy_run(text_run, tmp_path)
    (workdir / "checkpoints" / "8" / name).write_text('{"val_loss": ')
    run = train.load_run(workdir, which="latest")  # what `rnnlab sample` reads
    assert run.step == 4
    assert "checkpoint at step 8" in capsys.readouterr().err
    summary = train.train_and_evaluate(config, workdir, dataset=tiny_text(corpus))
    assert summary["resumed_from"] == 4 and summary["step"] == 8
    assert (workdir / "corrupt_checkpoints").is_dir()


@pytest.mark.slow
def test_corrupt_run_files_are_named_with_what_to_do(text_run, tmp_path, capsys):
    workdir, corpus, config = copy_run(text_run, tmp_path)
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    lines[1] = lines[1][:10]
    (workdir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(CorruptFileError, match=r"metrics\.jsonl.*line 2.*move the file away"):
        train.train_and_evaluate(config, workdir, dataset=tiny_text(corpus))
    for name in ("config.json", "data.json"):
        broken = tmp_path / name.replace(".", "_")
        shutil.copytree(workdir, broken)
        (broken / name).write_text('{"model": {"cell": "lst')
        with pytest.raises(CorruptFileError, match=f"{name}.*move the whole workdir away"):
            train.load_run(broken)
        with pytest.raises(CorruptFileError, match=name):
            train.train_and_evaluate(config, broken, dataset=tiny_text(corpus))
        assert cli.main(["sample", str(broken), "--length", "5"]) == 2
        err = capsys.readouterr().err
        assert name in err and "Traceback" not in err and len(err.strip().splitlines()) <= 3


# ----------------------------------------------------------------------------- concurrency

HOLDER = """
import sys, time
from rnnlab.workdir import WorkdirLock
WorkdirLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(120)
"""


@pytest.mark.slow
def test_one_writer_per_workdir(text_run, tmp_path):
    workdir, corpus, config = copy_run(text_run, tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(workdir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.time()
        with pytest.raises(workdir_lib.WorkdirBusyError) as info:
            train.train_and_evaluate(config, workdir, dataset=tiny_text(corpus))
        assert time.time() - t0 < 30  # refused at once, not after waiting
        msg = str(info.value)
        assert f"PID {holder.pid}" in msg and socket.gethostname() in msg
        assert train.load_run(workdir).step > 0  # readers need no lock
    finally:
        holder.kill()  # SIGKILL: the kernel drops its flock, its text stays in the file
        holder.wait()
    lines = []
    with workdir_lib.WorkdirLock(workdir, log=lines.append):
        pass
    assert f"PID {holder.pid}" in lines[0] and "no longer running" in lines[0]
    summary = train.train_and_evaluate(config, workdir, dataset=tiny_text(corpus))
    assert summary["resumed_from"] == 8
    assert (workdir / ".lock").read_text() == ""  # released


@pytest.mark.slow
def test_a_workdir_belongs_to_one_run(text_run, tmp_path):
    workdir, corpus, config = copy_run(text_run, tmp_path)
    with pytest.raises(ValueError, match="lies inside the workdir of another run"):
        workdir_lib.prepare_workdir(workdir / "runs" / "gru" / "T50", {})
    experiment = tmp_path / "experiment"
    (experiment / "runs").mkdir(parents=True)
    shutil.copytree(workdir, experiment / "runs" / "lstm")  # a study.subrun sub-folder
    workdir_lib.prepare_workdir(experiment / "runs" / "gru", {})  # a sibling sub-run is fine
    with pytest.raises(ValueError, match="holds the workdirs of other runs"):
        train.train_and_evaluate(config, experiment, dataset=tiny_text(corpus))
    assert sorted(p.name for p in experiment.iterdir()) == ["runs"]  # nothing written


# ------------------------------------------------------------------------------ preemption

CHILD = """
import os, signal, sys
sys.path.insert(0, {here!r})
import test_reliability as t
from rnnlab import data, train

workdir, corpus, at, signame = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

class Signalling:
    # the dataset sends the signal while batch `at` is fetched: the step runs, then the loop
    # stops at the boundary after it
    def __init__(self, inner):
        self.inner = inner
    def __getattr__(self, name):
        return getattr(self.inner, name)
    def train_batch(self, step):
        if step == at:
            for _ in range(2 if signame == "double" else 1):
                os.kill(os.getpid(), signal.SIGINT if signame != "SIGTERM" else signal.SIGTERM)
        return self.inner.train_batch(step)

config = t.tiny_config(*t.LONG)
try:
    train.train_and_evaluate(config, workdir, dataset=Signalling(t.tiny_text(corpus)))
except train.Preempted as stop:
    print(stop, flush=True)
    sys.exit(stop.exit_code)
except KeyboardInterrupt:
    sys.exit(130)
"""
LONG = [
    "train.num_steps=60",
    "train.eval_every=20",
    "train.log_every=5",
    "train.checkpoint_every=20",
]


def run_child(tmp_path, workdir, corpus, at, signame):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(here=str(HERE)))
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, str(script), str(workdir), str(corpus), str(at), signame],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def rows(workdir):
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["step"], r["kind"]) for r in records]
    assert len(keys) == len(set(keys)), "duplicate rows in metrics.jsonl"
    return [(r["step"], r["kind"], r.get("loss"), r.get("val_loss")) for r in records]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    (root / "corpus.txt").write_text(TEXT)
    config = tiny_config(*LONG)
    train.train_and_evaluate(config, root / "run", dataset=tiny_text(root / "corpus.txt"))
    return root / "run", root / "corpus.txt"


@pytest.mark.slow
def test_sigint_then_sigterm_at_random_steps_resume_bitwise(tmp_path, reference):
    ref, corpus = reference
    rng = random.Random()
    first = rng.randrange(1, 29)
    second = rng.randrange(first + 2, 58)
    workdir = tmp_path / "run"
    stopped = run_child(tmp_path, workdir, corpus, first, "SIGINT")
    assert stopped.returncode == 130, (first, stopped.stderr[-3000:])
    assert f"at step {first + 1}/60" in stopped.stdout and "run the same command" in stopped.stdout
    assert checkpoint.Checkpoints(workdir / "checkpoints", read_only=True).latest_step() == (
        first + 1
    )
    # the resumed run is stopped again (SIGTERM), then finishes
    stopped = run_child(tmp_path, workdir, corpus, second, "SIGTERM")
    assert stopped.returncode == 143, (first, second, stopped.stderr[-3000:])
    assert f"resumed from the checkpoint at step {first + 1}" in stopped.stdout
    done = run_child(tmp_path, workdir, corpus, -1, "none")
    assert done.returncode == 0, done.stderr[-3000:]
    assert latest_arrays(workdir)[0] == 60
    assert_bitwise_equal(latest_arrays(workdir)[1], latest_arrays(ref)[1])
    got, want = rows(workdir), rows(ref)
    assert [r for r in got if r[1] == "train"] == [r for r in want if r[1] == "train"], first
    assert [r for r in got if r[1] == "eval"] == [r for r in want if r[1] == "eval"]


@pytest.mark.slow
def test_sigkill_at_a_random_moment_resumes_bitwise(tmp_path, reference):
    ref, corpus = reference
    workdir = tmp_path / "run"
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(here=str(HERE)))
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    child = subprocess.Popen(
        [sys.executable, str(script), str(workdir), str(corpus), "-1", "none"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = child.stdout.readline()
    while line.startswith("plan:"):  # a run prints its plan first
        line = child.stdout.readline()
    assert line.startswith("step"), line  # training has started
    time.sleep(random.uniform(0.0, 0.5))
    child.kill()
    child.wait()
    summary = train.train_and_evaluate(tiny_config(*LONG), workdir, dataset=tiny_text(corpus))
    assert summary["step"] == 60
    assert_bitwise_equal(latest_arrays(workdir)[1], latest_arrays(ref)[1])
    rows(workdir)  # no duplicate rows


@pytest.mark.slow
def test_second_ctrl_c_exits_at_once_and_handlers_are_restored(tmp_path):
    (tmp_path / "corpus.txt").write_text(TEXT)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    proc = run_child(tmp_path, tmp_path / "run", tmp_path / "corpus.txt", 3, "double")
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert not (tmp_path / "run" / "checkpoints" / "4").exists()  # stopped without saving
    # in this process: a SIGTERM stops at the boundary, then the old handlers are back
    ds = tiny_text(tmp_path / "corpus.txt")
    original = ds.train_batch

    def batch(step):
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(step)

    ds.train_batch = batch
    config = tiny_config(f"data.path={tmp_path / 'corpus.txt'}")
    with pytest.raises(train.Preempted) as info:
        train.train_and_evaluate(config, tmp_path / "in-process", dataset=ds)
    assert info.value.exit_code == 143 and info.value.step == 3
    assert {s: signal.getsignal(s) for s in before} == before


def test_cli_exit_status_of_a_stop(monkeypatch, capsys):
    stop = train.Preempted("stopped by SIGTERM at step 3/8: saved in W; run again", 15, 3)
    monkeypatch.setattr(registry, "run", lambda *a, **k: (_ for _ in ()).throw(stop))
    assert cli.main(["run", "adding:smoke"]) == 143
    assert capsys.readouterr().err.strip().splitlines() == [f"rnnlab run: {stop}"]

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(registry, "run", interrupted)
    assert cli.main(["run", "adding:smoke"]) == 130
    assert "Traceback" not in capsys.readouterr().err


# ------------------------------------------------------------------------------ divergence


class Drifting:
    """A "batch" regression task whose targets jump x1000 from step ``jump`` on: a run whose
    loss stays far above its best (finite throughout, so only the divergence guard stops it)."""

    kind = "batch"
    model_spec = {"architecture": "sequence", "out_features": 1, "readout": "last", "loss": "mse"}

    def __init__(self, jump):
        self.jump = jump

    def train_batch(self, step):
        x = data_lib.seed_for(step, 0).uniform(size=(4, 5, 2)).astype(np.float32)
        scale = 1000.0 if step >= self.jump else 1.0
        return {"inputs": x, "targets": scale * x[:, :, :1].sum(axis=1)}, False

    def eval_batches(self):
        yield self.train_batch(0)[0]

    def metadata(self):
        return {"name": "drifting"}


@pytest.mark.slow
def test_divergence_stops_the_run_and_names_the_last_good_checkpoint(tmp_path):
    config = tiny_config(
        "model.hidden_size=8",
        "train.num_steps=40",
        "train.log_every=2",
        "train.checkpoint_every=4",
        "train.eval_every=4",
        "train.divergence_factor=10",
        "train.divergence_patience=6",
    )
    with pytest.raises(train.DivergenceError) as info:
        train.train_and_evaluate(config, tmp_path / "on", dataset=Drifting(jump=12))
    msg = str(info.value)
    # above the threshold from the record at step 14 on; stopped once 6 steps later (step 20)
    assert "since step 14" in msg and "at step 20" in msg, msg
    assert f"Last good checkpoint: step 12 in {tmp_path / 'on' / 'checkpoints'}" in msg  # not 16
    assert isinstance(info.value, train.NonFiniteError)  # callers catching NaN catch this too
    off = config_lib.apply_overrides(config, ["train.divergence_factor=0"])
    summary = train.train_and_evaluate(off, tmp_path / "off", dataset=Drifting(jump=12))
    assert summary["step"] == 40


def test_divergence_guard_per_seed_and_replay():
    guard = train._DivergenceGuard(factor=4.0, patience=10)
    losses = [(2, [1.0, 1.0]), (4, [0.5, 1.0]), (6, [3.0, 1.0]), (8, [1.0, 1.0]), (10, [2.5, 1.0])]
    for step, loss in losses:
        assert guard.update(step, loss) is None
    assert not guard.within and guard.since.tolist() == [10, -1]
    assert "of seed 0" in guard.update(20, [2.1, 1.0])
    again = train._DivergenceGuard(factor=4.0, patience=10)
    again.replay([{"step": s, "loss": 0.0, "loss_per_seed": v} for s, v in losses])
    assert again.best.tolist() == guard.best.tolist() and again.since.tolist() == [10, -1]


# ------------------------------------------------------------------------------- disk full


@pytest.mark.slow
def test_disk_full_while_checkpointing_gives_one_line_and_no_tmp_dirs(
    text_run, tmp_path, monkeypatch, capsys
):
    _, corpus, _ = text_run
    config = tiny_config(f"data.path={corpus}")
    real_save = ocp.CheckpointManager.save

    def full_disk(self, step, *args, **kwargs):
        if step >= 8:  # as Orbax does: a temporary folder first, then the device is full
            (pathlib.Path(self.directory) / f"{step}.orbax-checkpoint-tmp-1234").mkdir()
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", full_disk)
    workdir = tmp_path / "run"
    monkeypatch.setattr(
        registry,
        "run",
        lambda *a, **k: train.train_and_evaluate(config, workdir, dataset=tiny_text(corpus)),
    )
    assert cli.main(["run", "text-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    line = err[0]
    assert "step 8" in line and str(workdir) in line
    assert f"previous intact checkpoint: step 4 ({workdir / 'checkpoints' / '4'})" in line
    assert "Free space and rerun the same command to resume" in line
    leftovers = [p.name for p in (workdir / "checkpoints").iterdir()]
    assert leftovers == ["4"], leftovers
    assert not [p for p in workdir.iterdir() if p.name.startswith(".metrics.")]


# --------------------------------------------------------------------- the recorded corpus


@pytest.mark.slow
def test_sample_and_viz_read_only_the_recorded_text(text_run, tmp_path, capsys):
    workdir, corpus, config = copy_run(text_run, tmp_path)
    run = train.load_run(workdir)
    assert run.metadata["text_sha256"] == data_lib.corpora.text_sha256(TEXT)
    assert sample.warmup_text(run, 50).endswith("\n") and viz.heldout_text(run)
    corpus.write_text(TEXT.replace("cat", "bat"))  # same length, other text
    try:
        with pytest.raises(ValueError, match="not the text the run trained on.*--warmup 0"):
            sample.warmup_text(train.load_run(workdir), 50)
        with pytest.raises(ValueError, match="not the text the run trained on.*--text FILE"):
            viz.heldout_text(train.load_run(workdir))
        assert cli.main(["sample", str(workdir), "--length", "5"]) == 2
        assert "not the text the run trained on" in capsys.readouterr().err
        assert cli.main(["sample", str(workdir), "--length", "5", "--warmup", "0"]) == 0
        other = tmp_path / "mine.txt"
        other.write_text("the cat sat\n")
        out = tmp_path / "page.html"
        assert cli.main(["viz", str(workdir), "--text", str(other), "--out", str(out)]) == 0
    finally:
        corpus.write_text(TEXT)
    recorded = json.loads((workdir / "config.json").read_text())
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text(TEXT.upper())
    recorded["data"]["path"] = str(elsewhere)  # pointing elsewhere
    (workdir / "config.json").write_text(json.dumps(recorded))
    assert cli.main(["viz", str(workdir), "--out", str(tmp_path / "x.html")]) == 2
    assert "not the text the run trained on" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()


@pytest.mark.slow
def test_disk_full_while_logging_names_the_workdir(text_run, tmp_path, monkeypatch):
    _, corpus, _ = text_run
    config = tiny_config(f"data.path={corpus}")
    real_write = train.metrics_lib.Writer.write

    def full_disk(self, step, kind, values):
        if step >= 6:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, step, kind, values)

    monkeypatch.setattr(train.metrics_lib.Writer, "write", full_disk)
    with pytest.raises(checkpoint.DiskFullError) as info:
        train.train_and_evaluate(config, tmp_path / "run", dataset=tiny_text(corpus))
    msg = str(info.value)
    assert str(tmp_path / "run") in msg and "rerun the same command to resume" in msg
    assert (tmp_path / "run" / ".lock").read_text() == ""  # released on the way out
