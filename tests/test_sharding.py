"""Data parallelism on a Mesh: 4 (forced host) devices train like 1 device; bad batch sizes."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from rnnlab import config as config_lib
from rnnlab import data, train

HERE = pathlib.Path(__file__).parent
TEXT = "".join(
    f"{i % 3} all the world's a stage, and all the men and women merely players\n"
    for i in range(12)
)

CHILD = """
import sys
sys.path.insert(0, {here!r})
import jax, numpy as np
import test_sharding as t
from rnnlab import train

assert len(jax.devices()) == 4, jax.devices()
config = t.tiny_config()
mesh = train.data_mesh(8)
batch = train.shard_batch(t.dataset(config).train_batch(0)[0], mesh)
assert batch["inputs"].sharding.shard_shape(batch["inputs"].shape) == (2, 8)  # split over 4

def check(step, params, model, dataset):  # params replicated on all 4 devices
    leaf = jax.tree.leaves(params)[0]
    assert leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == 4
    return {{"replicated": 1.0}}

train.train_and_evaluate(config, sys.argv[1], dataset=t.dataset(config), hooks=[check])
try:
    train.train_and_evaluate(t.tiny_config("data.batch_size=6"), sys.argv[1] + "-bad")
except ValueError as err:
    print("BAD BATCH:", err)
"""


def tiny_config(*overrides):
    return config_lib.apply_overrides(
        config_lib.get_config(),
        [
            "model.hidden_size=16",
            "model.embed_dim=8",
            "data.seq_length=8",
            "data.batch_size=8",
            "train.num_steps=6",
            "train.eval_every=3",
            "train.log_every=3",
            "train.checkpoint_every=0",
            "train.progress=false",
            *overrides,
        ],
    )


def dataset(config):
    return data.make(
        "text",
        text=TEXT,
        seq_length=config.data.seq_length,
        batch_size=config.data.batch_size,
        val_fraction=0.2,
    )


def records(workdir):
    lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


TWO_HOSTS = """
import sys
sys.path.insert(0, {here!r})
import jax
import test_sharding as t
from rnnlab import train

train.initialize_distributed()  # from JAX_COORDINATOR_ADDRESS, RNNLAB_NUM_PROCESSES/_PROCESS_ID
assert jax.process_count() == 2 and len(jax.devices()) == 2 and len(jax.local_devices()) == 1
config = t.tiny_config()
train.train_and_evaluate(config, sys.argv[1], dataset=t.dataset(config))
"""


def assert_same_run(one, other):
    a, b = train.load_run(one, which="latest"), train.load_run(other, which="latest")
    assert a.step == b.step == 6
    for (path, x), y in zip(
        jax.tree_util.tree_leaves_with_path(a.params), jax.tree.leaves(b.params)
    ):
        np.testing.assert_allclose(
            np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6, err_msg=str(path)
        )
    ra, rb = records(one), records(other)
    assert [r["step"] for r in ra if r["kind"] == "train"] == [3, 6]
    for x, y in zip(
        [r for r in ra if r["kind"] != "probe"], [r for r in rb if r["kind"] != "probe"]
    ):
        for key in ("loss", "grad_norm", "val_loss"):
            if key in x:
                assert x[key] == pytest.approx(y[key], rel=1e-5), key


def start(script_text, tmp_path, name, workdir, **env):
    script = tmp_path / f"{name}.py"
    script.write_text(script_text.format(here=str(HERE)))
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **env}
    return subprocess.Popen(
        [sys.executable, str(script), str(workdir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.slow
def test_sharded_runs_match_one_device(tmp_path):
    """4 forced host devices in one process, and 2 processes joined by jax.distributed (Gloo
    collectives on CPU), both train like this 1-device process within float tolerance."""
    assert len(jax.devices()) == 1  # this process is the 1-device reference
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = sock.getsockname()[1]
    four, two = tmp_path / "four", tmp_path / "two"
    procs = [
        start(CHILD, tmp_path, "four", four, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    ]
    for i in range(2):
        procs.append(
            start(
                TWO_HOSTS,
                tmp_path,
                f"host{i}",
                two,
                JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
                RNNLAB_NUM_PROCESSES="2",
                RNNLAB_PROCESS_ID=str(i),
            )
        )
    try:
        one = tmp_path / "one"
        config = tiny_config()
        train.train_and_evaluate(config, one, dataset=dataset(config))
        outs = [p.communicate(timeout=300)[0].decode() for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    assert "BAD BATCH: batch size 6 is not divisible by the number of devices (4)" in outs[0]
    assert_same_run(one, four)
    assert [r["replicated"] for r in records(four) if r["kind"] == "probe"] == [1.0, 1.0]
    assert_same_run(one, two)
