"""Probes against analytic cases: a diagonal linear RNN, a tanh map, known gate biases."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import cells, probes
from rnnlab.engine import make_cell
from rnnlab.models import SequenceModel

LAMBDAS = (1.2, 0.9, 0.5, -0.3)


class DiagLinear(nn.Module):
    """h_t = lambda * h_{t-1} + W x_t: exponents log|lambda|, gradients |lambda|^(T-1-t)."""

    hidden_size: int
    lambdas: tuple = LAMBDAS
    dtype: object = None
    param_dtype: object = jnp.float32

    def setup(self):
        self.input = nn.Dense(self.hidden_size, use_bias=False)

    @property
    def output_size(self):
        return self.hidden_size

    def project(self, x):
        return self.input(x)

    def step(self, carry, xp_t):
        h = jnp.asarray(self.lambdas, carry.dtype)[None, :] * carry + xp_t
        return h, h

    def __call__(self, carry, x_t):
        return self.step(carry, self.project(x_t))

    def initialize_carry(self, rng, input_shape):
        return jnp.zeros((*input_shape[:-1], self.hidden_size), jnp.float32)


@pytest.fixture(scope="module")
def diag():
    cells.register("test_diag", DiagLinear)
    cell = make_cell("test_diag", len(LAMBDAS))
    xs = jax.random.normal(jax.random.key(0), (2, 9, 3))
    params = cell.init(jax.random.key(1), cell.initialize_carry(None, (2, 3)), xs[:, 0])
    yield cell, params, xs
    cells.unregister("test_diag")


def lag_powers(lam, T):
    return np.abs(lam) ** (T - 1 - np.arange(T))


def test_grad_norms_diagonal_linear(diag):
    cell, params, xs = diag
    T = xs.shape[1]
    for i, lam in enumerate(LAMBDAS):  # loss on one coordinate of the final state
        loss = lambda ys, final, i=i: 2.0 * final[:, i]
        g = np.asarray(probes.cell_grad_norms(cell, params, xs, loss)["total"])
        np.testing.assert_allclose(g, 2.0 * lag_powers(lam, T), rtol=1e-5)


def test_model_grad_norms_last_readout(diag):
    """Through a model with readout="last": y_t reads the perturbed state, so every entry,
    t = T-1 included, is the full dL/dh_t, proportional to |lambda|^(T-1-t)."""
    _, _, xs = diag
    model = SequenceModel(
        out_features=1,
        hidden_size=1,
        cell="test_diag",
        readout="last",
        cell_options={"lambdas": (0.7,)},
    )
    params = model.init(jax.random.key(2), xs)
    batch = {"inputs": xs, "targets": np.ones((2, 1), np.float32)}
    g = np.asarray(probes.model_grad_norms(model, params, batch, loss="mse")["layer_0"]["total"])
    T = xs.shape[1]
    assert g[-1] > 0.0
    np.testing.assert_allclose(g / g[-1], lag_powers(0.7, T), rtol=1e-5)


def test_lyapunov_diagonal_linear(diag):
    """The random initial basis aligns geometrically (ratio 0.75/step here): warm up first."""
    cell, params, _ = diag
    xs = jax.random.normal(jax.random.key(3), (2, 150, 3))
    exps = np.asarray(probes.cell_lyapunov(cell, params, xs, warmup=60))
    np.testing.assert_allclose(exps, sorted(np.log(np.abs(LAMBDAS)))[::-1], atol=1e-4)
    top2 = np.asarray(probes.cell_lyapunov(cell, params, xs, k=2, warmup=60))
    np.testing.assert_allclose(top2, np.log([1.2, 0.9]), atol=1e-4)


def test_jacobian_products_diagonal_linear(diag):
    cell, params, xs = diag
    sv = np.asarray(probes.cell_jacobian_spectrum(cell, params, xs[0]))  # [T, N]
    T = xs.shape[1]
    want = np.sort(np.stack([lag_powers(lam, T) for lam in LAMBDAS], axis=1), axis=1)[:, ::-1]
    np.testing.assert_allclose(sv, want, rtol=1e-5)


def test_state_norms_diagonal_linear(diag):
    cell, params, xs = diag
    h0 = jnp.zeros((2, 4)).at[:, 1].set(3.0)  # only the lambda = 0.9 coordinate
    norms = np.asarray(probes.cell_state_norms(cell, params, jnp.zeros_like(xs), h0)["total"])
    np.testing.assert_allclose(norms, 3.0 * 0.9 ** np.arange(1, 10), rtol=1e-5)


@pytest.mark.slow
def test_spectral_linearization_and_matrices(diag):
    cell, params, _ = diag
    out = probes.cell_spectral(cell, params, input_size=3)
    assert out == {"linearization": pytest.approx({"radius": 1.2, "norm": 1.2})}
    elman = make_cell("elman", 16, {"recurrent_init": "gaussian", "recurrent_scale": 0.7})
    p = elman.init(jax.random.key(0), jnp.zeros((1, 16)), jnp.zeros((1, 2)))
    out = probes.cell_spectral(elman, p, input_size=2)
    assert out["matrix:params/w_h"]["radius"] == pytest.approx(0.7, rel=1e-4)
    assert out["linearization"]["radius"] == pytest.approx(0.7, rel=1e-4)  # tanh'(0) = 1, b = 0
    lstm = make_cell("lstm", 4)
    p = lstm.init(jax.random.key(0), lstm.initialize_carry(None, (1, 2)), jnp.zeros((1, 2)))
    out = probes.cell_spectral(lstm, p, input_size=2)
    assert sorted(out) == ["linearization"] + [f"matrix:params/w_h[{i}]" for i in range(4)]
    assert out["matrix:params/w_h[1]"]["norm"] == pytest.approx(1.0, rel=1e-4)  # orthogonal


@pytest.mark.slow
def test_lyapunov_tanh_map():
    """REFERENCE: autonomous tanh map, W ~ N(0, g^2/N): g = 0.5 gives ~log 0.5; g = 1.5 is
    chaotic (lambda_1 > 0). N = 100 here to keep the test small."""
    N, T = 100, 200
    out = {}
    for g in (0.5, 1.5):
        cell = make_cell("elman", N, {"recurrent_init": "gaussian", "recurrent_scale": g})
        p = cell.init(jax.random.key(0), jnp.zeros((1, N)), jnp.zeros((1, 1)))
        p = jax.tree.map(lambda a: a, p)
        p["params"]["input"]["bias"] = jnp.zeros(N)
        h0 = jax.random.normal(jax.random.key(1), (1, N))
        out[g] = float(
            probes.cell_lyapunov(cell, p, jnp.zeros((1, T, 1)), k=1, warmup=50, carry=h0)[0]
        )
    assert out[0.5] == pytest.approx(np.log(0.5), abs=0.05)
    assert 0.0 < out[1.5] < 0.3


def test_saturation_finds_gates_of_any_cell():
    xs = jax.random.normal(jax.random.key(0), (2, 5, 3))
    lstm = make_cell("lstm", 4, {"forget_bias": 12.0})
    p = lstm.init(jax.random.key(0), lstm.initialize_carry(None, (2, 3)), xs[:, 0])
    sat = probes.cell_saturation(lstm, p, xs)
    assert sorted(sat) == ["all", "sigmoid_0", "sigmoid_1", "sigmoid_2"]
    assert sat["sigmoid_0"]["high"] > 0.95  # the forget gate (first sigmoid in lstm.step)
    assert sat["sigmoid_1"]["saturated"] < 0.5
    elman = make_cell("elman", 4)
    p = elman.init(jax.random.key(0), jnp.zeros((2, 4)), xs[:, 0])
    assert probes.cell_saturation(elman, p, xs) == {}


@pytest.mark.parametrize("name", [n for n in cells.names() if not n.startswith("test_")])
@pytest.mark.slow
def test_every_probe_runs_on_every_cell(name):
    cell = make_cell(name, 4)
    xs = jax.random.normal(jax.random.key(0), (2, 6, 3))
    p = cell.init(jax.random.key(1), cell.initialize_carry(None, (2, 3)), xs[:, 0])
    N = probes._carry.layout(cell.initialize_carry(None, (2, 3))).size
    g = probes.cell_grad_norms(cell, p, xs, lambda ys, final: jnp.sum(ys[:, -2] ** 2, -1))
    assert g["total"].shape == (6,) and np.all(np.isfinite(g["total"]))
    assert np.isfinite(probes.cell_lyapunov(cell, p, xs, k=2)).all()
    assert probes.cell_jacobian_spectrum(cell, p, xs[0]).shape == (6, N)
    for stats in probes.cell_saturation(cell, p, xs).values():
        assert 0.0 <= stats["saturated"] <= 1.0


def test_make_hook_rejects_unknown_probe():
    with pytest.raises(ValueError, match="grad_norms"):
        probes.make_hook(["grad_norm"])


@pytest.mark.slow
def test_make_hook_on_a_model_with_stacked_seeds():
    """The training hook: scalar summaries only, seed 0 of [S, ...] params (train.num_seeds)."""
    from rnnlab import data

    dataset = data.make("adding", seq_length=6, batch_size=2, seed=0)
    model = SequenceModel(out_features=1, hidden_size=4, cell="lstm", readout="last")
    params = model.init(jax.random.key(0), jnp.zeros((2, 6, 2)))
    stacked = jax.tree.map(lambda a: jnp.stack([a, 2 * a]), params)  # two "seeds"
    hook = probes.make_hook(probes.PROBES, batch_size=2, lyapunov_k=2)
    out = hook(7, stacked["params"], model, dataset)
    cell_params = {"params": params["params"]["rnn"]["layer_0"]["fwd"]["params"]}
    want = probes.cell_spectral(make_cell("lstm", 4), cell_params, input_size=2)
    assert out["probe/spectral/linearization/radius"] == pytest.approx(  # seed 0 was probed
        want["linearization"]["radius"], rel=1e-5
    )
    assert all(isinstance(v, float) and k.startswith("probe/") for k, v in out.items())
    assert {"probe/grad_norms/log_decay_per_step", "probe/lyapunov/1",
            "probe/saturation/sigmoid_0", "probe/spectral/linearization/radius",
            "probe/state_norms/last", "probe/jacobian/top_sv_max_lag"} <= set(out)  # fmt: skip
