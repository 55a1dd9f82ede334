"""A/B of one engine change on the harness's char-LM step, both sides in one process.

    # a threshold of the plan (rnnlab.engine.plan.THRESHOLDS, any case) changed on side B
    python benchmarks/ab.py --set 'IN_LOOP_MAX_D={}' --cell gru --hidden 256 --embed 128
    python benchmarks/ab.py --set 'FUSED_MIN_HIDDEN=10**9' --cell lstm --hidden 128
    # --both sets one on both sides (here: embedded rows); MODULE.NAME: a constant of
    # rnnlab.engine.MODULE
    python benchmarks/ab.py --set 'READ_AHEAD_BACKENDS=()' --cell gru --hidden 512
    python benchmarks/ab.py --set 'IN_LOOP_MAX_D={}' --both 'FOLD_EMBEDDING=False' --hidden 512
    # side A runs an older rnnlab/engine/loops/fused.py (its run; side B: the working tree)
    git show HEAD~1:rnnlab/engine/loops/fused.py > /tmp/fused_old.py
    python benchmarks/ab.py --old-fused /tmp/fused_old.py --cell lstm --hidden 512
    # side B's cells take bfloat16 matmul operands (cell option matmul_dtype)
    python benchmarks/ab.py --matmul-dtype bfloat16 --cell lstm --hidden 512
    # a field of the workload spec on both sides (here: both in bf16, a constant on side B)
    python benchmarks/ab.py --spec matmul_dtype=bfloat16 --set 'READ_AHEAD_BACKENDS=()' --cell gru
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
        "--set",
        metavar="NAME=VALUE",
        help="a threshold of rnnlab.engine.plan (or MODULE.NAME of rnnlab.engine) on side B",
    )
    which.add_argument(
        "--old-fused", metavar="PATH", help="an older rnnlab/engine/loops/fused.py for side A"
    )
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
    from benchmarks.common import Spec, median, time_interleaved
    from benchmarks.rnnlab_system import RnnlabSystem
    from rnnlab.engine import loops
    from rnnlab.engine import plan as engine_plan

    thresholds = _Items(engine_plan.THRESHOLDS, "rnnlab.engine.plan.THRESHOLDS")
    fields = dict(f.split("=", 1) for f in args.spec)
    spec = Spec(cell=args.cell, hidden=args.hidden, embed=args.embed, **fields)

    def target(spec_: str):  # "NAME=VALUE" or "MODULE.NAME=VALUE" -> (module, NAME, value)
        name, _, value = spec_.partition("=")
        module = thresholds
        if "." in name:
            where, name = name.rsplit(".", 1)
            module = importlib.import_module(f"rnnlab.engine.{where}")
        else:
            name = name.lower()
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
            runs = _Items(loops.LOOPS, "rnnlab.engine.loops.LOOPS")
            sides = {"A": (runs, "fused", old.run), "B": (runs, "fused", loops.LOOPS["fused"])}
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


class _Items:
    """A dict's entries as attributes, so the A/B swaps thresholds as it swaps constants."""

    def __init__(self, items: dict, name: str):
        vars(self).update(_items=items, __name__=name)

    def __getattr__(self, name):
        if name not in self._items:
            raise AttributeError(name)
        return self._items[name]

    def __setattr__(self, name, value):
        self._items[name] = value


if __name__ == "__main__":
    main()
