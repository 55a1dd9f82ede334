"""clipping: an exploding tanh RNN trained with and without global-norm clipping (Pascanu 2013).

Command:
    rnnlab run clipping             # full: adding T=50, H=64, radius 1.8, SGD, 1500 steps
    rnnlab run clipping:smoke       # seconds; what the test suite runs
    Options: experiment.clip_values="(0.0, 1.0, 10.0)" (0: no clipping),
    model.cell_options.recurrent_scale=2.5, optim.learning_rate=0.1

What it does: trains the same Elman tanh RNN (W_h ~ N(0, 1/H) rescaled to spectral radius
``recurrent_scale`` = 1.8: the exploding regime, ||W_h||_2 > 1) on the adding problem with
SGD + momentum 0.9, once per clip value: 0 = no clipping, c > 0 = the update uses
g * min(1, c / ||g||) (optim.clip=global_norm). The trainer logs the PRE-clip global gradient
norm. Figures: figures/clipping_loss.png (training loss against step, with the 1/6 baseline)
and figures/clipping_grad_norm.png (pre-clip gradient norm, log scale). A run whose loss
becomes non-finite stops there (the trainer's NaN guard) and is reported as diverged.

Expected runtime (2 CPU cores): full ~1-3 minutes (measured 19 s: the unclipped run dies
early); smoke: seconds.

Expected result (Pascanu, Mikolov & Bengio 2013, sections 3.2 and 4): without clipping,
occasional gradient spikes of orders of magnitude (the "cliffs" of the loss surface) throw the
parameters far away: the loss jumps or the run diverges; with clipping the same spikes are
cut to the threshold and the loss decreases smoothly. Clipping does not fix vanishing
gradients: the clipped run need not solve adding at this T.

Measured (full run, seed 0, ``rnnlab run clipping``): without clipping the pre-clip norm grows
from ~90 to 4.7e15 within 30 steps and the gradient norm is inf at step 35 (the NaN guard
stops the run; train loss 2.7e29 at the last log). With global-norm clipping at 1 the run is
stable for all 1500 steps (pre-clip norm median 4.3, spikes up to 76 that the clip cuts), but
it does not learn the task: final train loss 0.39, eval MSE 0.31, above the 1/6 baseline.
That matches Pascanu et al.'s point that clipping prevents the explosion but does not create
long-range credit assignment; their clipped SGD runs also used their regularizer and longer
training, which this experiment does not reproduce.
"""

from __future__ import annotations

import json
import pathlib

from rnnlab import config as config_lib
from rnnlab import study, train
from rnnlab.viz import plots

VARIANTS = ("default", "smoke")
#: keys the experiment sets itself per run: refused on the command line (rnnlab.registry.resolve)
IGNORES = {
    "optim.clip": "experiment.clip_values sets the clipping of each run (0: none)",
    "optim.clip_value": "experiment.clip_values sets the clipping of each run (0: none)",
}


def get_config(variant: str | None = None):
    c = config_lib.get_config()
    c.model.cell = "elman"
    c.model.hidden_size = 64
    c.model.cell_options = {"recurrent_init": "gaussian", "recurrent_scale": 1.8}
    c.data.name = "adding"
    c.data.seq_length = 50
    c.data.batch_size = 32
    c.optim.name = "sgd"
    c.optim.learning_rate = 0.05
    c.optim.momentum = 0.9
    c.train.num_steps = 1500
    c.train.eval_every = 1500
    c.train.log_every = 5
    c.train.checkpoint_every = 0
    c.train.progress = False
    study.with_section(c, clip_values=(0.0, 1.0))
    if variant == "smoke":
        c.model.hidden_size = 8
        c.data.seq_length = 10
        c.data.batch_size = 8
        c.train.num_steps = 10
        c.train.eval_every = 10
        c.train.log_every = 2
    return c


def curves(workdir) -> dict[str, list]:
    steps, loss, norm = [], [], []
    for line in (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "train" and "grad_norm" in rec:
            steps.append(rec["step"])
            loss.append(rec["loss"])
            norm.append(rec["grad_norm"])
    return {"step": steps, "loss": loss, "grad_norm": norm}


def run(config, workdir) -> dict:
    workdir = pathlib.Path(workdir)
    runs, table = {}, {}
    for c in config.experiment.clip_values:
        label = "no clipping" if c == 0 else f"clip global norm {c:g}"
        clip = (
            ["optim.clip=none"] if c == 0 else ["optim.clip=global_norm", f"optim.clip_value={c}"]
        )
        sub = workdir / "runs" / label.replace(" ", "_")
        try:
            summary, diverged = study.subrun(config, sub, clip), None
        except train.NonFiniteError as err:
            summary, diverged = {}, str(err)
        runs[label] = curves(sub)
        norms = runs[label]["grad_norm"]
        table[label] = {
            "final_train_loss": runs[label]["loss"][-1] if runs[label]["loss"] else None,
            "val_mse": summary.get("val_loss"),
            "max_preclip_grad_norm": max(norms) if norms else None,
            "median_preclip_grad_norm": sorted(norms)[len(norms) // 2] if norms else None,
            "diverged": diverged,
        }
    title = (f"elman tanh, radius {config.model.cell_options.recurrent_scale}, adding "
             f"T={config.data.seq_length}, SGD lr {config.optim.learning_rate:g}")  # fmt: skip
    shades = ("#d62728", "#1f77b4", "#2ca02c", "#ff7f0e")
    styles = {k: {"color": shades[i % 4]} for i, k in enumerate(runs)}
    plots.lines(
        {k: (v["step"], v["loss"]) for k, v in runs.items()},
        workdir / "figures" / "clipping_loss.png",
        xlabel="step", ylabel="training loss (MSE)", title=title, logy=True, styles=styles,
        hlines={"baseline 1/6": 1 / 6}, notes={"table": table},
    )  # fmt: skip
    plots.lines(
        {k: (v["step"], v["grad_norm"]) for k, v in runs.items()},
        workdir / "figures" / "clipping_grad_norm.png",
        xlabel="step", ylabel="pre-clip global gradient norm", title=title, logy=True,
        styles=styles, notes={"table": table},
    )  # fmt: skip
    lines = ["| run | final train loss | val MSE | max pre-clip norm | median | diverged |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    fmt = lambda v: "-" if v is None else f"{v:.4g}"
    for k, r in table.items():
        lines.append(
            f"| {k} | {fmt(r['final_train_loss'])} | {fmt(r['val_mse'])} | "
            f"{fmt(r['max_preclip_grad_norm'])} | {fmt(r['median_preclip_grad_norm'])} | "
            f"{r['diverged'] or 'no'} |"
        )
    return {"runs": table, "table": "\n".join(lines)}
