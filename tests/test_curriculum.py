"""train.curriculum: the schedule's parsing and checks, the batches it gives, exact resume,
and the curriculum experiment's smoke run."""

import importlib.util
import pathlib

import jax
import numpy as np
import pytest

from rnnlab import config as config_lib
from rnnlab import data as data_lib
from rnnlab.data import tasks
from rnnlab.train import load_run, train_and_evaluate

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_parse_accepts_the_documented_form():
    assert tasks.parse_curriculum("") == ()
    assert tasks.parse_curriculum("((0, 50), (500, 100), (1000, 200))") == (
        (0, 50), (500, 100), (1000, 200),
    )  # fmt: skip
    assert tasks.parse_curriculum([[0, 3]]) == ((0, 3),)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("((5, 10),)", "first step of 5"),
        ("((0, 10), (10, 20), (10, 30))", "not strictly increasing"),
        ("((0, 0),)", "each must be >= 1"),
        ("((0, 10.5),)", "int pairs"),
        ("fifty", "not a Python literal"),
        ("()", "int pairs"),
        ("((0, 10, 3),)", "int pairs"),
    ],
)
def test_parse_refuses_bad_schedules_naming_them(spec, message):
    with pytest.raises(ValueError, match=message) as err:
        tasks.parse_curriculum(spec)
    assert "train.curriculum expects" in str(err.value)


def test_lengths_follow_the_schedule_and_eval_stays_at_seq_length():
    task = data_lib.make("copy", seq_length=30, batch_size=4, seed=2)
    cur = tasks.with_curriculum(task, "((0, 5), (3, 12), (6, 30))")
    assert [cur.length_at(s) for s in (0, 2, 3, 5, 6, 100)] == [5, 5, 12, 12, 30, 30]
    assert cur.train_batch(1)[0]["inputs"].shape == (4, 25)  # copy: T + 20
    assert cur.train_batch(4)[0]["inputs"].shape == (4, 32)
    assert all(b["inputs"].shape == (4, 50) for b in cur.eval_batches())
    a, b = cur.train_batch(7)[0], task.train_batch(7)[0]  # at the full length: the task's own
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert cur.metadata()["curriculum"] == [[0, 5], [3, 12], [6, 30]]
    assert tasks.with_curriculum(task, "") is task


def test_refusals_name_the_task_and_the_length():
    order = data_lib.make("temporal_order", seq_length=40, batch_size=2)
    with pytest.raises(ValueError, match="temporal_order needs lengths >= 20, got 8"):
        tasks.with_curriculum(order, "((0, 8), (10, 40))")
    text = data_lib.make("text", seq_length=8, batch_size=2)
    with pytest.raises(ValueError, match="works on the synthetic tasks"):
        tasks.with_curriculum(text, "((0, 4),)")


def config_for(curriculum, steps=6):
    c = config_lib.get_config()
    c.data.name, c.data.seq_length, c.data.batch_size, c.data.eval_batches = "parity", 8, 4, 1
    c.model.hidden_size, c.model.embed_dim = 8, 4
    c.train.num_steps = steps
    c.train.eval_every = c.train.log_every = c.train.checkpoint_every = 3
    c.train.progress = False
    return config_lib.apply_overrides(c, [f"train.curriculum={curriculum}"])


@pytest.mark.slow
def test_resume_is_exact_and_the_schedule_changes_the_run(tmp_path):
    spec = "((0, 2), (2, 4), (4, 8))"
    whole = tmp_path / "whole"
    train_and_evaluate(config_for(spec), whole)
    part = tmp_path / "part"
    train_and_evaluate(config_for(spec, steps=3), part)  # stopped at 3 ...
    resumed = train_and_evaluate(config_for(spec), part)  # ... and resumed to 6
    assert resumed["resumed_from"] == 3
    same = jax.tree.map(
        np.array_equal,
        load_run(whole, which="latest").params,
        load_run(part, which="latest").params,
    )
    assert all(jax.tree.leaves(same))
    plain = tmp_path / "plain"
    train_and_evaluate(config_for(""), plain)
    differ = jax.tree.map(
        np.array_equal,
        load_run(whole, which="latest").params,
        load_run(plain, which="latest").params,
    )
    assert not all(jax.tree.leaves(differ))


def test_a_bad_schedule_fails_before_training(tmp_path):
    with pytest.raises(ValueError, match="train.curriculum expects"):
        train_and_evaluate(config_for("((1, 4),)"), tmp_path / "w")
    assert not (tmp_path / "w" / "checkpoints").exists()


@pytest.mark.slow
def test_smoke_experiment_counts_solved_seeds(tmp_path):
    spec = importlib.util.spec_from_file_location("cur", ROOT / "experiments" / "curriculum.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.VARIANTS == ("default", "smoke")
    for word in ("Bengio", "Zaremba", "measured"):
        assert word in mod.__doc__
    res = mod.run(mod.get_config("smoke"), tmp_path)
    assert set(res["arms"]) == {"with", "without"}
    for arm in res["arms"].values():
        assert arm["seeds"] == 2 and len(arm["val_accuracy_per_seed"]) == 2
        assert 0 <= arm["solved"] <= 2
    assert res["arms"]["with"]["curriculum"] == "((0, 2), (3, 8))"
    assert (tmp_path / "curriculum.json").exists()
    meta = (tmp_path / "with" / "data.json").read_text()
    assert '"curriculum"' in meta
