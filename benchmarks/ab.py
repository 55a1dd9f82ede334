"""A/B of one engine change on the harness's char-LM step, both sides in one process.

    # a constant of rnnlab.unroll changed on side B (a Python literal)
    python benchmarks/ab.py --set 'IN_LOOP_MAX_D={}' --cell gru --hidden 256 --embed 128
    python benchmarks/ab.py --set 'FUSED_MIN_HIDDEN=10**9' --cell lstm --hidden 128
    # a constant of another engine module; --both sets one on both sides (here: embedded rows)
    python benchmarks/ab.py --set 'fused.READ_AHEAD={}' --cell gru --hidden 512
    python benchmarks/ab.py --set 'IN_LOOP_MAX_D={}' --both 'FOLD_EMBEDDING=False' --hidden 512
    # side A runs an older rnnlab/fused.py (side B: the working tree)
    git show HEAD~1:rnnlab/fused.py > /tmp/fused_old.py
    python benchmarks/ab.py --old-fused /tmp/fused_old.py --cell lstm --hidden 512
    # side B's cells take bfloat16 matmul operands (cell option matmul_dtype)
    python benchmarks/ab.py --matmul-dtype bfloat16 --cell lstm --hidden 512
    # a field of the workload spec on both sides (here: both in bf16, a constant on side B)
    python benchmarks/ab.py --spec matmul_dtype=bfloat16 --set 'fused.READ_AHEAD={}' --cell gru
    # side A runs an older cell file (here the LSTM of commit 8f230fa)
    git show 8f230fa:rnnlab/cells/lstm.py > /tmp/lstm_old.py
    python benchmarks/ab.py --old-cell /tmp/lstm_old.py --cell lstm --hidden 512

Both sides are built (and compiled) first. Then their train step, forward and ``dL/dh_t`` probe
run round-robin, one call of each per round. Load from other processes then drifts over both
sides alike. Run-to-run spread on a shared 2-core machine is about 5-10%, so a difference
smaller than that needs repeating. Medians in ms. Re-runs itself under tcmalloc, like the
harness.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--set", metavar="NAME=VALUE", help="a constant of rnnlab.unroll (or fused.NAME) on side B"
    )
    which.add_argument("--old-fused", metavar="PATH", help="an older rnnlab/fused.py for side A")
    which.add_argument(
        "--old-cell", metavar="PATH", help="an older rnnlab/cells/<--cell>.py for side A"
    )
    which.add_argument(
        "--matmul-dtype",
        choices=("bfloat16",),
        help="side B: the cell's matmul_dtype (bf16 recurrent-matmul operands); A: float32",
    )
    p.add_argument("--cell", default="lstm", choices=("lstm", "gru", "elman"))
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--embed", type=int, default=64, help="D, the input width of the layer")
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument(
        "--both", metavar="NAME=VALUE", action="append", default=[], help="set on both sides"
    )
    p.add_argument(
        "--spec",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="a field of the workload spec on both sides, e.g. matmul_dtype=bfloat16",
    )
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse(argv)
    from rnnlab import devices

    devices.reexec_with_tcmalloc(
        [sys.executable, str(pathlib.Path(__file__).resolve()), *sys.argv[1:]]
    )
    import rnnlab.unroll  # noqa: F401  (the module; the package exports the function)
    from benchmarks.common import Spec, median, time_interleaved
    from benchmarks.rnnlab_system import RnnlabSystem

    engine = sys.modules["rnnlab.unroll"]
    fields = dict(f.split("=", 1) for f in args.spec)
    spec = Spec(cell=args.cell, hidden=args.hidden, embed=args.embed, **fields)

    def target(spec_: str):  # "NAME=VALUE" or "fused.NAME=VALUE" -> (module, NAME, value)
        name, _, value = spec_.partition("=")
        module = engine
        if "." in name:
            where, name = name.rsplit(".", 1)
            module = importlib.import_module(f"rnnlab.{where}")
        if not hasattr(module, name):
            raise SystemExit(f"{spec_}: {module.__name__} has no constant {name!r}")
        return module, name, eval(value, {})  # noqa: S307

    for module, name, value in map(target, args.both):  # both sides
        setattr(module, name, value)
    specs = {"A": spec, "B": spec}
    if args.matmul_dtype:  # the same engine; side B's cells take bf16 matmul operands
        specs["B"] = dataclasses.replace(spec, matmul_dtype=args.matmul_dtype)
        sides = {"A": None, "B": None}  # nothing to swap
        label = {"A": "matmul_dtype=None", "B": f"matmul_dtype={args.matmul_dtype!r}"}
    elif args.set:
        module, name, value = target(args.set)
        sides = {"A": (module, name, getattr(module, name)), "B": (module, name, value)}
        label = {"A": f"{name}={getattr(module, name)!r}", "B": args.set}
    else:
        path = args.old_fused or args.old_cell
        found = importlib.util.spec_from_file_location("rnnlab_old", path)
        old = importlib.util.module_from_spec(found)
        sys.modules["rnnlab_old"] = old  # Flax's dataclass transform looks the module up
        found.loader.exec_module(old)
        if args.old_fused:
            sides = {"A": (engine, "fused", old), "B": (engine, "fused", engine.fused)}
        else:  # the registry imports the cell's module and returns its Cell: swap that
            from rnnlab import cells

            new = cells.module(args.cell)
            sides = {"A": (new, "Cell", old.Cell), "B": (new, "Cell", new.Cell)}
        label = {"A": path, "B": "working tree"}
    originals = [(m, n, getattr(m, n)) for m, n, _ in filter(None, sides.values())]
    systems = {}
    for side, swap in sides.items():
        if swap:
            module, name, value = swap
            setattr(module, name, value)
        system = RnnlabSystem(specs[side])  # the train step compiles here; forward, probe below
        system.forward()
        system.probe()
        systems[side] = system
    for module, name, value in originals:
        setattr(module, name, value)
    fns = {}
    for work in ("train_step", "forward", "probe"):
        for side, system in systems.items():
            fns[(work, side)] = getattr(system, work)
    times = time_interleaved(fns, warmup=2, repeats=args.repeats)
    print(f"{args.cell} H={args.hidden} D={args.embed} B={spec.batch} T={spec.steps}")
    for side in sides:
        print(f"  {side}: {label[side]}")
    print("| step | A ms | B ms | B / A |\n|---|---|---|---|")
    for work in ("train_step", "forward", "probe"):
        a, b = median(times[(work, "A")]) * 1e3, median(times[(work, "B")]) * 1e3
        print(f"| {work} | {a:.1f} | {b:.1f} | {b / a:.2f}x |")


if __name__ == "__main__":
    main()
