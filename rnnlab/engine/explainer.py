"""``rnnlab.explain(model, example_inputs)``: the plan of every layer and direction, as lines.

The model is traced abstractly (``jax.eval_shape`` of its init: nothing is compiled or run)
inside :func:`rnnlab.engine.plan.recording`, which collects the plan each layer makes.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from collections.abc import Mapping

import jax
import jax.numpy as jnp

from rnnlab.engine import kernels
from rnnlab.engine import plan as plan_lib
from rnnlab.engine.inputs import Embedded, input_dtype, input_shape


def plans(model, example_inputs) -> list[plan_lib.Plan]:
    """The plans of ``model`` on ``example_inputs``, in the order its layers run.

    Args:
      model: a Flax module whose layers use the engine (:class:`rnnlab.RNN`, a model of
        :mod:`rnnlab.models`), or an unbound cell (planned as one layer).
      example_inputs: what the model takes: ``[B, T, D]`` features or ``[B, T]`` token ids for
        ``model.init(rng, inputs)``, :class:`rnnlab.Embedded` for a layer or cell, or a batch
        dict (``{"inputs": ..., "targets": ...}``) for a task model's ``loss``. Arrays or
        ``jax.ShapeDtypeStruct``.
    """
    if _is_cell(model):
        xs = example_inputs
        vocab = xs.table.shape[0] if isinstance(xs, Embedded) else None
        p = plan_lib.plan(model, input_shape(xs), input_dtype(xs), vocab=vocab, where="cell")
        return [p]
    key = jax.random.key(0)
    if isinstance(example_inputs, Mapping):
        init = lambda batch: model.init(key, batch, None, method="loss")
    else:
        init = lambda x: model.init(key, x)
    with plan_lib.recording() as recorded:
        jax.eval_shape(init, _abstract(example_inputs))
    seen, out = set(), []
    for p in recorded:  # a layer traced twice (e.g. by a remat'd call) is listed once
        if (p.where, p.describe()) not in seen:
            seen.add((p.where, p.describe()))
            out.append(p)
    return out


def explain(model, example_inputs) -> list[str]:
    """One readable line per layer and direction, e.g. ``"rnn layer 0 forward: native lstm
    kernel (fused backward) (token feed); associative scan not applicable: not linear in the
    state (...)"`` (see :func:`plans`)."""
    return [p.describe() for p in plans(model, example_inputs)]


def _is_cell(model) -> bool:
    return all(callable(getattr(model, m, None)) for m in ("project", "step", "initialize_carry"))


def _abstract(tree):
    def one(a):
        if isinstance(a, jax.ShapeDtypeStruct):
            return a
        a = jnp.asarray(a)
        return jax.ShapeDtypeStruct(a.shape, a.dtype)

    return jax.tree.map(one, tree)


def record_run(model, batch, workdir, *, echo: bool = True) -> list[str]:
    """The plans of a training run: printed (``plan: ...`` lines, when ``echo``) and written to
    ``workdir/plan.json`` (atomically) with the backend, the devices and the ``RNNLAB_NATIVE*``
    overrides in force. ``batch`` is the run's first training batch. Returns the lines."""
    found = plans(model, batch)
    lines = [p.describe() for p in found]
    if echo:
        for line in lines or ["no recurrent layer runs through the engine"]:
            print(f"plan: {line}", flush=True)
    record = {
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "environment": kernels.environment(),
        "plans": [p.to_json() for p in found],
    }
    path = pathlib.Path(workdir) / "plan.json"
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        json.dump(record, f, indent=1, default=str)
    os.replace(f.name, path)
    return lines


def explain_workdir(workdir) -> list[str]:
    """The lines of a run's recorded plan (``workdir/plan.json``)."""
    path = pathlib.Path(workdir) / "plan.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} does not exist: expected the workdir of a run (every run writes its "
            "plan.json); to plan an experiment, give its name: rnnlab explain NAME[:VARIANT]"
        )
    record = json.loads(path.read_text())
    env = " ".join(f"{k}={v}" for k, v in record.get("environment", {}).items())
    head = f"backend {record.get('backend')}, {record.get('devices')} device(s)"
    return [head + (f", environment {env}" if env else "")] + [
        p["describe"] for p in record.get("plans", [])
    ]
