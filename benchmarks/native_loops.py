"""The native kernels' loops alone (rnnlab.engine.kernels): forward and backward time and matmul rate.

    python benchmarks/native_loops.py                         # LSTM and GRU, H = 128, 512, 1024
    python benchmarks/native_loops.py --cells lstm --hidden 512 --threads 1
    python benchmarks/native_loops.py --source old.cc         # A/B: another kernel source

Each row jits one call of ``lstm_forward`` (with ``save``, as in training) and one of
``lstm_backward`` (``gru_*`` for the GRU, with the table's gradient) over ``T`` steps of batch
``B`` reading token ids from a projected table, and times them round-robin (medians). GFLOP/s counts the recurrent
matmuls only: ``2 * T * B * H * G`` per call (``G`` = 4H LSTM, 3H GRU), so the gap to the
machine's large-matmul rate is what the gate math, the barriers and the packing cost.
``--source`` compiles another kernel file (``RNNLAB_NATIVE_SOURCE``), e.g. a previous
version from ``git show REV:rnnlab/native/recurrent_cpu.cc``; run once per source.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", default="lstm,gru")
    ap.add_argument("--hidden", default="128,512,1024")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=None, help="most threads (default: CPUs)")
    ap.add_argument("--source", default=None, help="another kernel source file to compile")
    args = ap.parse_args(argv)
    if args.source:
        os.environ["RNNLAB_NATIVE_SOURCE"] = str(pathlib.Path(args.source).resolve())
    if args.threads:
        os.environ["RNNLAB_NATIVE_THREADS"] = str(args.threads)

    import jax
    import jax.numpy as jnp
    import numpy as np

    from rnnlab.engine import kernels as native

    if not native.available():
        sys.exit(
            "rnnlab.engine.kernels is not available here (needs the CPU backend, AVX-512F, g++)"
        )
    T, B, V = args.steps, args.batch, 65
    print(f"source: {native.SOURCE}; T={T}, B={B}; medians of {args.repeats} round-robin runs\n")
    print("| cell | H | threads | forward ms | forward GFLOP/s | backward ms | backward GFLOP/s |")
    print("|---|---|---|---|---|---|---|")
    for cell in args.cells.split(","):
        for H in map(int, args.hidden.split(",")):
            G = (4 if cell == "lstm" else 3) * H
            k = jax.random.split(jax.random.PRNGKey(0), 4)
            w = jax.random.normal(k[0], (H, G)) / np.sqrt(H)
            table = jax.random.normal(k[1], (V, G))
            ids = jax.random.randint(k[2], (T, B), 0, V)
            h0 = 0.1 * jax.random.normal(k[3], (B, H))
            d_ys = jnp.ones((B, T, H))
            back = dict(ids=ids, vocab=V)  # and the table's gradient, as in training
            if cell == "lstm":
                fwd = jax.jit(lambda t, w: native.lstm_forward(t, ids, w, h0, h0, save=True))
                ys, cs, acts, _ = fwd(table, w)
                bwd = jax.jit(lambda w: native.lstm_backward(w, acts, cs, h0, d_ys, h0, h0, **back))
            else:
                b_hn = jnp.zeros((H,))
                fwd = jax.jit(lambda t, w: native.gru_forward(t, ids, w, b_hn, h0, save=True))
                ys, acts, _ = fwd(table, w)
                bwd = jax.jit(lambda w: native.gru_backward(w, acts, ys, h0, d_ys, h0, **back))
            calls = {"forward": lambda: fwd(table, w), "backward": lambda: bwd(w)}
            times = {name: [] for name in calls}
            for _ in range(2):  # warm-up
                for f in calls.values():
                    jax.block_until_ready(f())
            for _ in range(args.repeats):
                for name, f in calls.items():
                    t0 = time.perf_counter()
                    jax.block_until_ready(f())
                    times[name].append(time.perf_counter() - t0)
            flops = 2 * T * B * H * G
            med = {n: float(np.median(v)) for n, v in times.items()}
            n = native.threads(H, 2 * B * H * G)
            print(
                f"| {cell} | {H} | {n} | {med['forward'] * 1e3:.1f} | {flops / med['forward'] / 1e9:.0f} "
                f"| {med['backward'] * 1e3:.1f} | {flops / med['backward'] / 1e9:.0f} |"
            )


if __name__ == "__main__":
    main()
