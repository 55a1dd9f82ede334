"""The native loop: a cell's time loop as a C++ kernel (:mod:`rnnlab.engine.kernels`), forward
and backward, under the same custom VJP as the fused XLA loop (:mod:`.fused`).

The engine knows no cell here: a cell offers a kernel by naming an adapter in its own class
(``native = SomeAdapter()``; a subclass inherits none, since it may change the gate math the
kernel hard-codes). The adapter is the per-cell glue, written beside the cell
(``rnnlab/cells/lstm.py``, ``gru.py``, ``elman.py``):

``kernel: str``
    the kernel it runs (a name in :data:`rnnlab.engine.kernels.KERNELS`);
``gates: str``
    the gate convention the kernel hard-codes (printed by ``rnnlab explain``);
``forward(cell, w, b, xp, ids, carry, eps, *, save, extra) -> (cT, ys, stacks, residuals)``
    the loop from ``xp [T, B, G]`` (or the projected table ``[V, G]`` with ``ids [T, B]``):
    the final carry, ``ys [B, T, H]`` batch-major, with ``extra`` the per-step stacks of the
    carry leaves that are not ``y_t`` (LSTM: ``c_t [T, B, H]``; else None), and with ``save``
    ``residuals = (h_prev_t [H, T*B], rest)`` for the backward;
``backward(cell, w, b, carry, eps, rest, d_cT, d_ys, d_stacks, ids, vocab)``
    ``-> (d_xp, d_hr, d_carry, d_table, d_eps)``: the cotangents of ``xp_t`` and of
    ``hr_t = h_{t-1} W_h + b_h`` ``[T, B, G]`` (the same array when the gates read their sum),
    of the initial carry, of the table (token feed) and of the perturbation;
``final(carry, ys, stacks, valid) -> carry``
    the carry after each sequence's last valid step (with :func:`common.last_valid`).

Masking is a prefix per sequence (``t < length``: the engine right-pads, also in reverse and in
chunks), so the kernels run every step unmasked, which leaves the valid steps exact, and the
mask is applied after: ``y_t = 0`` past the end, the final carry read at each sequence's last
valid step (the initial carry for an empty one). The weight gradient
``dW_h = h_{t-1}^T d_hr`` is one XLA matmul over all ``T*B`` rows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnlab.engine.loops import common


def run(cell, params, carry, feed: common.Feed, plan):
    """``(final carry, ys [B, T, H], None)``; the plan took this loop (float32, no returned
    states, no per-step remat, a kernel that builds here)."""
    adapter = cell.native
    w, b = cell.apply(params, method="recurrent_kernel")
    mode, stream, table, eps, valid = feed.kind, feed.stream, feed.table, feed.eps, feed.valid
    extra = valid is not None  # the masked final carry reads every step's carry
    project = lambda p, x: cell.apply(p, x, method="project")

    def kernel_inputs(p, tab, x):  # (xp or table, ids) as the kernel reads them
        if mode == "ids":
            return tab, x
        if mode == "x":  # one [T*B, D] x [D, G] matmul, not one per step
            T, B, D = x.shape
            return project(p, x.reshape(T * B, D)).reshape(T, B, -1), None
        return x, None

    def forward(p, w, b, tab, c0, x, e, save):
        return adapter.forward(cell, w, b, *kernel_inputs(p, tab, x), c0, e, save=save, extra=extra)

    @jax.custom_vjp
    def loop(p, w, b, tab, c0, x, e):
        cT, ys, stacks, _ = forward(p, w, b, tab, c0, x, e, save=False)
        return cT, ys, stacks

    def loop_fwd(p, w, b, tab, c0, x, e):
        cT, ys, stacks, saved = forward(p, w, b, tab, c0, x, e, save=True)
        return (cT, ys, stacks), (p, w, b, tab, c0, x, e, saved)

    def loop_bwd(res, cts):
        p, w, b, tab, c0, x, e, (h_prev_t, rest) = res
        d_cT, d_ys, d_stacks = cts
        ids = x if mode == "ids" else None  # the kernel sums the table's gradient by id
        vocab = tab.shape[0] if mode == "ids" else 0
        d_xp, d_hr, d_c0, d_tab, d_e = adapter.backward(
            cell, w, b, c0, e, rest, d_cT, d_ys, d_stacks, ids, vocab
        )
        T, B, G = d_hr.shape
        rows = lambda a: a.reshape(T * B, a.shape[-1])
        d_w = jnp.dot(h_prev_t, rows(d_hr))  # [H, T*B] x [T*B, G]: one matmul, all rows
        d_b = None if b is None else jnp.sum(d_hr, axis=(0, 1))
        d_p, d_x = None, d_xp
        if mode == "x":  # the projection's gradients, over all T*B rows at once
            _, vjp_p = jax.vjp(lambda p_, x_: project(p_, rows(x_)), p, x)
            d_p, d_x = vjp_p(rows(d_xp))
        if mode == "ids":
            d_x = None
        else:
            d_tab = None
        return d_p, d_w, d_b, d_tab, d_c0, d_x, None if e is None else d_e

    loop.defvjp(loop_fwd, loop_bwd)
    cT, ys, stacks = loop(params, w, b, table, carry, stream, eps)
    if valid is None:
        return cT, ys, None
    cT = adapter.final(carry, ys, stacks, valid)
    return cT, jnp.where(common.time_major(valid)[..., None], ys, 0.0), None
