"""The fused backward (rnnlab.engine.loops.fused) against the autodiff scan: the reference.

Every cell that supports the fast path is checked, with masking (seq_lengths), reverse, carry
perturbation (the dL/dh_t probe), return_states and remat; float32 to 1e-5, float64 tighter.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import cells
from rnnlab.engine import RNN, loops, make_cell, unroll
from rnnlab.engine import plan as plan_lib
from rnnlab.engine.contract import capabilities

B, T, D, H = 3, 7, 5, 6


def loop_of(cell, backward="auto"):
    """The loop the plan gives ``cell`` on ``[B, T, D]`` inputs."""
    return plan_lib.plan(cell, (B, T, D), options=plan_lib.Options(backward=backward)).loop


def fused_cells():
    out = []
    for name in cells.names():
        try:
            cell = make_cell(name, H)
        except Exception:  # a cell that needs options it cannot default
            continue
        if capabilities(cell).fused:
            out.append(name)
    return out


@pytest.mark.slow
def test_narrow_inputs_are_projected_in_the_fused_loop(monkeypatch):
    """The plan hands the fused loop raw inputs ("x") when D is narrow, the projection else."""
    seen = []
    real = loops.LOOPS["fused"]

    def spy(cell, params, carry, feed, plan):
        seen.append(feed.kind)
        return real(cell, params, carry, feed, plan)

    monkeypatch.setitem(loops.LOOPS, "fused", spy)
    monkeypatch.setitem(plan_lib.THRESHOLDS, "in_loop_max_d", {jax.default_backend(): D})
    cell, params, xs, carry, _ = setup("lstm")
    unroll(cell, params, xs, carry, backward="fused")
    monkeypatch.setitem(plan_lib.THRESHOLDS, "in_loop_max_d", {jax.default_backend(): D - 1})
    unroll(cell, params, xs, carry, backward="fused")
    assert seen == ["x", "xp"]


def test_builtin_dense_cells_support_the_fast_path():
    assert {"elman", "lstm", "gru"} <= set(fused_cells())
    assert not capabilities(make_cell("gru", H, {"convention": "cho"})).fused
    assert not capabilities(make_cell("jordan", H)).fused
    # backward="auto" takes a fused backward (XLA or native) for large enough hidden sizes only
    big = plan_lib.THRESHOLDS["fused_min_hidden"]
    assert loop_of(make_cell("lstm", big)) in ("fused", "native")
    assert loop_of(make_cell("lstm", big - 1)) == "autodiff"
    assert loop_of(make_cell("lstm", 4), "fused") == "fused"


def setup(name, dtype=jnp.float32, seed=0):
    cell = make_cell(name, H)
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    xs = jax.random.normal(k[0], (B, T, D), dtype)
    params = cell.init(k[1], cell.initialize_carry(None, (B, D)), xs[:, 0])
    params = jax.tree.map(lambda p: p.astype(dtype), params)
    # a non-zero initial carry, so d carry0 is exercised
    carry = jax.tree.map(
        lambda z: 0.5 * jax.random.normal(k[2], z.shape, dtype),
        cell.initialize_carry(None, (B, D)),
    )
    return cell, params, xs, carry, k[3]


@pytest.mark.parametrize("name", fused_cells())
@pytest.mark.slow
def test_gates_reproduce_step(name):
    cell, params, xs, carry, _ = setup(name)
    xp = cell.apply(params, xs[:, 0], method="project")
    w, b = cell.apply(params, method="recurrent_kernel")
    h = cell.apply(params, carry, method="recurrent_state")
    hr = h @ w if b is None else h @ w + b[None, :]
    want = cell.apply(params, carry, xp, method="step")
    got = cell.apply(params, carry, xp, hr, method="gates")
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), got, want)


def loss_and_grads(cell, params, xs, carry, key, backward, **kw):
    """A scalar touching every output (ys, final carry, states) with random weights."""
    with_eps = kw.pop("perturb", False)
    eps = None
    if with_eps:
        eps = jax.tree.map(lambda c: jnp.zeros((B, T) + c.shape[1:], c.dtype), carry)

    def loss(params, xs, carry, eps):
        final, ys, states = unroll(
            cell, params, xs, carry, perturbation=eps, backward=backward, **kw
        )
        ks = jax.random.split(key, 3)
        total = jnp.sum(ys * jax.random.normal(ks[0], ys.shape, ys.dtype))
        total += sum(jnp.sum(jnp.sin(c)) for c in jax.tree.leaves(final))
        if states is not None:
            total += sum(jnp.sum(s**2) * 0.1 for s in jax.tree.leaves(states))
        return total

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)))(params, xs, carry, eps)


def assert_trees_close(a, b, tol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        scale = max(1.0, float(jnp.max(jnp.abs(y))))
        np.testing.assert_allclose(x, y, rtol=tol, atol=tol * scale)


# Few combinations (each costs two compiles): with the RNN-layer test they cover every option.
OPTIONS = {
    "masked_reverse_perturb_states": {
        "seq_lengths": jnp.array([5, 7, 0]),
        "reverse": True,
        "perturb": True,
        "return_states": True,
    },
    "remat": {"remat": True},
    # D=5 is projected inside the fused loop (THRESHOLDS["in_loop_max_d"]); this one forces the hoisted path
    "hoisted_masked_perturb": {"seq_lengths": jnp.array([5, 7, 0]), "perturb": True},
}


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("name", fused_cells())
@pytest.mark.slow
def test_fused_gradients_equal_autodiff_float32(name, option, monkeypatch):
    if option.startswith("hoisted"):
        monkeypatch.setitem(plan_lib.THRESHOLDS, "in_loop_max_d", {})
    cell, params, xs, carry, key = setup(name)
    kw = OPTIONS[option]
    ref_val, ref = loss_and_grads(cell, params, xs, carry, key, "autodiff", **dict(kw))
    val, got = loss_and_grads(cell, params, xs, carry, key, "fused", **dict(kw))
    np.testing.assert_allclose(val, ref_val, rtol=1e-6)
    assert_trees_close(got, ref, 1e-5)


@pytest.mark.parametrize("name", fused_cells())
@pytest.mark.slow
def test_fused_gradients_equal_autodiff_float64(name):
    with jax.enable_x64(True):
        cell, params, xs, carry, key = setup(name, jnp.float64)
        kw = {"seq_lengths": jnp.array([6, 7, 2]), "reverse": True, "perturb": True}
        _, ref = loss_and_grads(cell, params, xs, carry, key, "autodiff", **dict(kw))
        _, got = loss_and_grads(cell, params, xs, carry, key, "fused", **dict(kw))
        assert_trees_close(got, ref, 1e-12)


@pytest.mark.slow
def test_rnn_layer_option_and_errors():
    """Bidirectional (reverse without lengths) and stacked, through the Linen layer."""
    x = jax.random.normal(jax.random.PRNGKey(0), (B, T, D))
    grads = {}
    for backward in ("autodiff", "fused"):
        model = RNN("gru", H, num_layers=2, bidirectional=True, backward=backward)
        params = model.init(jax.random.PRNGKey(1), x)
        loss = lambda p, model=model: jnp.sum(model.apply(p, x).outputs ** 2)
        grads[backward] = jax.jit(jax.grad(loss))(params)
    assert_trees_close(grads["fused"], grads["autodiff"], 1e-5)
    with pytest.raises(ValueError, match="backward must be one of"):
        unroll(make_cell("gru", H), params["params"]["layer_0"]["fwd"], x, backward="fast")
    jordan = make_cell("jordan", H)
    jp = jordan.init(jax.random.PRNGKey(0), jordan.initialize_carry(None, (B, D)), x[:, 0])
    with pytest.raises(ValueError, match="fused-backward contract"):
        unroll(jordan, jp, x, backward="fused")
    unroll(jordan, jp, x, backward="auto")  # falls back to autodiff


@pytest.mark.parametrize("backward", ["fused", "autodiff"])
@pytest.mark.slow
def test_chunked_remat_equals_plain_autodiff(backward):
    """remat="chunked" (sqrt(T) chunks, T=7 padded to 9) with every option, vs no remat."""
    cell, params, xs, carry, key = setup("lstm")
    kw = {"seq_lengths": jnp.array([6, 7, 2]), "reverse": True, "perturb": True}
    kw["return_states"] = True
    ref_val, ref = loss_and_grads(cell, params, xs, carry, key, "autodiff", **dict(kw))
    val, got = loss_and_grads(cell, params, xs, carry, key, backward, remat="chunked", **kw)
    np.testing.assert_allclose(val, ref_val, rtol=1e-6)
    assert_trees_close(got, ref, 1e-5)
