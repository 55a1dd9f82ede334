"""The carry as one real vector, and the cell / params / inputs a probe works on.

Probes see a cell's whole state -- every leaf of the carry pytree (LSTM: ``c`` and ``h``) -- as
one real vector of size ``N`` per sequence. Complex leaves (e.g. an LRU's diagonal state)
contribute their real and imaginary parts as separate coordinates, so Jacobians, JVPs and QR
stay real. Shapes: ``B`` batch, ``T`` time, ``D`` input, ``G`` projected input, ``N`` state.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.engine import make_cell


class CarryLayout(NamedTuple):
    """How a carry pytree maps to ``[B, N]``: per leaf, its shape (without B) and complexness."""

    treedef: Any
    shapes: tuple
    dtypes: tuple

    @property
    def sizes(self) -> tuple[int, ...]:
        """Real coordinates per leaf (twice the element count for complex leaves)."""
        return tuple(
            int(np.prod(s)) * (2 if jnp.issubdtype(d, jnp.complexfloating) else 1)
            for s, d in zip(self.shapes, self.dtypes)
        )

    @property
    def size(self) -> int:
        return sum(self.sizes)


def layout(carry) -> CarryLayout:
    leaves, treedef = jax.tree.flatten(carry)
    return CarryLayout(
        treedef, tuple(x.shape[1:] for x in leaves), tuple(jnp.result_type(x) for x in leaves)
    )


def flatten(carry, lead: int = 1) -> jax.Array:
    """Carry with leaves ``[*lead_dims, ...]`` -> ``[*lead_dims, N]`` (real)."""
    parts = []
    for x in jax.tree.leaves(carry):
        x = x.reshape(x.shape[:lead] + (-1,))
        if jnp.iscomplexobj(x):
            parts += [x.real, x.imag]
        else:
            parts.append(x)
    return jnp.concatenate(parts, axis=-1)


def unflatten(vec: jax.Array, lay: CarryLayout):
    """``[*lead, N]`` -> carry pytree (inverse of :func:`flatten`)."""
    lead = vec.shape[:-1]
    leaves, start = [], 0
    for shape, dtype in zip(lay.shapes, lay.dtypes):
        n = int(np.prod(shape))
        if jnp.issubdtype(dtype, jnp.complexfloating):
            re, im = vec[..., start : start + n], vec[..., start + n : start + 2 * n]
            leaves.append((re + 1j * im).astype(dtype).reshape(lead + shape))
            start += 2 * n
        else:
            leaves.append(vec[..., start : start + n].astype(dtype).reshape(lead + shape))
            start += n
    return jax.tree.unflatten(lay.treedef, leaves)


def leaf_names(carry) -> list[str]:
    """Readable names of the carry's leaves: ``h`` for a single array, ``c``/``h`` for LSTM-like
    pairs, else ``carry_0, carry_1, ...``."""
    n = len(jax.tree.leaves(carry))
    if n == 1:
        return ["h"]
    if n == 2 and isinstance(carry, tuple):
        return ["c", "h"]
    return [f"carry_{i}" for i in range(n)]


def step_fn(cell: nn.Module, params, lay: CarryLayout):
    """``(h [B, N], xp_t [B, G]) -> h' [B, N]``: the cell's own step on the flat state."""

    def f(h, xp_t):
        new, _ = cell.apply(params, unflatten(h, lay), xp_t, method="step")
        return flatten(new)

    return f


# ------------------------------------------------------------------ trained models (hooks)


def wrap(params):
    """Accept ``{"params": ...}`` or the bare param dict."""
    return params if "params" in params else {"params": params}


def select_seed(params, index: int = 0):
    """The params of seed ``index`` when the trainer stacked seeds (``train.num_seeds > 1``:
    every leaf ``[S, ...]``, detected by the head's 3-D kernel); else ``params`` as they are."""
    params = wrap(params)
    if np.ndim(params["params"]["head"]["kernel"]) == 3:
        return jax.tree.map(lambda a: a[index], params)
    return params


def model_cells(model) -> list[nn.Module]:
    """One unbound cell per layer of a :class:`rnnlab.models.SequenceModel`."""
    if getattr(model, "bidirectional", False):
        raise ValueError("probes follow the forward direction; got a bidirectional model")
    return [
        make_cell(model.cell, model.hidden_size, model.cell_options, dtype=model.dtype)
        for _ in range(model.num_layers)
    ]


def layer_params(params, layer: int):
    """The cell params of layer ``layer`` of a SequenceModel."""
    return wrap(wrap(params)["params"]["rnn"][f"layer_{layer}"]["fwd"])  # RNN keeps cell.init's


def per_example_loss(outputs: jax.Array, batch: dict, loss: str) -> jax.Array:
    """``[B]`` losses of a SequenceModel's outputs (mean over steps when per-step).

    ``loss="mse"``: outputs ``[B, K]`` or ``[B, T, K]`` vs float targets of the same shape;
    ``loss="xent"``: logits ``[B, (T,) V]`` vs int targets ``[B, (T)]``; an optional ``mask``
    ``[B, T]`` weights the steps.
    """
    targets = jnp.asarray(batch["targets"])
    if loss == "mse":
        err = jnp.square(outputs - targets.reshape(outputs.shape).astype(outputs.dtype))
        per = err.reshape(err.shape[0], -1).mean(axis=-1) if err.ndim == 2 else err.mean(-1)
    elif loss == "xent":
        logp = jax.nn.log_softmax(outputs, axis=-1)
        per = -jnp.take_along_axis(logp, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    else:
        raise ValueError(f"loss must be 'mse' or 'xent', got {loss!r}")
    if per.ndim == 2:  # per-step: [B, T]
        if "mask" in batch:
            m = jnp.asarray(batch["mask"], per.dtype)
            return (per * m).sum(axis=1) / jnp.maximum(m.sum(axis=1), 1.0)
        return per.mean(axis=1)
    return per
