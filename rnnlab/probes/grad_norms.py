"""Per-step gradient norms ``||dL/dh_t||`` for every ``t`` in ONE backward pass.

The zero-perturbation trick: the engine adds ``eps_t`` to the carry after step ``t``
(:func:`rnnlab.unroll`, ``perturbation=``). With ``eps = 0`` the forward pass is
unchanged and ``dL/d eps_t`` is the *total* derivative ``dL/dh_t`` (through every later step),
so one ``jax.grad`` gives it for all ``t``. The whole carry is perturbed (LSTM: ``c`` and
``h``), and the norm is taken over the whole carry unless a leaf is named.

What ``eps_t`` reaches: the engine adds it to the carry after step ``t`` and the step's output
``y_t`` reads the perturbed state (the cell's optional ``output`` method, see
:mod:`rnnlab.cells`), so ``dL/d eps_t`` includes the direct term of a loss at step ``t`` as
well as every later step: under a last-step readout the ``t = T-1`` entry is the gradient of
the loss at the readout itself (tested through a model).

Loss convention: ``L = sum_b l_b`` over the batch, so the gradient of example ``b`` is that of
its own loss ``l_b``; the result is the batch mean of the per-example norms. Read the curve
right to left: ``log ||dL/dh_t||`` against the lag ``T-1-t`` is the vanishing/exploding plot.
For a linear RNN ``h_t = lambda * h_{t-1} + x_t`` with a loss on ``h_{T-1}``,
``||dL/dh_t|| = |lambda|^(T-1-t) ||dL/dh_{T-1}||`` exactly (checked in the tests).

Shapes: ``B`` batch, ``T`` time, ``D`` input, ``K`` outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from rnnlab.engine import unroll
from rnnlab.probes import _carry


def _norms(grads, names) -> dict[str, jax.Array]:
    """Carry-shaped ``[B, T, ...]`` gradients -> ``{"total": [T], leaf: [T]}`` (batch means)."""
    per_leaf = {
        n: jnp.sqrt(jnp.square(jnp.abs(g)).reshape(g.shape[:2] + (-1,)).sum(-1))
        for n, g in zip(names, jax.tree.leaves(grads))
    }  # each [B, T]
    total = jnp.sqrt(sum(jnp.square(v) for v in per_leaf.values()))
    out = {"total": total.mean(axis=0)}
    if len(per_leaf) > 1:
        out.update({n: v.mean(axis=0) for n, v in per_leaf.items()})
    return out


@partial(jax.jit, static_argnames=("cell", "loss_fn"))
def cell_grad_norms(
    cell: nn.Module,
    params,
    xs: jax.Array,
    loss_fn: Callable[[jax.Array, object], jax.Array],
    carry=None,
) -> dict[str, jax.Array]:
    """``||dL/dh_t||`` for one cell over ``xs [B, T, D]``.

    Args:
      cell, params: an unbound cell and its variables ``{"params": ...}``.
      xs: ``[B, T, D]`` inputs.
      loss_fn: ``(ys [B, T, O], final_carry) -> [B]`` per-example losses (or a scalar sum).
      carry: initial carry (zeros when None).

    Returns:
      ``{"total": [T]}`` (plus one ``[T]`` entry per carry leaf when the carry has several,
      e.g. ``"c"`` and ``"h"``): batch means of ``||dl_b / dh_t||``.
    """
    B, T, D = xs.shape
    zero = cell.initialize_carry(None, (B, D)) if carry is None else carry
    eps0 = jax.tree.map(lambda z: jnp.zeros((B, T) + z.shape[1:], z.dtype), zero)

    def loss(eps):
        final, ys, _ = unroll(cell, params, xs, carry, perturbation=eps)
        return jnp.sum(loss_fn(ys, final))

    grads = jax.grad(loss)(eps0)
    return _norms(grads, _carry.leaf_names(zero))


def model_grad_norms(model, params, batch: dict, *, loss: str) -> dict[str, jax.Array]:
    """``||dL/dh_t||`` of every layer of a :class:`rnnlab.models.SequenceModel`.

    Args:
      model, params: the model and its variables.
      batch: ``{"inputs": [B, T] or [B, T, D], "targets": ..., optional "mask" [B, T]}``.
      loss: ``"mse"`` or ``"xent"`` (the task's ``model_spec["loss"]``).

    Returns:
      ``{"layer_0": {"total": [T], ...}, ...}`` as in :func:`cell_grad_norms`.
    """
    params = _carry.wrap(params)
    inputs = jnp.asarray(batch["inputs"])
    B, T = inputs.shape[:2]
    cells = _carry.model_cells(model)
    # Each layer's carry structure: layer 0 reads the embedded inputs, later layers H features.
    x = model.apply(params, inputs, method="embed_inputs")
    zeros = [c.initialize_carry(None, (B, x.shape[-1])) for c in cells]
    eps0 = [jax.tree.map(lambda z: jnp.zeros((B, T) + z.shape[1:], z.dtype), z) for z in zeros]

    def total(eps):
        outputs, _, _ = model.apply(params, inputs, perturbation=eps)
        return jnp.sum(_carry.per_example_loss(outputs, batch, loss))

    grads = jax.jit(jax.grad(total))(eps0)  # one compiled program, not op-by-op dispatch
    return {
        f"layer_{i}": _norms(g, _carry.leaf_names(z)) for i, (g, z) in enumerate(zip(grads, zeros))
    }
