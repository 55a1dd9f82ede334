"""memory-horizon: per cell, the longest T at which the adding problem is solved (the headline table).

Command:
    rnnlab run memory-horizon           # full: every registered cell, T = 16, 32, 64, 128
    rnnlab run memory-horizon:smoke     # seconds; what the test suite runs
    Options: experiment.cells="('lstm', 'gru')" (default (): every cell in rnnlab.cells.names()),
    experiment.lengths="(50, 100, 200, 400)", train.num_steps=5000 (the step budget per T)

What it does: for every registered cell (a new cell file appears here without an edit), trains
on the adding problem (Le/Arjovsky variant, rnnlab.data.tasks) at increasing T, each T from a
fresh init with the same step budget (``train.num_steps`` = 1000 steps of batch 32, hidden 32,
Adam 2e-3, global-norm clip 1, seed 0). "Solved" = eval MSE over 4 x 32 fixed sequences below
``experiment.solve_mse`` = 0.01 (the 1/6 baseline is 17x higher) at one of the evaluations
every 50 steps; the run stops there. The ladder stops at the first T a cell fails (longer T is
not tried). results.json: per cell, the longest T solved and, per T, the step it was solved at
or the final MSE. Figure figures/memory_horizon.png: eval MSE against step for each (cell, T).

Expected runtime (2 CPU cores): full ~8-10 minutes on a quiet machine (cells that fail early
finish early); smoke: seconds.

Expected result (REFERENCE.md "Long-range synthetic tasks"): the tanh Elman RNN has the
shortest horizon (at the baseline from T of a few hundred on in the papers; sooner with this
budget); LSTM and GRU reach the longest T (they solve T = 200 in the papers with 10^4+ steps);
the diagonal linear-recurrence cells (minGRU, minLSTM, LRU) and IndRNN are expected to do as
well as or better than LSTM (Feng et al. 2024; Orvieto et al. 2023; Li et al. 2018). With one
seed and a small budget, the table is a measurement of this budget, not of the cell's limit.
"""

from __future__ import annotations

import pathlib

from rnnlab import cells, study
from rnnlab import config as config_lib
from rnnlab.viz import plots

VARIANTS = ("default", "smoke")


def get_config(variant: str | None = None):
    c = config_lib.get_config()
    c.data.name = "adding"
    c.data.batch_size = 32
    c.model.hidden_size = 32
    c.optim.learning_rate = 2e-3
    c.optim.clip_value = 1.0
    c.train.num_steps = 1000
    c.train.eval_every = 50
    c.train.log_every = 100
    c.train.checkpoint_every = 0
    c.train.progress = False
    study.with_section(c, cells=(), lengths=(16, 32, 64, 128), solve_mse=0.01)
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
    results, series, styles = {}, {}, {}
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
            steps, vals = study.eval_curve(sub)
            series[f"{name} T={T}"] = (steps, vals)
            styles[f"{name} T={T}"] = {"alpha": 0.4 + 0.6 * (T / max(config.experiment.lengths))}
            if out["solved_step"] is None:
                break
            horizon = T
        results[name] = {"horizon": horizon, "per_T": per_T}
    plots.lines(
        series,
        workdir / "figures" / "memory_horizon.png",
        xlabel="step",
        ylabel="eval MSE",
        title=f"adding problem, H={config.model.hidden_size}, budget {config.train.num_steps} "
        "steps per T (darker = longer T)",
        logy=True,
        styles=styles,
        hlines={"baseline 1/6": 1 / 6, f"solved {threshold:g}": threshold},
        notes={"results": results},
    )
    Ts = list(config.experiment.lengths)
    lines = ["| cell | longest T solved | " + " | ".join(f"T={T}" for T in Ts) + " |",
             "|---|---|" + "---|" * len(Ts)]  # fmt: skip
    for name, r in results.items():
        cells_ = []
        for T in Ts:
            p = r["per_T"].get(T)
            if p is None:
                cells_.append("(not tried)")
            elif p["solved_step"] is not None:
                cells_.append(f"solved at step {p['solved_step']}")
            else:
                cells_.append(f"MSE {p['mse']:.3f}")
        best = r["horizon"]
        best = f">= {best} (top of the ladder)" if best == Ts[-1] else best or f"< {Ts[0]}"
        lines.append(f"| {name} | {best} | " + " | ".join(cells_) + " |")
    return {"cells": results, "table": "\n".join(lines), "solve_mse": threshold,
            "budget_steps": config.train.num_steps}  # fmt: skip
