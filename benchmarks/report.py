"""Markdown tables and the issue's target checks from the harness's result rows."""

from __future__ import annotations

PEERS = ("torch", "flax")
MATMULS = "matmuls-alone"  # the harness's row of the step's matmuls alone


def _rows(out, workload):
    return [r for r in out["rows"] if r["workload"] == workload]


def _index(rows):
    return {(r["cell"], r["hidden"], r["steps"], r["system"]): r for r in rows}


def _ms(seconds):
    return f"{1e3 * seconds:.1f}"


def speed_table(out, workload: str) -> list[str]:
    """ms/step, tokens/s, rnnlab's time ratio to each peer, FLOP floor and fractions of it."""
    rows = _rows(out, workload)
    if not rows:
        return []
    systems = [s for s in out["systems"] if any(r["system"] == s for r in rows)]
    idx = _index(rows)
    keys = sorted({(r["cell"], r["hidden"], r["steps"]) for r in rows})
    head = ["cell", "H"] + [f"{s} ms" for s in systems] + ["rnnlab tok/s"]
    head += [f"rnnlab / {p}" for p in PEERS if p in systems] + ["floor ms", "matmuls alone ms"]
    head += [f"{s} % floor" for s in systems]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell, H, T in keys:
        get = lambda s: idx.get((cell, H, T, s))
        cells = [cell, str(H)] + [_ms(get(s)["median_s"]) if get(s) else "-" for s in systems]
        mine = get("rnnlab")
        tokens = out["args"]["batch"] * T
        cells.append(f"{tokens / mine['median_s']:,.0f}" if mine else "-")
        for p in PEERS:
            if p in systems:
                ok = mine and get(p)
                cells.append(f"{mine['median_s'] / get(p)['median_s']:.2f}x" if ok else "-")
        floor = next(r for r in rows if (r["cell"], r["hidden"], r["steps"]) == (cell, H, T))
        cells.append(_ms(floor["floor_s"]))
        cells.append(_ms(get(MATMULS)["median_s"]) if get(MATMULS) else "-")
        for s in systems:
            cells.append(f"{100 * floor['floor_s'] / get(s)['median_s']:.0f}%" if get(s) else "-")
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
    """The issue's targets, each with the measured value and PASS/MISS."""
    lines = []
    check = lambda ok, text: lines.append(f"- {'PASS' if ok else 'MISS'}: {text}")
    idx = _index(_rows(out, "train"))
    for (cell, H, T, s), r in sorted(idx.items()):
        if s != "rnnlab":
            continue
        for peer, bound in (
            ("torch", 0.9 if H == 512 else 1.0),
            ("flax", 0.6 if H == 512 else None),
        ):
            p = idx.get((cell, H, T, peer))
            if p and bound:
                ratio = r["median_s"] / p["median_s"]
                text = f"train {cell} H={H}: rnnlab / {peer} = {ratio:.2f}x (target <= {bound}x)"
                mm = idx.get((cell, H, T, MATMULS))
                if mm and ratio > bound:  # how far the matmuls alone are from the target
                    text += (
                        f"; the step's matmuls alone: {mm['median_s'] / p['median_s']:.2f}x "
                        f"{peer}, rnnlab {r['median_s'] / mm['median_s']:.2f}x its matmuls"
                    )
                check(ratio <= bound, text)
    comp = _index(_rows(out, "compile"))
    for cell in sorted({k[0] for k in comp}):
        got = {T: r["median_s"] for (c, _, T, s), r in comp.items() if c == cell and s == "rnnlab"}
        if got:
            lo, hi = min(got), max(got)
            check(
                max(got.values()) <= 10,
                f"compile {cell}: max {max(got.values()):.1f} s (target <= 10 s)",
            )
            ratio = got[hi] / got[lo]
            check(
                ratio <= 1.5,
                f"compile {cell}: T={hi} / T={lo} = {ratio:.2f}x (target: not growing, <= 1.5x)",
            )
    probe, steps = _index(_rows(out, "probe")), _index(_rows(out, "probe-step"))
    for key, r in sorted(probe.items()):
        ratio = r["median_s"] / steps[key]["median_s"]
        check(
            ratio <= 1.5,
            f"probe {key[0]} H={key[1]}: dL/dh_t for all t = {ratio:.2f}x a train step (target <= 1.5x)",
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


def markdown(out) -> str:
    m, a = out["machine"], out["args"]
    parts = [
        f"Command: `{out.get('command', 'python benchmarks/harness.py')}` ({out.get('wall_s', 0):.0f} s)",
        "",
        f"Machine: {m.get('cpu', '?')}, {m['cpu_count']} cores; {', '.join(m['jax_devices'])}; "
        f"jax {m['jax']}, flax {m.get('flax', '-')}, torch {m.get('torch', '-')} "
        f"({m.get('torch_threads', '-')} threads{', CUDA ' + m['torch_cuda'] if m.get('torch_cuda') else ''}). "
        f"Allocator: {m.get('allocator', '?')}. "
        f"Measured large-matmul rate: {out['matmul_flops_per_s'] / 1e9:.0f} GFLOP/s (float32; "
        "the faster of a measurement at the start and one at the end of the run).",
        "",
        f"Medians of {a['repeats']} timed runs after {a['warmup']} warm-up runs; batch {a['batch']}, "
        f"dtype {a['dtype']}, matmul operands {a.get('matmul_dtype', 'float32')}. Ratios are rnnlab's time over the peer's (< 1: rnnlab faster). "
        'The floor is the step\'s matmul FLOPs at the measured matmul rate. "Matmuls alone" '
        "times the step's matmuls the way XLA runs them in the engine (the recurrent ones in a "
        "scan), with no other work: `benchmarks/common.py::matmuls_alone`.",
    ]
    sections = [
        ("Train step (ms/step)", speed_table(out, "train")),
        ("Forward only (ms/step)", speed_table(out, "forward")),
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
        ("Targets (issue 6)", targets(out)),
    ]
    for title, lines in sections:
        if lines:
            parts += ["", f"### {title}", ""] + lines
    return "\n".join(parts) + "\n"
