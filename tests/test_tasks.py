"""Synthetic tasks: conventions, determinism, and analytic baselines checked numerically."""

import numpy as np
import pytest

from rnnlab import data
from rnnlab.data import tasks

NAMES = ["adding", "adding_hochreiter", "copy", "temporal_order", "parity"]


def big(name, T, n=20000):
    return data.make(name, seq_length=T, batch_size=n, seed=3).train_batch(0)[0]


@pytest.mark.parametrize("name", NAMES)
def test_registered_deterministic_and_eval_fixed(name):
    ds = data.make(name, seq_length=24, batch_size=4, seed=1)
    assert ds.kind == "batch"
    b0, reset = ds.train_batch(5)
    assert reset
    again = data.make(name, seq_length=24, batch_size=4, seed=1)
    np.testing.assert_array_equal(b0["inputs"], again.train_batch(5)[0]["inputs"])
    assert not np.array_equal(b0["inputs"], ds.train_batch(6)[0]["inputs"])
    ev = [b["inputs"] for b in ds.eval_batches()]
    np.testing.assert_array_equal(ev[0], next(again.eval_batches())["inputs"])
    assert len(ev) == 4 and not any(np.array_equal(e, b0["inputs"]) for e in ev)
    meta = ds.metadata()
    assert meta["task"] == name and "baseline" in meta
    assert ds.model_spec["loss"] in ("mse", "xent")


def test_adding_convention_and_baseline():
    b = big("adding", 50)
    x, y = b["inputs"], b["targets"][:, 0]
    assert x.shape == (20000, 50, 2) and b["targets"].shape == (20000, 1)
    marks = x[..., 1]
    assert np.all(marks.sum(1) == 2) and np.all(marks[:, :25].sum(1) == 1)
    np.testing.assert_allclose(y, (x[..., 0] * marks).sum(1), rtol=1e-6)
    want = tasks.Adding(seq_length=50, batch_size=1).baseline()["mse"]
    assert np.mean((y - 1.0) ** 2) == pytest.approx(want, rel=0.03)  # 1/6
    assert want == pytest.approx(1 / 6)


def test_adding_hochreiter_baseline():
    b = big("adding_hochreiter", 40)
    x, y = b["inputs"], b["targets"][:, 0]
    marks = x[..., 1]
    assert np.all((marks == 1).sum(1) == 2)
    assert np.all(np.argmax(marks == 1, axis=1) < 10)
    base = tasks.AddingHochreiter(seq_length=40, batch_size=1).baseline()
    assert np.mean((y - 0.5) ** 2) == pytest.approx(base["mse"], rel=0.03)
    assert np.mean(np.abs(y - 0.5) < 0.04) == pytest.approx(base["accuracy"], abs=0.01)


def test_copy_convention_and_baseline():
    T = 30
    b = big("copy", T, n=4000)
    x, y = b["inputs"], b["targets"]
    assert x.shape == y.shape == (4000, T + 20)
    assert np.all(x[:, T + 9] == 9) and np.all((x == 9).sum(1) == 1)  # marker at T + 9
    np.testing.assert_array_equal(y[:, T + 10 :], x[:, :10])  # first symbol due at T + 10
    assert np.all(y[:, : T + 10] == 0) and np.all(x[:, 10 : T + 9] == 0)
    # the memoryless predictor: blank for sure until the marker, uniform over 1..8 after it
    logp = np.full((T + 20, 10), -np.inf)
    logp[: T + 10, 0] = 0.0
    logp[T + 10 :, 1:9] = -np.log(8)
    xent = -np.take_along_axis(logp[None], y[..., None], axis=-1).mean()
    want = tasks.Copy(seq_length=T, batch_size=1).baseline()["xent"]
    assert xent == pytest.approx(want, rel=1e-9)
    assert tasks.Copy(seq_length=100, batch_size=1).baseline()["xent"] == pytest.approx(
        0.1733, abs=1e-4
    )


def test_temporal_order_and_parity_labels():
    b = big("temporal_order", 100, n=4000)
    x, y = b["inputs"], b["targets"]
    rel = np.where(x >= 4, x, -1)
    rel[:, [0, -1]] = -1
    first = rel[:, 10:21].max(1) - 4
    second = rel[:, 50:61].max(1) - 4
    np.testing.assert_array_equal(y, 2 * first + second)
    assert np.bincount(y, minlength=4).min() > 800  # classes balanced: chance = 1/4
    p = big("parity", 17, n=1000)
    np.testing.assert_array_equal(p["targets"], p["inputs"].sum(1) % 2)
    assert abs(p["targets"].mean() - 0.5) < 0.06


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match="seq_length"):
        data.make("adding", seq_length=1, batch_size=2)
    with pytest.raises(KeyError, match="adding"):
        data.make("addding")
