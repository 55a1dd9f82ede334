"""selective-copy: Mamba's selective copying (Gu & Dao 2023, Table 1), selective vs time-invariant.

Command:
    rnnlab run selective-copy           # mamba, rglru, lru in blocks; lstm, gru; 3 seeds each
    rnnlab run selective-copy:smoke     # seconds; what the test suite runs
    Options: experiment.runs="('mamba', 'lru')", experiment.lengths="(64, 128)",
    data.options.num_memorize=16, data.options.vocab=16 (the paper's K and V),
    train.num_steps=3000, train.num_seeds=3

What it does: the ``selective_copy`` task of rnnlab.data.tasks: K data tokens at random
positions among T noise tokens, then K recall markers; the model outputs the K tokens in
order (loss and accuracy on the K answer steps only). Every run has the same width (H = 32),
budget, optimizer (Adam 2e-3, global-norm clip 1, batch 32) and ``train.num_seeds`` seeds
vmapped. The selective cells (mamba, rglru) and the time-invariant LRU run in the same
residual block (``model.architecture=block``, two blocks, width-4 conv, RMSNorm); LSTM and
GRU as one classic layer. A seed solves a T when its answer accuracy reaches
``experiment.solve_accuracy`` (0.95). Table: per run and T, "k of N seeds solved" and the
median (min-max) accuracy; figures/selective_copy.png: answer accuracy against T, median with
the min-max range, and the memoryless baseline 1/V.

Expected result (the paper, T = 4096, K = V = 16): S6 inside Mamba 99.8% accuracy, S4 (a
time-invariant SSM, like LRU) 18%; input-dependent gates are what lets a recurrence skip
the noise. The gated classic cells (LSTM, GRU) have input-dependent gates too.

Measured: docs/lab.md ("selective copying") has the table of the last run with its command
and CPU time.
"""

from __future__ import annotations

import copy
import pathlib

import numpy as np

from rnnlab import config as config_lib
from rnnlab import data, study, train
from rnnlab.registry import apply
from rnnlab.viz import plots

VARIANTS = ("default", "smoke")
#: keys the experiment sets itself per run: refused on the command line (rnnlab.registry.resolve)
IGNORES = {"data.seq_length": "experiment.lengths sets T for each run"}

BLOCK = ["model.architecture=block", "model.block_depth=2", "model.conv_width=4",
         "model.norm=rms"]  # fmt: skip
RUNS = {
    "mamba": ["model.cell=mamba", *BLOCK],
    "rglru": ["model.cell=rglru", *BLOCK],
    "lru": ["model.cell=lru", *BLOCK],
    "lstm": ["model.cell=lstm"],
    "gru": ["model.cell=gru"],
}


def get_config(variant: str | None = None):
    c = config_lib.get_config()
    c.data.name = "selective_copy"
    c.data.batch_size = 32
    c.data.options.num_memorize = 4
    c.data.options.vocab = 8
    c.model.hidden_size = 32
    c.optim.learning_rate = 2e-3
    c.optim.clip_value = 1.0
    c.train.num_seeds = 3
    c.train.num_steps = 1500
    c.train.eval_every = 100
    c.train.log_every = 100
    c.train.checkpoint_every = 0
    c.train.progress = False
    study.with_section(c, runs=tuple(RUNS), lengths=(32,), solve_accuracy=0.95)
    if variant == "smoke":
        c.model.hidden_size = 8
        c.data.batch_size = 8
        c.data.options.num_memorize = 2
        c.data.options.vocab = 4
        c.train.num_steps = 4
        c.train.eval_every = 2
        c.train.num_seeds = 2
        c.experiment.runs = ("mamba",)
        c.experiment.lengths = (6,)
    return c


def run(config, workdir) -> dict:
    workdir = pathlib.Path(workdir)
    unknown = sorted(set(config.experiment.runs) - set(RUNS))
    if unknown:
        raise ValueError(f"experiment.runs: unknown {unknown}; known: {', '.join(RUNS)}")
    rows = []
    for label in config.experiment.runs:
        for T in config.experiment.lengths:
            overrides = [*RUNS[label], f"data.seq_length={T}"]
            cfg = apply(copy.deepcopy(config), overrides)
            baseline = data.make(cfg.data.name, **train.data_kwargs(cfg)).metadata()["baseline"]
            out = study.subrun(config, workdir / "runs" / label / f"T{T}", overrides)
            acc = out.get("val_accuracy_per_seed", [out["val_accuracy"]])
            rows.append({"label": label, "T": T, "accuracy": [float(a) for a in acc],
                         "xent": out.get("val_loss_per_seed", [out["val_loss"]]),
                         "baseline_accuracy": baseline["accuracy"],
                         "num_params": out.get("num_params"), "time_s": out.get("time_s")})  # fmt: skip
    return report(workdir, rows, config.experiment.solve_accuracy, config)


def report(workdir, rows, solve, config) -> dict:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.subplots()
    for label in dict.fromkeys(r["label"] for r in rows):
        mine = [r for r in rows if r["label"] == label]
        Ts = [r["T"] for r in mine]
        acc = [np.asarray(r["accuracy"]) for r in mine]
        med = np.array([np.median(a) for a in acc])
        lo, hi = med - np.array([a.min() for a in acc]), np.array([a.max() for a in acc]) - med
        ax.errorbar(Ts, med, yerr=[lo, hi], marker="o", capsize=3, label=label,
                    color=plots.color(label))  # fmt: skip
    base = rows[0]["baseline_accuracy"]
    ax.axhline(base, color="black", linestyle=":", linewidth=1.0)
    ax.annotate(f"memoryless 1/V = {base:.3f}", (0.01, base), xycoords=("axes fraction", "data"),
                fontsize=8, va="bottom")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("T (noise span)")
    ax.set_ylabel("answer accuracy (median, min-max over seeds)")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"selective copying, K={config.data.options.num_memorize}, "
                 f"V={config.data.options.vocab}, H={config.model.hidden_size}, "
                 f"{config.train.num_steps} steps, {config.train.num_seeds} seeds", fontsize=9)  # fmt: skip
    ax.legend(fontsize=8, frameon=False)
    ax.grid(True, alpha=0.3)
    plots.save(fig, pathlib.Path(workdir) / "figures" / "selective_copy.png", {"rows": rows})
    lines = ["| run | T | params | k of N seeds solved | answer accuracy, median (min-max) |",
             "|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        a = np.asarray(r["accuracy"])
        lines.append(f"| {r['label']} | {r['T']} | {r['num_params']} | "
                     f"{int((a >= solve).sum())}/{len(a)} | {np.median(a):.3f} "
                     f"({a.min():.3f}-{a.max():.3f}) |")  # fmt: skip
    return {"rows": rows, "table": "\n".join(lines)}
