"""init: initializations for gradient flow on the adding problem (Elman and LSTM variants).

Command:
    rnnlab run init                 # full: 6 initializations, adding T = 100, 2 seeds
    rnnlab run init:smoke           # seconds; what the test suite runs
    Options: data.seq_length=200, train.num_steps=4000, train.num_seeds=3

What it does: trains on the adding problem (Le/Arjovsky variant) with hidden 64, Adam 1e-3,
global-norm clip 1, batch 32, ``train.num_seeds`` seeds vmapped, six initializations:

* elman/orthogonal: tanh, W_h orthogonal (Saxe et al. 2013);
* elman/gaussian: tanh, W_h ~ N(0, 1/H) rescaled to spectral radius 1;
* irnn: ReLU, W_h = I, b = 0, input weights N(0, 0.001^2) (Le, Jaitly & Hinton 2015);
* lstm/forget-bias-0, lstm/forget-bias-1 (Gers et al. 2000; Jozefowicz et al. 2015);
* lstm/chrono: b_f ~ log U[1, T_max - 1], b_i = -b_f with T_max = T (Tallec & Ollivier 2018).

Figure figures/init.png: eval MSE against step (mean over seeds) per initialization, log scale,
with the 1/6 baseline; the table in results.json gives the final MSE per seed.

Expected runtime (2 CPU cores): full ~6-9 minutes (measured 10.9 min on a shared machine,
load ~13); smoke: seconds.

Expected result: IRNN roughly matches LSTM, both far better than the tanh RNN, which stays at
the baseline (Le et al. 2015, adding T = 150-400); forget bias 1 beats 0 (Jozefowicz 2015);
chrono converges faster than forget bias 1, strongly so at long T (~7x at T = 750, Tallec &
Ollivier 2018). With this short budget at T = 100 differences may show as speed, not as the
final MSE.

Measured (full run, ``rnnlab run init``, seeds 0 and 1, T = 100, 1500 steps):

    run                 final eval MSE (mean +- std)   first eval below 0.05
    elman/orthogonal    0.131 +- 0.012                 never
    elman/gaussian      0.145 +- 0.015                 never
    irnn                0.155 +- 0.003                 never
    lstm/forget-bias-0  0.022 +- 0.011                 step 1100
    lstm/forget-bias-1  0.0099 +- 0.0003               step 900
    lstm/chrono         0.0060 +- 0.0036 (2/2 < 0.01)  step 500

The LSTM ordering is the papers': chrono converges fastest (first below 0.05 at step 500 vs
900 for forget bias 1 and 1100 for forget bias 0) and ends lowest. Where it differs: IRNN does
NOT match LSTM here -- it stays near the baseline like the tanh RNNs. Le et al. 2015 trained
far longer (10^5+ steps) with SGD and a tuned learning rate and gradient clipping; with Adam
1e-3 and 1500 steps it has not started to learn. Not tuned away.
"""

from __future__ import annotations

import pathlib

import numpy as np

from rnnlab import config as config_lib
from rnnlab import study
from rnnlab.viz import plots

VARIANTS = ("default", "smoke")
#: keys the experiment sets itself per run: refused on the command line (rnnlab.registry.resolve)
IGNORES = {
    "model.cell": "experiment.runs picks the runs, each with its own cell",
    "model.cell_options": "each run of experiment.runs sets its own cell options",
}


def runs_for(T: int) -> dict[str, list[str]]:
    opts = lambda **kw: f"model.cell_options={kw!r}"
    return {
        "elman/orthogonal": ["model.cell=elman", opts(recurrent_init="orthogonal")],
        "elman/gaussian": ["model.cell=elman", opts(recurrent_init="gaussian")],
        "irnn": ["model.cell=elman", opts(activation="relu", recurrent_init="identity")],
        "lstm/forget-bias-0": ["model.cell=lstm", opts(forget_bias=0.0)],
        "lstm/forget-bias-1": ["model.cell=lstm", opts(forget_bias=1.0)],
        "lstm/chrono": ["model.cell=lstm", opts(chrono_tmax=float(T))],
    }


def get_config(variant: str | None = None):
    c = config_lib.get_config()
    c.data.name = "adding"
    c.data.seq_length = 100
    c.data.batch_size = 32
    c.model.hidden_size = 64
    c.optim.learning_rate = 1e-3
    c.optim.clip_value = 1.0
    c.train.num_seeds = 2
    c.train.num_steps = 1500
    c.train.eval_every = 100
    c.train.log_every = 100
    c.train.checkpoint_every = 0
    c.train.progress = False
    study.with_section(c, runs=tuple(runs_for(100)))
    if variant == "smoke":
        c.model.hidden_size = 8
        c.data.seq_length = 10
        c.data.batch_size = 8
        c.train.num_steps = 4
        c.train.eval_every = 2
        c.experiment.runs = ("irnn", "lstm/chrono")
    return c


def run(config, workdir) -> dict:
    T = config.data.seq_length
    everything = runs_for(T)
    unknown = sorted(set(config.experiment.runs) - set(everything))
    if unknown:
        raise KeyError(f"unknown init run(s) {unknown}; known: {', '.join(everything)}")
    runs = {k: everything[k] for k in config.experiment.runs}
    rows = study.task_grid(config, workdir, runs, [T])
    styles = {r["label"]: {"linestyle": ["-", "--", ":"][i % 3]} for i, r in enumerate(rows)}
    plots.lines(
        {r["label"]: r["curve"] for r in rows},
        pathlib.Path(workdir) / "figures" / "init.png",
        xlabel="step",
        ylabel="eval MSE (mean over seeds)",
        title=f"adding T={T}, H={config.model.hidden_size}, {config.train.num_seeds} seeds",
        logy=True,
        styles=styles,
        hlines={"baseline 1/6": 1 / 6},
        notes={"rows": rows},
    )
    first = {r["label"]: _first_below(r["curve"], 0.05) for r in rows}
    table = study.grid_table(rows, metric="MSE", solved=0.01)
    table += "\n\nfirst eval below MSE 0.05: " + ", ".join(
        f"{k}: {'never' if v is None else f'step {v}'}" for k, v in first.items()
    )
    return {"rows": rows, "table": table, "first_step_below_0.05": first,
            "final_mse": {r["label"]: float(np.mean(r["val"])) for r in rows}}  # fmt: skip


def _first_below(curve, level: float):
    return next((s for s, v in zip(*curve) if v < level), None)
