"""adding: the adding problem (Le et al. 2015 / Arjovsky et al. 2016) over T, per cell, seeds vmapped.

Command:
    rnnlab run adding               # full: elman, irnn, lstm, gru at T = 50, 100, 200; 2 seeds
    rnnlab run adding:smoke         # seconds; what the test suite runs
    Options: experiment.cells="('lstm', 'gru')" (or model.cell=gru: that one cell),
    experiment.lengths="(100, 200, 400)",
    train.num_seeds=5, train.num_steps=4000

What it does: for each cell and each T, trains ``train.num_seeds`` independently initialized
models at once (vmapped over seeds, same data) on the adding problem (two channels: U[0,1]
values and a marker; target the sum of the two marked values, one marker in each half; MSE;
rnnlab.data.tasks), hidden 64, Adam 1e-3 with global-norm clip 1, batch 32, then tabulates the
final eval MSE over 4 x 32 fixed sequences against the baseline 1/6 (always predicting 1).
"irnn" is the Elman cell with ReLU and W_h = I (Le et al. 2015). Figure figures/adding.png:
final eval MSE against T per cell (mean over seeds; the baseline dotted).

Expected runtime (2 CPU cores): full ~7-10 minutes (measured 7.6 min, machine partly shared);
smoke: seconds.

Expected result: the tanh RNN stays at the 1/6 baseline from T of a few hundred on (already
at 100-200 within this budget); LSTM and GRU solve T = 200 (Arjovsky et al. 2016 Fig. 2, Le
et al. 2015 Fig. 2; they trained 10^4-10^5 steps, so within 1500 steps they may not be below
0.01 yet at T = 200); IRNN roughly matches LSTM (Le et al. 2015), though it is sensitive to the
learning rate.

Measured (full run, ``rnnlab run adding``, seeds 0 and 1, 1500 steps; eval MSE, mean +- std;
solved = MSE < 0.01):

    cell    T=50               T=100               T=200
    elman   0.025 +- 0.006     0.131 +- 0.012      0.160 +- 0.001 (baseline)
    irnn    0.046 +- 0.015     0.155 +- 0.003      0.166 +- 0.005 (baseline)
    lstm    0.019 +- 0.007     0.0099 +- 0.0003    0.121 +- 0.036
    gru     0.0009 (2/2)       0.0013 (2/2)        0.0013 (2/2 solved)

As expected, the tanh RNN is at the baseline by T = 200 and GRU solves T = 200. Where it
differs: LSTM has not solved T = 200 within 1500 steps (its MSE is falling: 0.085 for the
better seed; the papers train 10-100x longer), and IRNN does not match LSTM -- it is at the
baseline from T = 100 on (Le et al. used SGD with a tuned rate and ~10^5+ steps). The T = 100
rows equal the init experiment's (same config and seeds): runs are deterministic.
"""

from __future__ import annotations

import pathlib

import numpy as np

from rnnlab import config as config_lib
from rnnlab import study
from rnnlab.viz import plots

VARIANTS = ("default", "smoke")
#: keys the experiment sets itself per run: refused on the command line (rnnlab.registry.resolve)
IGNORES = {"data.seq_length": "experiment.lengths sets T for each run"}

CELL_OVERRIDES = {  # label -> overrides; labels map to plot colors by their first word
    "elman": ["model.cell=elman"],
    "irnn": [  # option by option, so options given on the command line are kept
        "model.cell=elman",
        "model.cell_options.activation=relu",
        "model.cell_options.recurrent_init=identity",
    ],
    "lstm": ["model.cell=lstm"],
    "gru": ["model.cell=gru"],
}


def get_config(variant: str | None = None):
    c = config_lib.get_config()
    c.data.name = "adding"
    c.data.batch_size = 32
    c.model.hidden_size = 64
    c.optim.learning_rate = 1e-3
    c.optim.clip_value = 1.0
    c.train.num_seeds = 2
    c.train.num_steps = 1500
    c.train.eval_every = 250
    c.train.log_every = 250
    c.train.checkpoint_every = 0
    c.train.progress = False
    study.with_section(c, cells=("elman", "irnn", "lstm", "gru"), lengths=(50, 100, 200))
    if variant == "smoke":
        c.model.hidden_size = 8
        c.data.batch_size = 8
        c.train.num_seeds = 2
        c.train.num_steps = 4
        c.train.eval_every = 2
        c.experiment.cells = ("lstm",)
        c.experiment.lengths = (10,)
    return c


def runs_for(cells) -> dict[str, list[str]]:
    return {c: CELL_OVERRIDES.get(c, [f"model.cell={c}"]) for c in cells}


def run(config, workdir) -> dict:
    rows = study.task_grid(
        config, workdir, runs_for(config.experiment.cells), config.experiment.lengths
    )
    series = {}
    for label in dict.fromkeys(r["label"] for r in rows):
        mine = [r for r in rows if r["label"] == label]
        series[label] = ([r["T"] for r in mine], [float(np.mean(r["val"])) for r in mine])
    plots.lines(
        series,
        pathlib.Path(workdir) / "figures" / "adding.png",
        xlabel="sequence length T",
        ylabel="final eval MSE (mean over seeds)",
        title=f"adding problem, H={config.model.hidden_size}, {config.train.num_steps} steps, "
        f"{config.train.num_seeds} seeds",
        logx=True,
        logy=True,
        styles={k: {"marker": "o"} for k in series},
        hlines={"baseline 1/6": 1 / 6, "solved 0.01": 0.01},
        notes={"rows": rows},
    )
    return {"rows": rows, "table": study.grid_table(rows, metric="MSE", solved=0.01)}
