"""The selective cells rglru (Hawk's RG-LRU) and mamba (S6): their equations against plain numpy,
their initializations, and that their decay depends on the input (selectivity)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import cells

H, D, B, T = 4, 3, 2, 6


def make(name, **kw):
    cell = cells.get(name)(hidden_size=H, **kw)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((B, T, D)), jnp.float32)
    v = cell.init(jax.random.key(0), cell.initialize_carry(None, (B, D)), x[:, 0])
    return cell, v, x


def run(cell, v, x):
    carry, ys = cell.initialize_carry(None, (B, D)), []
    for t in range(x.shape[1]):
        carry, y = cell.apply(v, carry, x[:, t])
        ys.append(y)
    return np.stack(ys, axis=1)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_rglru_matches_the_paper_equations_and_its_init():
    cell, v, x = make("rglru")
    p = jax.tree.map(np.asarray, v["params"])
    a_c = sigmoid(p["lam"]) ** 8  # a^c at r_t = 1
    assert a_c.min() >= 0.9 - 1e-6 and a_c.max() <= 0.999 + 1e-6
    W, b = p["input"]["kernel"], p["input"]["bias"]
    h, want = np.zeros((B, H)), []
    for t in range(T):
        ra, ix, u = np.split(np.asarray(x[:, t]) @ W + b, 3, axis=-1)
        a_t = sigmoid(p["lam"]) ** (8 * sigmoid(ra))
        h = a_t * h + np.sqrt(1 - a_t**2) * (sigmoid(ix) * u)
        want.append(h)
    np.testing.assert_allclose(run(cell, v, x), np.stack(want, 1), rtol=1e-5, atol=1e-6)
    _, v2, _ = make("rglru", ring="a")
    a = sigmoid(np.asarray(v2["params"]["lam"]))  # recurrentgemma's code: a itself on the ring
    assert a.min() >= 0.9 - 1e-6 and a.max() <= 0.999 + 1e-6


def test_rglru_is_stable_when_a_rounds_to_one():
    """L = 30: sigmoid(L) is 1 in float32, yet log a_t stays finite and so does the gradient
    (softplus form, and the bounded derivative of sqrt(1 - a_t^2))."""
    cell, v, x = make("rglru")
    v = jax.tree.map(lambda a: a, v)
    v["params"]["lam"] = jnp.full((H,), 30.0)

    def loss(params):
        return jnp.sum(cell.apply(params, cell.initialize_carry(None, (B, D)), x[:, 0])[1])

    grads = jax.grad(loss)(v)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
    with pytest.raises(ValueError, match="0 < r_min < r_max < 1"):
        cells.get("rglru")(hidden_size=H, r_min=0.99, r_max=0.9)


def test_mamba_matches_the_reference_selective_scan_and_its_init():
    cell, v, x = make("mamba", state_size=5)
    p = jax.tree.map(np.asarray, v["params"])
    np.testing.assert_allclose(-np.exp(p["A_log"]), -np.tile(np.arange(1, 6), (H, 1)), rtol=1e-6)
    dt0 = np.log1p(np.exp(p["dt_proj"]["bias"]))
    assert dt0.min() >= 1e-4 - 1e-9 and dt0.max() <= 0.1 + 1e-6
    np.testing.assert_array_equal(p["D"], np.ones(H))
    R = cell.rank
    s, want = np.zeros((B, H, 5)), []
    for t in range(T):  # selective_scan_ref of state-spaces/mamba, one step at a time
        xt = np.asarray(x[:, t])
        u = xt @ p["u_proj"]["kernel"] + p["u_proj"]["bias"]
        rbc = xt @ p["x_proj"]["kernel"]
        delta = np.log1p(np.exp(rbc[:, :R] @ p["dt_proj"]["kernel"] + p["dt_proj"]["bias"]))
        Bt, Ct = rbc[:, R : R + 5], rbc[:, R + 5 :]
        A = -np.exp(p["A_log"])
        s = np.exp(delta[..., None] * A) * s + delta[..., None] * Bt[:, None] * u[..., None]
        want.append(np.einsum("bhn,bn->bh", s, Ct) + p["D"] * u)
    np.testing.assert_allclose(run(cell, v, x), np.stack(want, 1), rtol=1e-4, atol=1e-5)
    assert cell.initialize_carry(None, (B, D)).shape == (B, H * 5)


@pytest.mark.parametrize("name, selective", [("mamba", True), ("rglru", True), ("lru", False)])
def test_decay_depends_on_the_input_only_for_selective_cells(name, selective):
    cell, v, x = make(name)
    xp = cell.apply(v, x, method="project")
    a, _ = cell.apply(v, xp, method="linear_coeffs")
    a = np.asarray(jnp.abs(jnp.broadcast_to(a, a.shape)))
    spread = np.abs(a[:, 1:] - a[:, :1]).max()  # how much the decay moves over time
    assert (spread > 1e-4) == selective
