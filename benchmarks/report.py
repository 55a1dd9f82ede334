"""Markdown tables and the issue's target checks from the harness's result rows.

A row holds one system's figure for one workload: ``median_s``, and with the per-process
harness ``rounds_s`` (each round's process median, in round order). A ratio is the ratio of
two medians; beside it, in brackets, the range of the per-round ratios (round k's rnnlab
median over round k's peer median).
"""

from __future__ import annotations

PEERS = ("torch", "flax")
MATMULS = "matmuls-alone"  # the harness's row of the step's matmuls alone


def _rows(out, workload):
    return [r for r in out["rows"] if r["workload"] == workload]


def _index(rows):
    return {(r["cell"], r["hidden"], r["steps"], r["system"]): r for r in rows}


def _ms(seconds):
    return f"{1e3 * seconds:.1f}"


def _ms_range(row) -> str:
    """``median`` ms, and ``(min-max)`` over the rounds when there are several."""
    rounds = row.get("rounds_s") or []
    text = _ms(row["median_s"])
    return text + (f" ({_ms(min(rounds))}-{_ms(max(rounds))})" if len(rounds) > 1 else "")


def ratio(mine, peer, cpu: bool = False) -> tuple[float, tuple[float, float] | None]:
    """``(median / median, (min, max) of the per-round ratios or None)``; of CPU time with
    ``cpu``."""
    key = "cpu_" if cpu else ""
    value = mine[f"{key}median_s"] / peer[f"{key}median_s"]
    a, b = mine.get(f"{key}rounds_s") or [], peer.get(f"{key}rounds_s") or []
    per_round = [x / y for x, y in zip(a, b)] if len(a) == len(b) > 1 else []
    return value, ((min(per_round), max(per_round)) if per_round else None)


def _ratio_text(mine, peer, cpu: bool = False) -> str:
    if cpu and not ("cpu_median_s" in mine and "cpu_median_s" in peer):
        return "-"
    value, span = ratio(mine, peer, cpu)
    return f"{value:.2f}x" + (f" ({span[0]:.2f}-{span[1]:.2f})" if span else "")


def floor_s(out, row) -> float | None:
    """The row's FLOP floor: its matmul FLOPs at the run's measured matmul rate."""
    rate = out.get("matmul_flops_per_s")
    return row["flops"] / rate if rate and row.get("flops") else row.get("floor_s")


def speed_table(out, workload: str) -> list[str]:
    """ms/step (range), tokens/s, rnnlab's time ratio to each peer (range), FLOP floor and
    fractions of it."""
    rows = _rows(out, workload)
    if not rows:
        return []
    systems = [s for s in out["systems"] if any(r["system"] == s for r in rows)]
    idx = _index(rows)
    keys = sorted({(r["cell"], r["hidden"], r["steps"]) for r in rows})
    alone = any(r["system"] == MATMULS for r in rows)
    head = ["cell", "H"] + [f"{s} ms" for s in systems] + ["rnnlab tok/s"]
    head += [f"rnnlab / {p}" for p in PEERS if p in systems]
    head += [f"CPU: rnnlab / {p}" for p in PEERS if p in systems] + ["floor ms"]
    head += ["matmuls alone ms"] if alone else []
    head += [f"{s} % floor" for s in systems]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell, H, T in keys:
        get = lambda s: idx.get((cell, H, T, s))
        cells = [cell, str(H)] + [_ms_range(get(s)) if get(s) else "-" for s in systems]
        mine = get("rnnlab")
        tokens = (mine or {}).get("batch", out["args"]["batch"]) * T
        cells.append(f"{tokens / mine['median_s']:,.0f}" if mine else "-")
        for cpu in (False, True):
            for p in PEERS:
                if p in systems:
                    cells.append(_ratio_text(mine, get(p), cpu) if mine and get(p) else "-")
        first = next(r for r in rows if (r["cell"], r["hidden"], r["steps"]) == (cell, H, T))
        floor = floor_s(out, first)
        cells.append(_ms(floor) if floor else "-")
        if alone:
            cells.append(_ms(get(MATMULS)["median_s"]) if get(MATMULS) else "-")
        for s in systems:
            ok = floor and get(s)
            cells.append(f"{100 * floor / get(s)['median_s']:.0f}%" if ok else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def simple_table(out, workload: str, value, unit: str) -> list[str]:
    rows = _rows(out, workload)
    if not rows:
        return []
    lines = [f"| cell | H | T | system | {unit} |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['cell']} | {r['hidden']} | {r['steps']} | {r['system']} | {value(r)} |")
    return lines


def probe_table(out) -> list[str]:
    probe, steps = _index(_rows(out, "probe")), _index(_rows(out, "probe-step"))
    if not probe:
        return []
    lines = ["| cell | H | probe ms | train step ms | ratio |", "|---|---|---|---|---|"]
    for key, r in sorted(probe.items()):
        step = steps[key]["median_s"]
        lines.append(
            f"| {key[0]} | {key[1]} | {_ms(r['median_s'])} | {_ms(step)} | "
            f"{r['median_s'] / step:.2f}x |"
        )
    return lines


def targets(out) -> list[str]:
    """The targets, each with the measured value and PASS/MISS: issue 17's float32 train-step
    targets (the floor fraction, the ratios to PyTorch and Flax), then issue 6's compile,
    probe and memory targets."""
    lines = []
    check = lambda ok, text: lines.append(f"- {'PASS' if ok else 'MISS'}: {text}")
    idx = _index(_rows(out, "train"))
    for (cell, H, T, s), r in sorted(idx.items()):
        if s != "rnnlab":
            continue
        floor = floor_s(out, r)
        if floor:
            need = 0.9 if H >= 512 else 0.65
            got = floor / r["median_s"]
            check(got >= need, f"train {cell} H={H}: {100 * got:.0f}% of the float32 floor "
                               f"(target >= {100 * need:.0f}%)")  # fmt: skip
        bounds = {"torch": 0.45 if cell == "gru" else (0.7 if H == 128 else None)}
        bounds["flax"] = 0.5 if H in (128, 1024) else None
        for peer, bound in bounds.items():
            p = idx.get((cell, H, T, peer))
            if p and bound:
                value, span = ratio(r, p)
                rounds = f", rounds {span[0]:.2f}-{span[1]:.2f}" if span else ""
                text = (
                    f"train {cell} H={H}: rnnlab / {peer} = {value:.2f}x{rounds} "
                    f"(target <= {bound}x)"
                )
                mm = idx.get((cell, H, T, MATMULS))
                if mm and value > bound:  # how far the matmuls alone are from the target
                    text += (
                        f"; the step's matmuls alone: {mm['median_s'] / p['median_s']:.2f}x "
                        f"{peer}, rnnlab {r['median_s'] / mm['median_s']:.2f}x its matmuls"
                    )
                check(value <= bound, text)
    comp = _index(_rows(out, "compile"))
    for cell in sorted({k[0] for k in comp}):
        got = {T: r["median_s"] for (c, _, T, s), r in comp.items() if c == cell and s == "rnnlab"}
        if got:
            lo, hi = min(got), max(got)
            check(
                max(got.values()) <= 10,
                f"compile {cell}: max {max(got.values()):.1f} s (target <= 10 s)",
            )
            grow = got[hi] / got[lo]
            check(
                grow <= 1.5,
                f"compile {cell}: T={hi} / T={lo} = {grow:.2f}x (target: not growing, <= 1.5x)",
            )
    probe, steps = _index(_rows(out, "probe")), _index(_rows(out, "probe-step"))
    for key, r in sorted(probe.items()):
        cost = r["median_s"] / steps[key]["median_s"]
        check(
            cost <= 1.5,
            f"probe {key[0]} H={key[1]}: dL/dh_t for all t = {cost:.2f}x a train step (target <= 1.5x)",
        )
    mem = _index(_rows(out, "memory"))
    for (cell, H, T, s), rm in sorted(mem.items()):
        r = mem.get((cell, H, T, "rnnlab"))
        if s == "rnnlab" or not r or not (r["peak_bytes"] and rm["peak_bytes"]):
            continue
        cut, cost = r["peak_bytes"] / rm["peak_bytes"], rm["median_s"] / r["median_s"]
        check(
            cut >= 3 and cost <= 1.5,
            f"{s} {cell} H={H} T={T}: memory / {cut:.1f} for {cost:.2f}x the time (target >= 3x for <= 1.5x)",
        )
    return lines


def _allocator(a) -> str:
    if isinstance(a, str):  # older results
        return a
    settings = ", ".join(f"{k}={v}" for k, v in a.get("mallopt", {}).items())
    return a.get("mode", "?") + (f" ({settings})" if settings else "") + f"; {a.get('note', '')}"


def _load(out) -> str:
    load = out.get("load") or []
    return "; ".join(", ".join(f"{x:.2f}" for x in la) for la in load) or "-"


def markdown(out) -> str:
    m, a = out["machine"], out["args"]
    one = out.get("mode") == "one-process"
    how = (
        "**ONE PROCESS**: every system built in one process and timed round-robin, one run of "
        f"each per round: medians of {a['repeats']} runs after {a['warmup']} warm-up runs. "
        "PyTorch's step runs beside JAX's threads here (slower than alone: BENCHMARKS.md)."
        if one
        else f"**Per process**: each system in its own process, {a['rounds']} rounds, the order "
        "rotating per round; a figure is the median over rounds of each process's median of "
        f"{a['repeats']} runs (after {a['warmup']} warm-up runs), with the rounds' range; a "
        "ratio is the ratio of the medians, with the range of the per-round ratios."
    )
    how += (
        ' "CPU:" columns: the same ratio of the CPU time (all threads) the process spent per '
        "step: on a shared host it moves less than wall-clock time, but it counts a second "
        "thread's work too, so it is not a speed ratio."
    )
    if a.get("single_thread"):
        how += (
            " **Single-threaded** (`--single-thread`): XLA, rnnlab's kernels and PyTorch each "
            "on one thread."
        )
    devices = m["jax_devices"]
    parts = [
        f"Command: `{out.get('command', 'python benchmarks/harness.py')}` ({out.get('wall_s', 0):.0f} s)",
        "",
        how,
        "",
        f"Machine: {m.get('cpu', '?')}, {m['cpu_count']} cores; "
        f"{', '.join(devices) if isinstance(devices, list) else devices}; "
        f"jax {m['jax']}, flax {m.get('flax', '-')}, torch {m.get('torch', '-')} "
        f"({m.get('torch_threads', '-')} threads{', CUDA ' + m['torch_cuda'] if m.get('torch_cuda') else ''}). "
        f"Allocator: {_allocator(m.get('allocator', '?'))}. "
        f"Measured large-matmul rate: {out['matmul_flops_per_s'] / 1e9:.0f} GFLOP/s (float32; "
        "the fastest of the measurements at each process's start and end). "
        f"Load average (1, 5, 15 min) at start; end: {_load(out)}.",
        "",
        f"Batch {a['batch']}, dtype {a['dtype']}, matmul operands "
        f"{a.get('matmul_dtype', 'float32')}. Ratios are rnnlab's time over the peer's (< 1: "
        "rnnlab faster). The floor is the step's matmul FLOPs at the measured matmul rate "
        "(`benchmarks/common.py::forward_flops`: with token inputs the first layer's input "
        'projection is a table lookup). "Matmuls alone" times the step\'s matmuls the way XLA '
        "runs them in the engine (the recurrent ones in a scan), with no other work: "
        "`benchmarks/common.py::matmuls_alone`.",
    ]
    sections = [
        ("Train step (ms/step)", speed_table(out, "train")),
        ("Forward only (ms/step)", speed_table(out, "forward")),
        (
            "The main job's train step (char-rnn: 2 LSTM layers of 256, T=64, state carried)",
            speed_table(out, "job"),
        ),
        (
            "Generation (batch 1)",
            simple_table(
                out, "generate", lambda r: f"{r['chars'] / r['median_s']:,.0f} chars/s", "speed"
            ),
        ),
        (
            "Train-step compile time",
            simple_table(out, "compile", lambda r: f"{r['median_s']:.2f} s", "compile"),
        ),
        (
            "Peak memory and time of one train step, with and without remat",
            simple_table(
                out,
                "memory",
                lambda r: f"{(r['peak_bytes'] or 0) / 2**20:,.0f} MiB, {_ms(r['median_s'])} ms",
                "peak, time",
            ),
        ),
        ("dL/dh_t probe (all t, one backward pass) vs a train step", probe_table(out)),
        (
            "Targets (issue 17 part 3: float32 train step; issue 6: compile, probe, memory)",
            targets(out),
        ),
    ]
    for title, lines in sections:
        if lines:
            parts += ["", f"### {title}", ""] + lines
    return "\n".join(parts) + "\n"
