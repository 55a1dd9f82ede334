"""char-rnn end to end at smoke size: train, samples, results, resume, sample/viz/data CLI."""

import importlib.util
import json
import pathlib

import pytest

from rnnlab import cli, sample, train, viz
from rnnlab.data import corpora

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_experiment():
    spec = importlib.util.spec_from_file_location("char_rnn", ROOT / "experiments" / "char_rnn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    char_rnn = load_experiment()
    workdir = tmp_path_factory.mktemp("char_rnn") / "smoke"
    results = char_rnn.run(char_rnn.get_config("smoke"), workdir)
    return char_rnn, workdir, results


def test_variants_and_configs():
    char_rnn = load_experiment()
    assert char_rnn.VARIANTS[:2] == ("default", "smoke")
    default = char_rnn.get_config()
    assert default.data.path == "" and default.model.cell == "lstm"
    assert 0 < default.train.time_limit_s <= 540
    assert char_rnn.get_config("shakespeare").data.path == "tinyshakespeare"
    assert char_rnn.__doc__.startswith("char-rnn") and "Expected runtime" in char_rnn.__doc__
    with pytest.raises(KeyError, match="smoke"):
        char_rnn.get_config("smok")


def test_plan_num_steps_fits_the_budget(tmp_path, capsys, monkeypatch):
    from rnnlab.data import text

    char_rnn = load_experiment()
    config = char_rnn.get_config("smoke")  # eval_every 6, eval_batches 4
    dataset = text.make(text="abcdefgh\n" * 200, seq_length=16, batch_size=4, eval_batches=4)
    monkeypatch.setattr(char_rnn, "seconds_per_step", lambda c, d: (0.1, 5.0))  # (step, compile)
    # (100 s - 5 s compile - 15 s final eval) / (1.03 * 0.1 + 2 chunks * 0.1 / 3 / 6) = 701.1
    assert dataset.num_eval_batches == 2
    assert char_rnn.plan_num_steps(config, tmp_path, dataset, budget_s=100.0) == 701
    assert "planning 701 steps" in capsys.readouterr().out
    (tmp_path / "config.json").write_text(json.dumps({"train": {"num_steps": 77}}))
    assert char_rnn.plan_num_steps(config, tmp_path, dataset) == 77  # a resumed run keeps it
    assert char_rnn.get_config().train.num_steps == 0  # the default fits the time budget


@pytest.mark.slow
def test_smoke_run_writes_samples_and_results(smoke_run, capsys):
    _, workdir, results = smoke_run
    for name in ("config.json", "data.json", "metrics.jsonl", "samples.txt", "results.json"):
        assert (workdir / name).is_file(), name
    text = (workdir / "samples.txt").read_text()
    for t in ("0.5", "1.0", "1.5"):
        assert f"----- temperature {t} -----" in text
    assert text.startswith("(state warmed on the last ")
    saved = json.loads((workdir / "results.json").read_text())
    assert saved["val_loss_nats"] == pytest.approx(results["val_loss_nats"])
    assert saved["val_bits_per_char"] == pytest.approx(saved["val_loss_nats"] / 0.6931471805599453)
    assert 0 < saved["val_loss_nats"] < saved["uniform_nats"] + 0.5
    assert "last 0.1" in saved["split"] and saved["step"] == 12


@pytest.mark.slow
def test_same_command_resumes(smoke_run, capsys):
    char_rnn, workdir, _ = smoke_run
    again = char_rnn.run(char_rnn.get_config("smoke"), workdir)
    assert again["step"] == 12  # nothing left to train: restored, not retrained
    assert "validation loss" in capsys.readouterr().out
    log = (workdir / "metrics.jsonl").read_text()
    assert log.count('"kind": "train"') == 2  # steps 6 and 12, written once


@pytest.mark.slow
def test_sample_workdir_is_deterministic(smoke_run):
    _, workdir, _ = smoke_run
    run = train.load_run(workdir)
    warm = sample.warmup_text(run, 300)
    n_train = run.metadata["train_chars"]
    assert 0 < len(warm) <= 300 and warm.endswith("\n")
    tail = corpora.load(None)[n_train - 300 : n_train]
    assert tail.startswith(warm)  # the tail of the training text, cut after its last newline
    assert sample.warmup_text(run, 0) == ""
    a = sample.sample_workdir(workdir, prime="def ", length=40, seed=5)
    b = sample.sample_workdir(workdir, prime="def ", length=40, seed=5)
    assert a == b and a.startswith("def ") and len(a) == 44
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        sample.sample_workdir(workdir, prime="caf\u00e9 \u2603", length=5)


@pytest.mark.slow
def test_viz_workdir_on_the_heldout_text(smoke_run):
    _, workdir, _ = smoke_run
    out = viz.render_workdir(workdir, num_chars=300)
    assert out == workdir / "viz" / "index.html"
    page = out.read_text()
    assert "held-out validation text" in page and 'href="#unit-' in page
    ranking = json.loads((workdir / "viz" / "features.json").read_text())
    assert ranking["in_comment"] and ranking["bracket_depth"]  # Python source has both


@pytest.mark.slow
def test_cli_sample_viz_data(smoke_run, tmp_path, capsys, monkeypatch):
    _, workdir, _ = smoke_run
    assert (
        cli.main(["sample", str(workdir), "--length", "30", "--argmax", "--prime", "import"]) == 0
    )
    assert capsys.readouterr().out.startswith("import")
    assert cli.main(["sample", str(workdir), "--prime", "\u2603"]) == 2
    assert "vocabulary" in capsys.readouterr().err
    text = tmp_path / "t.py"
    text.write_text('x = "a"  # b\n')
    out = tmp_path / "page.html"
    assert cli.main(["viz", str(workdir), "--text", str(text), "--out", str(out)]) == 0
    assert out.is_file()
    monkeypatch.setitem(corpora.CORPORA, "nope", ("file:///nonexistent/x.txt", "0" * 64, "x"))
    monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path / "cache"))
    assert cli.main(["data", "nope"]) == 2
    assert "could not download" in capsys.readouterr().err
