"""What every system in the harness shares: the workload spec, FLOP counts, data, timing.

The workload is Karpathy's char-LM training step: tokens ``[B, T]`` -> embedding ``E`` -> ``L``
recurrent layers ``H`` (one unless said) -> dense ``V`` -> softmax cross-entropy; Adam with
global-norm clipping. Shape legend: ``B`` batch, ``T`` time, ``E`` embedding, ``H`` hidden,
``G`` gate width (4H LSTM, 3H GRU), ``V`` vocabulary, ``L`` layers.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable

import numpy as np

#: gate blocks per cell. elman is rnnlab-only (benchmarks/ab.py); the harness's peers (PyTorch,
#: Flax nnx) are timed on the LSTM and the GRU
GATES = {"lstm": 4, "gru": 3, "elman": 1}


@dataclasses.dataclass(frozen=True)
class Spec:
    """One workload configuration (the harness varies ``cell``, ``hidden`` and ``steps``)."""

    cell: str = "lstm"  # lstm | gru | elman (rnnlab only)
    hidden: int = 512  # H
    batch: int = 32  # B
    steps: int = 100  # T
    vocab: int = 65  # V (tinyshakespeare)
    embed: int = 64  # E
    learning_rate: float = 2e-3
    clip: float = 5.0  # global-norm clip
    dtype: str = "float32"  # computation dtype (params stay float32)
    # bfloat16: each system's bf16 mode. rnnlab: the cells' matmul_dtype (bf16 operands of the
    # recurrent matmuls, float32 accumulation, gates and carries); torch: autocast (CPU too);
    # flax: dtype=bfloat16 (its only knob: everything in bf16)
    matmul_dtype: str = "float32"
    layers: int = 1  # L stacked recurrent layers
    # carry each step's final state into the next step (detached): truncated BPTT over
    # contiguous streams, as the main job (`rnnlab run char-rnn`) trains
    stream: bool = False

    def __post_init__(self):
        if self.cell not in GATES:
            raise ValueError(f"cell must be one of {sorted(GATES)}, got {self.cell!r}")
        if self.layers < 1:
            raise ValueError(f"layers must be >= 1, got {self.layers}")

    @property
    def tokens(self) -> int:
        """Tokens per step: ``B * T``."""
        return self.batch * self.steps


def forward_flops(spec: Spec) -> float:
    """Matmul FLOPs the forward pass needs: ``2 B T (H G + (L - 1) 2 H G + H V) + 2 V E G``.

    With token inputs the first layer's input projection is a row lookup in the table
    ``embedding [V, E] @ W_x [E, G]`` (``2 V E G`` once per call), not a ``[B T, E] x [E, G]``
    matmul; every layer runs its recurrent matmul, the upper layers their input projection from
    ``H``, and the head ``[B T, H] x [H, V]``. Elementwise work is not counted.
    """
    H, G = spec.hidden, GATES[spec.cell] * spec.hidden
    per_token = 2 * (H * G + (spec.layers - 1) * 2 * H * G + H * spec.vocab)
    return float(per_token * spec.tokens + 2 * spec.vocab * spec.embed * G)


def train_flops(spec: Spec) -> float:
    """Matmul FLOPs of a train step: forward + backward (input and weight gradients) = 3x."""
    return 3.0 * forward_flops(spec)


def batch(spec: Spec, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random ``(inputs, targets)`` int32 ``[B, T]`` (speed does not depend on the text)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, spec.vocab, size=(spec.batch, spec.steps + 1), dtype=np.int32)
    return ids[:, :-1], ids[:, 1:]


def time_runs(fn: Callable[[], object], *, warmup: int, repeats: int) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls.

    ``fn`` must block until its work is done (``block_until_ready``, a CUDA sync).
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    time.sleep(0.05)  # let spinning worker threads (OpenMP, Eigen) go idle before the next system
    return times


def time_interleaved(
    fns: dict[str, Callable[[], object]],
    *,
    warmup: int,
    repeats: int,
    pause: float = 0.02,
    cpu: dict[str, list[float]] | None = None,
) -> dict[str, list[float]]:
    """Like :func:`time_runs` for several systems, round-robin: one run of each per round.

    Load from other processes then drifts over all systems alike, so their ratios stay fair.
    ``pause`` seconds between runs let spinning worker threads (OpenMP, Eigen) go idle, so
    one system's threads do not steal the next one's cores. ``cpu``, when given, receives each
    run's CPU seconds of this process (all its threads), per name: on a host shared with other
    jobs the CPU a step takes moves less than its wall-clock time.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    cpus = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            time.sleep(pause)
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            times[name].append(time.perf_counter() - t0)
            cpus[name].append(time.process_time() - c0)
    if cpu is not None:
        cpu.update(cpus)
    return times


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def jax_matmul_rate(n: int = 1024, k: int = 2048, repeats: int = 5) -> float:
    """Measured float32 matmul rate in FLOP/s of JAX on its default device (``[n, k] x [k, k]``).

    The FLOP floor of a step is its matmul FLOPs over this rate: no system can beat it by much.
    """
    import jax
    import jax.numpy as jnp

    a = jnp.ones((n, k), jnp.float32)
    b = jnp.ones((k, k), jnp.float32) / k
    f = jax.jit(lambda a, b: a @ b)
    times = time_runs(lambda: f(a, b).block_until_ready(), warmup=2, repeats=repeats)
    return 2.0 * n * k * k / min(times)


def torch_matmul_rate(n: int = 1024, k: int = 2048, repeats: int = 5) -> float | None:
    """The same measurement with PyTorch (None without torch)."""
    try:
        import torch
    except ImportError:
        return None
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    a = torch.ones((n, k), device=dev)
    b = torch.ones((k, k), device=dev) / k

    def run():
        a @ b
        if dev == "cuda":
            torch.cuda.synchronize()

    return 2.0 * n * k * k / min(time_runs(run, warmup=2, repeats=repeats))


def tiled_orthogonal(key, H: int, n: int):
    """``W [H, n*H]``: ``n`` copies of one orthogonal ``[H, H]`` block, so a state scanned through
    ``W``'s first block (or back through ``W^T / n``) keeps its norm: no overflow, no denormals."""
    import jax
    import jax.numpy as jnp

    return jnp.tile(jnp.linalg.qr(jax.random.normal(key, (H, H)))[0], (1, n))


def forward_matmuls(h0, w, T: int, mm):
    """``T`` recurrent matmuls in a ``lax.scan``: ``h <- mm(h, w)[:, :H]`` (``h [B, H]``,
    ``w [H, G]``), each step's ``h`` stacked as the engine stacks its states: ``[T, B, H]``."""
    import jax

    H = h0.shape[-1]
    step = lambda h, _: (mm(h, w)[:, :H],) * 2
    return jax.lax.scan(step, h0, None, length=T)[1]


def backward_matmuls(d0, T: int, n: int, mm, reverse: bool = False):
    """``T`` backward-scan matmuls: ``d <- [mm(d)] * n`` concatenated (``d [B, G]``, ``mm`` maps
    it to ``[B, H]``: ``dhr_t W_h^T``), each step's ``d`` stacked as the fused backward stacks
    its gate cotangents: ``[T, B, G]``."""
    import jax
    import jax.numpy as jnp

    step = lambda d, _: (jnp.concatenate([mm(d)] * n, axis=1),) * 2
    return jax.lax.scan(step, d0, None, length=T, reverse=reverse)[1]


def matmuls_alone(spec: Spec, workload: str) -> Callable[[], None]:
    """A callable that runs only the step's matmuls, the way the engine's XLA program runs them.

    Forward: ``T`` recurrent ``[B, H] x [H, G]`` matmuls in a ``lax.scan``, each step's slice
    ``[B, H]`` stacked, then the head ``[T*B, H] x [H, V]``. A train step adds the backward scan's
    ``T`` ``[B, G] x [G, H]`` matmuls (against ``W_h^T``, transposed once), each step's ``[B, G]``
    stacked, the weight gradient ``[H, T*B] x [T*B, G]`` and the head's two gradient matmuls.
    With ``spec.matmul_dtype`` bfloat16 the recurrent matmuls take bf16 operands, as the engine's.
    The per-step slice and stacking are the least a scan must move. The embedding's projection
    (a ``[V, E] x [E, G]`` table) is left out. So this is the step's time with no gate math, no
    optimizer and no loss: what the engine would take if everything but the matmuls were free.
    """
    import jax
    import jax.numpy as jnp

    from rnnlab.cells import recurrent_matmul

    B, T, H, V = spec.batch, spec.steps, spec.hidden, spec.vocab
    n = GATES[spec.cell]
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    w = tiled_orthogonal(k1, H, n)  # [H, G]
    w_out = jax.random.normal(k2, (H, V)) / H**0.5
    h0 = jax.random.normal(k3, (B, H))
    mm = lambda a, b: recurrent_matmul(a, b, None if spec.matmul_dtype == "float32" else "bfloat16")

    def forward(w, w_out):
        hs = forward_matmuls(h0, w, T, mm)  # [T, B, H]
        return hs, hs.reshape(T * B, H) @ w_out

    def train(w, w_out):
        hs, logits = forward(w, w_out)
        w_t = w.T / n  # [G, H]: d @ w_t keeps d's scale
        ds = backward_matmuls(jnp.tile(h0, (1, n)), T, n, lambda d: mm(d, w_t), reverse=True)
        d_w = hs.reshape(T * B, H).T @ ds.reshape(T * B, -1)  # [H, G]
        d_hs = logits @ w_out.T  # [T*B, H]
        d_w_out = hs.reshape(T * B, H).T @ logits  # [H, V]
        return d_w, d_hs, d_w_out

    f = jax.jit(train if workload == "train" else forward)
    return lambda: jax.block_until_ready(f(w, w_out))


def job_spec(experiment: str = "char-rnn", vocab: int = 65) -> Spec:
    """The main job's workload: the sizes of ``experiment``'s default config (char-rnn: 2 LSTM
    layers of 256, embedding 64, B = 32 streams of T = 64, Adam 2e-3, clip 5), the state
    carried from step to step, and ``vocab`` = 65 (tinyshakespeare's characters)."""
    from rnnlab import registry

    c = registry.load(experiment).get_config()
    m, d = c.model, c.data
    return Spec(
        cell=m.cell,
        hidden=m.hidden_size,
        layers=m.num_layers,
        embed=m.embed_dim,
        batch=d.batch_size,
        steps=d.seq_length,
        vocab=vocab,
        learning_rate=c.optim.learning_rate,
        clip=c.optim.clip_value,
        stream=True,
    )
