"""Spectral radius and largest singular value of a cell's recurrent matrices.

Two views, both cell-agnostic:

* **matrices**: every 2-D parameter that the cell's ``step`` uses (found by differentiating the
  step with respect to the params: the input projection never appears there) of shape
  ``[H, k*H]`` is split into its ``k`` square blocks (one per gate for a fused LSTM/GRU matrix).
  For each: spectral radius ``max |eig(W)|`` and ``||W||_2`` (largest singular value).
  Pascanu et al. 2013: gradients vanish when ``||W_hh||_2 < 1/gamma`` (gamma = 1 for tanh).
* **linearization**: the step Jacobian ``J = dh_t/dh_{t-1}`` ``[N, N]`` at the zero state with
  zero input, over the whole carry. It covers cells whose recurrence is not a matrix (diagonal
  IndRNN/LRU weights, gated updates): for a tanh RNN at zero it is ``W_h^T``; for an LSTM its
  ``c -> c`` block is ``diag(sigmoid(b_f))``.

Eigenvalues run on the host (numpy): this is a logging probe, not a hot path.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.probes import _carry


def _stats(w: np.ndarray) -> dict[str, float]:
    w = np.asarray(w, np.float64)
    return {
        "radius": float(np.max(np.abs(np.linalg.eigvals(w)))),
        "norm": float(np.linalg.norm(w, 2)),
    }


def recurrent_matrices(cell: nn.Module, params, input_size: int) -> dict[str, np.ndarray]:
    """``{"path[i]": [H, H]}``: the square blocks of the 2-D params that ``step`` uses."""
    H = cell.hidden_size
    zero = cell.initialize_carry(None, (1, input_size))
    lay = _carry.layout(zero)
    x0 = jnp.zeros((1, input_size))
    G = jax.eval_shape(lambda p: cell.apply(p, x0, method="project"), params)
    probe_h = jax.random.normal(jax.random.key(0), (1, lay.size))
    probe_x = jax.random.normal(jax.random.key(1), G.shape)

    def out(p):
        return jnp.sum(_carry.step_fn(cell, p, lay)(probe_h, probe_x))

    grads = jax.jit(jax.grad(out))(params)
    found = {}
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        w = np.asarray(_get(params, path))
        if w.ndim != 2 or w.shape[0] != H or w.shape[1] % H or not np.any(np.asarray(g)):
            continue
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        blocks = w.shape[1] // H
        for i in range(blocks):
            found[f"{name}[{i}]" if blocks > 1 else name] = w[:, i * H : (i + 1) * H]
    return found


def _get(tree, path):
    for k in path:
        tree = tree[getattr(k, "key", getattr(k, "idx", k))]
    return tree


def linearization(cell: nn.Module, params, input_size: int) -> np.ndarray:
    """``dh_t/dh_{t-1}`` ``[N, N]`` at the zero state with zero input (``input_size`` = D)."""
    zero = cell.initialize_carry(None, (1, input_size))
    lay = _carry.layout(zero)
    xp = cell.apply(params, jnp.zeros((1, input_size)), method="project")
    f = _carry.step_fn(cell, params, lay)
    jac = jax.jit(jax.jacfwd(lambda h: f(h[None], xp)[0]))
    return np.asarray(jac(_carry.flatten(zero)[0]))


def cell_spectral(cell: nn.Module, params, input_size: int) -> dict[str, dict[str, float]]:
    """``{"matrix:NAME": {"radius", "norm"}, ..., "linearization": {"radius", "norm"}}``."""
    out = {
        f"matrix:{n}": _stats(w) for n, w in recurrent_matrices(cell, params, input_size).items()
    }
    out["linearization"] = _stats(linearization(cell, params, input_size))
    return out
