"""Load PyTorch ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` weights into an :class:`rnnlab.RNN`.

    rnn, variables = rnnlab.interop.from_torch(torch_lstm)
    out = rnn.apply(variables, x)            # x [B, T, D], always batch-major
    h_n, c_n = rnnlab.interop.torch_final_states(out.final_carry, "lstm")

rnnlab is always batch-major (``[B, T, D]``). A module built with ``batch_first=False`` takes
``[T, B, D]`` in PyTorch: transpose that input (``x.transpose(1, 0, 2)``) before calling rnnlab,
and transpose the outputs back if you need time-major results.

The weight map, per layer ``l`` and direction (suffix ``_reverse`` for the backward one). PyTorch
stores ``weight_ih [G, D]``, ``weight_hh [G, H]``, ``bias_ih [G]``, ``bias_hh [G]`` with the
gates stacked in the same order rnnlab uses (LSTM i, f, g, o; GRU r, z, n), so:

    kernel = weight_ih.T            [D, G]
    w_h    = weight_hh.T            [H, G]
    bias   = bias_ih + bias_hh      [G]     (the two biases add up; rnnlab keeps one)

except for the GRU (PyTorch/cuDNN convention), where the reset gate multiplies
``W_hn h + b_hn``, so ``b_hn`` cannot be folded: ``bias = bias_ih + [b_hr, b_hz, 0]`` and
``b_hn = bias_hh[2H:]``. ``nn.RNN`` maps to the ``elman`` cell (``activation`` from
``nonlinearity``), ``nn.LSTM`` to ``lstm``, ``nn.GRU`` to ``gru`` with ``convention="pytorch"``.
A module built with ``bias=False`` loads with zero biases. ``proj_size > 0`` (projected LSTM)
is not supported and raises ``ValueError``.

Final states: PyTorch returns ``h_n [L * dirs, B, H]`` (and ``c_n`` for the LSTM) ordered
layer 0 forward, layer 0 backward, layer 1 forward, ...; :func:`torch_final_states` converts
rnnlab's per-layer ``final_carry`` to that layout, :func:`initial_carry_from_torch` converts
PyTorch's ``(h_0, c_0)`` into rnnlab's ``initial_carry`` argument.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from rnnlab.engine import RNN

KINDS = {"rnn": "elman", "lstm": "lstm", "gru": "gru"}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}  # G = GATES[kind] * H


def from_torch(module) -> tuple[RNN, dict]:
    """``(rnn, variables)`` computing the same function as a PyTorch recurrent ``module``.

    Args:
      module: a ``torch.nn.RNN`` (tanh or relu), ``torch.nn.LSTM`` or ``torch.nn.GRU``, any
        ``num_layers``, bidirectional or not, ``batch_first`` or not (rnnlab is always
        batch-major: transpose a time-major input yourself).

    Returns:
      ``rnn``, an unbound :class:`rnnlab.RNN`, and ``variables = {"params": ...}`` for
      ``rnn.apply(variables, x [B, T, D], seq_lengths=None)``. ``dropout`` between layers is
      carried over (active only with ``deterministic=False``).
    """
    import torch  # optional dependency: imported only here

    kinds = {torch.nn.RNN: "rnn", torch.nn.LSTM: "lstm", torch.nn.GRU: "gru"}
    kind = kinds.get(type(module))
    if kind is None:
        raise ValueError(
            f"from_torch expects a torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU, "
            f"got {type(module).__name__}"
        )
    if getattr(module, "proj_size", 0):
        raise ValueError(
            f"from_torch: LSTM with proj_size={module.proj_size} is not supported "
            "(expected proj_size=0)"
        )
    state = {}
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu()
        if tensor.dtype != torch.float64:
            tensor = tensor.float()  # float16/bfloat16 weights load as float32
        state[name] = tensor.numpy()
    rnn, variables = from_state_dict(
        kind,
        state,
        num_layers=module.num_layers,
        bidirectional=module.bidirectional,
        hidden_size=module.hidden_size,
        nonlinearity=getattr(module, "nonlinearity", "tanh"),
        dropout=float(module.dropout),
    )
    return rnn, variables


def from_state_dict(
    kind: str,
    state_dict: Mapping[str, np.ndarray],
    *,
    num_layers: int,
    bidirectional: bool,
    hidden_size: int,
    nonlinearity: str = "tanh",
    dropout: float = 0.0,
) -> tuple[RNN, dict]:
    """The torch-free core of :func:`from_torch`: a PyTorch ``state_dict`` as numpy arrays.

    Args:
      kind: ``"rnn"``, ``"lstm"`` or ``"gru"``.
      state_dict: ``{"weight_ih_l0": [G, D], "weight_hh_l0": [G, H], "bias_ih_l0": [G],
        "bias_hh_l0": [G], ... "weight_ih_l0_reverse": ...}`` (biases may be absent together).
      num_layers, bidirectional, hidden_size: the module's settings.
      nonlinearity: ``"tanh"`` or ``"relu"`` (``kind="rnn"`` only).
      dropout: between layers, as in PyTorch.

    Raises:
      ValueError: unknown kind or nonlinearity, missing/unexpected keys, inconsistent shapes.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown recurrent kind {kind!r}; expected one of {sorted(KINDS)}")
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    if kind != "rnn" and nonlinearity != "tanh":
        raise ValueError(
            f"nonlinearity applies to kind='rnn' only, got {nonlinearity!r} for {kind}"
        )
    H, G = hidden_size, GATES[kind] * hidden_size
    suffixes = ("", "_reverse") if bidirectional else ("",)
    expected = {
        f"{w}_l{layer}{s}"
        for layer in range(num_layers)
        for s in suffixes
        for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    }
    given = set(state_dict)
    has_bias = any(k.startswith("bias_") for k in given)
    if not has_bias:
        expected = {k for k in expected if not k.startswith("bias_")}
    if given != expected:
        raise ValueError(
            f"state_dict does not match a {kind} with num_layers={num_layers}, "
            f"bidirectional={bidirectional}: missing {sorted(expected - given)}, "
            f"unexpected {sorted(given - expected)} (proj_size > 0 is not supported)"
        )

    dtypes = {np.asarray(a).dtype for a in state_dict.values()}
    dtype = np.float64 if dtypes == {np.dtype(np.float64)} else np.float32
    params = {}
    input_size = None
    for layer in range(num_layers):
        layer_params = {}
        for direction, s in zip(("fwd", "bwd"), suffixes):
            get = lambda w, layer=layer, s=s: np.asarray(state_dict[f"{w}_l{layer}{s}"], dtype)
            w_ih, w_hh = get("weight_ih"), get("weight_hh")
            d_in = w_ih.shape[1] if w_ih.ndim == 2 else None
            want_in = (H * len(suffixes)) if layer > 0 else d_in
            if w_ih.shape != (G, want_in) or w_hh.shape != (G, H):
                raise ValueError(
                    f"layer {layer}{s}: expected weight_ih [{G}, {want_in}] and weight_hh "
                    f"[{G}, {H}] for {kind} with hidden_size={H}, got {w_ih.shape} and "
                    f"{w_hh.shape}"
                )
            if layer == 0:
                input_size = input_size or d_in
            b_ih = get("bias_ih") if has_bias else np.zeros(G, dtype)
            b_hh = get("bias_hh") if has_bias else np.zeros(G, dtype)
            if b_ih.shape != (G,) or b_hh.shape != (G,):
                raise ValueError(
                    f"layer {layer}{s}: expected biases of shape ({G},), "
                    f"got {b_ih.shape} and {b_hh.shape}"
                )
            cell = {"w_h": w_hh.T.copy()}
            if kind == "gru":
                # b_hn sits inside r * (W_hn h + b_hn): it cannot fold into the input bias.
                bias = b_ih + np.concatenate([b_hh[: 2 * H], np.zeros(H, dtype)])
                cell["b_hn"] = b_hh[2 * H :].copy()
            else:
                bias = b_ih + b_hh
            cell["input"] = {"kernel": w_ih.T.copy(), "bias": bias}
            layer_params[direction] = {"params": cell}
        params[f"layer_{layer}"] = layer_params

    options = {"activation": nonlinearity} if kind == "rnn" else {}
    if kind == "gru":
        options["convention"] = "pytorch"
    rnn = RNN(
        cell=KINDS[kind],
        hidden_size=H,
        num_layers=num_layers,
        bidirectional=bidirectional,
        dropout=dropout,
        cell_options=options,
        param_dtype=dtype,
    )
    return rnn, {"params": params}


def torch_final_states(final_carry: list, kind: str):
    """rnnlab's ``RNNOutput.final_carry`` in PyTorch's layout.

    Returns ``h_n [L * dirs, B, H]`` for ``rnn``/``gru``, ``(h_n, c_n)`` for ``lstm``; rows are
    ordered layer 0 forward, layer 0 backward, layer 1 forward, ... as in PyTorch.
    """
    import jax.numpy as jnp

    carries = []
    for layer in final_carry:
        carries.extend(layer if _is_pair(layer, kind) else [layer])
    if kind == "lstm":  # rnnlab's LSTM carry is (c, h)
        return jnp.stack([h for c, h in carries]), jnp.stack([c for c, h in carries])
    return jnp.stack(carries)


def _is_pair(layer, kind: str) -> bool:
    """A bidirectional layer's final carry is a (fwd, bwd) pair of carries."""
    if kind == "lstm":  # the carry (c, h) is itself a pair: a pair of pairs when bidirectional
        return isinstance(layer[0], tuple)
    return isinstance(layer, tuple)


def initial_carry_from_torch(h_0, c_0=None, *, num_layers: int, bidirectional: bool) -> list:
    """PyTorch's ``h_0 [L * dirs, B, H]`` (and ``c_0`` for an LSTM) as rnnlab's
    ``initial_carry`` argument: one carry per layer, a ``(fwd, bwd)`` pair when bidirectional."""
    dirs = 2 if bidirectional else 1
    if np.shape(h_0)[0] != num_layers * dirs:
        raise ValueError(
            f"expected h_0 of shape [num_layers * dirs = {num_layers * dirs}, B, H], "
            f"got {np.shape(h_0)}"
        )
    carry = lambda i: (c_0[i], h_0[i]) if c_0 is not None else h_0[i]
    layers = []
    for layer in range(num_layers):
        per_dir = [carry(layer * dirs + d) for d in range(dirs)]
        layers.append(tuple(per_dir) if bidirectional else per_dir[0])
    return layers
