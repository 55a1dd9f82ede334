"""train_and_evaluate end to end on tiny models: the loss falls, files, hooks, load_run, errors."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import config as config_lib
from rnnlab import data, models, optim, train

TEXT = "".join(f"{i % 7} the cat sat on the mat; the dog ate the log.\n" for i in range(60))


def tiny_config(*overrides):
    c = config_lib.get_config()
    return config_lib.apply_overrides(
        c,
        [
            "model.hidden_size=16",
            "model.embed_dim=8",
            "data.seq_length=8",
            "data.batch_size=4",
            "optim.learning_rate=1e-2",
            "train.num_steps=30",
            "train.eval_every=10",
            "train.log_every=10",
            "train.checkpoint_every=10",
            "train.progress=false",
            *overrides,
        ],
    )


def tiny_text(config):
    return data.make(
        "text", text=TEXT, seq_length=config.data.seq_length, batch_size=config.data.batch_size
    )


def test_train_end_to_end(tmp_path):
    """One tiny run: loss falls, files, hooks, load_run, and a refused foreign config."""
    workdir = tmp_path
    config = tiny_config()
    seen = []

    def hook(step, params, model, dataset):
        seen.append(step)
        return {"probe_leaves": len(jax.tree.leaves(params))}

    summary = train.train_and_evaluate(config, workdir, dataset=tiny_text(config), hooks=[hook])
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    trains = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in trains] == [10, 20, 30]
    assert [r["step"] for r in evals] == [10, 20, 30]
    for key in (
        "loss",
        "grad_norm",
        "param_norm",
        "update_ratio",
        "lr",
        "accuracy",
        "tokens_per_s",
    ):
        assert np.isfinite(trains[-1][key]), key
    assert trains[-1]["loss"] < trains[0]["loss"] - 0.3  # from ~ln V towards the text's entropy
    vocab = len(json.loads((workdir / "data.json").read_text())["vocab"]["chars"])
    assert evals[-1]["val_loss"] < np.log(vocab)
    np.testing.assert_allclose(summary["val_bpc"], summary["val_loss"] / np.log(2), rtol=1e-6)
    assert summary["step"] == 30 and summary["stopped_early"] is False
    assert summary["train_loss"] == trains[-1]["loss"]
    assert json.loads((workdir / "config.json").read_text())["model"]["hidden_size"] == 16
    meta = json.loads((workdir / "data.json").read_text())
    assert meta["model_spec"]["loss"] == "xent" and "split" in meta
    assert seen == [10, 20, 30]
    assert [r["step"] for r in records if r["kind"] == "probe"] == [10, 20, 30]

    # load_run: the best checkpoint (lowest val loss) or the latest
    r = train.load_run(workdir)
    assert r.which == "best" and r.step == summary["best_step"]
    latest = train.load_run(workdir, which="latest")
    assert latest.step == 30
    assert r.config.model.hidden_size == 16 and r.metadata["vocab"]["chars"]
    batch, _ = tiny_text(config).train_batch(0)
    logits, carry, _ = latest.model.apply({"params": latest.params}, batch["inputs"])
    assert logits.shape == (4, 8, vocab)

    # the workdir of another config is refused before anything is written
    before = {p: p.stat().st_mtime_ns for p in workdir.rglob("*") if p.is_file()}
    bad = tiny_config("model.hidden_size=12", "optim.name=sgd")
    with pytest.raises(ValueError) as info:
        train.train_and_evaluate(bad, workdir, dataset=tiny_text(bad))
    msg = str(info.value)
    assert "model.hidden_size: 16 -> 12" in msg and "optim.name: 'adam' -> 'sgd'" in msg
    assert {p: p.stat().st_mtime_ns for p in workdir.rglob("*") if p.is_file()} == before


def test_unwritable_workdir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    config = tiny_config()
    with pytest.raises(ValueError, match="not writable"):
        train.train_and_evaluate(config, blocker / "run", dataset=tiny_text(config))


@pytest.mark.slow
def test_one_step_changes_every_parameter():
    config = tiny_config("model.num_layers=2", "model.initial_carry=learned")
    ds = tiny_text(config)
    model = models.build(config.model, ds.model_spec)
    tx, schedule = optim.make(config.optim, 10)
    # a stream at an epoch start: the learned initial carry is used and trained too
    init, step, _ = train.make_steps(model, tx, schedule, stream=True, num_seeds=1)
    keys = jax.random.PRNGKey(0)[None]
    batch = {k: jnp.asarray(v) for k, v in ds.train_batch(0)[0].items()}
    state = jax.jit(init)(keys[0], batch)
    before = jax.device_get(state["params"])  # the step donates (reuses) the state's buffers
    new, m = jax.jit(step, donate_argnums=0)(state, batch, jnp.asarray(True), keys)
    assert int(new["step"]) == 1
    assert "carry0_1" in str(jax.tree_util.tree_leaves_with_path(before))
    seen = np.unique(np.asarray(batch["inputs"]))  # embedding rows of absent ids get no gradient
    for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(before), jax.tree.leaves(new["params"])
    ):
        a, b = np.asarray(a), np.asarray(b)
        if "embed" in jax.tree_util.keystr(path):
            a, b = a[seen], b[seen]
        assert np.all(a != b), jax.tree_util.keystr(path)
    assert float(m["grad_norm"]) > 0 and float(m["lr"]) == pytest.approx(1e-2)


class Regression:
    """A "batch" dataset: sum of channel 0 over T=6 steps, MSE; NaN input at one step."""

    kind = "batch"
    model_spec = {"architecture": "sequence", "out_features": 1, "readout": "last", "loss": "mse"}

    def __init__(self, nan_at=None):
        self.nan_at = nan_at

    def train_batch(self, step):
        x = data.seed_for(step, 0).uniform(size=(4, 6, 2)).astype(np.float32)
        if step == self.nan_at:
            x[0, 0, 0] = np.nan
        return {"inputs": x, "targets": x[:, :, :1].sum(axis=1)}, False

    def eval_batches(self):
        yield self.train_batch(10**6)[0]

    def metadata(self):
        return {"name": "regression"}


@pytest.mark.slow
def test_nan_stops_run_and_keeps_last_good_checkpoint(tmp_path):
    config = tiny_config("train.checkpoint_every=5", "train.log_every=5")
    with pytest.raises(train.NonFiniteError) as info:
        train.train_and_evaluate(config, tmp_path, dataset=Regression(nan_at=6))
    assert "non-finite loss" in str(info.value) and "at step 7" in str(info.value)
    assert "step 5" in str(info.value)
    r = train.load_run(tmp_path, which="latest")
    assert r.step == 5
    assert all(np.all(np.isfinite(p)) for p in jax.tree.leaves(r.params))


@pytest.mark.slow
def test_model_losses():
    """xent with masks, seq_lengths and per-sequence targets; mse; the aux the trainer logs."""
    lm = models.SequenceModel(out_features=3, hidden_size=4, vocab_size=5, embed_dim=3)
    ids = jnp.array([[1, 2, 3, 4], [0, 1, 2, 0]])
    targets = jnp.array([[0, 1, 2, 0], [2, 2, 1, 0]])
    mask = jnp.array([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    params = jax.jit(lm.init)(jax.random.PRNGKey(0), ids)

    @jax.jit
    def losses(params):
        logits, _, _ = lm.apply(params, ids)
        masked = lm.apply(params, {"inputs": ids, "targets": targets, "mask": mask}, method="loss")
        lengths = {"inputs": ids, "targets": targets, "seq_lengths": jnp.array([2, 1])}
        return logits, masked[:2], lm.apply(params, lengths, method="loss")[0]

    logits, (loss, aux), loss_lengths = losses(params)
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], -1)[..., 0]
    np.testing.assert_allclose(loss, (nll * mask).sum() / 3, rtol=1e-6)
    hits = (jnp.argmax(logits, -1) == targets) * mask
    np.testing.assert_allclose(aux["accuracy"], hits.sum() / 3, rtol=1e-6)
    np.testing.assert_allclose(loss_lengths, loss, rtol=1e-6)  # lengths weigh like that mask
    with pytest.raises(ValueError, match="int targets of shape"):
        jax.eval_shape(
            lambda p: lm.apply(p, {"inputs": ids, "targets": targets[:, 0]}, method="loss"),
            params,
        )
    reg = models.build(config_lib.get_config().model, {**Regression.model_spec, "out_features": 2})
    x = jnp.ones((3, 5, 2))
    p = jax.jit(reg.init)(jax.random.PRNGKey(1), x)

    @jax.jit
    def mse(p):
        y, _, _ = reg.apply(p, x)
        return y, reg.apply(p, {"inputs": x, "targets": jnp.zeros((3, 2))}, method="loss")[:2]

    y, (loss, aux) = mse(p)
    np.testing.assert_allclose(loss, jnp.mean(y**2), rtol=1e-6)
    assert set(aux) == {"loss"}
    with pytest.raises(KeyError, match="unknown architecture"):
        models.build(config_lib.get_config().model, {"architecture": "transformer"})


def test_data_kwargs():
    c = tiny_config("data.options={'extra': 1}", "data.eval_batches=3", "data.path=x.txt")
    kw = train.data_kwargs(c)
    assert kw == {
        "path": "x.txt",
        "seq_length": 8,
        "batch_size": 4,
        "val_fraction": 0.1,
        "eval_batches": 3,
        "seed": 0,
        "extra": 1,
    }
    assert pathlib.Path(train.__file__).name == "train.py"
