"""Does XLA:CPU run independent work side by side? A scan and an unrelated matmul, one jit.

    python benchmarks/patches/overlap.py

Times, round-robin: an LSTM-like scan (100 steps of ``[32, 512] x [512, 2048]`` plus gate math),
a ``[512, 1600] x [1600, 2048]`` matmul (the size of an LSTM-512 weight gradient), both in one
jitted function with no dependency between them, and both with the matmul reading the scan's
result. If XLA overlapped independent work, "both, independent" would take less than the sum.
The question behind it: would splitting the backward scan in two hide the weight gradient of
the first half behind the second?
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks.common import median, time_interleaved  # noqa: E402

B, H, T = 32, 512, 100
k = jax.random.key(0)
W = jax.random.normal(k, (H, 4 * H)) * 0.02
h0 = jax.random.normal(k, (B, H))
A, Bm = jax.random.normal(k, (512, 1600)), jax.random.normal(k, (1600, 2048))


def scan(h0, W):
    def body(h, _):
        i, f, g, o = jnp.split(h @ W, 4, axis=1)
        h = jax.nn.sigmoid(i) * jnp.tanh(g) + jax.nn.sigmoid(f) * jnp.tanh(o) * h
        return h, None

    return jax.lax.scan(body, h0, None, length=T)[0]


f_scan = jax.jit(scan)
f_mm = jax.jit(lambda A, Bm: A @ Bm)
f_both = jax.jit(lambda h0, W, A, Bm: (scan(h0, W), A @ Bm))
f_dep = jax.jit(lambda h0, W, A, Bm: (lambda h: (h, (A + h[0, 0]) @ Bm))(scan(h0, W)))
fns = {
    "scan": lambda: jax.block_until_ready(f_scan(h0, W)),
    "matmul": lambda: jax.block_until_ready(f_mm(A, Bm)),
    "both, independent": lambda: jax.block_until_ready(f_both(h0, W, A, Bm)),
    "both, matmul after the scan": lambda: jax.block_until_ready(f_dep(h0, W, A, Bm)),
}
times = time_interleaved(fns, warmup=2, repeats=9)
for name in fns:
    print(f"{name:30s} {1e3 * median(times[name]):7.2f} ms")
