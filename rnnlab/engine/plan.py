"""The plan: which loop, input feed, remat and read-ahead a layer gets on this device, and why
not the faster loops. Every rule and threshold of the engine is in this file, in two tables:

* :data:`THRESHOLDS` -- the numbers, each beside the benchmark command that set it (the
  measurements live in BENCHMARKS.md);
* :data:`RULES` -- per loop, fastest first, the conditions that rule it out, each with the
  reason the plan prints. A layer takes the first loop none of whose rules fire.

Then :func:`plan` (cell, input shape and dtype, options, devices -> :class:`Plan`) and the
feed choice. ``rnnlab explain`` prints plans; every run stores them in ``workdir/plan.json``.
The model config steers them (``model.backward``, ``model.scan``, ``model.remat``,
``model.unroll``); the ``RNNLAB_NATIVE*`` environment variables (:mod:`.kernels`) are
documented overrides, recorded in the plan. Shapes: ``B`` batch, ``T`` time, ``D`` input, ``G``
projected input, ``H`` hidden, ``V`` vocabulary.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from rnnlab.engine import contract, kernels
from rnnlab.engine.loops import common

BACKWARDS = ("auto", "autodiff", "fused")
SCANS = ("auto", "sequential", "associative")
REMATS = (False, True, "chunked")

THRESHOLDS: dict[str, Any] = {
    # backward="auto" takes the fused backward (XLA or native) from this H on. At H=64 LSTM
    # train 9.2 -> 8.1 ms, GRU 7.5 -> 7.6; at H=32 the GRU was 1.13x slower fused:
    #   python benchmarks/ab.py --set 'FUSED_MIN_HIDDEN=64' --cell lstm --hidden 64
    "fused_min_hidden": 64,
    # With a fused loop, an input no wider than this (and D < G) is projected inside the loop
    # instead of hoisted (one [B, D] x [D, G] matmul per step keeps xp_t hot):
    #   python benchmarks/ab.py --set 'IN_LOOP_MAX_D={}' --cell gru --hidden 256
    # GPU/TPU: not measured; hoisted, as cuDNN does.
    "in_loop_max_d": {"cpu": 128},
    # Token inputs project the table's V rows once and gather when V < T*B (else embed first):
    #   python benchmarks/ab.py --both 'FOLD_EMBEDDING=False' --cell lstm --hidden 512
    "fold_embedding": True,
    # scan="auto" takes the associative scan for linear cells from this T on. CPU: never (0.7-
    # 0.8x the sequential scan at T = 1024 and 4096): python benchmarks/scan_crossover.py
    # GPU/TPU: not measured here; a log-depth scan is the usual choice for long T.
    "associative_min_t": {"gpu": 64, "tpu": 64},
    # The native kernels pack W_h once per call; below this many rows T*B (sampling: T = B = 1)
    # the packing outweighs the loop: python benchmarks/harness.py (sampling chars/s)
    "native_min_rows": 64,
    # Backends with native kernels (rnnlab/native/recurrent_cpu.cc: AVX-512, XLA:CPU FFI).
    "native_backends": ("cpu",),
    # Backends where the read-ahead scan pays (common.READ_AHEAD):
    #   python benchmarks/ab.py --set 'READ_AHEAD={}' --cell gru --hidden 512
    "read_ahead_backends": tuple(common.READ_AHEAD),
}


@dataclasses.dataclass(frozen=True)
class Request:
    """The facts a plan is made from (see :func:`plan`)."""

    caps: contract.Capabilities
    B: int
    T: int
    D: int
    H: int
    G: int  # the narrowest projected width
    vocab: int | None  # token inputs: the table's V rows; else None
    float32: bool  # weights, carry, inputs and perturbation all float32
    matmul_dtype: bool  # the cell sets matmul_dtype
    backward: str
    scan: str
    remat: Any
    states: bool
    backend: str
    devices: int


def _below_fused_threshold(q: Request) -> str | None:
    least = THRESHOLDS["fused_min_hidden"]
    if q.backward == "auto" and q.H < least:
        return f"H={q.H} is below the fused backward's threshold {least} (backward='auto')"
    return None


def _associative_threshold(q: Request) -> str | None:
    least = THRESHOLDS["associative_min_t"].get(q.backend)
    if q.scan != "auto":
        return None
    if least is None:
        return f"the sequential scan is faster on {q.backend} at every T measured (scan='auto')"
    return q.T < least and f"T={q.T} is below the associative scan's threshold {least}" or None


#: Per loop, fastest first: the rules that rule it out (each gives its reason, or None/False).
#: The associative scan comes first (log depth in T, where it applies: linear cells); a cell is
#: either linear or dense, so the two never compete.
RULES = {
    "associative": (
        lambda q: q.caps.linear_why,
        lambda q: q.scan == "sequential" and "scan='sequential' was asked for",
        lambda q: q.remat is True and "per-step remat was asked for (the scan has no steps)",
        _associative_threshold,
    ),
    "native": (
        lambda q: q.caps.native_why,
        lambda q: q.backward == "autodiff" and "backward='autodiff' was asked for",
        lambda q: q.scan == "associative" and "scan='associative' was asked for",
        _below_fused_threshold,
        lambda q: (
            q.backend not in THRESHOLDS["native_backends"]
            and f"the native kernels are for {'/'.join(THRESHOLDS['native_backends'])}, "
            f"not {q.backend}"
        ),
        lambda q: (
            q.devices > 1
            and f"{q.devices} devices: XLA's SPMD partitioner would gather the whole batch "
            "onto every device around the kernel's custom call"
        ),
        lambda q: not q.float32 and "the kernels compute in float32 only",
        lambda q: q.matmul_dtype and "the cell sets matmul_dtype (the kernels are float32)",
        lambda q: q.states and "return_states was asked for (the kernels keep no states)",
        lambda q: q.remat is True and "per-step remat was asked for",
        lambda q: (
            q.T * q.B < THRESHOLDS["native_min_rows"]
            and f"T*B={q.T * q.B} rows, below the kernels' threshold {THRESHOLDS['native_min_rows']}"
        ),
        lambda q: (
            kernels.threads(q.H) == 0
            and f"H={q.H} is not a multiple of {kernels.PANEL} (the kernels' panel)"
        ),
        lambda q: kernels.unavailable(),
    ),
    "fused": (
        lambda q: q.caps.fused_why,
        lambda q: q.backward == "autodiff" and "backward='autodiff' was asked for",
        lambda q: q.scan == "associative" and "scan='associative' was asked for",
        _below_fused_threshold,
    ),
    "autodiff": (),
}

#: how a plan names each loop, and (second) the backward pass it gives
LOOP_NAMES = {
    "associative": ("associative scan", ""),
    "native": ("native {kernel} kernel", "fused backward"),
    "fused": ("XLA scan", "fused backward"),
    "autodiff": ("XLA scan", "autodiff backward"),
}
#: how a plan names a loop it did not take
DECLINED_NAMES = {
    "associative": "associative scan",
    "native": "native kernel",
    "fused": "fused backward",
}
#: how a plan names each input feed
FEED_NAMES = {
    "tokens": "token feed: the table projected once, rows gathered in the loop",
    "gathered": "gathered feed: the table projected once, rows gathered before the loop",
    "in_loop": "in-loop feed: x_t projected inside the loop",
    "rows": "hoisted feed: one [T*B, D] projection before the loop",
    "hoisted": "hoisted feed: one [B, T, D] projection before the loop",
}


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one layer and direction runs: see :data:`RULES` and :data:`THRESHOLDS`."""

    loop: str  # native | associative | fused | autodiff
    feed: str  # tokens | gathered | in_loop | rows | hoisted
    embed_first: bool  # token inputs embedded before the projection (V >= T*B)
    remat: Any  # False | True (per step) | "chunked"
    read_ahead: bool
    unroll: int
    states: bool  # the carry after every step is returned
    kernel: str | None  # the native kernel (loop "native")
    declined: tuple[tuple[str, str], ...]  # (faster loop, why not), fastest first
    cell: str = ""
    shape: tuple[int, ...] = ()  # (B, T, D, H); T is a chunk's with remat="chunked"
    backend: str = ""
    devices: int = 1
    asked: tuple[tuple[str, Any], ...] = ()  # the options that were not "auto"
    env: tuple[tuple[str, str], ...] = ()  # the RNNLAB_NATIVE* overrides that are set
    where: str = ""  # e.g. "layer 0 forward"

    @property
    def feed_kind(self) -> str:
        """The :class:`common.Feed` kind the loop reads."""
        return {"tokens": "ids", "in_loop": "x"}.get(self.feed, "xp")

    def describe(self) -> str:
        """One line: ``layer 0 forward: native lstm kernel (fused backward, token feed); ...``."""
        name, backward = LOOP_NAMES[self.loop]
        feed = FEED_NAMES[self.feed].split(":")[0] + (
            ", embedded first" if self.embed_first else ""
        )
        extras = [e for e in (backward, feed) if e]
        if self.remat:
            extras.append("remat per step" if self.remat is True else f"remat {self.remat}")
        if self.read_ahead:
            extras.append("read-ahead")
        head = f"{self.where}: " if self.where else ""
        parts = [f"{head}{name.format(kernel=self.kernel)} ({', '.join(extras)})"]
        for loop, why in self.declined:
            verb = "not applicable" if why.startswith(_NOT_APPLICABLE) else "not taken"
            parts.append(f"{DECLINED_NAMES[loop]} {verb}: {why}")
        if self.env:
            parts.append("environment: " + " ".join(f"{k}={v}" for k, v in self.env))
        return "; ".join(parts)

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["describe"] = self.describe()
        return out


_NOT_APPLICABLE = ("not linear", "no fused", "the cell", "no native", "a native adapter")


@dataclasses.dataclass(frozen=True)
class Options:
    """The layer's options that the plan reads (validated here)."""

    backward: str = "auto"
    scan: str = "auto"
    remat: Any = False
    unroll: int = 1
    states: bool = False

    def __post_init__(self):
        if self.backward not in BACKWARDS:
            raise ValueError(f"backward must be one of {BACKWARDS}, got {self.backward!r}")
        if self.scan not in SCANS:
            raise ValueError(f"scan must be one of {SCANS}, got {self.scan!r}")
        if not (self.remat is False or self.remat is True or self.remat == "chunked"):
            raise ValueError(f"remat must be one of {REMATS}, got {self.remat!r}")
        if not isinstance(self.unroll, int) or self.unroll < 1:
            raise ValueError(f"unroll must be an int >= 1, got {self.unroll!r}")


def _refuse(cell, caps: contract.Capabilities, options: Options) -> None:
    """An explicit loop the cell cannot take is an error, before any work."""
    name = f"{type(cell).__module__}.{type(cell).__name__}"
    if options.backward == "fused" and not caps.fused:
        raise ValueError(
            f"backward='fused' needs the fused-backward contract ({', '.join(contract.FUSED_METHODS)}"
            f"; docs/engine.md): {name} has {caps.fused_why}; use 'auto' or 'autodiff'"
        )
    if options.scan == "associative" and not caps.linear:
        raise ValueError(
            "scan='associative' needs a cell linear in its state (with linear_coeffs and "
            f"readout: mingru, minlstm, lru); {name} is {caps.linear_why}"
        )
    if options.scan == "associative" and options.remat is True:
        raise ValueError("scan='associative' has no steps to rematerialize: use remat='chunked'")


def plan(
    cell,
    shape: tuple[int, int, int],
    dtype=jnp.float32,
    *,
    vocab: int | None = None,
    options: Options = Options(),
    devices: int | None = None,
    dtypes: tuple = (),
    widths: tuple[int, ...] = (),
    chunk: int | None = None,
    where: str = "",
) -> Plan:
    """The plan of one layer and direction.

    Args:
      cell: an unbound cell.
      shape: ``(B, T, D)`` of its inputs (``D`` the embedding width for token ids).
      dtype: the inputs' dtype (the table's, for token ids).
      vocab: ``V`` when the inputs are token ids into a ``[V, D]`` table.
      options: backward, scan, remat, unroll, returned states.
      devices: the devices the batch is split over (default ``jax.device_count()``).
      dtypes: every dtype the loop computes in (weights, carry, perturbation); default: the
        cell's computation dtype, else ``dtype`` and its ``param_dtype``.
      widths: the projected widths ``G`` (default: from an abstract ``project``).
      chunk: with ``remat="chunked"``, the chunk length (the loops see ``T = chunk``).
      where: a label, e.g. ``"layer 0 forward"``.
    """
    B, T, D = shape
    T = chunk or T
    caps = contract.capabilities(cell)
    _refuse(cell, caps, options)
    backend = jax.default_backend()
    if not widths:
        probe = jax.ShapeDtypeStruct((1, D), dtype)
        out = jax.eval_shape(lambda x: _project_abstract(cell, x), probe)
        widths = tuple(a.shape[-1] for a in jax.tree.leaves(out))
    if not dtypes:
        dtypes = (cell.dtype,) if getattr(cell, "dtype", None) else (dtype, cell.param_dtype)
    q = Request(
        caps=caps, B=B, T=T, D=D, H=int(getattr(cell, "hidden_size", 0)), G=min(widths),
        vocab=vocab, float32=all(jnp.dtype(d) == jnp.float32 for d in dtypes),
        matmul_dtype=bool(getattr(cell, "matmul_dtype", None)), backward=options.backward,
        scan=options.scan, remat=options.remat, states=options.states, backend=backend,
        devices=jax.device_count() if devices is None else devices,
    )  # fmt: skip
    declined = []
    for loop, rules in RULES.items():
        why = next((r for r in (rule(q) for rule in rules) if r), None)
        if why is None:
            break
        declined.append((loop, why))
    feed, embed_first = _feed(q, loop)
    read_ahead = (
        loop in ("autodiff", "fused")
        and caps.read_ahead
        and backend in THRESHOLDS["read_ahead_backends"]
        and T >= 2
    )
    asked = tuple(
        (k, getattr(options, k)) for k in ("backward", "scan") if getattr(options, k) != "auto"
    )
    return Plan(
        loop=loop, feed=feed, embed_first=embed_first, remat=options.remat,
        read_ahead=read_ahead, unroll=options.unroll, states=options.states,
        kernel=caps.native.kernel if loop == "native" else None,
        declined=tuple(declined), cell=f"{type(cell).__module__}.{type(cell).__name__}",
        shape=(B, T, D, q.H), backend=backend, devices=q.devices, asked=asked,
        env=tuple(sorted(kernels.environment().items())), where=where,
    )  # fmt: skip


def _project_abstract(cell, x):
    variables = cell.init(jax.random.key(0), cell.initialize_carry(None, x.shape), x)
    return cell.apply(variables, x, method="project")


def _feed(q: Request, loop: str) -> tuple[str, bool]:
    """``(feed, embed_first)``: how the inputs reach the loop (see :data:`FEED_NAMES`)."""
    fused = loop in ("fused", "native")
    in_loop = THRESHOLDS["in_loop_max_d"].get(q.backend, 0)
    tokens = q.vocab is not None
    embed_first = tokens and (q.vocab >= q.T * q.B or not THRESHOLDS["fold_embedding"])
    if tokens and not embed_first:
        return ("tokens" if fused and in_loop else "gathered"), False
    if fused and q.D <= in_loop and q.D < q.G:
        return "in_loop", embed_first
    # over [T*B, D] rows, so XLA does not transpose the [T, B, G] cotangent for dW_x
    # (LSTM-512 D=512 train step 176.4 -> 171.4 ms, GRU-512 D=256 118.9 -> 113.9, one A/B)
    return ("rows" if q.D <= q.G else "hoisted"), embed_first


# ----------------------------------------------------------------- recording (rnnlab.explain)

_RECORDERS: list[list[Plan]] = []


@contextlib.contextmanager
def recording():
    """Collect the plan of every layer traced inside the block (``with recording() as plans``)."""
    plans: list[Plan] = []
    _RECORDERS.append(plans)
    try:
        yield plans
    finally:
        _RECORDERS.remove(plans)


def record(p: Plan) -> Plan:
    """Hand ``p`` to the innermost :func:`recording` block, if any; returns ``p``."""
    if _RECORDERS:
        _RECORDERS[-1].append(p)
    return p
