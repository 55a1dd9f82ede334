"""The hand-built ReLU RNN (examples/handbuilt_rnn.py) on every binary sequence up to length 8."""

import importlib.util
import itertools
import pathlib

import numpy as np

PATH = pathlib.Path(__file__).parents[1] / "examples" / "handbuilt_rnn.py"


def _load():
    spec = importlib.util.spec_from_file_location("handbuilt_rnn", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_outputs_one_exactly_when_the_bit_repeats():
    handbuilt = _load()
    # Every sequence of length 1..8 (2 + 4 + ... + 256 = 510), right-padded into one batch.
    seqs = [s for T in range(1, 9) for s in itertools.product([0, 1], repeat=T)]
    lengths = np.array([len(s) for s in seqs])
    bits = np.zeros((len(seqs), 8), int)
    for i, s in enumerate(seqs):
        bits[i, : len(s)] = s
    y, h = handbuilt.run(bits, lengths)
    assert h.shape == (510, 8, 3)  # a 3-dimensional hidden state
    previous = np.concatenate([np.zeros((len(seqs), 1), int), bits[:, :-1]], axis=1)
    valid = np.arange(8)[None, :] < lengths[:, None]
    np.testing.assert_array_equal(y[valid], (bits == previous)[valid].astype(np.float32))
    np.testing.assert_array_equal(h[..., 0][valid], bits[valid])  # unit 0 copies the input
    assert set(np.unique(y[valid])) == {0.0, 1.0}  # exactly 0 or 1
