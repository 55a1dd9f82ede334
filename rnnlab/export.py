"""Export a trained character model's single step with ``jax.export``, parameters included.

The artifact is one serialized :class:`jax.export.Exported` of

    step(carry, token) -> (carry, logits)
    carry:  a tuple of float32 arrays, the cell carries of every layer flattened
            (LSTM: (c_1, h_1, c_2, h_2, ...), each [B, H]; GRU/Elman: (h_1, ...))
    token:  int32 [B], ids into the run's vocabulary
    logits: float32 [B, V], the unnormalized log-probabilities of the next character

with the checkpoint's parameters closed over (constants in the module), so the file alone runs
the model: ``jax.export.deserialize(blob).call(carry, token)`` needs only JAX, not rnnlab. The
batch size ``B`` is fixed at export (default 1, the metadata's ``batch``): the engine chooses
its loop from the shapes (e.g. whether to project the embedding table), which a symbolic
batch cannot decide.

Which loop: the step runs the model on ``[B, 1]`` tokens through the engine built with
``backward="autodiff"``, so it is the plain XLA scan of the cell's ``step`` (one step, no custom
VJP); the native CPU kernels (:mod:`rnnlab.native`, an XLA custom call with no compatibility
guarantee, which ``jax.export`` refuses to serialize) only run inside the fused path, and are
also switched off (``RNNLAB_NATIVE=0`` semantics) while tracing. The metadata says so.

Platforms: lowered for ``("cpu", "cuda")`` when that lowers (a multi-platform artifact runs on
either), else for ``("cpu",)`` with the reason in the metadata's ``note``.

Beside the artifact, ``FILE.json`` records: ``vocab`` (the characters, id ``i`` is
``vocab[i]``), ``carry`` (shape and dtype per leaf), ``initial_carry``
("zeros", or the learned carry's values), the platforms, the loop path, the checkpoint step,
the cell and the JAX version.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

#: the loop the exported step runs, as recorded in the metadata
PATH = (
    "XLA scan of the cell's step (engine backward='autodiff'; native CPU custom-call kernels off)"
)
PLATFORMS = ("cpu", "cuda")


@dataclass
class StepModel:
    """A run's model as a single step: ``step(carry_leaves, token [B]) -> (leaves, logits)``."""

    step: Callable  # (tuple of [B, ...] leaves, int32 [B]) -> (tuple of leaves, [B, V] logits)
    initial_carry: Callable  # B -> tuple of [B, ...] leaves: the carry before the first character
    learned_carry: bool  # whether initial_carry is the model's learned carry (else zeros)
    vocab: Any  # rnnlab.data.text.Vocab
    run: Any  # rnnlab.train.Run
    treedef: Any  # the carry's pytree structure (per layer), for unflattening
    apply_step: Callable  # (variables, leaves, token) -> (leaves, logits): params as an input
    variables: Any  # {"params": ...} of the checkpoint


def step_model(workdir) -> StepModel:
    """Load ``workdir``'s best checkpoint and wrap its char model as a single step.

    The model is rebuilt with ``model.backward="autodiff"`` (same parameters, the XLA scan; see
    the module docstring). Raises ValueError for a run that is not a unidirectional character
    language model.
    """
    from rnnlab import models
    from rnnlab.sample import run_vocab
    from rnnlab.train import load_run

    run = load_run(workdir)
    vocab = run_vocab(run)  # raises for a run without a character vocabulary
    spec = run.model_spec
    if spec.get("readout", "all") != "all" or not spec.get("vocab_size"):
        raise ValueError(
            f"{str(run.workdir)!r}: expected a character language model (token inputs, a "
            f"prediction per step), got model_spec {spec}"
        )
    config = run.config.model
    if config.get("bidirectional", False):
        raise ValueError("a bidirectional model reads the future: it cannot run step by step")
    model_config = json.loads(json.dumps(config.to_dict()))
    model_config["backward"] = "autodiff"  # the exportable loop (no custom VJP, no kernel)
    import ml_collections

    model = models.build(ml_collections.ConfigDict(model_config), spec)
    variables = {"params": run.params}
    learned = model.initial_carry == "learned"

    # the carry's structure from one throwaway step (shapes only)
    _, carry, _ = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((1, 1), jnp.int32)), variables)
    leaves, treedef = jax.tree.flatten(carry)

    def initial_carry(B: int):
        if not learned:
            return tuple(jnp.zeros((B, *a.shape[1:]), a.dtype) for a in leaves)
        out = []
        for layer in range(len(carry)):  # the learned carry0 of each layer, broadcast over B
            stored = jax.tree.leaves(run.params["rnn"][f"carry0_{layer}"]["fwd"])
            shapes = jax.tree.leaves(carry[layer])
            out += [jnp.broadcast_to(c, (B, *a.shape[1:])) for c, a in zip(stored, shapes)]
        return tuple(out)

    def apply_step(variables, carry_leaves, token):
        carry = jax.tree.unflatten(treedef, list(carry_leaves))
        logits, new_carry, _ = model.apply(variables, token[:, None], carry)
        return tuple(jax.tree.leaves(new_carry)), logits[:, 0].astype(jnp.float32)

    def step(carry_leaves, token):  # the parameters closed over: constants of the export
        return apply_step(variables, carry_leaves, token)

    return StepModel(step, initial_carry, learned, vocab, run, treedef, apply_step, variables)


def _native_off():
    """Context: ``RNNLAB_NATIVE=0`` while tracing (belt and braces: the autodiff path never
    reaches the kernels; this keeps a future dispatch change from slipping one in)."""
    import contextlib

    @contextlib.contextmanager
    def ctx():
        old = os.environ.get("RNNLAB_NATIVE")
        os.environ["RNNLAB_NATIVE"] = "0"
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("RNNLAB_NATIVE", None)
            else:
                os.environ["RNNLAB_NATIVE"] = old

    return ctx()


def export_step(sm: StepModel, *, platforms=PLATFORMS, batch: int = 1):
    """``(Exported, platforms, note)``: the step at batch ``batch`` lowered for ``platforms``
    (falling back to CPU alone, the reason in ``note``)."""
    if int(batch) < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    b, notes = int(batch), []
    leaves = sm.initial_carry(1)
    args = (
        tuple(jax.ShapeDtypeStruct((b, *a.shape[1:]), a.dtype) for a in leaves),
        jax.ShapeDtypeStruct((b,), jnp.int32),
    )
    fn = jax.jit(sm.step)
    with _native_off():
        try:
            exp = jax.export.export(fn, platforms=tuple(platforms))(*args)
        except Exception as err:
            if tuple(platforms) == ("cpu",):
                raise
            notes.append(f"lowering for {tuple(platforms)} failed ({type(err).__name__}: {err}); "
                         "exported for cpu only")  # fmt: skip
            platforms = ("cpu",)
            exp = jax.export.export(fn, platforms=platforms)(*args)
    return exp, tuple(platforms), "; ".join(notes)


def custom_calls(exp) -> list[str]:
    """The custom-call targets in the exported module (``jax.export`` serializes only those
    with a compatibility guarantee; the engine's autodiff path has none)."""
    return sorted(set(re.findall(r"stablehlo\.custom_call @([\w.]+)", exp.mlir_module())))


def export_workdir(workdir, out=None, *, batch: int = 1) -> pathlib.Path:
    """Write ``out`` (default ``WORKDIR/export/step.jax``) and ``out + ".json"``; return ``out``.

    ``batch``: the batch size the artifact takes (fixed: the engine plans its loop from B).
    """
    sm = step_model(workdir)
    exp, platforms, note = export_step(sm, batch=batch)
    b = int(batch)
    calls = custom_calls(exp)
    out = pathlib.Path(out) if out else pathlib.Path(workdir, "export", "step.jax")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        blob = exp.serialize()
    except ImportError as err:  # jax serializes with flatbuffers, an optional dependency
        raise RuntimeError(f"{err}: pip install 'rnnlab[export]' (or flatbuffers)") from None
    out.write_bytes(blob)
    carry = [
        {"shape": [b, *map(int, a.shape[1:])], "dtype": str(a.dtype)} for a in sm.initial_carry(1)
    ]
    meta = {
        "format": "jax.export serialized Exported; jax.export.deserialize(bytes).call(carry, token)",
        "signature": "(carry: tuple of arrays, token: int32 [B]) -> (carry, logits float32 [B, V])",
        "vocab": sm.vocab.chars,
        "vocab_size": len(sm.vocab.chars),
        "carry": carry,
        "initial_carry": (
            [np.asarray(a[0]).tolist() for a in sm.initial_carry(1)]
            if sm.learned_carry
            else "zeros"
        ),
        "batch": b,
        "platforms": list(platforms),
        "path": PATH,
        "custom_calls": calls,
        "note": note,
        "cell": sm.run.config.model.cell,
        "checkpoint_step": sm.run.step,
        "checkpoint": sm.run.which,
        "workdir": str(pathlib.Path(workdir).resolve()),
        "jax_version": jax.__version__,
    }
    pathlib.Path(str(out) + ".json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return out
