"""PyTorch interop: rnnlab matches nn.RNN/LSTM/GRU to 1e-5 in float32, checked without torch.

The fixtures (tests/fixtures/torch_*.npz) hold PyTorch weights, an input and PyTorch's outputs
and final states; tests/fixtures/make_torch_fixtures.py made them. When torch is importable, a
direct ``from_torch`` round trip runs too.
"""

import pathlib

import jax
import numpy as np
import pytest

from rnnlab import interop

FIXTURES = sorted((pathlib.Path(__file__).parent / "fixtures").glob("torch_*.npz"))
TOL = dict(rtol=1e-5, atol=1e-5)


def load(path):
    with np.load(path) as f:
        data = {k: f[k] for k in f.files}
    state = {k[3:]: v for k, v in data.items() if k.startswith("sd/")}
    return data, state


def run_fixture(data, rnn, variables):
    kind, L, bi = str(data["kind"]), int(data["num_layers"]), bool(data["bidirectional"])
    carry = None
    if "h_0" in data:
        carry = interop.initial_carry_from_torch(
            data["h_0"], data.get("c_0"), num_layers=L, bidirectional=bi
        )
    out = jax.jit(rnn.apply)(variables, data["x"], data.get("lengths"), carry)
    return out, interop.torch_final_states(out.final_carry, kind)


def test_fixtures_exist_and_cover_every_kind():
    kinds = {str(load(p)[0]["kind"]) for p in FIXTURES}
    assert kinds == {"rnn", "lstm", "gru"}, [p.name for p in FIXTURES]
    assert sum(p.stat().st_size for p in FIXTURES) < 200_000


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem[6:])
def test_matches_pytorch_fixture(path):
    data, state = load(path)
    kind = str(data["kind"])
    rnn, variables = interop.from_state_dict(
        kind,
        state,
        num_layers=int(data["num_layers"]),
        bidirectional=bool(data["bidirectional"]),
        hidden_size=int(data["hidden_size"]),
        nonlinearity=str(data["nonlinearity"]),
    )
    out, final = run_fixture(data, rnn, variables)
    assert out.outputs.dtype == np.float32
    np.testing.assert_allclose(out.outputs, data["output"], **TOL)
    if kind == "lstm":
        np.testing.assert_allclose(final[0], data["h_n"], **TOL)
        np.testing.assert_allclose(final[1], data["c_n"], **TOL)
    else:
        np.testing.assert_allclose(final, data["h_n"], **TOL)


def test_bad_state_dict_names_missing_and_unexpected_keys():
    _, state = load(FIXTURES[0])
    state = dict(state)
    state["weight_hr_l0"] = state.pop("weight_hh_l0")
    with pytest.raises(
        ValueError, match=r"missing \['weight_hh_l0'\].*unexpected \['weight_hr_l0'\]"
    ):
        interop.from_state_dict("rnn", state, num_layers=1, bidirectional=False, hidden_size=5)


def test_bad_shapes_and_options_are_rejected():
    data, state = load(next(p for p in FIXTURES if p.stem == "torch_lstm"))
    with pytest.raises(ValueError, match=r"expected weight_ih \[28, 4\].*got \(20, 4\)"):
        interop.from_state_dict("lstm", state, num_layers=1, bidirectional=False, hidden_size=7)
    with pytest.raises(ValueError, match="unknown recurrent kind 'lsmt'"):
        interop.from_state_dict("lsmt", state, num_layers=1, bidirectional=False, hidden_size=5)
    with pytest.raises(ValueError, match="applies to kind='rnn' only"):
        interop.from_state_dict(
            "lstm", state, num_layers=1, bidirectional=False, hidden_size=5, nonlinearity="relu"
        )


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


torch = _torch()


@pytest.mark.skipif(torch is None, reason="torch not installed (the fixture tests above cover it)")
@pytest.mark.parametrize(
    "cls,kwargs",
    [
        ("RNN", dict(num_layers=2, nonlinearity="relu", batch_first=True)),
        ("LSTM", dict(num_layers=2, bidirectional=True)),
        ("GRU", dict(num_layers=1, bidirectional=True, batch_first=True)),
    ],
)
def test_from_torch_round_trip(cls, kwargs):
    torch.manual_seed(0)
    module = getattr(torch.nn, cls)(3, 4, **kwargs).eval()
    x = torch.randn(2, 5, 3)  # [B, T, D]
    with torch.no_grad():
        want, _ = module(x if module.batch_first else x.transpose(0, 1))
    want = want if module.batch_first else want.transpose(0, 1)
    rnn, variables = interop.from_torch(module)
    got = rnn.apply(variables, x.numpy()).outputs
    np.testing.assert_allclose(got, want.numpy(), **TOL)


@pytest.mark.skipif(torch is None, reason="torch not installed")
def test_from_torch_rejects_projected_lstm_and_other_modules():
    with pytest.raises(ValueError, match="proj_size=2 is not supported"):
        interop.from_torch(torch.nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(ValueError, match="got Linear"):
        interop.from_torch(torch.nn.Linear(3, 4))
