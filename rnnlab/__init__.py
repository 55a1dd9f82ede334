"""rnnlab: a JAX/Flax research lab for recurrent neural networks.

Public API (shape legend: B batch, T time, D input, H hidden, V vocab):

* :mod:`rnnlab.cells` -- the cell registry (``names()``, ``get(name)``, ``register``);
* :mod:`rnnlab.engine` -- the engine: :class:`rnnlab.RNN` (the layer) and :func:`rnnlab.unroll`
  (one layer, one direction), each layer run by the loop its plan names
  (:mod:`rnnlab.engine.plan`); :func:`rnnlab.explain` prints the plans of a model;
  :class:`rnnlab.Embedded` -- token ids ``[B, T]`` into an embedding table ``[V, D]`` as input;
* :mod:`rnnlab.interop` -- load PyTorch ``nn.RNN``/``nn.LSTM``/``nn.GRU`` weights.

Importing rnnlab tunes glibc's malloc first (before JAX is imported), so XLA's freed buffers
are not page-faulted back in every step: :mod:`rnnlab.devices`; ``RNNLAB_ALLOCATOR=system``
opts out.
"""

from rnnlab import devices as _devices

_devices.configure_allocator()  # must run before jax is imported (below, through the cells)

from rnnlab import cells  # noqa: E402
from rnnlab.engine import RNN, Embedded, RNNOutput, explain, unroll  # noqa: E402

__all__ = ["RNN", "Embedded", "RNNOutput", "cells", "explain", "unroll"]
__version__ = "0.1.0"
