"""Regularizers for recurrent nets: the masks, and the step wrapper the RNN layer runs.

The convention (docs/regularization.md): every rate ``p`` is a **drop probability** in [0, 1),
as in Flax, PyTorch and Keras; dropout is **inverted** (kept units scaled by ``1/(1-p)`` in
training), so evaluation uses the weights and activations as they are. Zoneout is not dropout:
its ``p`` is the probability of *keeping the previous value*, and evaluation uses the
expectation ``h_t = p h_{t-1} + (1-p) h~_t``. Every mask is drawn from a key the caller derives
from the training step's ``"dropout"`` rng, so a resumed run draws the same masks.

Shape legend: ``B`` batch, ``T`` time, ``D`` input, ``H`` hidden, ``G`` gate width, ``V`` vocab.

* :func:`embedding_dropout` -- whole rows of the table ``[V, D]`` (whole word types; Gal &
  Ghahramani 2016, Merity et al. 2017), one mask per batch;
* :func:`locked_dropout` -- variational dropout on ``[B, T, D]``: one ``[B, 1, D]`` mask per
  sequence, the same at every step (Gal & Ghahramani 2016);
* :func:`weight_drop` -- DropConnect on the recurrent matrix ``W_h`` ``[H, G]``, one mask per
  batch, applied to the params before the loop, so every loop still applies (Merity et al.
  2017, AWD-LSTM);
* :class:`Regularized` -- a cell for the engine whose step applies, inside the time loop, the
  recurrent dropout mask ``[B, H]`` on ``h_{t-1}`` where it enters ``W_h`` (one mask per
  sequence; Gal & Ghahramani 2016) and zoneout on the new carry (Krueger et al. 2017; LSTM:
  ``c`` and ``h`` with their own rates; a fresh ``[B, ...]`` mask per step, as in the paper).
  It changes the step, so it runs in the autodiff loop (the fused and native loops run the
  cell's own step).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnlab import cells as cell_registry

FUSED_METHODS = ("recurrent_kernel", "recurrent_state", "gates")


def check_rate(name: str, p) -> float:
    """``p`` as a float in [0, 1), else a ValueError naming ``name``."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ValueError(f"{name} is a drop probability in [0, 1), got {p!r}")
    return float(p)


def keep_mask(key, p: float, shape, dtype) -> jax.Array:
    """Inverted-dropout multipliers ``[shape]``: ``1/(1-p)`` with probability ``1-p``, else 0,
    so their mean is 1 and nothing needs scaling at evaluation."""
    keep = jax.random.bernoulli(key, 1.0 - p, shape)
    return keep.astype(dtype) / jnp.asarray(1.0 - p, dtype)


def embedding_dropout(key, table: jax.Array, p: float) -> jax.Array:
    """``table [V, D]`` with whole rows (word types) zeroed with probability ``p`` and the rest
    scaled by ``1/(1-p)``: every occurrence of a dropped token in the batch embeds to 0."""
    if p == 0.0:
        return table
    return table * keep_mask(key, p, (table.shape[0], 1), table.dtype)


def locked_dropout(key, x: jax.Array, p: float) -> jax.Array:
    """``x [B, T, D]`` times one ``[B, 1, D]`` inverted-dropout mask per sequence (the same
    units dropped at every step)."""
    if p == 0.0:
        return x
    return x * keep_mask(key, p, (x.shape[0], 1, x.shape[2]), x.dtype)


# ------------------------------------------------------------------------- weight-drop


def _name(cell) -> str:
    return f"{type(cell).__module__}.{type(cell).__name__}"


def _has_kernel(cell) -> str | None:
    """None when ``cell`` has a recurrent matrix (``recurrent_kernel()``), else why not."""
    if not callable(getattr(type(cell), "recurrent_kernel", None)):
        return (
            "it declares no recurrent matrix (no recurrent_kernel(); elman, lstm, gru, lnlstm do)"
        )
    return None


def recurrent_matrix_leaves(cell, params) -> list[int]:
    """The indices (in ``jax.tree.leaves(params)``) of the params that *are* ``W_h [H, G]``:
    found abstractly from the jaxpr of ``recurrent_kernel()`` (the leaves its matrix depends on,
    of the matrix's shape), so no cell needs to name its parameter."""
    leaves, tree = jax.tree.flatten(params)
    abstract = [jax.ShapeDtypeStruct(jnp.shape(a), a.dtype) for a in leaves]
    kernel = lambda *ls: cell.apply(jax.tree.unflatten(tree, ls), method="recurrent_kernel")[0]
    closed = jax.make_jaxpr(kernel)(*abstract)
    jaxpr = closed.jaxpr
    needed = {v for v in jaxpr.outvars if not hasattr(v, "val")}
    for eqn in reversed(jaxpr.eqns):
        if any(o in needed for o in eqn.outvars):
            needed |= {v for v in eqn.invars if not hasattr(v, "val")}
    shape = tuple(closed.out_avals[0].shape)
    return [i for i, v in enumerate(jaxpr.invars) if v in needed and abstract[i].shape == shape]


def check_weight_drop(cell, p: float) -> None:
    """Refuse weight-drop (``p > 0``) for a cell without a recurrent matrix."""
    if check_rate("weight_drop", p) > 0 and (why := _has_kernel(cell)):
        raise ValueError(f"weight_drop={p} drops entries of W_h, but {_name(cell)} has none: {why}")


def weight_drop(cell, params, p: float, key) -> dict:
    """``params`` with DropConnect on ``W_h``: one inverted-dropout mask of ``W_h``'s shape for
    the whole batch (every sequence and step sees the same dropped weights)."""
    if p == 0.0:
        return params
    check_weight_drop(cell, p)
    try:
        found = recurrent_matrix_leaves(cell, params)
    except ValueError as err:  # a configuration without the matrix (GRU convention="cho")
        raise ValueError(f"weight_drop={p}: {_name(cell)}: {err}") from None
    if not found:
        raise ValueError(f"weight_drop={p}: no parameter of {_name(cell)} is its W_h")
    leaves, tree = jax.tree.flatten(params)
    for i, k in zip(found, jax.random.split(key, len(found))):
        leaves[i] = leaves[i] * keep_mask(k, p, leaves[i].shape, leaves[i].dtype)
    return jax.tree.unflatten(tree, leaves)


# ------------------------------------------------------- recurrent dropout and zoneout


def state_parts(cell, D: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(h, c)``: indices of the carry's leaves zoneout treats as ``h`` (``zoneout_h``) and as
    ``c`` (``zoneout_c``). ``h`` is the leaf the step returns as ``y_t`` (LSTM: ``h`` of
    ``(c, h)``), or every leaf for a cell that computes ``y_t`` from its carry (``output()``:
    LRU, mamba); ``c`` is the rest. Found abstractly (nothing runs); ``ValueError`` when ``y_t``
    is neither."""
    found = []

    def probe():
        carry = cell.initialize_carry(None, (1, D))
        x = jnp.zeros((1, D), cell.dtype or cell.param_dtype)
        variables = cell.init(jax.random.key(0), carry, x)
        xp = cell.apply(variables, x, method="project")
        new, y = cell.apply(variables, carry, xp, method="step")
        found.append(
            (len(jax.tree.leaves(new)), [i for i, a in enumerate(jax.tree.leaves(new)) if a is y])
        )
        return new

    jax.eval_shape(probe)
    n, leaf = found[0]
    if hasattr(type(cell), "output"):
        return tuple(range(n)), ()
    if not leaf:
        raise ValueError(
            f"zoneout needs y_t to be a leaf of the carry or an output(carry, xp_t) method; "
            f"{_name(cell)} has neither"
        )
    return tuple(leaf), tuple(i for i in range(n) if i not in leaf)


def check_step_options(cell, D: int, *, zoneout_c=0.0, zoneout_h=0.0, recurrent_dropout=0.0):
    """Refuse, before any work, an option the cell cannot take (with what it would need)."""
    zoneout_c = check_rate("zoneout_c", zoneout_c)
    zoneout_h = check_rate("zoneout_h", zoneout_h)
    if check_rate("recurrent_dropout", recurrent_dropout) > 0:
        missing = [m for m in FUSED_METHODS if not callable(getattr(type(cell), m, None))]
        if missing:
            raise ValueError(
                f"recurrent_dropout={recurrent_dropout} masks h_(t-1) where it enters W_h, "
                f"which {_name(cell)} does not declare (it lacks {', '.join(missing)}; elman, "
                "lstm, gru, lnlstm have them); use zoneout_h or variational_dropout_in/out"
            )
    if zoneout_c or zoneout_h:
        _, c = state_parts(cell, D)
        if zoneout_c and not c:
            raise ValueError(
                f"zoneout_c={zoneout_c} acts on a memory cell c beside h (lstm, lnlstm), but "
                f"{_name(cell)}'s carry is a single state: use zoneout_h"
            )


class Regularized:
    """A cell for the engine (the contract of :mod:`rnnlab.cells`: ``project``, ``step``,
    ``initialize_carry``) that runs ``cell``'s step with recurrent dropout and zoneout.

    Training (``key`` given, the sequences' ``B`` and ``T`` known): the recurrent dropout mask
    ``m [B, H]`` is drawn once, zoneout masks ``z [T, B, ...]`` (True: keep the old value) once
    per step; the carry is ``(cell carry, t [B] int32)``, ``t`` the step index that picks
    ``z[t]`` (masked steps keep it, like the rest of the carry). Evaluation (``key=None``): the
    carry is the cell's, no mask, zoneout in expectation. One step::

        hr_t = (m * recurrent_state(carry_{t-1})) @ W_h + b_h     (recurrent dropout; else step)
        new, y~_t = gates(carry_{t-1}, xp_t, hr_t)
        carry_t = where(z_t, carry_{t-1}, new)                    (training)
                = p * carry_{t-1} + (1 - p) * new                 (evaluation)
        y_t = the zoned leaf of y~_t (or cell.output(carry_t, xp_t))

    with ``p`` = ``zoneout_h`` on the ``h`` leaves, ``zoneout_c`` on the ``c`` leaves
    (:func:`state_parts`).
    """

    def __init__(self, cell, D, *, zoneout_c=0.0, zoneout_h=0.0, recurrent_dropout=0.0,
                 key=None, variables=None, B=None, T=None):  # fmt: skip
        check_step_options(
            cell, D, zoneout_c=zoneout_c, zoneout_h=zoneout_h, recurrent_dropout=recurrent_dropout
        )
        self.cell, self.D = cell, D
        self.hidden_size, self.dtype, self.param_dtype = (
            cell.hidden_size,
            cell.dtype,
            cell.param_dtype,
        )
        self.read_ahead = bool(getattr(cell, "read_ahead", True))
        self.rates = {}
        if zoneout_c or zoneout_h:
            h, c = state_parts(cell, D)
            self.rates = {i: zoneout_h for i in h} | {i: zoneout_c for i in c}
            self.rates = {i: p for i, p in self.rates.items() if p > 0}
        self.training = key is not None
        self.recurrent_mask, self.zoneout_masks = None, {}
        if self.training:
            k_rec, k_zone = jax.random.split(key)
            zeros = cell.initialize_carry(None, (B, D))
            if recurrent_dropout > 0:  # one [B, H] mask per sequence on h_(t-1)
                h = jax.eval_shape(
                    lambda: cell.apply(variables, zeros, method="recurrent_state")
                )  # fmt: skip
                self.recurrent_mask = keep_mask(k_rec, recurrent_dropout, h.shape, h.dtype)
            leaves = jax.tree.leaves(zeros)
            keys = jax.random.split(k_zone, max(len(self.rates), 1))
            for (i, p), k in zip(self.rates.items(), keys):  # a fresh mask per step: [T, B, ...]
                self.zoneout_masks[i] = jax.random.bernoulli(k, p, (T, *leaves[i].shape))

    @property
    def output_size(self) -> int:
        return self.cell.output_size

    def initialize_carry(self, rng, input_shape):
        carry = self.cell.initialize_carry(rng, input_shape)
        return self.wrap(carry) if self.training else carry

    def wrap(self, carry, time_axis: bool = False):
        """The engine's carry for a cell carry (training: with the step index ``t = 0``);
        ``time_axis``: a ``[B, T, ...]`` carry-shaped perturbation (zeros for ``t``)."""
        if not self.training:
            return carry
        lead = jnp.shape(jax.tree.leaves(carry)[0])[: 2 if time_axis else 1]
        return carry, jnp.zeros(lead, jnp.int32)

    def unwrap(self, carry):
        """The cell's carry from the engine's."""
        return carry[0] if self.training else carry

    def apply(self, variables, *args, method=None):
        if method == "step":
            return self.step(variables, *args)
        if method == "output":
            return self.cell.apply(variables, self.unwrap(args[0]), *args[1:], method="output")
        return self.cell.apply(variables, *args, method=method)  # project, init-time calls

    def step(self, variables, carry, xp_t):
        """``(carry, xp_t [B, G]) -> (carry, y_t [B, O])``: the docstring's step."""
        cell = self.cell
        old, t = carry if self.training else (carry, None)
        if self.recurrent_mask is not None:
            w, b = cell.apply(variables, method="recurrent_kernel")
            h = cell.apply(variables, old, method="recurrent_state") * self.recurrent_mask
            hr = cell_registry.recurrent_matmul(h, w, getattr(cell, "matmul_dtype", None))
            new, y = cell.apply(variables, old, xp_t, hr if b is None else hr + b, method="gates")
        else:
            new, y = cell.apply(variables, old, xp_t, method="step")
        if self.rates:
            olds, news = jax.tree.leaves(old), jax.tree.leaves(new)
            leaf = [i for i, a in enumerate(news) if a is y]
            for i, p in self.rates.items():
                if self.training:
                    z = self.zoneout_masks[i]
                    z_t = z[jnp.clip(t, 0, z.shape[0] - 1), jnp.arange(z.shape[1])]
                    news[i] = jnp.where(z_t, olds[i], news[i])
                else:
                    news[i] = p * olds[i] + (1 - p) * news[i]
            new = jax.tree.unflatten(jax.tree.structure(new), news)
            if hasattr(type(cell), "output"):
                y = cell.apply(variables, new, xp_t, method="output")
            else:
                y = news[leaf[0]]
        return ((new, t + 1) if self.training else new), y


class RegularizedWithOutput(Regularized):
    """:class:`Regularized` for a cell with ``output(carry, xp_t)`` (the perturbation hook
    reads ``y_t`` from the perturbed carry through it)."""

    def output(self, carry, xp_t):  # the hook calls apply(..., method="output"): see apply
        raise NotImplementedError


def regularized(cell, D, **kw) -> Regularized:
    """The :class:`Regularized` wrapper of ``cell`` (with ``output`` when the cell has one)."""
    cls = RegularizedWithOutput if hasattr(type(cell), "output") else Regularized
    return cls(cell, D, **kw)
