"""The hand-built RNN (Stanford CS231n, lecture 7): weights set by hand, no training.

Task: read a binary sequence x_1..x_T and output ``y_t = 1`` exactly when ``x_t == x_{t-1}``
(else 0). The first step compares with the zero initial state, i.e. ``x_0 := 0``.

The network is rnnlab's Elman cell with ``activation="relu"`` and a 3-dimensional hidden state,
run by the engine (:func:`rnnlab.unroll`), plus a linear readout::

    h_t = relu(W_x x_t + b + h_{t-1} W_h)          (row vectors; W_x [1, 3], W_h [3, 3])
    y_t = h_t . w_y + b_y

    W_x = [1, 1, -1]     b = [0, 0, 0]
    W_h = [[0, -1, 1],   row 0: unit 0 of h_{t-1} (which holds x_{t-1}) feeds units 1 and 2
           [0,  0, 0],   rows 1, 2: units 1 and 2 are not remembered
           [0,  0, 0]]
    w_y = [0, -1, -1]    b_y = 1

How the matrix structure does the work:

* **copy**: column 0 of W_h is zero and ``W_x[0] = 1``, so unit 0 is ``relu(x_t) = x_t``: it
  copies the current input and forgets everything else. Through row 0 of ``W_h`` that copy
  becomes the *previous* input at the next step: the recurrent matrix is a one-step delay line.
* **compare**: units 1 and 2 get ``x_t - x_{t-1}`` and ``x_{t-1} - x_t`` (opposite signs in
  ``W_x`` and in row 0 of ``W_h``); the ReLU keeps the positive part of each, so
  ``h_1 + h_2 = relu(d) + relu(-d) = |x_t - x_{t-1}|``: a ReLU pair computes an absolute value.
* **readout**: ``y_t = 1 - |x_t - x_{t-1}|``, which is 1 when the bits agree and 0 when they
  differ; unit 0 (the memory) is ignored by the readout (``w_y[0] = 0``).

All weights are small integers, so every value is exact in float32: the outputs are exactly 0.0
or 1.0. Run: ``python examples/handbuilt_rnn.py``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from rnnlab.engine import make_cell, unroll

W_X = [[1.0, 1.0, -1.0]]  # [D=1, H=3]
B_H = [0.0, 0.0, 0.0]
W_H = [[0.0, -1.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]  # [H, H], row = from, column = to
W_Y = [0.0, -1.0, -1.0]
B_Y = 1.0


def cell_and_params():
    """The Elman ReLU cell (H=3) and its hand-set variables, in the cell's own param layout."""
    cell = make_cell("elman", 3, {"activation": "relu"})
    params = {
        "params": {
            "input": {"kernel": jnp.array(W_X), "bias": jnp.array(B_H)},
            "w_h": jnp.array(W_H),
        }
    }
    return cell, params


def run(bits, seq_lengths=None) -> tuple[np.ndarray, np.ndarray]:
    """``bits [B, T]`` in {0, 1} -> ``(y [B, T], h [B, T, 3])`` through :func:`rnnlab.unroll`.

    ``seq_lengths [B]`` (optional): right-padded sequences; ``y`` past each length is meaningless.
    """
    cell, params = cell_and_params()
    xs = jnp.asarray(bits, jnp.float32)[..., None]  # [B, T, 1]
    lengths = None if seq_lengths is None else jnp.asarray(seq_lengths)
    _, h, _ = unroll(cell, params, xs, seq_lengths=lengths)  # [B, T, 3]
    y = h @ jnp.array(W_Y) + B_Y  # [B, T]
    return np.asarray(y), np.asarray(h)


def main() -> None:
    bits = np.array([[0, 1, 1, 0, 0, 0, 1, 0, 1, 1]])
    y, h = run(bits)
    print("x_t      ", " ".join(str(int(b)) for b in bits[0]))
    print("y_t      ", " ".join(str(int(v)) for v in y[0]))
    for k, role in enumerate(["copy x_t", "relu(x_t - x_t-1)", "relu(x_t-1 - x_t)"]):
        print(f"h_t[{k}]  ", " ".join(str(int(v)) for v in h[0, :, k]), f"  ({role})")


if __name__ == "__main__":
    main()
