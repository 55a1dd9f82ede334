"""The "add a cell in one file" example (examples/peephole_lstm.py) registers, passes
the whole conformance suite, and trains: the loss of a tiny task falls within a few steps."""

import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnnlab
import rnnlab.conformance

EXAMPLE = pathlib.Path(__file__).parents[1] / "examples" / "peephole_lstm.py"


@pytest.fixture
def peephole():
    cls = rnnlab.cells.register("peephole", EXAMPLE)
    yield cls
    rnnlab.cells.unregister("peephole")
    assert "peephole" not in rnnlab.cells.names()


class Tagger(nn.Module):
    """``x [B, T, D] -> [B, T, 1]``: the registered cell by name, then a linear readout."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(rnnlab.RNN("peephole", 8)(x).outputs)


@pytest.mark.slow
def test_example_cell_registers_passes_conformance_and_trains(peephole):
    assert "peephole" in rnnlab.cells.names() and rnnlab.cells.get("peephole") is peephole
    rnnlab.conformance.check_cell("peephole")

    # the task: y_t = x_{t-2} (remember two steps back); predicting 0 gives MSE 1
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((16, 12, 1)), jnp.float32)
    y = jnp.pad(x[:, :-2], ((0, 0), (2, 0), (0, 0)))
    model = Tagger()
    params = model.init(jax.random.key(0), x)
    assert "peephole" in params["params"]["RNN_0"]["layer_0"]["fwd"]["params"]
    tx = optax.adam(3e-2)

    @jax.jit
    def train_step(params, opt_state):
        loss, grads = jax.value_and_grad(lambda p: jnp.mean((model.apply(p, x) - y) ** 2))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state, losses = tx.init(params), []
    for _ in range(40):
        params, opt_state, loss = train_step(params, opt_state)
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], losses


def test_docs_point_at_the_tested_example_instead_of_copying_it():
    """The README and docs/cells.md link examples/peephole_lstm.py (the file this module
    tests) rather than carrying a copy that could drift from it."""
    root = EXAMPLE.parents[1]
    for doc in ("README.md", "docs/cells.md"):
        text = (root / doc).read_text(encoding="utf-8")
        assert "examples/peephole_lstm.py" in text, doc
        assert "class Cell(nn.Module)" not in text, f"{doc} copies the example cell"
