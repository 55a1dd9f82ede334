"""study.train_until: stops at the first evaluation under the threshold, runs out the budget
otherwise, and refuses what it cannot stop (several seeds, a task not trained on MSE)."""

import json

import pytest

from rnnlab import config as config_lib
from rnnlab import study


def adding_config(*overrides):
    return config_lib.apply_overrides(
        config_lib.get_config(),
        [
            "data.name=adding",
            "data.seq_length=6",
            "data.batch_size=4",
            "model.cell=elman",
            "model.hidden_size=4",
            "train.num_steps=6",
            "train.eval_every=2",
            "train.log_every=2",
            "train.checkpoint_every=0",
            "train.progress=false",
            *overrides,
        ],
    )


def eval_steps(workdir):
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [r["step"] for r in map(json.loads, lines) if r["kind"] == "eval"]


@pytest.mark.slow  # each trains a tiny model
def test_stops_at_the_first_evaluation_under_the_threshold(tmp_path):
    out = study.train_until(adding_config(), tmp_path, solve_mse=1e9)  # any MSE is below
    assert out["solved_step"] == 2 and out["step"] == 2
    assert out["val_loss"] < 1e9 and out["time_s"] > 0
    assert eval_steps(tmp_path) == [2]  # no training after the stop


@pytest.mark.slow  # each trains a tiny model
def test_runs_out_the_budget_when_never_solved(tmp_path):
    out = study.train_until(adding_config(), tmp_path, solve_mse=0.0)  # no MSE is below 0
    assert out["solved_step"] is None and out["step"] == 6
    assert eval_steps(tmp_path) == [2, 4, 6]


@pytest.mark.slow  # each trains a tiny model
def test_overrides_apply_and_no_threshold_is_a_plain_subrun(tmp_path):
    out = study.train_until(adding_config(), tmp_path, ["train.num_steps=4"])
    assert out["step"] == 4 and "solved_step" not in out


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.num_seeds=2"], "train.num_seeds must be 1, got 2"),
        (["data.name=parity"], "needs a task trained with loss 'mse'; data.name='parity'"),
    ],
)
def test_refuses_what_it_cannot_stop_before_training(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        study.train_until(adding_config(), tmp_path / "w", overrides, solve_mse=0.5)
    assert not (tmp_path / "w").exists()
