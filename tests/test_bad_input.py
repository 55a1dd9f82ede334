"""Bad input gets a clear ValueError/KeyError naming what was expected and what was given,
raised in Python before anything is compiled (issue 2, item 7)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnlab
from rnnlab.conformance import count_compiles

B, T, D, H = 2, 5, 3, 4
X = jnp.ones((B, T, D))


@pytest.fixture(scope="module")
def lstm():
    rnn = rnnlab.RNN("lstm", H)
    variables = rnn.init(jax.random.key(0), X)
    rnn.apply(variables, X, jnp.array([T, 2]))  # warm: what follows may not compile anything
    return rnn, variables


def raises_before_compiling(exc, match, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` raises ``exc`` matching ``match`` and compiles nothing first."""
    with count_compiles() as compiles, pytest.raises(exc, match=match):
        fn(*args, **kwargs)
    assert compiles[0] == 0, f"{compiles[0]} XLA compilations before the error"


@pytest.mark.parametrize("shape", [(B, T), (B, T, D, 1), (T,)])
@pytest.mark.slow
def test_wrong_rank(lstm, shape):
    rnn, variables = lstm
    want = rf"expected inputs of rank 3 \[B, T, D\], got shape {shape}".replace("(", r"\(")
    want = want.replace(")", r"\)")
    raises_before_compiling(ValueError, want, rnn.apply, variables, jnp.ones(shape))
    raises_before_compiling(ValueError, want, rnn.init, jax.random.key(0), jnp.ones(shape))
    cell = rnn.make_cell()
    raises_before_compiling(
        ValueError,
        want,
        rnnlab.unroll,
        cell,
        variables["params"]["layer_0"]["fwd"],
        jnp.ones(shape),
    )


@pytest.mark.slow
def test_feature_size_not_matching_params(lstm):
    rnn, variables = lstm
    with pytest.raises(ValueError, match=r"layer 0: expected inputs with 3 features .* got 6"):
        rnn.apply(variables, jnp.ones((B, T, 6)))


@pytest.mark.slow
def test_stacked_bidirectional_feature_size_names_the_layer():
    rnn = rnnlab.RNN("gru", H, num_layers=2, bidirectional=True)
    variables = rnn.init(jax.random.key(0), X)
    with pytest.raises(ValueError, match=r"expected inputs with 3 features .* got 2"):
        rnn.apply(variables, jnp.ones((B, T, 2)))


@pytest.mark.parametrize(
    "lengths,match",
    [
        (
            [T + 1, 2],
            rf"seq_lengths must lie in \[0, T={T}\], got \[{T + 1}\] at batch index \[0\]",
        ),
        ([3, -1], r"must lie in \[0, T=5\], got \[-1\] at batch index \[1\]"),
        ([3, 2, 1], r"expected seq_lengths of shape \(2,\) \[B\], got \(3,\)"),
        ([[3, 2]], r"expected seq_lengths of shape \(2,\) \[B\], got \(1, 2\)"),
        (np.array([3.0, 2.0], np.float32), "expected integer seq_lengths, got float32"),
        ([3.0, 2.0], "expected integer seq_lengths, got float64"),
    ],
)
def test_bad_seq_lengths(lstm, lengths, match):
    rnn, variables = lstm
    raises_before_compiling(ValueError, match, rnn.apply, variables, X, lengths)


def test_seq_lengths_as_a_python_list_is_fine(lstm):
    rnn, variables = lstm
    got = rnn.apply(variables, X, [T, 2]).outputs
    np.testing.assert_array_equal(got, rnn.apply(variables, X, jnp.array([T, 2])).outputs)


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_, np.uint8])
def test_integer_inputs(lstm, dtype):
    rnn, variables = lstm
    match = rf"expected floating-point inputs .* got {jnp.dtype(dtype).name}; embed integer tokens"
    raises_before_compiling(ValueError, match, rnn.apply, variables, np.ones((B, T, D), dtype))


def test_unknown_cell_lists_known_and_suggests():
    with pytest.raises(
        KeyError, match=r"unknown cell 'lsmt'\. Did you mean 'lstm'\? Known cells: .*gru"
    ):
        rnnlab.RNN("lsmt", H)
    with pytest.raises(KeyError, match=r"unknown cell 'grue'\. Did you mean 'gru'\?"):
        rnnlab.cells.get("grue")
    with pytest.raises(TypeError, match="cell name must be a str, got int"):
        rnnlab.cells.get(3)


def test_unknown_cell_option_names_it_and_lists_valid_ones():
    with pytest.raises(ValueError, match=r"forget_bais.*Valid options: .*forget_bias"):
        rnnlab.RNN("lstm", H, cell_options={"forget_bais": 1.0})


@pytest.mark.parametrize(
    "cell,options,match",
    [
        (
            "elman",
            {"activation": "sigmoid"},
            r"activation must be one of \['relu', 'tanh'\], got 'sigmoid'",
        ),
        (
            "elman",
            {"recurrent_init": "orthogonl"},
            r"unknown recurrent_init 'orthogonl'\. Did you mean 'orthogonal'",
        ),
        (
            "gru",
            {"convention": "keras"},
            r"convention must be one of \('pytorch', 'cho'\), got 'keras'",
        ),
        ("lstm", {"chrono_tmax": 1.0}, r"chrono_tmax must be > 2, got 1.0"),
    ],
)
def test_bad_cell_option_values(cell, options, match):
    with count_compiles() as compiles, pytest.raises(ValueError, match=match):
        rnnlab.RNN(cell, H, cell_options=options)
    assert compiles[0] == 0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(num_layers=0), "num_layers must be >= 1, got 0"),
        (dict(dropout=1.5), r"dropout must lie in \[0, 1\), got 1.5"),
        (dict(initial_carry="learnt"), "initial_carry must be 'zeros' or 'learned', got 'learnt'"),
    ],
)
def test_bad_rnn_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        rnnlab.RNN("lstm", H, **kwargs)


def test_initial_carry_and_perturbation_need_one_entry_per_layer():
    rnn = rnnlab.RNN("elman", H, num_layers=2)
    variables = rnn.init(jax.random.key(0), X)
    carry = jnp.zeros((B, H))
    with pytest.raises(
        ValueError, match=r"initial_carry must hold one entry per layer \(2\), got 1"
    ):
        rnn.apply(variables, X, initial_carry=[carry])
    with pytest.raises(
        ValueError, match=r"perturbation must hold one entry per layer \(2\), got 3"
    ):
        rnn.apply(variables, X, perturbation=[carry] * 3)


# ------------------------------------- every config key takes effect or is refused (issue 15)

from rnnlab import config as config_lib  # noqa: E402
from rnnlab import data as data_lib  # noqa: E402
from rnnlab import models, registry  # noqa: E402

TEXT_SPEC = {"architecture": "sequence", "out_features": 5, "vocab_size": 5, "readout": "all",
             "loss": "xent"}  # fmt: skip
S2S_SPEC = {"architecture": "seq2seq", "out_features": 9, "vocab_size": 9, "loss": "xent"}


def _model(*overrides):
    return config_lib.apply_overrides(config_lib.get_config(), list(overrides)).model


@pytest.mark.parametrize(
    "spec, override, words",
    [
        (S2S_SPEC, "model.dropout=0.3", ["model.dropout", "'seq2seq'", "no 'dropout' field"]),
        (S2S_SPEC, "model.residual=true", ["model.residual", "Seq2Seq"]),
        (TEXT_SPEC, "model.attention=true", ["model.attention", "'sequence'"]),
        (TEXT_SPEC, "model.attention_size=32", ["model.attention_size"]),
        (TEXT_SPEC, "model.block_depth=3", ["model.block_depth"]),
        (TEXT_SPEC, "model.architecture=seq2seq", ["model.architecture", "fixes"]),
    ],
)
def test_a_model_key_the_architecture_lacks_is_refused(spec, override, words):
    with pytest.raises(config_lib.ConfigError) as info:
        models.build(_model(override), spec)
    for w in words:
        assert w in str(info.value)
    models.build(_model(), spec)  # left at the defaults, the same keys are fine
    models.build(_model("model.attention=true"), S2S_SPEC)  # and where there is a field


@pytest.mark.slow  # builds the default corpus
def test_a_non_causal_model_is_refused_for_a_next_token_loss():
    text = data_lib.make("text", text="abcdefgh" * 40, seq_length=4, batch_size=2)
    copy = data_lib.make("copy", seq_length=5, batch_size=2)
    adding = data_lib.make("adding", seq_length=5, batch_size=2)
    assert models.next_token(text) and not models.next_token(copy)
    assert not models.next_token(adding)
    with pytest.raises(config_lib.ConfigError, match="bidirectional.*next-token"):
        models.check_causal(_model("model.bidirectional=true"), text)
    models.check_causal(_model(), text)
    models.check_causal(_model("model.bidirectional=true"), copy)  # a tagger may look ahead

    class Shifted:  # any dataset whose targets are its inputs one step on, whatever its kind
        kind, model_spec = "batch", {"readout": "all", "loss": "xent"}

        def train_batch(self, step):
            ids = np.arange(12).reshape(2, 6) % 5
            return {"inputs": ids[:, :-1], "targets": ids[:, 1:]}, True

    assert models.next_token(Shifted())
    c = config_lib.apply_overrides(
        config_lib.get_config(), ["model.bidirectional=true", "data.seq_length=8"]
    )
    with pytest.raises(config_lib.ConfigError, match="bidirectional"):
        config_lib.validate(c)  # the config's own dataset (the default corpus) is built


TOY = '''"""toy: reads some keys.

Command: none. Expected runtime: none. Expected result: none.
"""
from rnnlab import config as config_lib
from rnnlab import study

VARIANTS = ("default", "smoke")
READS = ("seed", "model.hidden_size", "experiment")
IGNORES = {"model.hidden_size": "never"}


def get_config(variant=None):
    c = config_lib.get_config()
    study.with_section(c, cells=("lstm", "gru"), scale=1.0)
    return c


def run(config, workdir):
    return {"cells": list(config.experiment.cells)}
'''


@pytest.fixture
def toy(tmp_path, monkeypatch):
    folder = tmp_path / "experiments"
    folder.mkdir()
    (folder / "toy.py").write_text(TOY)
    (folder / "cells.py").write_text(TOY.replace('READS = ("seed", "model.hidden_size", '
                                                 '"experiment")\nIGNORES = {"model.hidden_size": '
                                                 '"never"}\n', ""))  # fmt: skip
    monkeypatch.setenv("RNNLAB_EXPERIMENTS", str(folder))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_experiment_keys_not_read_or_set_per_run_are_refused(toy):
    with pytest.raises(config_lib.ConfigError, match="optim.learning_rate.*reads only"):
        registry.run("toy", ["optim.learning_rate=0.1"])
    with pytest.raises(config_lib.ConfigError, match="model.hidden_size.*never"):
        registry.run("toy", ["model.hidden_size=3"])
    assert registry.run("toy", ["experiment.scale=2.0"])["cells"] == ["lstm", "gru"]


def test_model_cell_runs_that_one_cell_where_the_experiment_picks_cells(toy):
    assert registry.run("cells", ["model.cell=gru"], workdir=toy / "a")["cells"] == ["gru"]
    assert registry.run("cells", ["model.cell=elman", "experiment.cells=('elman',)"],
                        workdir=toy / "b")["cells"] == ["elman"]  # fmt: skip
    with pytest.raises(config_lib.ConfigError, match="disagree"):
        registry.run("cells", ["model.cell=gru", "experiment.cells=('elman',)"])


@pytest.mark.slow  # five registry runs, each building its dataset and model first
def test_a_workdir_of_another_experiment_or_config_is_refused(toy):
    w = toy / "w"
    registry.run("cells", ["experiment.scale=3.0"], workdir=w)
    before = (w / "results.json").read_text()
    with pytest.raises(config_lib.UserError, match="holds a run of cells.*this is toy"):
        registry.run("toy", [], workdir=w)
    with pytest.raises(config_lib.UserError, match="cells:smoke"):
        registry.run("cells:smoke", [], workdir=w)
    with pytest.raises(config_lib.UserError, match="experiment.scale: 3.0 there, 1.0 here"):
        registry.run("cells", [], workdir=w)
    assert (w / "results.json").read_text() == before
    registry.run("cells", ["experiment.scale=3.0", "train.num_steps=5"], workdir=w)  # resumable
    (toy / "file").write_text("x")
    with pytest.raises(config_lib.UserError, match="is a file"):
        registry.run("cells", [], workdir=toy / "file" / "sub")
    (w / "results.json").write_text("{broken")
    with pytest.raises(config_lib.UserError, match="results.json cannot be read"):
        registry.run("cells", ["experiment.scale=3.0"], workdir=w)


@pytest.mark.slow  # loads two experiments, builds their datasets and models
def test_the_real_experiments_honour_or_refuse_model_cell():
    """``rnnlab run adding:smoke model.cell=gru`` trained an LSTM (issue 15): now it trains
    the one cell given; experiments that fix their cells refuse it."""
    adding = registry.load("adding")
    config = registry.resolve(adding, adding.get_config("smoke"), ["model.cell=gru"])
    assert tuple(config.experiment.cells) == ("gru",)
    assert adding.runs_for(config.experiment.cells) == {"gru": ["model.cell=gru"]}
    init = registry.load("init")
    with pytest.raises(config_lib.ConfigError, match="model.cell.*experiment.runs"):
        registry.resolve(init, init.get_config("smoke"), ["model.cell=gru"])
