"""Devices: the host allocator, the data-parallel mesh, batch placement, a multi-host run.

**Host allocator.** XLA:CPU (and PyTorch) free their large buffers after every step. glibc's
``malloc`` serves blocks above its mmap threshold (128 KiB, raised dynamically up to 32 MiB)
with ``mmap`` and returns them to the OS on ``free``, and trims the heap's top above its trim
threshold, so the next step page-faults the same memory back in: ~10,000 minor faults per step
of the 2x256 char-LM (``benchmarks/allocator.py``). :func:`configure_allocator` runs when
``rnnlab`` is imported (before JAX is, in ``rnnlab/__init__.py``) and sets glibc's tunables
through ``mallopt`` so freed memory stays in the process, as tcmalloc keeps it. The
environment variable ``RNNLAB_ALLOCATOR`` chooses:

* ``tuned`` (the default): ``mallopt(M_MMAP_THRESHOLD, 32 MiB)`` (glibc's largest),
  ``mallopt(M_MMAP_MAX, 0)``, ``mallopt(M_TRIM_THRESHOLD, 1 GiB)`` and
  ``mallopt(M_ARENA_MAX, 1)``: every block comes from the one main heap and up to 1 GiB of its
  free top is kept. Each is needed (``benchmarks/allocator.py --extra``, BENCHMARKS.md): XLA:CPU
  allocates a step's temporaries as one block, which can pass 32 MiB, so with the threshold
  alone the 2x256 char-LM still faulted ~10,000 times a step; and XLA's worker threads take
  per-thread arenas, whose heaps glibc unmaps when they empty (LSTM-512: ~19,000 faults a step
  without ``M_ARENA_MAX``, 0 with it). Only on glibc, and not when another allocator (tcmalloc)
  is loaded. The cost is tcmalloc's: freed memory stays with the process;
* ``system``: glibc's defaults, untouched (the opt-out);
* ``tcmalloc``: the ``rnnlab`` command and the benchmark scripts re-start themselves under
  tcmalloc (``LD_PRELOAD``; ``apt install libtcmalloc-minimal4``) and refuse to run without it;
  a process that imports rnnlab not under tcmalloc warns and uses the tuned glibc malloc.

:func:`allocator` says what this process runs with (record it beside a measurement).

**Data parallelism** uses JAX's own SPMD: a 1-D ``jax.sharding.Mesh`` of all devices (of all
processes) on the axis ``"data"``; every batch leaf is split along its first (batch) axis
(``NamedSharding(mesh, P("data"))``); params, optimizer state and keys are replicated
(``P()``). XLA's partitioner inserts the gradient all-reduce. One device is the same code.
JAX and NumPy are imported inside the functions: this module runs before JAX is imported.
"""

from __future__ import annotations

import ctypes
import os
import sys
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: JAX is imported after configure_allocator runs
    import jax
    import numpy as np

# ------------------------------------------------------------------------- host allocator

ENV = "RNNLAB_ALLOCATOR"
MODES = ("tuned", "system", "tcmalloc")
# glibc's mallopt parameter numbers (<malloc.h>); M_TOP_PAD for trying other settings
# (benchmarks/allocator.py --extra)
PARAMS = {
    "M_TRIM_THRESHOLD": -1,
    "M_MMAP_THRESHOLD": -3,
    "M_TOP_PAD": -2,
    "M_MMAP_MAX": -4,
    "M_ARENA_MAX": -8,
}
#: the tuned settings: no block is served by its own mmap (the threshold at glibc's largest,
#: 32 MiB, and no mmapped blocks at all above it), one arena for all threads, and up to 1 GiB
#: of free heap top kept instead of given back to the OS (benchmarks/allocator.py measures)
MALLOPT = {
    "M_MMAP_THRESHOLD": 32 << 20,
    "M_MMAP_MAX": 0,
    "M_TRIM_THRESHOLD": 1 << 30,
    "M_ARENA_MAX": 1,
}

TCMALLOC = (
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4",
    "/usr/lib64/libtcmalloc_minimal.so.4",
)

#: what :func:`configure_allocator` did in this process (see :func:`allocator`)
_STATE: dict = {}


def requested_mode() -> str:
    """``RNNLAB_ALLOCATOR`` (default ``tuned``); any other value is refused with what is known."""
    mode = os.environ.get(ENV, "").strip() or "tuned"
    if mode not in MODES:
        raise ValueError(f"{ENV} must be one of {', '.join(MODES)}; got {mode!r}")
    return mode


def _libc() -> ctypes.CDLL | None:
    """The C library with glibc's ``mallopt``, or ``None`` (musl, macOS, ...)."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        return libc
    except (OSError, AttributeError):
        return None


def tcmalloc_loaded() -> bool:
    """Whether tcmalloc serves this process's ``malloc`` (preloaded or linked)."""
    try:
        return hasattr(ctypes.CDLL(None), "tc_malloc")
    except OSError:
        return False


def tcmalloc_library() -> str | None:
    """Path of an installed tcmalloc (``apt install libtcmalloc-minimal4``), or ``None``."""
    return next((path for path in TCMALLOC if os.path.exists(path)), None)


def mallopt(settings: dict[str, int]) -> dict[str, bool]:
    """Call glibc's ``mallopt(param, value)`` for each setting; ``{name: accepted}``."""
    libc = _libc()
    if libc is None:
        raise RuntimeError("mallopt needs glibc; this C library has none")
    return {name: libc.mallopt(PARAMS[name], value) == 1 for name, value in settings.items()}


def configure_allocator() -> dict:
    """Set up this process's ``malloc`` as ``RNNLAB_ALLOCATOR`` asks (see the module docstring).

    Runs once, at ``import rnnlab``, before JAX is imported: ``mallopt`` changes how later
    blocks are served, and XLA's buffers are allocated after it. Returns :func:`allocator`.
    """
    if _STATE:
        return allocator()
    mode = requested_mode()
    state = {"requested": mode, "jax_imported_first": "jax" in sys.modules, "mallopt": {}}
    if tcmalloc_loaded():
        state.update(mode="tcmalloc", note="tcmalloc serves malloc: glibc's tunables unused")
    elif mode == "system":
        state.update(mode="system", note=f"glibc's defaults ({ENV}=system)")
    elif _libc() is None:
        state.update(mode="system", note="not glibc: the C library's own malloc, untouched")
    else:
        if mode == "tcmalloc":
            warnings.warn(
                f"{ENV}=tcmalloc, but this process does not run under tcmalloc: start it with "
                f"LD_PRELOAD={tcmalloc_library() or 'libtcmalloc_minimal.so.4'} (the rnnlab "
                "command re-starts itself so); glibc's malloc is tuned instead",
                RuntimeWarning,
                stacklevel=2,
            )
        accepted = mallopt(MALLOPT)
        state["mallopt"] = {name: MALLOPT[name] for name, ok in accepted.items() if ok}
        refused = sorted(name for name, ok in accepted.items() if not ok)
        state.update(mode="tuned", note=f"mallopt refused {refused}" if refused else "glibc, tuned")
    _STATE.update(state)
    return allocator()


def allocator() -> dict:
    """What this process's ``malloc`` is: ``{"mode": tuned|system|tcmalloc, "requested", "mallopt":
    {setting: value applied}, "jax_imported_first", "note"}`` (empty before the import set it)."""
    return dict(_STATE, mallopt=dict(_STATE.get("mallopt", {})))


def reexec_with_tcmalloc(argv: list[str]) -> None:
    """With ``RNNLAB_ALLOCATOR=tcmalloc``: replace this process by ``argv`` under tcmalloc.

    No-op in the other modes or when tcmalloc is already loaded; exits with an error naming the
    package when it is asked for and not installed. Call it only at a program's entry, before
    any work (the ``rnnlab`` command and the benchmark scripts do).
    """
    if requested_mode() != "tcmalloc" or tcmalloc_loaded():
        return
    lib = tcmalloc_library()
    if lib is None:
        sys.exit(f"{ENV}=tcmalloc: tcmalloc is not installed (apt install libtcmalloc-minimal4)")
    preload = " ".join(filter(None, [lib, os.environ.get("LD_PRELOAD")]))
    os.execve(argv[0], argv, dict(os.environ, LD_PRELOAD=preload))


# ---------------------------------------------------------------- data parallelism, hosts


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
    import jax

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
    import jax
    import numpy as np

    devices = jax.devices()
    if batch_size % len(devices):
        raise ValueError(
            f"batch size {batch_size} is not divisible by the number of devices "
            f"({len(devices)}); choose a multiple of {len(devices)}"
        )
    return jax.sharding.Mesh(np.asarray(devices), ("data",))


def shard_batch(batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
    """Place a host batch on the mesh: every leaf split along its first (batch) axis."""
    import jax
    import numpy as np

    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    return {
        k: jax.make_array_from_callback(np.shape(v), sharding, lambda idx, v=v: np.asarray(v)[idx])
        for k, v in batch.items()
    }
