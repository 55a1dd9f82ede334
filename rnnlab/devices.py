"""Devices: the data-parallel mesh, batch placement, and joining a multi-host run.

Data parallelism uses JAX's own SPMD: a 1-D ``jax.sharding.Mesh`` of all devices (of all
processes) on the axis ``"data"``; every batch leaf is split along its first (batch) axis
(``NamedSharding(mesh, P("data"))``); params, optimizer state and keys are replicated
(``P()``). XLA's partitioner inserts the gradient all-reduce. One device is the same code.
"""

from __future__ import annotations

import os

import jax
import numpy as np


def initialize_distributed() -> None:
    """Join a multi-host run when the environment asks for it (no-op otherwise; idempotent).

    * ``RNNLAB_DISTRIBUTED=1``: ``jax.distributed.initialize()`` with JAX's cluster
      auto-detection (SLURM, Open MPI, Cloud TPU pods, Kubernetes, ...);
    * ``JAX_COORDINATOR_ADDRESS=host:port`` with ``RNNLAB_NUM_PROCESSES`` and
      ``RNNLAB_PROCESS_ID``: an explicit cluster (e.g. several processes on one machine).

    Every process then runs the same command; each computes the same global batch and
    contributes its devices' shards; process 0 writes the workdir files (Orbax coordinates
    the checkpoint writes of all processes).
    """
    if jax.distributed.is_initialized():
        return
    if os.environ.get("RNNLAB_NUM_PROCESSES"):
        jax.distributed.initialize(
            coordinator_address=os.environ.get("JAX_COORDINATOR_ADDRESS"),
            num_processes=int(os.environ["RNNLAB_NUM_PROCESSES"]),
            process_id=int(os.environ.get("RNNLAB_PROCESS_ID", "0")),
        )
    elif os.environ.get("RNNLAB_DISTRIBUTED", "") not in ("", "0"):
        jax.distributed.initialize()


def data_mesh(batch_size: int) -> jax.sharding.Mesh:
    """A 1-D mesh of all devices (all processes) on the axis ``"data"``."""
    devices = jax.devices()
    if batch_size % len(devices):
        raise ValueError(
            f"batch size {batch_size} is not divisible by the number of devices "
            f"({len(devices)}); choose a multiple of {len(devices)}"
        )
    return jax.sharding.Mesh(np.asarray(devices), ("data",))


def shard_batch(batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
    """Place a host batch on the mesh: every leaf split along its first (batch) axis."""
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    return {
        k: jax.make_array_from_callback(np.shape(v), sharding, lambda idx, v=v: np.asarray(v)[idx])
        for k, v in batch.items()
    }


# ------------------------------------------------------------------------- host allocator

TCMALLOC = (
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4",
    "/usr/lib64/libtcmalloc_minimal.so.4",
)


def tcmalloc_library() -> str | None:
    """Path of an installed tcmalloc (``apt install libtcmalloc-minimal4``), or ``None``."""
    return next((path for path in TCMALLOC if os.path.exists(path)), None)


def reexec_with_tcmalloc(argv: list[str]) -> None:
    """Replace this process by ``argv`` run under tcmalloc (``LD_PRELOAD``), when installed.

    Why: XLA:CPU frees its large buffers after every step and glibc hands them back to the OS,
    so the next step page-faults them in again (~9,000 minor faults per LSTM gradient,
    measured); tcmalloc keeps them: LSTM-128 gradient CPU time 39 -> 25 ms
    (``benchmarks/levers.py``, BENCHMARKS.md). No-op when tcmalloc is absent, already loaded, or when
    ``RNNLAB_ALLOCATOR=system``. Call it only at a program's entry, before any work.
    """
    if os.environ.get("RNNLAB_ALLOCATOR", "auto") == "system":
        return
    if "tcmalloc" in os.environ.get("LD_PRELOAD", ""):
        return
    lib = tcmalloc_library()
    if lib is None:
        return
    preload = " ".join(filter(None, [lib, os.environ.get("LD_PRELOAD")]))
    os.execve(argv[0], argv, dict(os.environ, LD_PRELOAD=preload))
