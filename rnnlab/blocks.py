"""The residual block architecture of the modern recurrent papers (``model.architecture=block``).

LRU (Orvieto et al. 2023), Griffin/Hawk (De et al. 2024) and minGRU/minLSTM (Feng et al. 2024)
never use their cell alone under a linear readout: a linear recurrence followed by a linear head
is a linear model of its inputs (on the adding problem its best MSE is (1/6)(1 - 2/T)). They
stack residual blocks, each with a normalization, the recurrence and a gated MLP, so depth and
the MLP supply the nonlinearity. Shapes: ``B`` batch, ``T`` time, ``D`` input features, ``H``
the model width (``hidden_size``: the residual stream and the recurrent layer), ``M`` the MLP
width, ``K`` the head's outputs, ``V`` the vocabulary::

    x_0    = Embed(V, H)(tokens)  or  Dense(H)(features)          [B, T, H]   input encoder
    for l in 0 .. L-1 (L = block_depth):
        u    = Norm(x_l)                                            RMSNorm or LayerNorm (norm)
        u    = CausalConv1D_w(u)     (conv_width w; 0 = off)        Hawk's temporal conv
        r    = RNN_l(u)              one layer of any registered cell (Dense(H) after it when
                                     the cell's output width is not H)
        x'   = x_l + r                                              skip
        v    = Norm(x')
        x_l+1 = x' + W_o (GeLU(W_g v) * (W_v v))                    gated MLP (GeLU GLU), width M
    y      = Dense(K)(Norm(x_L))  at every step, or at the last / mean over valid steps

The causal convolution is depthwise: ``c_t = sum_{k=0}^{w-1} W_k * u_{t-k} + b`` (``W [w, H]``),
with ``u_{t<0}`` taken from the carry: zeros at the start of a sequence, the previous chunk's
last ``w - 1`` inputs in a stream (truncated BPTT), so a stream chunked any way gives the same
outputs as one long sequence. The carry is one dict per block: ``{"rnn": cell carry,
"conv": [B, w-1, H]}`` (no ``"conv"`` when ``conv_width=0``).

What the rest of the lab relies on, kept here:

* the :class:`rnnlab.models.SequenceModel` interface: ``__call__(inputs, carry, *,
  seq_lengths, deterministic, return_states, perturbation) -> (outputs, final_carry, states)``
  and the same ``loss`` (it *is* ``SequenceModel.loss``), so the trainer, masking, multi-seed
  training and the char-LM work unchanged;
* masking: the recurrence freezes each sequence's carry after its end and the convolution is
  causal, so a padded sequence's valid outputs equal running it alone; ``readout="mean"``
  averages valid steps only;
* the probes: each block's recurrent params live at ``params["rnn"]["layer_{l}"]["fwd"]`` (the
  engine RNN stack's own layout), ``num_layers`` is the block count, ``perturbation`` is one
  carry-shaped ``[B, T, ...]`` pytree per block added to that block's recurrent carry after
  every step, and :meth:`embed_inputs` returns what the first recurrent layer reads (encoder,
  norm and conv of block 0), so every probe sees the first block's cell on its real input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rnnlab.engine import make_cell, unroll
from rnnlab.engine.inputs import check_params

NORMS = ("rms", "layer")
READOUTS = ("all", "last", "mean")
LOSSES = ("xent", "mse")


class CausalConv1D(nn.Module):
    """Depthwise causal convolution over time: ``[B, T, H] -> [B, T, H]``.

    ``y_t = sum_{k=0}^{w-1} kernel[k] * x_{t-k} + bias``; ``x_{t<0}`` comes from ``state``
    ``[B, w-1, H]`` (``state[:, -1]`` is ``x_{-1}``). Returns ``(y, new_state)`` where
    ``new_state`` holds the last ``w - 1`` *valid* inputs of each sequence (with
    ``seq_lengths``: those before its end; a length-0 sequence keeps ``state``).
    """

    width: int
    features: int
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, state=None, seq_lengths=None):
        w, (B, T, H) = self.width, x.shape
        # PyTorch's Conv1d default (Mamba's conv): U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = w.
        bound = 1.0 / jnp.sqrt(w)
        uniform = lambda key, shape, dtype: jax.random.uniform(key, shape, dtype, -bound, bound)
        kernel = self.param("kernel", uniform, (w, H), self.param_dtype)
        bias = self.param("bias", uniform, (H,), self.param_dtype)
        kernel, bias, x = nn.dtypes.promote_dtype(kernel, bias, x, dtype=self.dtype)
        if state is None:
            state = jnp.zeros((B, w - 1, H), x.dtype)
        padded = jnp.concatenate([state.astype(x.dtype), x], axis=1)  # [B, w-1+T, H]
        # tap k reads x_{t-k} = padded[:, t + w - 1 - k]
        taps = [kernel[k][None, None] * padded[:, w - 1 - k : w - 1 - k + T] for k in range(w)]
        y = bias[None, None] + sum(taps)
        if seq_lengths is None:
            new_state = padded[:, T:]
        else:  # inputs L_b - w + 1 .. L_b - 1 of sequence b sit at padded[L_b .. L_b + w - 2]
            idx = seq_lengths[:, None] + jnp.arange(w - 1)[None, :]  # [B, w-1]
            new_state = jnp.take_along_axis(padded, idx[..., None], axis=1)
        return y, new_state


class GatedMLP(nn.Module):
    """GeLU GLU: ``[..., H] -> [..., H]``, ``W_o (GeLU(W_g v) * (W_v v))`` with width ``M``."""

    features: int
    width: int
    dtype: Any = None

    @nn.compact
    def __call__(self, v):
        gate = nn.Dense(self.width, dtype=self.dtype, name="gate")(v)
        value = nn.Dense(self.width, dtype=self.dtype, name="value")(v)
        return nn.Dense(self.features, dtype=self.dtype, name="out")(nn.gelu(gate) * value)


class Recurrences(nn.Module):
    """The blocks' recurrent layers: layer ``l`` is one forward engine layer of ``cell`` (its
    params at ``layer_{l}/fwd``, the layout of :class:`rnnlab.RNN`'s stack).

    ``__call__(layer, u [B, T, D], ...)`` runs layer ``layer`` with :func:`rnnlab.unroll`
    (masking, perturbation, return_states, remat, the associative scan of linear cells).
    """

    cell: str | type
    hidden_size: int
    cell_options: Mapping | None = None
    remat: bool | str = False
    unroll: int = 1
    backward: str = "auto"
    scan: str = "auto"
    dtype: Any = None

    def make_cell(self) -> nn.Module:
        return make_cell(self.cell, self.hidden_size, self.cell_options, dtype=self.dtype)

    @nn.compact
    def __call__(self, layer, u, carry=None, *, seq_lengths=None, perturbation=None,
                 return_states=False):  # fmt: skip
        cell, D = self.make_cell(), u.shape[-1]
        init_fn = lambda rng: {
            "fwd": cell.init(rng, cell.initialize_carry(None, (1, D)), jnp.zeros((1, D), u.dtype))
        }
        if self.has_variable("params", f"layer_{layer}"):  # apply: a clear error before Flax's
            check_params(cell, self.get_variable("params", f"layer_{layer}")["fwd"], D,
                         where=f"block {layer} recurrence")  # fmt: skip
        params = self.param(f"layer_{layer}", init_fn)["fwd"]
        return unroll(cell, params, u, carry, seq_lengths=seq_lengths, perturbation=perturbation,
                      return_states=return_states, remat=self.remat, unroll=self.unroll,
                      backward=self.backward, scan=self.scan)  # fmt: skip


class BlockModel(nn.Module):
    """Residual recurrent blocks with a head (see the module docstring for the equations).

    Fields are named after the config's ``model`` keys: ``block_depth`` (L >= 1),
    ``mlp_width`` (M; 0 means 3H, Hawk's expansion), ``norm`` (``"rms"`` | ``"layer"``),
    ``conv_width`` (w; 0 = no convolution, Hawk uses 4), ``hidden_size`` (H), ``cell``,
    ``cell_options``, ``dropout`` (on each residual branch and before the head), and the
    engine's ``remat``, ``unroll``, ``backward``, ``scan``; the dataset fixes
    ``out_features``, ``vocab_size``, ``readout`` and ``loss_type``.
    """

    out_features: int
    hidden_size: int = 128
    cell: str | type = "lstm"
    cell_options: Mapping | None = None
    block_depth: int = 2
    mlp_width: int = 0
    norm: str = "rms"
    conv_width: int = 4
    dropout: float = 0.0
    vocab_size: int | None = None
    readout: str = "all"
    remat: bool | str = False
    unroll: int = 1
    backward: str = "auto"
    scan: str = "auto"
    loss_type: str = "xent"
    dtype: Any = None

    #: the probes follow the forward direction (rnnlab.probes._carry.model_cells)
    bidirectional = False

    def __post_init__(self):
        checks = (
            ("block_depth", self.block_depth >= 1, "an int >= 1"),
            ("mlp_width", self.mlp_width >= 0, "an int >= 0 (0: 3 * hidden_size)"),
            ("conv_width", self.conv_width >= 0, "an int >= 0 (0: no convolution)"),
            ("norm", self.norm in NORMS, f"one of {NORMS}"),
            ("readout", self.readout in READOUTS, f"one of {READOUTS}"),
            ("loss", self.loss_type in LOSSES, f"one of {LOSSES}"),
            ("dropout", 0.0 <= self.dropout < 1.0, "a float in [0, 1)"),
        )
        for key, ok, expected in checks:
            if not ok:
                value = self.loss_type if key == "loss" else getattr(self, key)
                raise ValueError(f"block model: {key} must be {expected}, got {value!r}")
        make_cell(self.cell, self.hidden_size, self.cell_options)  # bad cell/options fail now
        super().__post_init__()

    @property
    def num_layers(self) -> int:
        """One recurrent layer per block (what the probes iterate over)."""
        return self.block_depth

    def setup(self):
        H = self.hidden_size
        if self.vocab_size is not None:
            self.embed = nn.Embed(self.vocab_size, H)
        else:
            self.encoder = nn.Dense(H, dtype=self.dtype)
        norm = (lambda name: nn.RMSNorm(dtype=self.dtype, name=name)) if self.norm == "rms" else (
            lambda name: nn.LayerNorm(dtype=self.dtype, name=name))  # fmt: skip
        L = self.block_depth
        self.pre_norms = [norm(f"norm_rnn_{l}") for l in range(L)]
        self.mlp_norms = [norm(f"norm_mlp_{l}") for l in range(L)]
        self.final_norm = norm("norm_out")
        if self.conv_width:
            self.convs = [CausalConv1D(self.conv_width, H, dtype=self.dtype, name=f"conv_{l}")
                          for l in range(L)]  # fmt: skip
        self.rnn = Recurrences(
            cell=self.cell, hidden_size=H, cell_options=self.cell_options, remat=self.remat,
            unroll=self.unroll, backward=self.backward, scan=self.scan, dtype=self.dtype,
        )  # fmt: skip
        # a cell whose output width is not H (lru with out_features) gets a Dense(H) after it
        if make_cell(self.cell, H, self.cell_options).output_size != H:
            self.rnn_out = [nn.Dense(H, dtype=self.dtype, name=f"rnn_out_{l}") for l in range(L)]
        width = self.mlp_width or 3 * H
        self.mlps = [GatedMLP(H, width, self.dtype, name=f"mlp_{l}") for l in range(L)]
        self.drop = nn.Dropout(self.dropout)
        self.head = nn.Dense(self.out_features, dtype=self.dtype)

    def encode(self, inputs: jax.Array) -> jax.Array:
        """Token ids ``[B, T]`` -> ``Embed`` ``[B, T, H]``; features ``[B, T, D]`` -> ``Dense(H)``."""
        if self.vocab_size is None:
            if inputs.ndim != 3 or not jnp.issubdtype(inputs.dtype, jnp.floating):
                raise ValueError(
                    f"block model: expected float features of shape [B, T, D], "
                    f"got {inputs.dtype} {inputs.shape}"
                )
            return self.encoder(inputs)
        if inputs.ndim != 2 or not jnp.issubdtype(inputs.dtype, jnp.integer):
            raise ValueError(
                f"block model: expected integer token ids of shape [B, T], "
                f"got {inputs.dtype} {inputs.shape}"
            )
        return self.embed(inputs)

    def _mix(self, l, x, carry, seq_lengths):
        """Block ``l``'s norm and conv: the recurrence's input ``[B, T, H]`` and the conv tail."""
        u = self.pre_norms[l](x)
        if not self.conv_width:
            return u, None
        return self.convs[l](u, None if carry is None else carry["conv"], seq_lengths)

    def embed_inputs(self, inputs: jax.Array) -> jax.Array:
        """What the first block's recurrent layer reads: encoder, norm and conv of block 0."""
        return self._mix(0, self.encode(inputs), None, None)[0]

    def __call__(
        self,
        inputs: jax.Array,
        carry: Sequence | None = None,
        *,
        seq_lengths: jax.Array | None = None,
        deterministic: bool = True,
        return_states: bool = False,
        perturbation: Sequence | None = None,
    ):
        """``(outputs, final_carry, states)`` as :class:`rnnlab.models.SequenceModel`'s.

        ``carry`` / ``perturbation``: ``None`` or one entry per block (``len == block_depth``).
        """
        L = self.block_depth
        for name, given in (("carry", carry), ("perturbation", perturbation)):
            if given is not None and len(given) != L:
                raise ValueError(
                    f"block model: {name} must hold one entry per block ({L}), got {len(given)}"
                )
        if seq_lengths is not None:
            seq_lengths = jnp.asarray(seq_lengths)
        x = self.encode(inputs)
        finals, states = [], []
        for l in range(L):
            block_carry = None if carry is None else carry[l]
            u, conv_state = self._mix(l, x, block_carry, seq_lengths)
            rnn_final, r, s = self.rnn(
                l, u, None if block_carry is None else block_carry["rnn"],
                seq_lengths=seq_lengths, return_states=return_states,
                perturbation=None if perturbation is None else perturbation[l],
            )  # fmt: skip
            if hasattr(self, "rnn_out"):
                r = self.rnn_out[l](r)
            x = x + self.drop(r, deterministic=deterministic)
            x = x + self.drop(self.mlps[l](self.mlp_norms[l](x)), deterministic=deterministic)
            finals.append({"rnn": rnn_final} if conv_state is None else
                          {"rnn": rnn_final, "conv": conv_state})  # fmt: skip
            states.append(s)
        y = self.final_norm(x)  # [B, T, H]
        if seq_lengths is not None:  # padded steps read zero (as the engine's outputs do)
            valid = jnp.arange(y.shape[1])[None, :] < seq_lengths[:, None]
            y = jnp.where(valid[..., None], y, jnp.zeros_like(y))
        if self.readout == "last":
            if seq_lengths is None:
                y = y[:, -1]
            else:
                idx = jnp.maximum(seq_lengths - 1, 0)[:, None, None]
                y = jnp.take_along_axis(y, idx, axis=1)[:, 0]
        elif self.readout == "mean":
            if seq_lengths is None:
                y = y.mean(axis=1)
            else:
                y = y.sum(axis=1) / jnp.maximum(seq_lengths, 1)[:, None].astype(y.dtype)
        y = self.drop(y, deterministic=deterministic)
        return self.head(y), finals, (states if return_states else None)

    def loss(self, batch, carry=None, *, deterministic: bool = True):
        """The trainer's entry point: exactly :meth:`rnnlab.models.SequenceModel.loss` (it only
        calls ``self(...)`` and reads ``loss_type``)."""
        # Imported here: rnnlab.models registers this class in its ARCHITECTURES table.
        from rnnlab.models import SequenceModel

        return SequenceModel.loss(self, batch, carry, deterministic=deterministic)
