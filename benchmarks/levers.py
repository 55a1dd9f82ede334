"""A/B of the engine's speed levers, in one process: ``unroll`` + a loss, forward and gradient.

    python benchmarks/levers.py                       # LSTM H=128 and 512, B=32, T=100
    python benchmarks/levers.py --cell gru --hidden 256 --repeats 9 --single-thread

Each variant is timed round-robin (one run of each, repeated), so load drift hits all alike; the
table gives medians of CPU time (``--clock process``, robust on a shared machine when XLA runs
single-threaded) or wall time, and minor page faults per call (the allocator lever: run it once
plainly and once under ``LD_PRELOAD=libtcmalloc_minimal.so.4``).
Variants: ``backward`` fused / autodiff; ``unroll`` 1 / 4; ``remat`` False / True / chunked;
``dtype`` float32 / bfloat16.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import resource
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cell", default="lstm")
    p.add_argument("--hidden", default="128,512")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--clock", choices=("process", "wall"), default="process")
    p.add_argument("--single-thread", action="store_true", help="XLA on one thread (set first)")
    return p.parse_args(argv)


VARIANTS = {  # name -> unroll keyword arguments (and dtype)
    "fused (default)": {"backward": "fused"},
    "autodiff": {"backward": "autodiff"},
    "fused, unroll=4": {"backward": "fused", "unroll": 4},
    "autodiff, remat=True": {"backward": "autodiff", "remat": True},
    "fused, remat=chunked": {"backward": "fused", "remat": "chunked"},
    "fused, bfloat16": {"backward": "fused", "dtype": "bfloat16"},
}


def main(argv=None) -> None:
    args = parse(argv)
    if args.single_thread:
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flags).strip()
    import jax
    import jax.numpy as jnp

    from rnnlab.engine import make_cell, unroll

    clock = time.process_time if args.clock == "process" else time.perf_counter
    print(
        f"allocator: {os.environ.get('LD_PRELOAD') or 'glibc'}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"
    )
    print(f"clock: {args.clock}; medians of {args.repeats} round-robin runs; ms (page faults/call)")
    for H in [int(h) for h in args.hidden.split(",")]:
        B, T, D = args.batch, args.steps, 64
        xs = jax.random.normal(jax.random.PRNGKey(0), (B, T, D))
        r = jax.random.normal(jax.random.PRNGKey(2), (B, T, H))
        fns = {}
        for name, kw in VARIANTS.items():
            kw = dict(kw)
            dtype = kw.pop("dtype", None)
            cell = make_cell(args.cell, H, dtype=None if dtype is None else jnp.dtype(dtype))
            params = cell.init(jax.random.PRNGKey(1), cell.initialize_carry(None, (B, D)), xs[:, 0])

            def loss(p, x, cell=cell, kw=kw):
                _, ys, _ = unroll(cell, p, x, **kw)
                return jnp.sum(ys.astype(jnp.float32) * r)

            fns[name] = (jax.jit(loss), jax.jit(jax.grad(loss, argnums=(0, 1))), params)
        times = {(n, k): [] for n in fns for k in ("fwd", "grad")}
        faults = {key: 0 for key in times}
        for f, g, p in fns.values():  # compile and warm up
            jax.block_until_ready((f(p, xs), g(p, xs)))
        for _ in range(args.repeats):
            for n, (f, g, p) in fns.items():
                for k, fn in (("fwd", f), ("grad", g)):
                    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                    t0 = clock()
                    jax.block_until_ready(fn(p, xs))
                    times[(n, k)].append(clock() - t0)
                    faults[(n, k)] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
        print(f"\n{args.cell} H={H} B={B} T={T}\n| variant | forward ms | grad ms |\n|---|---|---|")
        for n in fns:
            cols = [
                f"{1e3 * statistics.median(times[(n, k)]):.1f} ({faults[(n, k)] // args.repeats})"
                for k in ("fwd", "grad")
            ]
            print(f"| {n} | {cols[0]} | {cols[1]} |")


if __name__ == "__main__":
    main()
