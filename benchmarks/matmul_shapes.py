"""The rate of the recurrent step's matmuls as XLA runs them in a scan, by shape and dtype.

    python benchmarks/matmul_shapes.py                      # LSTM-512: B=32, H=512, G=2048
    python benchmarks/matmul_shapes.py --hidden 1024 --gates 3 --batch 64

Each row times ``T`` dependent matmuls in one ``lax.scan`` (the next step's operand is a slice or
a concatenation of copies of this step's result, stacked as the engine stacks its states and gate
cotangents: :func:`benchmarks.common.forward_matmuls`, ``backward_matmuls``, the scans the
harness's "matmuls alone" runs too), medians of round-robin runs:

* ``forward``: ``[B, H] x [H, G]``, the recurrent matmul ``h_{t-1} W_h``;
* ``backward``: ``[B, G] x [G, H]`` against ``W_h^T`` transposed once before the scan (the fused
  backward's ``dh = dhr W_h^T``), and the same contracting ``W_h``'s last axis in the loop;
* ``weight grad``: the one ``[H, T*B] x [T*B, G]`` matmul after the scan.

Each in float32 and with bfloat16 operands and float32 accumulation (``preferred_element_type``).
GFLOP/s is ``2 * rows * H * G`` per matmul over the median time. Shape legend: ``B`` batch, ``T``
time, ``H`` hidden, ``G`` gate width.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--gates", type=int, default=4, help="G = gates * H (4 LSTM, 3 GRU)")
    p.add_argument("--steps-per-seq", dest="T", type=int, default=100)
    p.add_argument("--repeats", type=int, default=9)
    return p.parse_args(argv)


def cases(B: int, H: int, n: int, T: int) -> dict:
    """``{name: (fn, args, flops)}``: jitted functions of the step's matmul shapes."""
    import jax
    import jax.numpy as jnp

    from benchmarks.common import backward_matmuls, forward_matmuls, tiled_orthogonal

    G = n * H
    f32, bf16 = jnp.float32, jnp.bfloat16
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    w = tiled_orthogonal(k1, H, n)  # [H, G]
    h0, d0 = jax.random.normal(k2, (B, H)), jax.random.normal(k3, (B, G))
    rows_h, rows_d = jax.random.normal(k2, (T * B, H)), jax.random.normal(k3, (T * B, G))

    def dot(a, b, dt, dims=((1,), (0,))):
        a, b = a.astype(dt), b.astype(dt)
        return jax.lax.dot_general(a, b, (dims, ((), ())), preferred_element_type=f32)

    def forward(dt):  # w cast once, before the loop
        return lambda h0, w: forward_matmuls(h0, w.astype(dt), T, lambda a, b: dot(a, b, dt))

    def backward(dt, transposed: bool):
        def f(d0, w):
            if transposed:  # W_h [H, G] contracted on its last axis in the loop
                mm = lambda d: dot(d, w, dt, ((1,), (1,))) / n
            else:  # W_h^T [G, H] materialized before the loop
                w_t = w.T.astype(dt) / n
                mm = lambda d: dot(d, w_t, dt)
            return backward_matmuls(d0, T, n, mm)

        return f

    weight_grad = lambda dt: lambda a, b: dot(a, b, dt, ((0,), (0,)))
    mm_flops = 2.0 * B * H * G * T
    out = {}
    for label, dt in (("float32", f32), ("bf16 operands", bf16)):
        out[f"forward, {label}"] = (forward(dt), (h0, w), mm_flops)
        out[f"backward (W_h^T before the loop), {label}"] = (backward(dt, False), (d0, w), mm_flops)
        out[f"backward (contracting W_h's last axis), {label}"] = (
            backward(dt, True),
            (d0, w),
            mm_flops,
        )
        out[f"weight grad, {label}"] = (weight_grad(dt), (rows_h, rows_d), mm_flops)
    return {k: (jax.jit(f), a, fl) for k, (f, a, fl) in out.items()}


def main(argv=None) -> None:
    args = parse(argv)
    from rnnlab import devices

    devices.reexec_with_tcmalloc(
        [sys.executable, str(pathlib.Path(__file__).resolve()), *sys.argv[1:]]
    )
    import jax

    from benchmarks.common import median, time_interleaved

    B, H, n, T = args.batch, args.hidden, args.gates, args.T
    built = cases(B, H, n, T)
    fns = {k: (lambda f=f, a=a: jax.block_until_ready(f(*a))) for k, (f, a, _) in built.items()}
    times = time_interleaved(fns, warmup=2, repeats=args.repeats)
    print(f"B={B} H={H} G={n * H} T={T}; {jax.devices()[0].device_kind}; medians of {args.repeats}")
    print("\n| matmul | ms (T matmuls, or the one weight grad) | GFLOP/s |\n|---|---|---|")
    for k, (_, _, flops) in built.items():
        s = median(times[k])
        print(f"| {k} | {1e3 * s:.3g} | {flops / s / 1e9:.3g} |")


if __name__ == "__main__":
    main()
