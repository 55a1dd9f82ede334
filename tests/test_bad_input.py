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
