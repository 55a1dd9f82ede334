"""rnnlab.export: the jax.export artifact of a char model's step, run in a fresh process."""

import json
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import cli, export
from rnnlab import config as config_lib
from rnnlab.data import text
from rnnlab.train import load_run, train_and_evaluate

pytestmark = pytest.mark.slow  # every test trains or loads a tiny char model

TEXT = "the quick brown fox jumps over the lazy dog\n" * 40


def tiny_run(workdir, cell="lstm", num_layers=2):
    c = config_lib.get_config()
    c.model.cell, c.model.hidden_size, c.model.embed_dim = cell, 16, 8
    c.model.num_layers = num_layers
    c.data.seq_length, c.data.batch_size = 16, 4
    c.train.num_steps = c.train.eval_every = c.train.log_every = 3
    c.train.checkpoint_every, c.train.progress = 3, False
    train_and_evaluate(c, workdir, dataset=text.make(text=TEXT, seq_length=16, batch_size=4))
    return workdir


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("export") / "lstm")


# the loader imports jax and numpy only; it steps the artifact over the ids and saves the logits
LOADER = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    blob = open(sys.argv[1], "rb").read()
    meta = json.load(open(sys.argv[1] + ".json"))
    step = jax.export.deserialize(bytearray(blob))
    carry = tuple(np.zeros(c["shape"], c["dtype"]) for c in meta["carry"])
    ids = [meta["vocab"].index(c) for c in sys.argv[2]]
    out = []
    for i in ids:
        carry, logits = step.call(carry, np.array([i], np.int32))
        out.append(np.asarray(logits[0]))
    np.save(sys.argv[3], np.stack(out))
    assert not any(m.startswith("rnnlab") for m in sys.modules), "rnnlab was imported"
    print("platforms", step.platforms)
    """
)


def in_process_logits(workdir, chars):
    run = load_run(workdir)
    vocab = run.metadata["vocab"]["chars"]
    ids = jnp.asarray([[vocab.index(c) for c in chars]], jnp.int32)
    logits, _, _ = run.model.apply({"params": run.params}, ids)  # the run's own (default) path
    return np.asarray(logits[0])


def roundtrip(workdir, tmp_path, chars="the lazy fox\nover"):
    out = tmp_path / "step.jax"
    assert cli.main(["export", str(workdir), "--out", str(out)]) == 0
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", LOADER, str(out), chars, str(tmp_path / "logits.npy")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    exported = np.load(tmp_path / "logits.npy")
    np.testing.assert_allclose(exported, in_process_logits(workdir, chars), atol=1e-5, rtol=0)
    return json.loads((tmp_path / "step.jax.json").read_text()), proc.stdout


def test_artifact_in_a_fresh_process_equals_the_model(workdir, tmp_path):
    meta, stdout = roundtrip(workdir, tmp_path)
    assert meta["vocab"] == "".join(sorted(set(TEXT)))
    assert meta["carry"] == [{"shape": [1, 16], "dtype": "float32"}] * 4  # LSTM (c, h) x 2
    assert "cpu" in meta["platforms"] and "cpu" in stdout
    assert "autodiff" in meta["path"] and "native" in meta["path"]
    assert meta["initial_carry"] == "zeros" and meta["batch"] == 1 and meta["custom_calls"] == []


def test_gru_one_layer_roundtrip(tmp_path):
    wd = tiny_run(tmp_path / "gru", cell="gru", num_layers=1)
    meta, _ = roundtrip(wd, tmp_path)
    assert meta["carry"] == [{"shape": [1, 16], "dtype": "float32"}] and meta["cell"] == "gru"


def test_exported_step_has_no_custom_call(workdir):
    exp, platforms, note = export.export_step(export.step_model(workdir), platforms=("cpu",))
    assert platforms == ("cpu",) and note == ""
    assert export.custom_calls(exp) == []
    assert exp.in_avals[-1].shape == (1,) and exp.out_avals[-1].shape == (1, 28)


def test_batch_option_and_bad_inputs(workdir, tmp_path, capsys):
    out = tmp_path / "b4.jax"
    assert cli.main(["export", str(workdir), "--out", str(out), "--batch", "4"]) == 0
    assert json.loads(out.with_suffix(".jax.json").read_text())["carry"][0]["shape"] == [4, 16]
    assert cli.main(["export", str(workdir), "--batch", "0"]) == 2
    assert "batch must be >= 1, got 0" in capsys.readouterr().err
    assert cli.main(["export", str(tmp_path / "nowhere")]) == 2
    assert "not an rnnlab workdir" in capsys.readouterr().err
