"""Gradient-flow diagnostics: one file per probe, each usable on ANY registered cell.

Every probe works from the cell contract alone (:mod:`rnnlab.cells`): sequences go through the
engine (:func:`rnnlab.unroll`), single steps through the cell's own ``step``. The state
is the whole carry (LSTM: ``c`` and ``h``), complex leaves as real and imaginary parts.

=================  ==========================================================================
probe              what it measures
=================  ==========================================================================
``grad_norms``     ``||dL/dh_t||`` for every ``t`` in one backward pass (zero perturbation)
``jacobian``       singular values of ``dh_{T-1}/dh_t`` (products of step Jacobians)
``lyapunov``       Lyapunov spectrum by the QR method, nats/step, k JVPs per step
``spectral``       spectral radius and ``||W||_2`` of recurrent matrices; the zero-state Jacobian
``saturation``     fraction of sigmoid gates > 0.99 or < 0.01 (any cell: traced sigmoids)
``state_norms``    ``||h_t||`` over ``t``
=================  ==========================================================================

Python API (``cell = rnnlab.engine.make_cell("lstm", 16)``, ``params = cell.init(...)``,
``xs [B, T, D]``)::

    from rnnlab import probes
    probes.cell_grad_norms(cell, params, xs, loss_fn)["total"]     # [T]
    probes.cell_jacobian_spectrum(cell, params, xs[0])              # [T, N]
    probes.cell_lyapunov(cell, params, xs, k=4)                     # [4] nats/step
    probes.cell_spectral(cell, params, input_size=D)                # {name: {radius, norm}}
    probes.cell_saturation(cell, params, xs)                        # {sigmoid_k: {...}}
    probes.cell_state_norms(cell, params, xs)["total"]              # [T]

During training, :func:`make_hook` returns a ``hook(step, params, model, dataset) -> dict`` for
``rnnlab.train.train_and_evaluate(..., hooks=[...])``: the measurements land in metrics.jsonl
at every evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax.numpy as jnp
import numpy as np

from rnnlab.probes import _carry
from rnnlab.probes._carry import select_seed
from rnnlab.probes.grad_norms import cell_grad_norms, model_grad_norms
from rnnlab.probes.jacobian import cell_jacobian_spectrum, product_singular_values, step_jacobians
from rnnlab.probes.lyapunov import cell_lyapunov
from rnnlab.probes.saturation import cell_saturation, gate_values
from rnnlab.probes.spectral import cell_spectral, linearization, recurrent_matrices
from rnnlab.probes.state_norms import cell_state_norms, model_state_norms

PROBES = ("grad_norms", "jacobian", "lyapunov", "spectral", "saturation", "state_norms")

__all__ = [
    "PROBES",
    "cell_grad_norms",
    "decay_rate",
    "cell_jacobian_spectrum",
    "cell_lyapunov",
    "cell_saturation",
    "cell_spectral",
    "cell_state_norms",
    "gate_values",
    "linearization",
    "make_hook",
    "model_grad_norms",
    "model_state_norms",
    "product_singular_values",
    "recurrent_matrices",
    "select_seed",
    "step_jacobians",
]


def decay_rate(norms) -> float:
    """Least-squares slope of ``log ||dL/dh_t||`` against ``t`` (nats per step; > 0 means the
    gradient shrinks going back in time, at ``exp(-rate)`` per step)."""
    with np.errstate(divide="ignore"):  # exact zeros (dead ReLUs) are left out below
        logs = np.log(np.asarray(norms, np.float64))
    ok = np.isfinite(logs)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.flatnonzero(ok), logs[ok], 1)[0])


def make_hook(
    probes: Sequence[str] = ("grad_norms", "spectral", "saturation", "state_norms"),
    *,
    batch_size: int = 8,
    lyapunov_k: int = 4,
    seed_index: int = 0,
) -> Callable:
    """A training hook ``hook(step, params, model, dataset) -> dict`` running ``probes``.

    It reads the first ``batch_size`` sequences of the dataset's first eval batch and the first
    layer of the model (``jacobian`` uses the first sequence); with ``train.num_seeds > 1`` the
    params of seed ``seed_index``. Keys are ``probe/...`` and every value
    is a scalar summary (first/last gradient norm and its log-decay rate per step, mean/last
    state norm, each Lyapunov exponent, ...): the full curves come from the functions above.
    """
    unknown = sorted(set(probes) - set(PROBES))
    if unknown:
        raise ValueError(f"unknown probe(s) {unknown}; choose from {list(PROBES)}")

    def hook(step, params, model, dataset) -> dict:
        batch = next(iter(dataset.eval_batches()))
        batch = {k: np.asarray(v)[:batch_size] for k, v in batch.items()}
        params = _carry.select_seed(params, seed_index)  # train.num_seeds > 1: [S, ...] leaves
        cell = _carry.model_cells(model)[0]
        cparams = _carry.layer_params(params, 0)
        xs = model.apply(params, jnp.asarray(batch["inputs"]), method="embed_inputs")
        out = {}
        if "grad_norms" in probes:
            loss = dataset.model_spec.get("loss", "xent")
            g = np.asarray(model_grad_norms(model, params, batch, loss=loss)["layer_0"]["total"])
            g = g[g > 0]  # exact zeros (dead ReLU units) have no logarithm
            out["grad_norms/first"], out["grad_norms/last"] = g[0], g[-1]
            out["grad_norms/log_decay_per_step"] = decay_rate(g)
        if "state_norms" in probes:
            n = np.asarray(cell_state_norms(cell, cparams, xs)["total"])
            out["state_norms/mean"], out["state_norms/last"] = n.mean(), n[-1]
        if "lyapunov" in probes:
            for i, lam in enumerate(np.asarray(cell_lyapunov(cell, cparams, xs, k=lyapunov_k))):
                out[f"lyapunov/{i}"] = lam
        if "jacobian" in probes:
            out["jacobian/top_sv_max_lag"] = cell_jacobian_spectrum(cell, cparams, xs[0])[0, 0]
        if "spectral" in probes:
            for name, stats in cell_spectral(cell, cparams, xs.shape[-1]).items():
                out.update({f"spectral/{name}/{k}": v for k, v in stats.items()})
        if "saturation" in probes:
            for name, stats in cell_saturation(cell, cparams, xs).items():
                out[f"saturation/{name}"] = stats["saturated"]
        # Scalars only: the metrics writer reads array values as per-seed lists.
        return {f"probe/{k}": float(v) for k, v in out.items()}

    return hook
