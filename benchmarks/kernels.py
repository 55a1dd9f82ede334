"""Where one step's time goes: XLA's kernels of an rnnlab (or Flax) step, from a profiler trace.

    python benchmarks/kernels.py --cell lstm --hidden 512              # the train step
    python benchmarks/kernels.py --cell gru --hidden 128 --workload forward --system flax

Runs the harness's step (:mod:`benchmarks.rnnlab_system`, the char-LM of workload (a)), traces
``--steps`` calls with ``jax.profiler.trace`` (Perfetto JSON) and sums the duration of each XLA
kernel (thunk) per step. Kernels that run ``T`` times per step are the loop body of a time scan;
the rest run once (projections, weight-gradient matmuls, the optimizer, buffer initialisation).
Matmuls show as ``ynn_fusion*`` / ``dot*`` (XLA:CPU hands them to YNNPACK/Eigen); the rest are
XLA's fused elementwise loops, copies and ``dynamic-update-slice`` writes of stacked outputs.

Kernel times are wall time on the thread that issued them. Matmuls whose work is split over
worker threads can read shorter than they are, so the table says where the time goes, not exactly
how long each kernel takes. Writes ``benchmarks/results/kernels-<system>-<cell>-<H>-<workload>.md``.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cell", default="lstm", choices=("lstm", "gru"))
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--steps-per-seq", dest="T", type=int, default=100, help="T")
    p.add_argument("--workload", default="train", choices=("train", "forward"))
    p.add_argument("--system", default="rnnlab", choices=("rnnlab", "rnnlab-autodiff", "flax"))
    p.add_argument("--steps", type=int, default=5, help="traced calls (after 3 warm-up calls)")
    p.add_argument("--top", type=int, default=25, help="kernels listed")
    p.add_argument("--out", default="benchmarks/results", help="folder for the .md table")
    return p.parse_args(argv)


def make_system(args):
    from benchmarks.common import Spec

    spec = Spec(cell=args.cell, hidden=args.hidden, steps=args.T)
    if args.system == "flax":
        from benchmarks.flax_system import FlaxSystem

        return FlaxSystem(spec)
    from benchmarks.rnnlab_system import RnnlabSystem

    backward = "autodiff" if args.system == "rnnlab-autodiff" else "auto"
    return RnnlabSystem(spec, backward=backward)


def kernel_times(trace_dir: pathlib.Path, calls: int) -> tuple[dict, dict]:
    """``({kernel: ms per call}, {kernel: launches per call})`` from the Perfetto trace."""
    (path,) = trace_dir.glob("**/*.trace.json.gz")
    events = json.load(gzip.open(path))
    events = events["traceEvents"] if isinstance(events, dict) else events
    total, count = collections.Counter(), collections.Counter()
    for e in events:
        name = e.get("name", "")
        # complete events of XLA kernels only: not Python frames ("$..."), not the executor
        if e.get("ph") != "X" or name.startswith("$") or "::" in name or "(" in name:
            continue
        if name.startswith("while"):  # the loop itself: its time is its body's kernels again
            continue
        total[name] += e["dur"] / 1e3
        count[name] += 1
    return (
        {k: v / calls for k, v in total.items()},
        {k: count[k] / calls for k in total},
    )


def table(ms: dict, launches: dict, T: int, top: int, wall: float) -> str:
    in_loop = {k for k, n in launches.items() if n >= T and n % T == 0}
    loop_ms = sum(ms[k] for k in in_loop)
    once_ms = sum(v for k, v in ms.items() if k not in in_loop)
    is_mm = lambda k: k.startswith(("ynn_fusion", "xnn_fusion", "dot", "onednn"))
    mm_loop = sum(ms[k] for k in in_loop if is_mm(k))
    lines = [
        f"wall time per step: {wall:.1f} ms (median of the traced calls, profiler on)",
        f"kernels in the time loop (run T={T} times per step): {loop_ms:.1f} ms, of which "
        f"matmuls {mm_loop:.1f} ms and the rest (elementwise, copies, stacking) "
        f"{loop_ms - mm_loop:.1f} ms; launches per step: "
        f"{sum(launches[k] for k in in_loop):.0f}",
        f"kernels run once per step: {once_ms:.1f} ms",
        "",
        "| kernel | ms/step | launches/step | where |",
        "|---|---|---|---|",
    ]
    for k, v in sorted(ms.items(), key=lambda kv: -kv[1])[:top]:
        where = "loop" if k in in_loop else "once"
        lines.append(f"| {k} | {v:.2f} | {launches[k]:.0f} | {where} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse(argv)
    from rnnlab import devices

    devices.reexec_with_tcmalloc(
        [sys.executable, str(pathlib.Path(__file__).resolve()), *sys.argv[1:]]
    )
    import time

    import jax

    system = make_system(args)
    run = system.train_step if args.workload == "train" else system.forward
    for _ in range(3):
        run()
    walls = []
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp, create_perfetto_trace=True):
            for _ in range(args.steps):
                t0 = time.perf_counter()
                run()
                walls.append((time.perf_counter() - t0) * 1e3)
        ms, launches = kernel_times(pathlib.Path(tmp), args.steps)
    wall = sorted(walls)[len(walls) // 2]
    title = f"{args.system} {args.cell} H={args.hidden} T={args.T} B=32, {args.workload} step"
    text = f"### {title}\n\n" + table(ms, launches, args.T, args.top, wall) + "\n"
    print(text)
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    name = f"kernels-{args.system}-{args.cell}-{args.hidden}-{args.workload}.md"
    (out / name).write_text(text)
    print(f"wrote {out / name}")


if __name__ == "__main__":
    main()
