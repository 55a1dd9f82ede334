"""One command, side by side: rnnlab vs PyTorch nn.LSTM/nn.GRU and Flax nnx.RNN, medians.

    python benchmarks/harness.py                 # everything (<= ~8 min on a quiet 2-core CPU)
    python benchmarks/harness.py --quick         # smaller subset (<= ~2 min)
    python benchmarks/harness.py --workloads train --cells lstm --hidden 512 --repeats 9

Workloads (char-LM: embed 64 -> one recurrent layer -> dense 65, softmax xent, Adam + global-norm
clip; batch 32, T = 100 unless said): ``train`` (ms/step, tokens/s, ratios, FLOP floor, and
the step's matmuls alone as XLA runs them: :func:`benchmarks.common.matmuls_alone`, timed
round-robin with the systems), ``forward`` (logits only), ``generate`` (chars/s, batch 1), ``compile`` (train-step compile at
T = 100 and 1000), ``memory`` (peak bytes and step time at T = 2000 with and without remat),
``probe`` (dL/dh_t for all t vs one train step). Systems: ``rnnlab`` (fused backward, the
default), ``rnnlab-autodiff`` (the autodiff'd scan, the reference), ``torch``, ``flax``.
Writes ``--out``.md (the table for BENCHMARKS.md) and ``--out``.json (every run's seconds).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # `python benchmarks/...`

from benchmarks import report  # noqa: E402
from benchmarks.common import (  # noqa: E402
    Spec,
    forward_flops,
    jax_matmul_rate,
    matmuls_alone,
    median,
    time_interleaved,
    time_runs,
    torch_matmul_rate,
    train_flops,
)
from rnnlab import devices  # noqa: E402

SYSTEMS = ("rnnlab", "rnnlab-autodiff", "torch", "flax")
REMATS = {False: "rnnlab", True: "rnnlab-remat", "chunked": "rnnlab-remat-chunked"}
MATMULS = "matmuls-alone"  # a row, not a system: see benchmarks.common.matmuls_alone
WORKLOADS = ("train", "forward", "generate", "compile", "memory", "probe")


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
    p.add_argument("--gen-length", type=int, default=None, help="chars (default 500; quick 200)")
    p.add_argument("--compile-steps", type=ints, default=[100, 1000])
    p.add_argument("--memory-steps", type=int, default=2000)
    p.add_argument("--memory-hidden", type=int, default=None, help="default 256; quick 64")
    p.add_argument("--probe-hidden", type=int, default=None, help="default 512; quick 128")
    p.add_argument("--threads", type=int, default=2, help="PyTorch intra-op threads")
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
        choices=("auto", "system", "tcmalloc"),
        default="auto",
        help="auto: re-run under tcmalloc when libtcmalloc_minimal is installed (see BENCHMARKS.md)",
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
    q = args.quick
    args.hidden = args.hidden or ([128] if q else [128, 512, 1024])
    args.repeats = args.repeats or (5 if q else 7)
    args.gen_length = args.gen_length or (200 if q else 500)
    args.memory_hidden = args.memory_hidden or (64 if q else 256)
    args.probe_hidden = args.probe_hidden or (128 if q else 512)
    if q:
        args.warmup = min(args.warmup, 1)
    return args


def available(args) -> list[str]:
    """The selected systems whose library imports (torch and flax.nnx are optional)."""
    out = []
    for name in args.systems:
        try:
            if name == "torch":
                import torch

                torch.set_num_threads(args.threads)
            elif name == "flax":
                from flax import nnx  # noqa: F401
            out.append(name)
        except ImportError as err:
            print(f"[harness] skipping {name}: {err}", file=sys.stderr)
    return out


def build(name: str, spec: Spec):
    if name == "torch":
        from benchmarks.torch_system import TorchSystem

        return TorchSystem(spec)
    if name == "flax":
        from benchmarks.flax_system import FlaxSystem

        return FlaxSystem(spec)
    from benchmarks.rnnlab_system import RnnlabSystem

    return RnnlabSystem(spec, backward="autodiff" if name == "rnnlab-autodiff" else "auto")


def log(msg: str) -> None:
    print(f"[harness {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def record(rows: list, workload: str, spec: Spec, system: str, times: list[float], **extra):
    rows.append(
        {
            "workload": workload,
            "cell": spec.cell,
            "hidden": spec.hidden,
            "steps": spec.steps,
            "system": system,
            "median_s": median(times),
            "runs_s": times,
            **extra,
        }
    )
    log(f"{workload:8s} {spec.cell} H={spec.hidden:<5d} {system:16s} {1e3 * median(times):9.2f} ms")


def run(args) -> dict:
    systems = available(args)
    timed = dict(warmup=args.warmup, repeats=args.repeats)
    rows: list[dict] = []
    out = {"machine": machine(), "args": vars(args), "systems": systems, "rows": rows}
    rate = max(
        r for r in (jax_matmul_rate(), torch_matmul_rate() if "torch" in systems else None) if r
    )
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
                for name, times in time_interleaved(fns, **timed).items():
                    record(rows, workload, spec, name, times, floor_s=flops(spec) / rate)
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
            for name in (n for n in systems if n in ("rnnlab", "flax")):  # torch: eager
                sysm = build(name, spec)
                for T in args.compile_steps:
                    times = [sysm.compile_seconds(T)]  # one compile: seconds, not noise-bound
                    record(rows, "compile", dataclasses.replace(spec, steps=T), name, times)
    if "memory" in args.workloads and "rnnlab" in systems:
        for cell in args.cells:
            spec = Spec(
                cell=cell,
                hidden=args.memory_hidden,
                batch=args.batch,
                steps=args.memory_steps,
                dtype=args.dtype,
                matmul_dtype=args.matmul_dtype,
            )
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
    late = jax_matmul_rate()
    if late > rate:
        for row in rows:
            if "floor_s" in row:
                row["floor_s"] *= rate / late
        out["matmul_flops_per_s"] = late
    return out


def machine() -> dict:
    import jax

    info = {
        "allocator": os.environ.get("LD_PRELOAD") or "system (glibc)",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "jax_devices": [str(d) for d in jax.devices()],
    }
    try:
        import flax

        info["flax"] = flax.__version__
    except ImportError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["torch_cuda"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    except ImportError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return info


def use_allocator(args, argv) -> None:
    """Re-exec this process under tcmalloc (LD_PRELOAD), for every system alike.

    XLA:CPU and PyTorch free their large buffers after each step; glibc returns them to the OS,
    so every step page-faults them back (~9,000 minor faults per LSTM-128 train step here,
    a third of its time). tcmalloc keeps them.
    """
    if args.allocator == "system" or "tcmalloc" in os.environ.get("LD_PRELOAD", ""):
        return
    if devices.tcmalloc_library() is None:
        if args.allocator == "tcmalloc":
            sys.exit("--allocator tcmalloc: install libtcmalloc-minimal4 (apt) first")
        log(
            "tcmalloc not found: timing with the system allocator (apt install libtcmalloc-minimal4)"
        )
        return
    argv = sys.argv[1:] if argv is None else list(argv)
    devices.reexec_with_tcmalloc([sys.executable, str(pathlib.Path(__file__).resolve()), *argv])


def main(argv=None) -> None:
    args = parse(argv)
    use_allocator(args, argv)
    t0 = time.perf_counter()
    out = run(args)
    out["wall_s"] = time.perf_counter() - t0
    out["command"] = "python benchmarks/harness.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    md = report.markdown(out)
    print(md)
    stem = pathlib.Path(args.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".md").write_text(md)
    stem.with_suffix(".json").write_text(json.dumps(out, indent=1))
    log(f"done in {out['wall_s']:.0f} s; wrote {stem}.md and {stem}.json")


if __name__ == "__main__":
    main()
