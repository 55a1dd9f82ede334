"""The linear-recurrent cells (minGRU, minLSTM, LRU), IndRNN, and the associative-scan path.

The parallel scan must agree with the sequential ``lax.scan`` to 1e-5, with equal gradients,
under masking, reversal, a given initial carry, the perturbation hook and ``return_states``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab.engine import RNN, make_cell, unroll
from rnnlab.engine import plan as plan_lib

LINEAR = ("mingru", "minlstm", "lru")
B, T, D, H = 3, 7, 4, 5


def _setup(name, **options):
    cell = make_cell(name, H, options)
    k1, k2, k3, k4 = jax.random.split(jax.random.key(0), 4)
    xs = jax.random.normal(k1, (B, T, D))
    c0 = cell.initialize_carry(None, (B, D))
    params = cell.init(k2, c0, xs[:, 0])
    carry = jax.tree.map(lambda c: 0.5 * jax.random.normal(k3, c.shape), c0)
    eps = jax.tree.map(lambda c: 0.1 * jax.random.normal(k4, (B, T, *c.shape[1:])), c0)
    return cell, params, xs, carry, eps


@pytest.mark.parametrize("name", LINEAR)
@pytest.mark.slow
def test_associative_matches_sequential_values_and_gradients(name):
    cell, params, xs, carry, eps = _setup(name)
    lengths = jnp.array([T, 4, 0])  # full, padded, empty

    def run(scan, reverse, params, xs, carry, eps):
        return unroll(
            cell,
            params,
            xs,
            carry,
            seq_lengths=lengths,
            reverse=reverse,
            perturbation=eps,
            return_states=True,
            scan=scan,
        )

    def loss(scan, reverse, *args):
        out = run(scan, reverse, *args)
        final, ys, states = out
        w = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
        leaves = jax.tree.leaves((final, states))
        return jnp.sum(w * ys) + sum(jnp.sum(jnp.sin(v)) for v in leaves), out

    @jax.jit  # one compile per cell: both scans, both directions, outputs and gradients
    def both(*args):
        grad = jax.grad(loss, (2, 3, 4, 5), has_aux=True)
        return {
            (scan, rev): grad(scan, rev, *args)[::-1]  # (outputs, gradients)
            for scan in ("sequential", "associative")
            for rev in (False, True)
        }

    out = both(params, xs, carry, eps)
    for rev in (False, True):
        seq, par = out["sequential", rev], out["associative", rev]
        for a, b in zip(jax.tree.leaves(seq), jax.tree.leaves(par)):
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
        (_, ys, states), grads = par
        assert not np.any(ys[1, 4:]) and not np.any(ys[2])  # padded outputs are zero
        frozen, c0 = jax.tree.leaves(states)[0][2], jax.tree.leaves(carry)[0][2]
        np.testing.assert_array_equal(frozen, np.broadcast_to(c0, frozen.shape))  # length 0
        assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


@pytest.mark.slow
def test_rnn_layer_scan_option_and_auto_choice():
    x = jax.random.normal(jax.random.key(1), (2, 6, 3))
    outs = {}
    for scan in ("sequential", "associative"):
        layer = RNN("minlstm", 8, bidirectional=True, scan=scan)
        params = layer.init(jax.random.key(2), x)
        outs[scan] = jax.jit(layer.apply)(params, x).outputs
    np.testing.assert_allclose(outs["sequential"], outs["associative"], atol=1e-5)
    loop = lambda name, T, scan="auto": (
        plan_lib.plan(make_cell(name, 4), (2, T, 3), options=plan_lib.Options(scan=scan)).loop
    )
    assert loop("indrnn", 10**6) == "autodiff"  # non-linear: never associative
    assert loop("mingru", 10**6, "sequential") == "autodiff"
    assert loop("mingru", 8, "associative") == "associative"
    with pytest.raises(ValueError, match="linear in its state"):
        loop("indrnn", 8, "associative")
    with pytest.raises(ValueError, match="scan must be one of"):
        loop("mingru", 8, "parallel")


@pytest.mark.slow
def test_minlstm_normalized_gates_sum_to_one_and_mingru_g_is_positive():
    cell, params, xs, *_ = _setup("minlstm")
    xp = cell.apply(params, xs, method="project")
    a, b = cell.apply(params, xp, method="linear_coeffs")
    cand = xp[..., 2 * H :]
    np.testing.assert_allclose(a + b / cand, 1.0, atol=1e-5)  # f' + i' = 1
    cell, params, xs, *_ = _setup("mingru", candidate="g")
    xp = cell.apply(params, xs, method="project")
    a, b = cell.apply(params, xp, method="linear_coeffs")
    assert np.all((a > 0) & (a < 1)) and np.all(b > 0)


@pytest.mark.slow
def test_lru_ring_init_gamma_normalization_and_real_outputs():
    cell = make_cell("lru", 16, {"r_min": 0.9, "r_max": 0.99, "max_phase": 0.5})
    x = jnp.ones((2, 3))
    params = cell.init(jax.random.key(3), cell.initialize_carry(None, (2, 3)), x)["params"]
    modulus = np.exp(-np.exp(params["nu_log"]))
    phase = np.exp(params["theta_log"])
    assert np.all((modulus >= 0.9 - 1e-6) & (modulus <= 0.99 + 1e-6))
    assert np.all((phase > 0) & (phase <= 0.5 + 1e-6))
    np.testing.assert_allclose(np.exp(params["gamma_log"]), np.sqrt(1 - modulus**2), rtol=1e-5)
    carry, y = cell.apply({"params": params}, cell.initialize_carry(None, (2, 3)), x)
    assert carry.shape == (2, 32) and carry.dtype == jnp.float32 and y.dtype == jnp.float32
    with pytest.raises(ValueError, match="r_min < r_max"):
        make_cell("lru", 4, {"r_min": 0.5, "r_max": 0.4})
    diag = make_cell("lru", 4, {"skip": "diagonal", "out_features": 3})
    with pytest.raises(ValueError, match="input width == out_features"):
        diag.init(jax.random.key(0), diag.initialize_carry(None, (1, 2)), jnp.ones((1, 2)))


def test_indrnn_bound_and_init():
    T_max = 10
    bound = 2.0 ** (1 / T_max)
    cell = make_cell("indrnn", 16, {"max_len": T_max, "recurrent_init": "long"})
    x = jnp.zeros((1, 2))
    params = cell.init(jax.random.key(4), cell.initialize_carry(None, (1, 2)), x)
    u = params["params"]["u"]
    assert np.all((u >= 1 / bound - 1e-6) & (u <= bound + 1e-6))
    # With bound="forward_clip" a too-large u is clipped in the forward pass:
    # h_t = bound * h_{t-1} (+ 0). (The default projects after each update: tests/test_new_cells.py.)
    cell = make_cell(
        "indrnn", 16, {"max_len": T_max, "recurrent_init": "long", "bound": "forward_clip"}
    )
    params = jax.tree.map(lambda v: v, params)
    params["params"]["u"] = jnp.full((16,), 5.0)
    params["params"]["input"]["bias"] = jnp.zeros((16,))
    h, _ = cell.apply(params, jnp.ones((1, 16)), x)
    np.testing.assert_allclose(h, bound, rtol=1e-6)
    with pytest.raises(ValueError, match="needs max_len"):
        make_cell("indrnn", 4, {"recurrent_init": "long"})
