"""Native CPU kernels: three time loops (an LSTM, a GRU and an Elman recurrence), each as one XLA
custom call forward and one backward. These are bindings only: which layer runs on them is the
plan's choice (:mod:`rnnlab.engine.plan`), and the glue between a cell and a kernel is the
adapter the cell names (``native``; see :mod:`rnnlab.engine.loops.native`).

Under XLA:CPU a time step of the LSTM is ~25 small kernels around two per-step matmuls that
YNNPACK runs well below the large-matmul rate (BENCHMARKS.md). ``rnnlab/native/recurrent_cpu.cc``
runs the loop in C++ instead: per step one register-blocked AVX-512 matmul per thread with the
gate math on the tile just computed, one barrier between the threads (XLA's own intra-op
threads). :mod:`rnnlab.engine.loops.native` uses these as its custom VJP's loops (the weight
gradient stays one XLA matmul over all ``T*B`` rows). The kernels write the layer's output batch-major ``[B, T, H]`` and
``h_{t-1}^T`` ``[H, T*B]`` for the weight gradient, and sum token inputs' table gradient by id,
so no transpose, concatenation or scatter follows them.

The kernels are compiled on first use with the system C++ compiler (``$CXX``, else ``g++``)
against the XLA FFI headers that ship with jaxlib, and cached by source hash under
``$RNNLAB_NATIVE_CACHE`` (default ``~/.cache/rnnlab/native``). ``RNNLAB_NATIVE=0`` turns them
off; ``RNNLAB_NATIVE_THREADS`` caps the threads. Where there is no compiler, no AVX-512 (F, DQ), or
the backend is not the CPU, :func:`available` is False and the plan says so. The environment
variables are documented overrides, recorded in every plan (:data:`ENVIRONMENT`).

Shapes: ``T`` time, ``B`` batch, ``H`` hidden; gates ``[.., G]``: LSTM ``4H`` (i, f, g, o),
GRU ``3H`` (r, z, n), Elman ``H``.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import pathlib
import platform
import shutil
import subprocess
import tempfile
import warnings

import jax
import jax.numpy as jnp
import numpy as np

#: the kernels' source; ``RNNLAB_NATIVE_SOURCE`` compiles another (an A/B of a kernel change:
#: ``python benchmarks/native_loops.py --source OLD.cc``)
SOURCE = pathlib.Path(
    os.environ.get(
        "RNNLAB_NATIVE_SOURCE",
        pathlib.Path(__file__).parents[1] / "native" / "recurrent_cpu.cc",  # package data
    )
)
#: the documented environment overrides of the kernels; a plan records those that are set
ENVIRONMENT = {
    "RNNLAB_NATIVE": "0 turns the kernels off",
    "RNNLAB_NATIVE_THREADS": "caps the kernel threads",
    "RNNLAB_NATIVE_SOURCE": "compiles another kernel source (an A/B)",
    "RNNLAB_NATIVE_FLAGS": "extra compiler flags",
    "RNNLAB_NATIVE_CACHE": "where the built kernels are cached",
}
FLAGS = ("-O3", "-std=c++20", "-shared", "-fPIC", "-mavx512f", "-mavx512dq", "-mfma")
#: FLOPs of one step's matmul per thread, at least: below it a step is a few microseconds and
#: the threads' per-step barrier costs more than the split saves (train step B=32, H=128 on a
#: 2-core CPU: GRU 11.5 ms on two threads vs 10.2 on one, forward 7.7 vs 2.6; BENCHMARKS.md)
MIN_WORK = 4e6
#: the kernels' names (what an adapter's ``kernel`` names)
KERNELS = ("lstm", "gru", "elman")
#: under ``jax.vmap`` (e.g. the trainer's seeds) the kernel runs once per batch entry
VMAP = "sequential"
#: panel width of the kernel's matmul: H must split into multiples of it per thread
PANEL = 32


def _cpu_has_avx512() -> bool:
    """Whether this CPU has the AVX-512 subsets the kernels are built for (F and DQ)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return False
    try:
        flags = pathlib.Path("/proc/cpuinfo").read_text().replace("\n", " ")
    except OSError:
        return False
    return " avx512f " in flags and " avx512dq " in flags


def _cache_dir() -> pathlib.Path:
    default = pathlib.Path.home() / ".cache" / "rnnlab" / "native"
    return pathlib.Path(os.environ.get("RNNLAB_NATIVE_CACHE", default))


@functools.cache
def _library() -> ctypes.CDLL | None:
    """Compile (once per source and jaxlib) and load the kernel library; None if impossible."""
    if os.environ.get("RNNLAB_NATIVE", "1") == "0" or not _cpu_has_avx512():
        return None
    cxx = shutil.which(os.environ.get("CXX", "g++"))
    if cxx is None:
        return None
    include = jax.ffi.include_dir()
    flags = (*FLAGS, *os.environ.get("RNNLAB_NATIVE_FLAGS", "").split())  # e.g. -DSPIN=500
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join((cxx, include, *flags)).encode())
    key = key.hexdigest()[:16]
    target = _cache_dir() / f"recurrent_cpu-{key}.so"
    if not target.exists():
        cmd = [cxx, *flags, f"-I{include}", str(SOURCE), "-o"]
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                out = pathlib.Path(tmp) / target.name
                done = subprocess.run([*cmd, str(out)], capture_output=True, text=True)
                if done.returncode != 0:
                    raise OSError(done.stderr[-2000:])
                os.replace(out, target)  # atomic: concurrent first uses race harmlessly
        except OSError as e:  # no compiler output, or a cache folder we may not write
            warnings.warn(
                f"rnnlab.engine.kernels: building {SOURCE.name} into {target.parent} failed, so the "
                f"XLA scan runs (set RNNLAB_NATIVE_CACHE to a writable folder, or "
                f"RNNLAB_NATIVE=0 to silence this):\n{' '.join(cmd)}\n{e}",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
    lib = ctypes.cdll.LoadLibrary(str(target))
    for cell in KERNELS:
        for way in ("forward", "backward"):
            symbol = getattr(lib, f"{cell.capitalize()}{way.capitalize()}")
            name = f"rnnlab_{cell}_{way}"
            jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(symbol), platform="cpu")
    return lib


def available() -> bool:
    """Whether the native kernels can run here (CPU backend, AVX-512 (F, DQ), a compiler)."""
    return jax.default_backend() == "cpu" and _library() is not None


def threads(hidden: int, work: float | None = None) -> int:
    """Threads the kernel uses for ``hidden`` units: the most (up to the CPUs this process may
    run on, and one per :data:`MIN_WORK` FLOPs of a step's matmul ``work``) that split ``H``
    into equal multiples of :data:`PANEL`; 0 when none does. ``RNNLAB_NATIVE_THREADS`` sets
    the most."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = max(1, int(os.environ.get("RNNLAB_NATIVE_THREADS", cpus or 1)))
    if work is not None:
        n = max(1, min(n, int(work / MIN_WORK) if MIN_WORK else n))
    while n > 0 and hidden % (PANEL * n):
        n -= 1
    return n


def unavailable() -> str | None:
    """Why the kernels cannot run here (the plan's reason), or None when they can."""
    if os.environ.get("RNNLAB_NATIVE", "1") == "0":
        return "turned off (RNNLAB_NATIVE=0)"
    if jax.default_backend() != "cpu":
        return f"CPU kernels, and the backend is {jax.default_backend()}"
    if not _cpu_has_avx512():
        return "this CPU lacks AVX-512 (F, DQ)"
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        return "no C++ compiler ($CXX, else g++)"
    if _library() is None:
        return "the kernel build failed (see the warning)"
    return None


def environment() -> dict[str, str]:
    """The kernels' environment overrides (:data:`ENVIRONMENT`) that are set, with their values."""
    return {k: os.environ[k] for k in ENVIRONMENT if k in os.environ}


def _require() -> None:
    if _library() is None:
        raise RuntimeError(
            "rnnlab.engine.kernels: the kernels are not available here (they need the CPU backend, "
            "AVX-512 (F, DQ) and a C++ compiler; see rnnlab.engine.kernels.available())"
        )


def _f32(*shape) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, jnp.float32)


def _ids(ids) -> jax.Array:
    """Token ids as the kernels read them: int32, or an empty array for none."""
    return jnp.zeros((0,), jnp.int32) if ids is None else ids.astype(jnp.int32)


def _eps(e) -> jax.Array:
    """A perturbation as the kernels read it: ``[T, B, H]``, or an empty array for none."""
    return jnp.zeros((0,), jnp.float32) if e is None else e


def lstm_forward(xp, ids, w, c0, h0, *, save: bool, eps=None):
    """The LSTM over ``T`` steps from the projected inputs.

    Args:
      xp: ``[T, B, 4H]`` projected inputs ``W_x x_t + b``; or, with ``ids``, the projected
        embedding table ``[V, 4H]`` (step ``t`` reads rows ``ids[t]``, clipped to ``[0, V)``).
      ids: ``[T, B]`` int token ids, or None.
      w: ``W_h [H, 4H]``.  c0, h0: ``[B, H]``.
      save: also return what :func:`lstm_backward` and the weight gradient read.
      eps: ``(eps_c, eps_h)`` ``[T, B, H]`` each, or None: added to the carry after every
        step (the ``dL/dh_t`` probes' perturbation); ``y_t`` is the perturbed ``h_t``.

    Returns:
      ``(ys, cs, acts, h_prev_t)``: ``h_t`` for all t **batch-major** ``[B, T, H]`` (the
      layer's output layout, so no transpose follows), ``c_t`` ``[T, B, H]``, the activated
      ``(i, f, g, o)`` ``[T, B, 4H]`` and ``h_{t-1}^T`` ``[H, T*B]`` (columns in ``(t, b)``
      order: the weight gradient's lhs); the last two are empty arrays unless ``save``.
    """
    _require()
    B, H = h0.shape
    T = ids.shape[0] if ids is not None else xp.shape[0]
    saved = (_f32(T, B, 4 * H), _f32(H, T * B)) if save else (_f32(0), _f32(0))
    outs = (_f32(B, T, H), _f32(T, B, H), *saved)
    call = jax.ffi.ffi_call("rnnlab_lstm_forward", outs, vmap_method=VMAP)
    eps_c, eps_h = (None, None) if eps is None else eps
    args = (xp, _ids(ids), w, c0, h0, _eps(eps_c), _eps(eps_h))
    return call(*args, threads=np.int64(threads(H, 2 * B * H * 4 * H)))


def lstm_backward(
    w, acts, cs, c0, d_ys, d_cT, d_hT, ids=None, vocab: int = 0, eps_c=None, d_cs=None
):
    """Cotangents through the loop of :func:`lstm_forward` (with ``save``).

    Args:
      w: ``W_h [H, 4H]``.  acts: ``[T, B, 4H]`` and cs: ``[T, B, H]`` from the forward.
      c0: ``[B, H]``.  d_ys: ``[B, T, H]`` cotangent of every output ``h_t`` (batch-major).
      d_cT, d_hT: ``[B, H]`` cotangents of the final carry.
      ids, vocab: the forward's token ids ``[T, B]`` and table height ``V``, to get the
        table's gradient here (None: no table).
      eps_c: the forward's ``eps_c`` when it was perturbed (else None).
      d_cs: ``[T, B, H]`` cotangent of every ``c_t`` from outside the loop, or None.

    Returns:
      ``(d_pre [T, B, 4H], d_c0 [B, H], d_h0 [B, H], d_table, (d_eps_c, d_eps_h))``:
      ``d_pre`` is the cotangent of each step's pre-activations ``xp_t + h_{t-1} W_h``, from
      which the weight gradient is ``h_prev_t @ d_pre`` over all ``T*B`` rows; ``d_table``
      ``[V, 4H]`` sums its rows by id (an empty array without ``ids``); ``d_eps_*``
      ``[T, B, H]`` are the cotangents of the perturbed carry after every step (empty arrays
      without ``eps_c``).
    """
    _require()
    T, B, H = cs.shape
    table = _f32(vocab, 4 * H) if ids is not None else _f32(0)
    d_eps = (_f32(T, B, H),) * 2 if eps_c is not None else (_f32(0),) * 2
    outs = (_f32(T, B, 4 * H), _f32(B, H), _f32(B, H), table, *d_eps)
    call = jax.ffi.ffi_call("rnnlab_lstm_backward", outs, vmap_method=VMAP)
    args = (w, acts, cs, c0, d_ys, d_cT, d_hT, _ids(ids), _eps(eps_c), _eps(d_cs))
    d_pre, d_c0, d_h0, d_table, *d_eps = call(
        *args, threads=np.int64(threads(H, 2 * B * H * 4 * H))
    )
    return d_pre, d_c0, d_h0, d_table, tuple(d_eps)


def gru_forward(xp, ids, w, b_hn, h0, *, save: bool, eps=None):
    """The GRU (``convention="pytorch"``) over ``T`` steps from the projected inputs.

    Args:
      xp, ids: as :func:`lstm_forward`, with ``3H`` gate columns (r, z, n).
      w: ``W_h [H, 3H]``.  b_hn: ``[H]``.  h0: ``[B, H]``.
      save: also return what :func:`gru_backward` and the weight gradient read.
      eps: ``[T, B, H]`` or None: added to ``h_t`` after every step, as in
        :func:`lstm_forward`.

    Returns:
      ``(ys [B, T, H], acts, h_prev_t)``: ``acts`` ``[T, B, 4H]`` holds ``r, z, n`` and
      ``m = h_{t-1} W_hn + b_hn`` per step; ``h_prev_t`` as :func:`lstm_forward` (both empty
      arrays unless ``save``).
    """
    _require()
    B, H = h0.shape
    T = ids.shape[0] if ids is not None else xp.shape[0]
    saved = (_f32(T, B, 4 * H), _f32(H, T * B)) if save else (_f32(0), _f32(0))
    outs = (_f32(B, T, H), *saved)
    call = jax.ffi.ffi_call("rnnlab_gru_forward", outs, vmap_method=VMAP)
    args = (xp, _ids(ids), w, b_hn, h0, _eps(eps))
    return call(*args, threads=np.int64(threads(H, 2 * B * H * 3 * H)))


def gru_backward(w, acts, ys, h0, d_ys, d_hT, ids=None, vocab: int = 0, perturbed=False):
    """Cotangents through the loop of :func:`gru_forward` (with ``save``); ``ys``, ``d_ys``
    batch-major ``[B, T, H]``; ``ids``, ``vocab`` as :func:`lstm_backward`; ``perturbed``:
    the forward had ``eps``.

    Returns:
      ``(d_xp [T, B, 3H], d_hr [T, B, 3H], d_h0 [B, H], d_table, d_eps)``: the cotangents of
      the projected inputs (an empty array with ``ids``) and of ``hr_t = h_{t-1} W_h +
      [0, 0, b_hn]`` (they differ in the n block), ``d_xp``'s rows summed by id ``[V, 3H]``
      (empty without ``ids``), and the
      cotangent of every perturbed ``h_t`` ``[T, B, H]`` (empty unless ``perturbed``).
    """
    _require()
    B, T, H = ys.shape
    table = _f32(vocab, 3 * H) if ids is not None else _f32(0)
    d_eps = _f32(T, B, H) if perturbed else _f32(0)
    d_xp = _f32(0) if ids is not None else _f32(T, B, 3 * H)  # with ids: only d_table
    outs = (d_xp, _f32(T, B, 3 * H), _f32(B, H), table, d_eps)
    call = jax.ffi.ffi_call("rnnlab_gru_backward", outs, vmap_method=VMAP)
    args = (w, acts, ys, h0, d_ys, d_hT, _ids(ids))
    return call(*args, threads=np.int64(threads(H, 2 * B * H * 3 * H)))


def elman_forward(xp, ids, w, h0, *, save: bool, eps=None, relu: bool = False):
    """The Elman RNN ``h_t = phi(xp_t + h_{t-1} W_h)`` (``phi`` tanh, or relu) over ``T``
    steps; ``xp``, ``ids``, ``eps`` as :func:`gru_forward` with ``H`` columns, ``w`` ``[H, H]``.

    Returns:
      ``(ys [B, T, H], h_prev_t, h_raw)``: ``h_prev_t`` ``[H, T*B]`` as :func:`lstm_forward`,
      ``h_raw`` ``[T, B, H]`` the outputs before the perturbation (empty arrays unless
      ``save``, and for ``h_raw`` unless ``eps``). The backward reads ``phi'`` off them.
    """
    _require()
    B, H = h0.shape
    T = ids.shape[0] if ids is not None else xp.shape[0]
    h_raw = _f32(T, B, H) if save and eps is not None else _f32(0)
    outs = (_f32(B, T, H), _f32(H, T * B) if save else _f32(0), h_raw)
    call = jax.ffi.ffi_call("rnnlab_elman_forward", outs, vmap_method=VMAP)
    args = (xp, _ids(ids), w, h0, _eps(eps))
    return call(*args, threads=np.int64(threads(H, 2 * B * H * H)), relu=np.int64(relu))


def elman_backward(w, ys, d_ys, d_hT, ids=None, vocab: int = 0, h_raw=None, relu: bool = False):
    """Cotangents through the loop of :func:`elman_forward`; ``ids``, ``vocab`` as
    :func:`lstm_backward`; ``h_raw`` the forward's, when it was perturbed (else None).

    Returns:
      ``(d_pre [T, B, H], d_h0 [B, H], d_table, d_eps)``: the cotangent of ``xp_t`` and of
      ``h_{t-1} W_h``, the table's gradient ``[V, H]`` (empty without ``ids``), and the
      cotangent of every perturbed ``h_t`` ``[T, B, H]`` (empty without ``h_raw``).
    """
    _require()
    B, T, H = ys.shape
    table = _f32(vocab, H) if ids is not None else _f32(0)
    d_eps = _f32(T, B, H) if h_raw is not None else _f32(0)
    outs = (_f32(T, B, H), _f32(B, H), table, d_eps)
    call = jax.ffi.ffi_call("rnnlab_elman_backward", outs, vmap_method=VMAP)
    args = (w, ys, d_ys, d_hT, _ids(ids), _eps(h_raw))
    return call(*args, threads=np.int64(threads(H, 2 * B * H * H)), relu=np.int64(relu))
