"""Sequential ``lax.scan`` vs ``lax.associative_scan`` for the linear cells, as T grows.

    python benchmarks/scan_crossover.py [mingru|minlstm|lru ...] [--repeats 5]

Forward + backward of ``rnnlab.unroll`` (H=64, B=16, D=64), medians of interleaved repeats
(both scans see the same machine load), T in {64, 256, 1024, 4096}. ``scan="auto"`` in
``rnnlab/engine/plan.py`` (``THRESHOLDS["associative_min_t"]``) is set from what this prints.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.engine import make_cell, unroll

H, B, D = 64, 16, 64
LENGTHS = (64, 256, 1024, 4096)


def crossover(cell_name: str, repeats: int = 5) -> list[dict]:
    cell = make_cell(cell_name, H)
    params = cell.init(jax.random.key(0), cell.initialize_carry(None, (B, D)), jnp.zeros((B, D)))
    rows = []
    for T in LENGTHS:
        xs = jax.random.normal(jax.random.key(1), (B, T, D))
        fns = {}
        for scan in ("sequential", "associative"):
            loss = lambda p, x, scan=scan: jnp.sum(unroll(cell, p, x, scan=scan)[1] ** 2)
            fns[scan] = jax.jit(jax.value_and_grad(loss))
            jax.block_until_ready(fns[scan](params, xs))  # compile
        times = {s: [] for s in fns}
        for _ in range(repeats):
            for s, f in fns.items():
                t0 = time.perf_counter()
                jax.block_until_ready(f(params, xs))
                times[s].append(time.perf_counter() - t0)
        med = {s: 1e3 * float(np.median(v)) for s, v in times.items()}
        rows.append({"cell": cell_name, "T": T, **med})
        print(
            f"{cell_name:8s} T={T:5d}  sequential {med['sequential']:8.2f} ms  "
            f"associative {med['associative']:8.2f} ms  "
            f"speed-up of associative {med['sequential'] / med['associative']:.2f}x",
            flush=True,
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cells", nargs="*", default=["mingru", "lru"])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    print(f"backend: {jax.default_backend()}, devices: {jax.devices()}")
    for name in args.cells:
        crossover(name, args.repeats)


if __name__ == "__main__":
    main()
