"""The RNN layer: stacking, bidirectional, dropout, residual connections and the initial carry
(zeros, learned, or given), over the one-layer engine (:func:`rnnlab.engine.run.unroll`).

Params: ``params["layer_{l}"] = {"fwd": cell params, "bwd": ...}``; with
``initial_carry="learned"`` also ``params["carry0_{l}"]``. Shape legend: ``B`` batch, ``T``
time, ``D`` input, ``H`` hidden, ``O`` cell output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from rnnlab import cells as cell_registry
from rnnlab import regularizers
from rnnlab.engine import run
from rnnlab.engine.inputs import (
    Embedded,
    as_inputs,
    check_inputs,
    check_params,
    input_shape,
    take_rows,
)

DIRECTIONS = {"fwd": "forward", "bwd": "backward"}


class RNNOutput(NamedTuple):
    """What :class:`RNN` returns.

    Attributes:
      outputs: ``[B, T, O]`` (``[B, T, 2*O]`` when bidirectional: forward then backward);
        zero at padded steps.
      final_carry: one entry per layer: the carry after each sequence's last valid step, or a
        ``(forward, backward)`` pair when bidirectional.
      states: ``None`` unless asked for; else one entry per layer: the carry after every step,
        each leaf ``[B, T, ...]`` (a ``(forward, backward)`` pair when bidirectional).
    """

    outputs: jax.Array
    final_carry: list
    states: list | None


def make_cell(cell: str | type, hidden_size: int, options: Mapping | None = None, **common):
    """Instantiate an unbound cell from a registry name (or a ``Cell`` class)."""
    cls = cell_registry.get(cell) if isinstance(cell, str) else cell
    options = dict(options or {})
    try:
        return cls(hidden_size=hidden_size, **options, **common, parent=None)
    except TypeError as err:
        fields = [f for f in cls.__dataclass_fields__ if f not in ("parent", "name")]
        raise ValueError(
            f"bad option for cell {getattr(cls, '__module__', cls)}: {err}. "
            f"Valid options: {', '.join(fields)}"
        ) from None


class RNN(nn.Module):
    """A stack of recurrent layers over batch-major sequences, each layer and direction run by
    :func:`rnnlab.engine.run.unroll` with its own plan (``rnnlab.explain`` prints them).

    ``RNN("lstm", 128, num_layers=2, bidirectional=True)(x [B, T, D], seq_lengths=[B])``
    returns an :class:`RNNOutput` with ``outputs [B, T, 256]``.

    Params: ``params["layer_{l}"] = {"fwd": cell params, "bwd": ...}``; with
    ``initial_carry="learned"`` also ``params["carry0_{l}"]`` (one carry per direction, without
    the batch axis, broadcast over the batch).
    """

    cell: str | type  # registry name (rnnlab.cells.names()) or a Cell class
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0  # between layers (not after the last), as in PyTorch
    residual: bool = False  # y_l = f_l(x_l) + x_l for layers whose input and output widths match
    initial_carry: str = "zeros"  # zeros | learned (a given carry is passed to __call__)
    remat: bool | str = False  # True (per step) | "chunked" (sqrt(T) chunks; see engine.run)
    unroll: int = 1
    backward: str = "auto"  # auto | autodiff | fused (see unroll)
    scan: str = "auto"  # auto | sequential | associative (linear cells; see unroll)
    cell_options: Mapping | None = None  # the cell's own fields, e.g. {"forget_bias": 1.0}
    dtype: Any = None
    param_dtype: Any = jnp.float32
    # Regularizers (rnnlab.regularizers, docs/regularization.md); each p is a drop probability
    # in [0, 1), inverted dropout (zoneout: the probability of keeping the old value).
    variational_dropout_in: float = 0.0  # locked: the stack's input, one [B, D] mask a sequence
    variational_dropout_out: float = 0.0  # locked: every layer's output, one mask a sequence
    recurrent_dropout: float = 0.0  # h_{t-1} where it enters W_h, one [B, H] mask a sequence
    zoneout_c: float = 0.0  # zoneout on an LSTM's c (Krueger et al. 2017)
    zoneout_h: float = 0.0  # zoneout on h (the state y_t is read from)
    weight_drop: float = 0.0  # DropConnect on W_h, one mask per batch (Merity et al. 2017)

    def __post_init__(self):
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {self.num_layers}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.initial_carry not in ("zeros", "learned"):
            raise ValueError(
                f"initial_carry must be 'zeros' or 'learned', got {self.initial_carry!r}"
            )
        cell = self.make_cell()  # unknown cell names and options fail here, at construction
        for name in ("variational_dropout_in", "variational_dropout_out", "weight_drop"):
            regularizers.check_rate(name, getattr(self, name))
        regularizers.check_weight_drop(cell, self.weight_drop)
        regularizers.check_step_options(cell, self.hidden_size, **self.step_regularizers)
        if any(self.step_regularizers.values()) and (
            self.backward == "fused" or self.scan == "associative"
        ):
            raise ValueError(
                f"{self.step_regularizers} change the step, which only the autodiff loop runs; "
                f"backward={self.backward!r} and scan={self.scan!r} cannot apply them: use "
                "backward='auto' or 'autodiff' and scan='auto' or 'sequential'"
            )
        super().__post_init__()

    @property
    def step_regularizers(self) -> dict:
        """The options that live inside the time loop (:class:`rnnlab.regularizers.Regularized`)."""
        return {
            "zoneout_c": self.zoneout_c,
            "zoneout_h": self.zoneout_h,
            "recurrent_dropout": self.recurrent_dropout,
        }

    def make_cell(self) -> nn.Module:
        """The unbound cell every layer and direction uses (each with its own params)."""
        return make_cell(
            self.cell,
            self.hidden_size,
            self.cell_options,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )

    @property
    def directions(self) -> tuple[str, ...]:
        return ("fwd", "bwd") if self.bidirectional else ("fwd",)

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        seq_lengths: jax.Array | None = None,
        initial_carry: Sequence | None = None,
        *,
        deterministic: bool = True,
        perturbation: Sequence | None = None,
        return_states: bool = False,
    ) -> RNNOutput:
        """Run the stack.

        Args:
          x: ``[B, T, D]``, or :class:`Embedded` token ids into an embedding table (the first
            layer then projects the table's rows, not the embedded tokens).
          seq_lengths: ``[B]`` valid lengths of right-padded sequences.
          initial_carry: one carry per layer (a ``(fwd, bwd)`` pair when bidirectional);
            overrides zeros/learned.
          deterministic: disable dropout (needs a ``"dropout"`` rng when False).
          perturbation: one carry-shaped pytree of ``[B, T, ...]`` leaves per layer (a pair
            when bidirectional), added to the carry after every step (see :func:`rnnlab.unroll`).
          return_states: also return every layer's carry after every step.
        """
        check_inputs(x, seq_lengths, where=f"RNN({self.cell!r})")
        x = as_inputs(x)
        seq_lengths = None if seq_lengths is None else jnp.asarray(seq_lengths)
        for name, given in (("initial_carry", initial_carry), ("perturbation", perturbation)):
            if given is not None and len(given) != self.num_layers:
                raise ValueError(
                    f"{name} must hold one entry per layer ({self.num_layers}), got {len(given)}"
                )
        cell = self.make_cell()
        if self.variational_dropout_in > 0 and not deterministic:  # tokens: embedded first
            x = take_rows(x.table, x.ids) if isinstance(x, Embedded) else x
            key = self.make_rng("dropout")
            x = regularizers.locked_dropout(key, x, self.variational_dropout_in)
        B, T = input_shape(x)[:2]
        finals, all_states = [], []
        for layer in range(self.num_layers):
            D = input_shape(x)[-1]
            dtype = (x.table if isinstance(x, Embedded) else x).dtype
            init_fn = lambda rng, D=D, dtype=dtype: {
                d: cell.init(k, cell.initialize_carry(None, (1, D)), jnp.zeros((1, D), dtype))
                for d, k in zip(self.directions, jax.random.split(rng, len(self.directions)))
            }
            if self.has_variable("params", f"layer_{layer}"):  # apply: check before Flax does
                given = self.get_variable("params", f"layer_{layer}")["fwd"]
                check_params(cell, given, D, where=f"RNN layer {layer}")
            layer_params = self.param(f"layer_{layer}", init_fn)

            carries = self._initial_carries(cell, layer, B, D, initial_carry)
            outs, layer_finals, layer_states = [], [], []
            for i, d in enumerate(self.directions):
                eps = None
                if perturbation is not None:
                    eps = perturbation[layer][i] if self.bidirectional else perturbation[layer]
                params, run_cell, carry0, where = layer_params[d], cell, carries[i], ""
                if self.weight_drop > 0 and not deterministic:  # before the loop: any loop
                    key = self.make_rng("dropout")
                    params = regularizers.weight_drop(cell, params, self.weight_drop, key)
                steps = {k: v for k, v in self.step_regularizers.items() if v}
                if deterministic:  # recurrent dropout is the identity in expectation
                    steps.pop("recurrent_dropout", None)
                if steps:  # the step changes: the autodiff loop (the plan's `where` says why)
                    key = None if deterministic else self.make_rng("dropout")
                    run_cell = regularizers.regularized(
                        cell, D, **steps, key=key, variables=params, B=B, T=T
                    )
                    carry0 = run_cell.wrap(carry0)
                    eps = None if eps is None else run_cell.wrap(eps, time_axis=True)
                    where = f" [{', '.join(f'{k}={v}' for k, v in steps.items())}: in the step]"
                final, ys, states = run.unroll(
                    run_cell,
                    params,
                    x,
                    carry0,
                    seq_lengths=seq_lengths,
                    reverse=(d == "bwd"),
                    perturbation=eps,
                    return_states=return_states,
                    remat=self.remat,
                    unroll=self.unroll,
                    backward=self.backward,
                    scan=self.scan,
                    where=f"{self.name or 'rnn'} layer {layer} {DIRECTIONS[d]}{where}",
                )
                if run_cell is not cell:
                    final = run_cell.unwrap(final)
                    states = None if states is None else run_cell.unwrap(states)
                outs.append(ys)
                layer_finals.append(final)
                layer_states.append(states)
            y = outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=-1)
            pick = lambda items: tuple(items) if self.bidirectional else items[0]
            finals.append(pick(layer_finals))
            all_states.append(pick(layer_states))
            if self.residual and layer > 0 and y.shape[-1] == x.shape[-1]:
                y = y + x
            if layer < self.num_layers - 1 and self.dropout > 0:
                y = nn.Dropout(self.dropout)(y, deterministic=deterministic)
            if self.variational_dropout_out > 0 and not deterministic:
                y = regularizers.locked_dropout(
                    self.make_rng("dropout"), y, self.variational_dropout_out
                )
            x = y
        return RNNOutput(x, finals, all_states if return_states else None)

    def _initial_carries(self, cell, layer, B, D, given) -> list:
        if given is not None:
            return list(given[layer]) if self.bidirectional else [given[layer]]
        zeros = cell.initialize_carry(None, (B, D))
        if self.initial_carry == "zeros":
            return [zeros for _ in self.directions]
        learned = self.param(
            f"carry0_{layer}",
            lambda rng: {
                d: jax.tree.map(lambda z: jnp.zeros(z.shape[1:], z.dtype), zeros)
                for d in self.directions
            },
        )
        return [
            jax.tree.map(lambda c, z: jnp.broadcast_to(c, z.shape), learned[d], zeros)
            for d in self.directions
        ]
