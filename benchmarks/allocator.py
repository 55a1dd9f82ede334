"""The host allocator's effect: page faults and time per train step under each malloc.

    python benchmarks/allocator.py                          # the main job's step (2x256, T=64)
    python benchmarks/allocator.py --cell lstm --hidden 512 # the harness's one-layer step
    python benchmarks/allocator.py --extra M_ARENA_MAX=2    # also: tuned + another setting

Each mode runs in its own plain ``python`` process that imports rnnlab (the allocator is set up
at that import: :mod:`rnnlab.devices`), the modes in a rotating order, ``--rounds`` times:

* ``system``: ``RNNLAB_ALLOCATOR=system``, glibc's defaults;
* ``tuned``: the default, glibc's ``mallopt`` tunables set at import;
* ``tcmalloc``: ``LD_PRELOAD`` of libtcmalloc_minimal (only when installed);
* ``tuned+NAME=VALUE``: ``--extra``, the tuned settings and one more ``mallopt`` call after the
  import (before any XLA buffer exists), to try a setting.

Per step: minor page faults (``getrusage``), wall and CPU time (all threads: robust on a shared
host). The table gives per-mode medians over rounds (each round's value is its process's
median over ``--steps`` steps), the range over rounds, and the CPU time over tcmalloc's.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python benchmarks/...`: this checkout's rnnlab and benchmarks


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cell", default=None, help="lstm | gru: the harness's one-layer step")
    p.add_argument("--hidden", type=int, default=512, help="with --cell")
    p.add_argument("--steps", type=int, default=20, help="timed steps per process")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--modes", default="system,tuned,tcmalloc")
    p.add_argument("--extra", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--out", default=None, help="write the rounds' results as JSON here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.modes = [m for m in args.modes.split(",") if m]
    bad = sorted(set(args.modes) - {"system", "tuned", "tcmalloc"})
    if bad:
        p.error(f"unknown mode {bad}; known: system, tuned, tcmalloc")
    for extra in args.extra:
        name, _, value = extra.partition("=")
        if not value.lstrip("-").isdigit():
            p.error(f"--extra takes NAME=INTEGER (e.g. M_ARENA_MAX=2); got {extra!r}")
    if args.cell not in (None, "lstm", "gru", "elman"):
        p.error(f"--cell must be lstm, gru or elman; got {args.cell!r}")
    return args


def child(args) -> dict:
    """One mode's process: import rnnlab (the allocator set up), build the step, time it."""
    import resource

    import rnnlab  # noqa: F401  (first: configure_allocator runs before JAX is imported)
    from rnnlab import devices

    if args.child.startswith("tuned+"):
        name, _, value = args.child.removeprefix("tuned+").partition("=")
        if not all(devices.mallopt({name: int(value)}).values()):
            raise SystemExit(f"mallopt refused {name}={value}")
    from benchmarks.common import Spec, job_spec

    if args.cell:
        from benchmarks.rnnlab_system import RnnlabSystem

        spec = Spec(cell=args.cell, hidden=args.hidden)
        system = RnnlabSystem(spec)
    else:
        from benchmarks.rnnlab_system import JobSystem

        spec = job_spec()
        system = JobSystem(spec)
    for _ in range(args.warmup):
        system.train_step()
    wall, cpu, faults = [], [], []
    for _ in range(args.steps):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0, c0 = time.perf_counter(), time.process_time()
        system.train_step()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    med = statistics.median
    return {
        "mode": args.child,
        "allocator": devices.allocator(),
        "preload": os.environ.get("LD_PRELOAD", ""),
        "wall_s": med(wall),
        "cpu_s": med(cpu),
        "faults": med(faults),
        "spec": str(spec),
    }


def environment(mode: str) -> dict | None:
    """The child's environment for ``mode``, or ``None`` when tcmalloc is not installed."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "RNNLAB_ALLOCATOR")}
    if mode == "system":
        return dict(env, RNNLAB_ALLOCATOR="system")
    if mode == "tcmalloc":
        from rnnlab.devices import tcmalloc_library

        lib = tcmalloc_library()
        return dict(env, LD_PRELOAD=lib) if lib else None
    return dict(env, RNNLAB_ALLOCATOR="tuned")


def main(argv=None) -> None:
    args = parse(argv)
    if args.child:
        print(json.dumps(child(args)))
        return
    modes = args.modes + [f"tuned+{e}" for e in args.extra]
    envs = {m: environment(m) for m in modes}
    for m in [m for m, e in envs.items() if e is None]:
        print(f"[allocator] {m}: libtcmalloc_minimal is not installed: left out", file=sys.stderr)
        modes.remove(m)
    base = [sys.executable, str(pathlib.Path(__file__).resolve())]
    opts = ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    if args.cell:
        opts += ["--cell", args.cell, "--hidden", str(args.hidden)]
    results = {m: [] for m in modes}
    load = [os.getloadavg()]
    t0 = time.time()
    for r in range(args.rounds):
        for m in modes[r % len(modes) :] + modes[: r % len(modes)]:  # rotate the order
            out = subprocess.run(
                [*base, *opts, "--child", m], env=envs[m], capture_output=True, text=True
            )
            if out.returncode:
                raise SystemExit(f"{m}: the child failed:\n{out.stderr[-3000:]}")
            results[m].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"[allocator] round {r + 1} {m}: {results[m][-1]}", file=sys.stderr)
    load.append(os.getloadavg())
    print(report(args, results, load, time.time() - t0))
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps({"results": results, "load": load}, indent=1))


def report(args, results: dict, load: list, wall: float) -> str:
    med = statistics.median
    first = next(iter(results.values()))[0]
    lines = [
        f"Command: `python benchmarks/allocator.py {' '.join(sys.argv[1:])}` ({wall:.0f} s)",
        f"Workload: {first['spec']}; {args.steps} timed steps per process after "
        f"{args.warmup}, {args.rounds} rounds (a process per mode per round).",
        "Load average (1, 5, 15 min) at start and end: "
        + "; ".join(", ".join(f"{x:.2f}" for x in la) for la in load),
        "",
        "| mode | malloc | faults/step | wall ms (range) | CPU ms (range) | CPU / tcmalloc |",
        "|---|---|---|---|---|---|",
    ]
    ref = results.get("tcmalloc")
    ref_cpu = med([r["cpu_s"] for r in ref]) if ref else None
    for mode, rs in results.items():
        a = rs[0]["allocator"]
        what = a["mode"] + (f" {a['mallopt']}" if a["mallopt"] else "")
        wall_ = [1e3 * r["wall_s"] for r in rs]
        cpu = [1e3 * r["cpu_s"] for r in rs]
        rng = lambda xs: f"{med(xs):.1f} ({min(xs):.1f}-{max(xs):.1f})"
        vs = f"{med(cpu) / (1e3 * ref_cpu):.2f}x" if ref_cpu else "-"
        faults = med([r["faults"] for r in rs])
        lines.append(f"| {mode} | {what} | {faults:,.0f} | {rng(wall_)} | {rng(cpu)} | {vs} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
