"""Exact resume: SIGKILL mid-run, corrupt latest checkpoint, time limit; Orbax retention."""

import glob
import json
import os
import pathlib
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import checkpoint, data, train
from rnnlab import config as config_lib

TEXT = "".join(f"{i % 5} to be or not to be, that is the question.\n" for i in range(10))
HERE = pathlib.Path(__file__).parent
# reading the truncated checkpoint leaves a TensorStore future unraisable at garbage collection
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

CHILD = """
import os, signal, sys
sys.path.insert(0, {here!r})
import test_checkpoint as t
from rnnlab import train

def kill(step, params, model, dataset):  # SIGKILL at step 6: after the checkpoint at 4
    if step == 6:
        os.kill(os.getpid(), signal.SIGKILL)
    return {{}}

config = t.tiny_config("train.probe_every=6")
train.train_and_evaluate(config, sys.argv[1], dataset=t.dataset(config), hooks=[kill])
"""


def tiny_config(*overrides):
    return config_lib.apply_overrides(
        config_lib.get_config(),
        [
            "model.hidden_size=12",
            "model.embed_dim=8",
            "model.dropout=0.1",  # exercises the fold_in(key, step) dropout rng on resume
            "model.num_layers=2",
            "data.seq_length=8",
            "data.batch_size=4",
            "train.num_steps=12",
            "train.eval_every=4",
            "train.log_every=2",
            "train.checkpoint_every=4",
            "train.keep_checkpoints=2",
            "train.progress=false",
            *overrides,
        ],
    )


def dataset(config):
    # 12 steps cross an epoch boundary (reset) and keep the carry across chunks in between
    return data.make("text", text=TEXT, seq_length=8, batch_size=4, val_fraction=0.2)


def params_of(workdir):
    return train.load_run(workdir, which="latest").params


def assert_bitwise_equal(a, b):
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(path))


def train_records(workdir):
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["loss"]) for r in map(json.loads, lines) if r["kind"] == "train"]


@pytest.mark.slow
def test_sigkill_corrupt_and_time_limit_resume_exactly(tmp_path, capsys):
    config = tiny_config()
    assert dataset(config).steps_per_epoch < 12
    killed, reference, limited = tmp_path / "killed", tmp_path / "reference", tmp_path / "limited"

    # 1. a real process, SIGKILLed mid-run (after its checkpoint at step 4)
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(here=str(HERE)))
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, str(script), str(killed)], env=env, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert [s for s, _ in train_records(killed)][-1] == 6  # it logged past its checkpoint
    assert checkpoint.Checkpoints(killed / "checkpoints", read_only=True).steps() == [4]

    with open(killed / "metrics.jsonl", "a") as f:  # as if killed while writing a record
        f.write('{"step": 7, "kind": "tra')
    # 2. the same command again resumes from step 4; the uninterrupted run is the reference
    summary = train.train_and_evaluate(config, killed, dataset=dataset(config))
    assert summary["resumed_from"] == 4 and summary["step"] == 12
    full = train.train_and_evaluate(config, reference, dataset=dataset(config))
    again = train.train_and_evaluate(config, reference, dataset=dataset(config))  # done: no-op
    assert again["resumed_from"] == 12 and again["val_loss"] == full["val_loss"]
    assert_bitwise_equal(params_of(killed), params_of(reference))
    assert train_records(killed) == train_records(reference)  # the lost records rewritten

    # 3. a corrupt latest checkpoint (truncated files, and a stray half-written temp folder):
    #    reported, moved aside, the previous one used; the rerun ends equal again
    for f in glob.glob(
        str(killed / "checkpoints" / "12" / "state" / "ocdbt.process_0" / "d" / "*")
    ):
        os.truncate(f, os.path.getsize(f) // 2)
    (killed / "checkpoints" / "16.orbax-checkpoint-tmp-123").mkdir()
    capsys.readouterr()
    summary = train.train_and_evaluate(config, killed, dataset=dataset(config))
    out = capsys.readouterr().out
    assert "checkpoint at step 12" in out and "corrupt" in out, out
    assert summary["resumed_from"] == 8
    assert len(list((killed / "corrupt_checkpoints").iterdir())) == 1
    assert_bitwise_equal(params_of(killed), params_of(reference))

    # 4. a time limit stops at a step boundary with a checkpoint; rerunning continues exactly
    short = config_lib.apply_overrides(tiny_config(), ["train.time_limit_s=1e-9"])
    summary = train.train_and_evaluate(short, limited, dataset=dataset(config))
    assert summary["stopped_early"] and summary["step"] == 1
    assert "time limit" in capsys.readouterr().out
    train.train_and_evaluate(config, limited, dataset=dataset(config))
    assert_bitwise_equal(params_of(limited), params_of(reference))


@pytest.mark.slow
def test_keeps_latest_and_best(tmp_path):
    state = {"step": jnp.int32(0), "params": {"w": jnp.arange(3.0)}}
    ck = checkpoint.Checkpoints(tmp_path, keep=2)
    for step, val in [(1, 1.0), (2, 3.0), (3, None), (4, 2.0), (5, None)]:
        ck.save(step, {**state, "step": jnp.int32(step)}, val_loss=val)
    assert ck.steps() == [1, 4, 5]  # the latest two, plus the best by val loss
    ck.close()
    reopened = checkpoint.Checkpoints(tmp_path, keep=2)
    assert reopened.best_step() == 1 and reopened.val_loss(1) == 1.0
    step, restored = reopened.restore(jax.eval_shape(lambda: state))
    assert step == 5 and int(restored["step"]) == 5
    reopened.save(6, state)  # a restart keeps the best one too
    assert reopened.steps() == [1, 5, 6]
    other = {"step": jnp.int32(0), "params": {"w": jnp.zeros(4), "v": jnp.zeros(1)}}
    with pytest.raises(checkpoint.IncompatibleCheckpointError) as info:
        reopened.restore(jax.eval_shape(lambda: other))
    assert "params['w']: (3,) -> (4,)" in str(info.value)
    assert "params['v']: <absent> -> (1,)" in str(info.value)
    assert reopened.steps() == [1, 5, 6]  # nothing moved or deleted
