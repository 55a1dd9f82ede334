"""num_seeds: N models in one vmapped step equal N runs one by one; per-seed metrics."""

import json

import jax
import numpy as np
import pytest

from rnnlab import config as config_lib
from rnnlab import data, train

TEXT = "".join(f"{i % 4} we few, we happy few, we band of brothers;\n" for i in range(12))


def tiny_config(*overrides):
    return config_lib.apply_overrides(
        config_lib.get_config(),
        [
            "model.cell=gru",
            "model.hidden_size=8",
            "model.embed_dim=4",
            "model.dropout=0.2",  # per-seed dropout streams
            "data.seq_length=8",
            "data.batch_size=4",
            "optim.learning_rate=1e-2",
            "train.num_steps=5",
            "train.eval_every=5",
            "train.log_every=5",
            "train.checkpoint_every=0",
            "train.progress=false",
            *overrides,
        ],
    )


def dataset(config):
    return data.make("text", text=TEXT, seq_length=8, batch_size=4, val_fraction=0.2)


@pytest.mark.slow
def test_vmapped_seeds_equal_sequential_seeds(tmp_path):
    config = tiny_config("train.num_seeds=3", "seed=10")
    summary = train.train_and_evaluate(config, tmp_path / "vmap", dataset=dataset(config))
    assert len(summary["val_loss_per_seed"]) == 3
    assert summary["val_loss"] == pytest.approx(np.mean(summary["val_loss_per_seed"]))
    record = json.loads((tmp_path / "vmap" / "metrics.jsonl").read_text().splitlines()[0])
    assert len(record["loss_per_seed"]) == 3 and len(record["grad_norm_per_seed"]) == 3
    assert len(set(summary["val_loss_per_seed"])) == 3  # the seeds differ
    for s in range(3):
        one = tiny_config(f"seed={10 + s}")
        alone = train.train_and_evaluate(one, tmp_path / f"seed{s}", dataset=dataset(one))
        assert alone["val_loss"] == pytest.approx(summary["val_loss_per_seed"][s], rel=1e-5)
        a = train.load_run(tmp_path / "vmap", which="latest", seed_index=s).params
        b = train.load_run(tmp_path / f"seed{s}", which="latest").params
        for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=str(path))
