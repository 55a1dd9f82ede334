"""What a cell offers the engine, asked in one place: :func:`capabilities`.

The engine never branches on a cell's name. A cell declares (``docs/engine.md`` has the whole
contract, with what each declaration buys):

* the fused-backward contract, three methods with
  ``step(carry, xp_t) == gates(carry, xp_t, recurrent_state(carry) @ W_h + b_h)``:
  ``recurrent_kernel() -> (W_h [H, G], b_h [G] or None)``, ``recurrent_state(carry) -> h
  [..., H]``, ``gates(carry, xp_t, hr_t) -> (carry, y_t)``; optionally a ``dense_recurrence``
  property that is False for configurations they do not cover (GRU ``convention="cho"``);
* its linear form, for the associative scan: ``linear_coeffs(xp) -> (a, b)`` and
  ``readout(h, xp) -> y`` with ``h_t = a_t * h_{t-1} + b_t``;
* a native kernel, as ``native = Adapter()`` in its own class (a subclass inherits none: it may
  change the gate math the kernel hard-codes); the adapter contract is in
  :mod:`rnnlab.engine.loops.native`;
* ``read_ahead = False`` when its gate math gains nothing from reading inputs a step early;
* ``output(carry, xp_t)`` when ``y_t`` is not a leaf of the carry (for the perturbation hook).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn

FUSED_METHODS = ("recurrent_kernel", "recurrent_state", "gates")
LINEAR_METHODS = ("linear_coeffs", "readout")


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What a cell offers; each ``*_why`` is None when offered, else why not (for the plan)."""

    fused_why: str | None
    linear_why: str | None
    native: Any  # the cell's native adapter (kernel, gates, forward, backward, final), or None
    native_why: str | None
    read_ahead: bool
    output: str  # "leaf" (y_t is a leaf of the carry: checked at trace time) or "output()"

    @property
    def fused(self) -> bool:
        return self.fused_why is None

    @property
    def linear(self) -> bool:
        return self.linear_why is None


def _missing(cls: type, methods) -> list[str]:
    return [m for m in methods if not callable(getattr(cls, m, None))]


def capabilities(cell: nn.Module) -> Capabilities:
    """What ``cell`` (an unbound cell) declares, and for each loop it does not, why."""
    cls = type(cell)
    missing = _missing(cls, FUSED_METHODS)
    if missing:
        fused_why = f"no fused-backward contract (lacks {', '.join(missing)})"
    elif not getattr(cell, "dense_recurrence", True):
        fused_why = "the cell's dense_recurrence is False for this configuration"
    else:
        fused_why = None
    missing = _missing(cls, LINEAR_METHODS)
    linear_why = f"not linear in the state (no {', '.join(missing)})" if missing else None
    adapter, native_why = None, None
    if "native" not in vars(cls):
        inherited = getattr(cls, "native", None) is not None
        native_why = (
            f"{cls.__name__} inherits a native adapter but does not declare one itself "
            "(a subclass may change the gate math the kernel hard-codes)"
            if inherited
            else "the cell declares no native kernel adapter"
        )
    else:
        adapter = cell.native
        if adapter is None:
            native_why = "no native kernel for this configuration of the cell"
        elif fused_why is not None:
            adapter, native_why = None, f"a native adapter needs the fused contract: {fused_why}"
    return Capabilities(
        fused_why=fused_why,
        linear_why=linear_why,
        native=adapter,
        native_why=native_why,
        read_ahead=bool(getattr(cell, "read_ahead", True)),
        output="output()" if hasattr(cls, "output") else "leaf",
    )
