"""memory-horizon: per cell, the longest T at which the adding problem is solved (the headline table).

Command:
    rnnlab run memory-horizon           # full: every registered cell, T = 16 ... 256
    rnnlab run memory-horizon:smoke     # seconds; what the test suite runs
    Options: experiment.cells="('lstm', 'gru')" (default (): every cell in rnnlab.cells.names()),
    experiment.lengths="(50, 100, 200, 400)", train.num_steps=5000 (the step budget per T)

What it does: for every registered cell (a new cell file appears here without an edit), trains
on the adding problem (Le/Arjovsky variant, rnnlab.data.tasks) at increasing T, each T from a
fresh init with the same step budget (``train.num_steps`` = 2000 steps of batch 32, hidden 32,
Adam 2e-3, global-norm clip 1, seed 0). "Solved" = eval MSE over 4 x 32 fixed sequences below
``experiment.solve_mse`` = 0.01 (the 1/6 baseline is 17x higher) at one of the evaluations
every 50 steps; the run stops there. The ladder stops at the first T a cell fails (longer T is
not tried). results.json: per cell, the longest T solved and, per T, the step it was solved at
or the final MSE. Figures: figures/memory_horizon.png (cell x T grid of the eval MSE, solved
cells marked with their step) and figures/memory_horizon_curves.png (eval MSE against step).

Expected runtime (2 CPU cores): full ~4-5 minutes (cells that fail early finish early;
measured 222 s on a lightly loaded machine); smoke: seconds.

Expected result (REFERENCE.md "Long-range synthetic tasks"): the tanh Elman RNN has the
shortest horizon (at the baseline from T of a few hundred on in the papers; sooner with this
budget); LSTM and GRU reach the longest T (they solve T = 200 in the papers with 10^4+ steps);
the diagonal linear-recurrence cells (minGRU, minLSTM, LRU) and IndRNN are expected to do as
well as or better than LSTM (Feng et al. 2024; Orvieto et al. 2023; Li et al. 2018). With one
seed and a small budget, the table is a measurement of this budget, not of the cell's limit.

Measured (full run, seed 0; docs/figures/memory_horizon.png; the command was
``rnnlab run memory-horizon "experiment.lengths=(16, 32, 64, 128, 256)" train.num_steps=2000``,
which is the default now):

    cell     longest T solved   T=16        T=32        T=64        T=128       T=256
    elman    16                 step 800    MSE 0.028   -           -           -
    gru      >= 256 (top)       step 150    step 250    step 500    step 500    step 1050
    indrnn   < 16               MSE 0.087   -           -           -           -
    jordan   32                 step 800    step 1650   MSE 0.152   -           -
    lru      < 16               MSE 0.141   -           -           -           -
    lstm     128                step 300    step 500    step 950    step 1500   MSE 0.160
    mingru   < 16               MSE 0.012   -           -           -           -
    minlstm  16                 step 1700   MSE 0.013   -           -           -

(An earlier run with a 1000-step budget and T up to 128 gave: gru >= 128, lstm 32, elman 16,
jordan 16, the four others < 16.)

Where this differs from the papers: GRU and LSTM have the longest horizons and the tanh
Elman/Jordan RNNs short ones, as expected. But minGRU, minLSTM, LRU and IndRNN do no better
than the tanh RNN here (< 16 to 16), unlike the papers, which train far longer and tune per
model (LRU: ring init r_min, learning-rate scaling; IndRNN: recurrent weight ranges, deeper
stacks). minGRU/minLSTM are close at T = 16-32 (MSE 0.012-0.013, still falling: see
figures/memory_horizon_curves.png); they start with gates near 0.5, i.e. a state that halves
every step (see the vanishing experiment), so they first have to learn to saturate their gates.
Not tuned away: rerun with e.g. ``train.num_steps=5000`` or ``optim.learning_rate=1e-2``.
"""

from __future__ import annotations

import pathlib

import numpy as np

from rnnlab import cells, study
from rnnlab import config as config_lib
from rnnlab.viz import plots

VARIANTS = ("default", "smoke")
#: keys the experiment sets itself per run: refused on the command line (rnnlab.registry.resolve)
IGNORES = {"data.seq_length": "experiment.lengths sets T for each run"}


def get_config(variant: str | None = None):
    c = config_lib.get_config()
    c.data.name = "adding"
    c.data.batch_size = 32
    c.model.hidden_size = 32
    c.optim.learning_rate = 2e-3
    c.optim.clip_value = 1.0
    c.train.num_steps = 2000
    c.train.eval_every = 50
    c.train.log_every = 100
    c.train.checkpoint_every = 0
    c.train.progress = False
    study.with_section(c, cells=(), lengths=(16, 32, 64, 128, 256), solve_mse=0.01)
    if variant == "smoke":
        c.model.hidden_size = 8
        c.data.batch_size = 8
        c.train.num_steps = 4
        c.train.eval_every = 2
        c.experiment.cells = ("elman",)
        c.experiment.lengths = (8,)
        c.experiment.solve_mse = 0.5
    return c


def run(config, workdir) -> dict:
    workdir = pathlib.Path(workdir)
    names = list(config.experiment.cells) or cells.names()
    results = {}
    threshold = config.experiment.solve_mse
    for name in names:
        horizon, per_T = 0, {}
        for T in config.experiment.lengths:
            sub = workdir / "runs" / name / f"T{T}"
            out = study.train_until(
                config, sub, [f"model.cell={name}", f"data.seq_length={T}"], solve_mse=threshold
            )
            per_T[T] = {"solved_step": out["solved_step"], "mse": out.get("val_loss"),
                        "time_s": out["time_s"]}  # fmt: skip
            if out["solved_step"] is None:
                break
            horizon = T
        results[name] = {"horizon": horizon, "per_T": per_T}
    setting = {"lengths": list(config.experiment.lengths), "solve_mse": threshold,
               "hidden_size": config.model.hidden_size, "budget_steps": config.train.num_steps}  # fmt: skip
    return report(workdir, results, setting)


def report(workdir, results: dict, setting: dict) -> dict:
    """Figures and table from the per-cell results (also usable on a finished workdir)."""
    workdir = pathlib.Path(workdir)
    Ts, threshold = setting["lengths"], setting["solve_mse"]
    per = lambda r, T: r["per_T"].get(T, r["per_T"].get(str(T)))  # JSON keys are strings
    names = list(results)
    series, styles = {}, {}
    for name in names:
        for T in Ts:
            if per(results[name], T) is not None:
                series[f"{name} T={T}"] = study.eval_curve(workdir / "runs" / name / f"T{T}")
                styles[f"{name} T={T}"] = {"alpha": 0.35 + 0.65 * T / max(Ts)}
    sub = f"H={setting['hidden_size']}, budget {setting['budget_steps']} steps per T"
    plots.lines(
        series, workdir / "figures" / "memory_horizon_curves.png", xlabel="step",
        ylabel="eval MSE", title=f"adding problem, {sub} (darker = longer T)", logy=True,
        styles=styles, hlines={"baseline 1/6": 1 / 6, f"solved {threshold:g}": threshold},
        notes={"results": results},
    )  # fmt: skip
    grid = np.full((len(names), len(Ts)), np.nan)
    text = [["" for _ in Ts] for _ in names]
    for i, name in enumerate(names):
        for j, T in enumerate(Ts):
            p = per(results[name], T)
            if p is None:
                text[i][j] = "not tried"
            else:
                grid[i, j] = p["mse"]
                text[i][j] = (f"solved\n@{p['solved_step']}" if p["solved_step"] is not None
                              else f"{p['mse']:.3f}")  # fmt: skip
    plots.grid(
        grid, text, workdir / "figures" / "memory_horizon.png", rows=names,
        cols=[f"T={T}" for T in Ts], label="eval MSE (at the solve, or after the budget)",
        title=f"memory horizon on adding: solved = MSE < {threshold:g}; {sub}",
        vmin=threshold / 10, vmax=1 / 6, notes={"results": results, "setting": setting},
    )  # fmt: skip
    lines = ["| cell | longest T solved | " + " | ".join(f"T={T}" for T in Ts) + " |",
             "|---|---|" + "---|" * len(Ts)]  # fmt: skip
    for i, name in enumerate(names):
        best = results[name]["horizon"]
        best = f">= {best} (top of the ladder)" if best == Ts[-1] else best or f"< {Ts[0]}"
        row = [t.replace("\n@", " at step ") if t.startswith("solved") else
               (t if t == "not tried" else f"MSE {t}") for t in text[i]]  # fmt: skip
        lines.append(f"| {name} | {best} | " + " | ".join(row) + " |")
    return {"cells": results, "table": "\n".join(lines), **setting}
