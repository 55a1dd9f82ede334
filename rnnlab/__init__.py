"""rnnlab: a JAX/Flax research lab for recurrent neural networks.

Public API (shape legend: B batch, T time, D input, H hidden, V vocab):

* :mod:`rnnlab.cells` -- the cell registry (``names()``, ``get(name)``, ``register``);
* :class:`rnnlab.RNN` and :func:`rnnlab.unroll` -- the engine (one ``lax.scan`` over time);
  :class:`rnnlab.Embedded` -- token ids ``[B, T]`` into an embedding table ``[V, D]`` as input;
* :mod:`rnnlab.interop` -- load PyTorch ``nn.RNN``/``nn.LSTM``/``nn.GRU`` weights.
"""

from rnnlab import cells
from rnnlab.unroll import RNN, Embedded, RNNOutput, unroll

__all__ = ["RNN", "Embedded", "RNNOutput", "cells", "unroll"]
__version__ = "0.1.0"
