"""rnnlab: a JAX/Flax research lab for recurrent neural networks.

Public API (shape legend: B batch, T time, D input, H hidden, V vocab):

* :mod:`rnnlab.cells` -- the cell registry (``names()``, ``get(name)``, ``register``);
* :class:`rnnlab.RNN` and :func:`rnnlab.unroll` -- the engine (one ``lax.scan`` over time);
* :mod:`rnnlab.interop` -- load PyTorch ``nn.RNN``/``nn.LSTM``/``nn.GRU`` weights.
"""

from rnnlab import cells
from rnnlab.unroll import RNN, RNNOutput, unroll

__all__ = ["RNN", "RNNOutput", "cells", "unroll"]
__version__ = "0.1.0"
