"""One command, side by side: rnnlab vs PyTorch nn.LSTM/nn.GRU and Flax nnx.RNN, each system in
its own process.

    python benchmarks/harness.py                 # everything (per process, 3 rounds)
    python benchmarks/harness.py --quick         # smaller subset
    python benchmarks/harness.py --workloads train --cells lstm --hidden 512 --repeats 9
    python benchmarks/harness.py --workloads job # the main job's step (char-rnn: 2x256, T=64)
    python benchmarks/harness.py --one-process   # every system round-robin in this process

Workloads (char-LM: embed 64 -> one recurrent layer -> dense 65, softmax xent, Adam + global-norm
clip; batch 32, T = 100 unless said): ``train`` (ms/step, tokens/s, ratios, FLOP floor, and
the step's matmuls alone as XLA runs them: :func:`benchmarks.common.matmuls_alone`, timed
in rnnlab's process), ``forward`` (logits only), ``generate`` (chars/s, batch 1), ``compile``
(train-step compile at T = 100 and 1000), ``memory`` (peak bytes and step time at T = 2000 with
and without remat), ``probe`` (dL/dh_t for all t vs one train step), ``job`` (the main job's
train step, ``rnnlab run char-rnn``'s model and update with the state carried, against the same
2-layer model in PyTorch: :class:`benchmarks.rnnlab_system.JobSystem`). Systems: ``rnnlab``
(the default engine), ``rnnlab-autodiff`` (the autodiff'd scan, the reference), ``torch``,
``flax``.

**Per process (the default).** Each system runs in a process of its own (this script with
``--worker``), so no system's threads share the cores with another's: PyTorch's step is slower
beside JAX's threads in one process (BENCHMARKS.md, co-residency). A process is started per
system, per workload group (each ``(cell, H)`` of ``train``/``forward``; ``job``; the rest) and
per round; the order of the systems rotates from round to round (``--rounds``, at least 3 for a
range). Each process reports its median of ``--repeats`` timed runs; a system's figure is the
median over rounds with the range (min-max) of the rounds' medians. A ratio is the ratio of
those medians, with the range of the per-round ratios (round k: rnnlab's median in round k over
the peer's in round k) beside it.

**One process** (``--one-process``): every system is built in this process and timed
round-robin, one run of each per round; the output says so. Writes ``--out``.md (the tables)
and ``--out``.json (every run's seconds, the machine, the allocator, the load averages).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # `python benchmarks/...`

from benchmarks import report  # noqa: E402
from benchmarks.common import (  # noqa: E402
    Spec,
    forward_flops,
    jax_matmul_rate,
    job_spec,
    matmuls_alone,
    median,
    time_interleaved,
    time_runs,
    torch_matmul_rate,
    train_flops,
)
from rnnlab import devices  # noqa: E402  (rnnlab's import sets up the allocator: all alike)

SYSTEMS = ("rnnlab", "rnnlab-autodiff", "torch", "flax")
JAX_SYSTEMS = ("rnnlab", "rnnlab-autodiff", "flax")
REMATS = {False: "rnnlab", True: "rnnlab-remat", "chunked": "rnnlab-remat-chunked"}
MATMULS = "matmuls-alone"  # a row, not a system: see benchmarks.common.matmuls_alone
WORKLOADS = ("train", "forward", "generate", "compile", "memory", "probe", "job")
#: the systems each workload times (the others have no such step, or it is rnnlab's alone)
TAKES = {
    "train": SYSTEMS,
    "forward": SYSTEMS,
    "generate": SYSTEMS,
    "compile": ("rnnlab", "flax"),  # torch: eager
    "memory": ("rnnlab",),
    "probe": ("rnnlab",),
    "job": ("rnnlab", "torch"),  # the 2-layer carried-state model: rnnlab's job and PyTorch's
}


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ints = lambda s: [int(v) for v in s.split(",")]
    names = lambda s: [v for v in s.split(",") if v]
    p.add_argument("--quick", action="store_true", help="small subset, fewer repeats")
    p.add_argument("--workloads", type=names, default=list(WORKLOADS))
    p.add_argument("--systems", type=names, default=list(SYSTEMS))
    p.add_argument("--cells", type=names, default=["lstm", "gru"], help="lstm, gru")
    p.add_argument("--hidden", type=ints, default=None, help="default 128,512,1024")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=100, help="T of the train/forward step")
    p.add_argument("--repeats", type=int, default=None, help="timed runs (default 7; quick 5)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3, help="processes per system (per process)")
    p.add_argument(
        "--one-process", action="store_true", help="all systems round-robin in one process"
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--gen-length", type=int, default=None, help="chars (default 500; quick 200)")
    p.add_argument("--compile-steps", type=ints, default=[100, 1000])
    p.add_argument("--memory-steps", type=int, default=2000)
    p.add_argument("--memory-hidden", type=int, default=None, help="default 256; quick 64")
    p.add_argument("--probe-hidden", type=int, default=None, help="default 512; quick 128")
    p.add_argument("--threads", type=int, default=2, help="PyTorch intra-op threads")
    p.add_argument(
        "--single-thread",
        action="store_true",
        help="every system on one thread (XLA, rnnlab's kernels, PyTorch): on a host loaded by "
        "other jobs, where a second thread's barrier waits dominate (BENCHMARKS.md)",
    )
    p.add_argument("--dtype", default="float32", help="computation dtype (bfloat16 on GPU)")
    p.add_argument(
        "--matmul-dtype",
        default="float32",
        choices=("float32", "bfloat16"),
        help="bfloat16: each system's bf16 mode (rnnlab: bf16 recurrent-matmul operands, float32 "
        "accumulation and carries; torch: autocast; flax: dtype=bfloat16)",
    )
    p.add_argument(
        "--allocator",
        choices=devices.MODES,
        default=None,
        help="every system's malloc (default: RNNLAB_ALLOCATOR, else tuned; rnnlab.devices)",
    )
    p.add_argument("--out", default="benchmarks/results/latest", help="path stem for .md/.json")
    args = p.parse_args(argv)
    for given, known, what in (
        (args.workloads, WORKLOADS, "workload"),
        (args.systems, SYSTEMS, "system"),
        (args.cells, ("lstm", "gru"), "cell"),  # the peers' cells
    ):
        bad = sorted(set(given) - set(known))
        if bad:
            p.error(f"unknown {what} {bad}; known: {', '.join(known)}")
    for name in ("rounds", "batch", "steps", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1; got {getattr(args, name)}")
    q = args.quick
    args.hidden = args.hidden or ([128] if q else [128, 512, 1024])
    args.repeats = args.repeats or (5 if q else 7)
    args.gen_length = args.gen_length or (200 if q else 500)
    args.memory_hidden = args.memory_hidden or (64 if q else 256)
    args.probe_hidden = args.probe_hidden or (128 if q else 512)
    args.allocator = args.allocator or devices.requested_mode()
    if args.single_thread:
        args.threads = 1
    if q:
        args.warmup = min(args.warmup, 1)
    return args


def available(args) -> list[str]:
    """The selected systems whose library is installed (torch and flax.nnx are optional)."""
    out = []
    for name in args.systems:
        module = {"torch": "torch", "flax": "flax.nnx"}.get(name)
        try:
            found = module is None or importlib.util.find_spec(module) is not None
        except ImportError:  # flax absent: its submodule's spec cannot be looked up
            found = False
        if found:
            out.append(name)
        else:
            print(f"[harness] skipping {name}: {module} is not installed", file=sys.stderr)
    return out


def build(name: str, spec: Spec):
    if name == "torch":
        from benchmarks.torch_system import TorchSystem

        return TorchSystem(spec)
    if name == "flax":
        from benchmarks.flax_system import FlaxSystem

        return FlaxSystem(spec)
    if spec.layers > 1 or spec.stream:  # the main job's model
        from benchmarks.rnnlab_system import JobSystem

        return JobSystem(spec)
    from benchmarks.rnnlab_system import RnnlabSystem

    return RnnlabSystem(spec, backward="autodiff" if name == "rnnlab-autodiff" else "auto")


def log(msg: str) -> None:
    print(f"[harness {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def record(rows: list, workload: str, spec: Spec, system: str, times: list[float], **extra):
    """One row; ``cpu=[seconds]`` (this process's CPU time per run) becomes ``cpu_median_s``."""
    cpu = extra.pop("cpu", None)
    if cpu:
        extra.update(cpu_median_s=median(cpu), cpu_runs_s=cpu)
    rows.append(
        {
            "workload": workload,
            "cell": spec.cell,
            "hidden": spec.hidden,
            "steps": spec.steps,
            "layers": spec.layers,
            "batch": spec.batch,
            "system": system,
            "median_s": median(times),
            "runs_s": times,
            "pids": [os.getpid()],  # the process it ran in (per process: one per round)
            **extra,
        }
    )
    log(f"{workload:8s} {spec.cell} H={spec.hidden:<5d} {system:16s} {1e3 * median(times):9.2f} ms")


def matmul_rate(systems) -> float:
    """The large-matmul rate of the libraries in this process (JAX's only where a JAX system
    runs here: measuring it starts XLA's threads, which a PyTorch process must not have)."""
    rates = []
    if set(systems) & set(JAX_SYSTEMS):
        rates.append(jax_matmul_rate())
    if "torch" in systems:
        rates.append(torch_matmul_rate())
    return max(r for r in rates if r)


def run(args, systems: list[str]) -> dict:
    """Time ``systems`` in this process (round-robin where they share a workload)."""
    if "torch" in systems:
        import torch

        torch.set_num_threads(args.threads)
    timed = dict(warmup=args.warmup, repeats=args.repeats)
    rows: list[dict] = []
    out = {"machine": machine(systems), "args": vars(args), "systems": systems, "rows": rows}
    rate = matmul_rate(systems)
    out["matmul_flops_per_s"] = rate
    base = dict(
        batch=args.batch, steps=args.steps, dtype=args.dtype, matmul_dtype=args.matmul_dtype
    )
    for cell in args.cells:
        for H in args.hidden if {"train", "forward"} & set(args.workloads) else []:
            spec = Spec(cell=cell, hidden=H, **base)
            built = {name: build(name, spec) for name in systems}
            for workload, flops in (("train", train_flops), ("forward", forward_flops)):
                if workload not in args.workloads:
                    continue
                fns = {n: getattr(s, "train_step" if workload == "train" else "forward")
                       for n, s in built.items()}  # fmt: skip
                if "rnnlab" in built:  # the step's matmuls alone: the engine's XLA, nothing else
                    fns[MATMULS] = matmuls_alone(spec, workload)
                cpu: dict = {}
                for name, times in time_interleaved(fns, **timed, cpu=cpu).items():
                    record(rows, workload, spec, name, times, flops=flops(spec), cpu=cpu[name])
            del built
    if "job" in args.workloads:
        spec = job_spec()
        built = {name: build(name, spec) for name in systems if name in TAKES["job"]}
        fns, cpu = {n: s.train_step for n, s in built.items()}, {}
        for name, times in time_interleaved(fns, **timed, cpu=cpu).items():
            record(rows, "job", spec, name, times, flops=train_flops(spec), cpu=cpu[name])
        del built
    for cell in args.cells:
        H = args.probe_hidden
        spec = Spec(cell=cell, hidden=H, **base)
        if "generate" in args.workloads:
            for name in systems:
                sysm = build(name, spec)
                times = time_runs(lambda: sysm.generate(args.gen_length), **timed)
                record(rows, "generate", spec, name, times, chars=args.gen_length)
        if "probe" in args.workloads and "rnnlab" in systems:
            sysm = build("rnnlab", spec)
            times = time_interleaved({"probe": sysm.probe, "probe-step": sysm.train_step}, **timed)
            for workload, runs in times.items():
                record(rows, workload, spec, "rnnlab", runs)
        if "compile" in args.workloads:
            for name in (n for n in systems if n in TAKES["compile"]):
                sysm = build(name, spec)
                for T in args.compile_steps:
                    times = [sysm.compile_seconds(T)]  # one compile: seconds, not noise-bound
                    record(rows, "compile", dataclasses.replace(spec, steps=T), name, times)
    if "memory" in args.workloads and "rnnlab" in systems:
        for cell in args.cells:
            spec = Spec(cell=cell, hidden=args.memory_hidden, **dict(base, steps=args.memory_steps))
            from benchmarks.rnnlab_system import RnnlabSystem

            built = {name: RnnlabSystem(spec, remat=remat) for remat, name in REMATS.items()}
            fns = {name: sysm.train_step for name, sysm in built.items()}
            times = time_interleaved(fns, warmup=1, repeats=max(5, args.repeats - 2))
            for name, sysm in built.items():
                peak = sysm.peak_bytes(spec.steps)
                record(rows, "memory", spec, name, times[name], peak_bytes=peak)
            del built
    # The rate again at the end: a busy moment on a shared machine during the first measurement
    # must not lower it (and with it the floor). The faster of the two is the machine's rate.
    out["matmul_flops_per_s"] = max(rate, matmul_rate(systems))
    return out


def groups(args, systems: list[str]) -> list[tuple[list[str], dict]]:
    """The per-process units: ``(systems, argument overrides)``, one process per system each."""
    out = []
    pair = [w for w in ("train", "forward") if w in args.workloads]
    for cell in args.cells if pair else []:
        for H in args.hidden:
            out.append((systems, dict(workloads=pair, cells=[cell], hidden=[H])))
    if "job" in args.workloads:
        out.append(([s for s in systems if s in TAKES["job"]], dict(workloads=["job"])))
    rest = [w for w in ("generate", "probe", "compile", "memory") if w in args.workloads]
    if rest:
        takes = [s for s in systems if any(s in TAKES[w] for w in rest)]
        out.append((takes, dict(workloads=rest)))
    return [(s, o) for s, o in out if s]


def worker_argv(args, system: str, overrides: dict, stem: str) -> list[str]:
    """This script's command line for one system's process (``--worker --one-process``)."""
    values = dict(vars(args), systems=[system], out=stem, **overrides)
    argv = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", "--one-process"]
    for key in ("workloads", "systems", "cells", "hidden", "compile_steps"):
        argv += [f"--{key.replace('_', '-')}", ",".join(map(str, values[key]))]
    for key in ("batch", "steps", "repeats", "warmup", "gen_length", "memory_steps",
                "memory_hidden", "probe_hidden", "threads", "dtype", "matmul_dtype",
                "allocator", "out"):  # fmt: skip
        argv += [f"--{key.replace('_', '-')}", str(values[key])]
    return argv + (["--single-thread"] if args.single_thread else [])


def per_process(args) -> dict:
    """Every system in its own process, ``args.rounds`` rounds, the order rotating per round."""
    systems = available(args)
    rows, machines, rates, load = [], {}, [], [os.getloadavg()]
    env = allocator_env(args.allocator)
    with tempfile.TemporaryDirectory(prefix="harness-") as tmp:
        for g, (names, overrides) in enumerate(groups(args, systems)):
            for r in range(args.rounds):
                k = r % len(names)
                for position, name in enumerate(names[k:] + names[:k]):
                    stem = f"{tmp}/{g}-{r}-{name}"
                    log(f"process: {name} {overrides} round {r + 1}/{args.rounds}")
                    done = subprocess.run(worker_argv(args, name, overrides, stem), env=env)
                    if done.returncode:
                        raise SystemExit(f"[harness] the {name} process failed ({overrides})")
                    part = json.loads(pathlib.Path(stem + ".json").read_text())
                    for row in part["rows"]:
                        rows.append(dict(row, round=r, position=position))
                    machines[name] = part["machine"]
                    rates.append(part["matmul_flops_per_s"])
    load.append(os.getloadavg())
    machine_ = dict(next(iter(machines.values())))
    for m in machines.values():  # the JAX and torch fields come from their own processes
        machine_.update({k: v for k, v in m.items() if v not in (None, [], "not started")})
    out = {"machine": machine_, "args": vars(args), "systems": systems, "mode": "per-process"}
    out.update(rows=aggregate(rows), matmul_flops_per_s=max(rates), load=load)
    return out


def aggregate(rows: list[dict]) -> list[dict]:
    """One row per (workload, cell, H, T, L, system): the median over rounds of the processes'
    medians, ``rounds_s`` (each round's median, in round order) and every run's seconds."""
    keyed: dict[tuple, list[dict]] = {}
    for row in rows:
        key = tuple(row[k] for k in ("workload", "cell", "hidden", "steps", "layers", "system"))
        keyed.setdefault(key, []).append(row)
    out = []
    for parts in keyed.values():
        parts.sort(key=lambda r: r["round"])
        rounds = [r["median_s"] for r in parts]
        merged = dict(parts[0], median_s=median(rounds), rounds_s=rounds)
        if all("cpu_median_s" in r for r in parts):
            cpu = [r["cpu_median_s"] for r in parts]
            merged.update(cpu_median_s=median(cpu), cpu_rounds_s=cpu)
            merged["cpu_runs_s"] = [t for r in parts for t in r["cpu_runs_s"]]
        merged["runs_s"] = [t for r in parts for t in r["runs_s"]]
        merged["pids"] = [pid for r in parts for pid in r["pids"]]
        for k in ("round", "position"):
            merged.pop(k)
        out.append(merged)
    return out


def machine(systems) -> dict:
    info = {
        "allocator": devices.allocator(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
    import jax

    info["jax"] = jax.__version__
    # JAX's devices only where JAX runs: listing them starts XLA's threads
    jaxy = set(systems) & set(JAX_SYSTEMS)
    info["jax_devices"] = [str(d) for d in jax.devices()] if jaxy else "not started"
    try:
        import flax

        info["flax"] = flax.__version__
    except ImportError:
        pass
    if "torch" in systems:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["torch_cuda"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return info


def use_allocator(args, argv) -> None:
    """One process: re-start this script so that its malloc is ``args.allocator``'s.

    The allocator is set up when rnnlab is imported (above), so a different one needs a new
    process: with ``RNNLAB_ALLOCATOR`` set (and ``LD_PRELOAD`` for tcmalloc).
    """
    want, have = args.allocator, devices.allocator()
    under_tcmalloc = have["mode"] == "tcmalloc"
    if have["requested"] == want and under_tcmalloc == (want == "tcmalloc"):
        return
    argv = [sys.executable, str(pathlib.Path(__file__).resolve()), *argv]
    env = allocator_env(want)
    os.execve(argv[0], argv, env)


SINGLE_THREAD = {  # XLA's intra-op pool, and the native kernels' threads, to one
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    "RNNLAB_NATIVE_THREADS": "1",
}


def thread_env(args) -> None:
    """``--single-thread``: set :data:`SINGLE_THREAD` in this process's environment (read when
    XLA's backend starts and when a kernel runs: both after this)."""
    if args.single_thread:
        flags = os.environ.get("XLA_FLAGS", "")
        if SINGLE_THREAD["XLA_FLAGS"] not in flags:  # a worker inherits them
            os.environ["XLA_FLAGS"] = f"{flags} {SINGLE_THREAD['XLA_FLAGS']}".strip()
        os.environ["RNNLAB_NATIVE_THREADS"] = SINGLE_THREAD["RNNLAB_NATIVE_THREADS"]


def allocator_env(mode: str) -> dict:
    """This process's environment with ``RNNLAB_ALLOCATOR=mode`` (and tcmalloc preloaded for
    ``tcmalloc``, removed from ``LD_PRELOAD`` otherwise)."""
    preload = [p for p in os.environ.get("LD_PRELOAD", "").split() if "tcmalloc" not in p]
    if mode == "tcmalloc":
        lib = devices.tcmalloc_library()
        if lib is None:
            sys.exit("--allocator tcmalloc: install libtcmalloc-minimal4 (apt) first")
        preload.insert(0, lib)
    env = dict(os.environ, RNNLAB_ALLOCATOR=mode, LD_PRELOAD=" ".join(preload))
    if not preload:
        env.pop("LD_PRELOAD")
    return env


def main(argv=None) -> None:
    args = parse(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    t0 = time.perf_counter()
    thread_env(args)  # before any XLA backend starts (here or in the workers, who inherit it)
    if args.one_process:
        use_allocator(args, argv)
        load = os.getloadavg()
        out = dict(run(args, available(args)), mode="one-process")
        out["load"] = [load, os.getloadavg()]
    else:
        out = per_process(args)
    out["wall_s"] = time.perf_counter() - t0
    out["command"] = "python benchmarks/harness.py " + " ".join(argv)
    stem = pathlib.Path(args.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(out, indent=1))
    if args.worker:
        return
    md = report.markdown(out)
    print(md)
    stem.with_suffix(".md").write_text(md)
    log(f"done in {out['wall_s']:.0f} s; wrote {stem}.md and {stem}.json")


if __name__ == "__main__":
    main()
