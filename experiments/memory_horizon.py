"""memory-horizon: per cell and architecture, how long a T of the adding problem it solves.

Command:
    rnnlab run memory-horizon           # every cell x (1 layer, 2 layers, block), 3 seeds each
    rnnlab run memory-horizon:paper     # every cell in its paper's protocol (PROTOCOLS below)
    rnnlab run memory-horizon:smoke     # seconds; what the test suite runs
    Options: experiment.cells="('lstm', 'gru')" (default (): every cell in rnnlab.cells.names(),
    or every protocol for :paper), experiment.settings="('block',)" (default: all of SETTINGS),
    experiment.lengths="(16, 32)", train.num_steps=2000 (the budget per T), train.num_seeds=3,
    experiment.protocols=true (what :paper sets)

What it does: trains on the adding problem (Le/Arjovsky variant, rnnlab.data.tasks) at
increasing T, each T from a fresh init with the same step budget and ``train.num_seeds`` seeds
vmapped in one jit. The default variant compares every registered cell at *matched* depth,
width (H = 32) and budget (2000 steps of batch 32, Adam 2e-3, global-norm clip 1) in three
settings: one recurrent layer, two stacked layers, and ``model.architecture=block`` (two
residual blocks: RMSNorm, width-4 causal conv, the cell, gated MLP; rnnlab/blocks.py). A seed
"solves" T when its eval MSE (4 x 32 fixed sequences) falls below ``experiment.solve_mse`` =
0.01 at one of the evaluations every 50 steps. The ladder stops after the first T that no seed
solves. The ``paper`` variant runs each cell in the setting of its paper's long-range result
(:data:`PROTOCOLS`: depth, width, optimizer and learning rate, parameter groups, init,
constraints); other studies can reuse a protocol with :func:`protocol_overrides`.

Reference lines on every figure: the constant predictor's MSE 1/6, and the best *linear* model
of the inputs, (1/6)(1 - 2/T): a linear recurrence under a linear head (LRU, or minGRU with
one layer) can reach no lower, so a curve parked there reads "linear model", not "still
training".

Outputs: results.json (per setting, cell and T: per-seed solve steps and final MSEs, parameter
count); figures/memory_horizon.png (setting/cell x T: median final MSE, "k/N" seeds solved and
the median solve step) and figures/memory_horizon_curves.png (eval MSE against step, median and
min-max band over seeds, one panel per setting and T).

Expected runtime (2 CPU cores): smoke, seconds. The full default (every cell x three settings
x every T, three seeds) was not timed; its cost grows with cells x settings x lengths. Seven
cells at T = 32 only, 600 steps (the command in docs/lab.md) took 8.3 CPU-minutes.

Expected result (REFERENCE.md "Paper protocols"): in the papers, IndRNN (2 x 128, |u| bound)
solves T = 5000, LSTM with forget bias 1 and chrono solve T >= 200, the diagonal linear cells
(LRU, minGRU, minLSTM, RG-LRU, Mamba) solve long T *inside deep residual blocks*; alone under a
linear head they are linear models. The tanh RNN stays at the baseline from T of a few hundred.

Measured: docs/lab.md ("memory horizon") has the table of the last run with its command and
CPU time. Older single-seed tables of this file were removed: they compared cells in one
setting (one layer) that the linear cells cannot solve by construction, and were one seed.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from rnnlab import cells, study
from rnnlab import config as config_lib
from rnnlab.viz import plots

VARIANTS = ("default", "paper", "smoke")
#: keys the experiment sets itself per run: refused on the command line (rnnlab.registry.resolve)
IGNORES = {"data.seq_length": "experiment.lengths sets T for each run"}

#: the matched comparison of the default variant: same H, budget and seeds in every setting
SETTINGS = {
    "1 layer": [],
    "2 layers": ["model.num_layers=2"],
    "block": ["model.architecture=block", "model.block_depth=2", "model.conv_width=4"],
}

#: Per protocol: the cell, its paper, the claim it reproduces, and the overrides of the setting
#: in which the paper shows it ("{T}" is replaced by the run's sequence length).
PROTOCOLS = {
    "indrnn": {
        "cell": "indrnn",
        "paper": "Li et al. 2018 (CVPR), Sec. 4.1; batzner/indrnn examples/addition_rnn.py",
        "claim": "adding solved at T = 100, 500, 1000, 5000 (MSE ~0 where LSTM fails at 1000)",
        "overrides": [
            "model.num_layers=2",  # two stacked relu IndRNN layers
            "model.hidden_size=128",
            "optim.learning_rate=2e-4",  # Adam
            "data.batch_size=50",
            "model.cell_options.max_len={T}",  # |u| <= 2^(1/T), projected after each update
            "model.cell_options.recurrent_init=uniform",  # u ~ U[0, 2^(1/T)]
        ],
    },
    "lru": {
        "cell": "lru",
        "paper": "Orvieto et al. 2023 (ICML), Sec. 3 and App. D; minimal-LRU train_helpers",
        "claim": "long-range tasks solved inside deep residual blocks, never with a linear head",
        "overrides": [
            "model.architecture=block",
            "model.block_depth=2",
            "model.conv_width=0",  # the LRU block has no temporal conv
            "model.norm=layer",
            "model.cell_options.r_min=0.9",  # ring init for long-range tasks
            "model.cell_options.r_max=0.999",
            "model.cell_options.max_phase=0.314",  # pi / 10
            # the recurrent parameters at a reduced rate (minimal-LRU's "ssm" group); the
            # factor 0.5 is the lab's choice (minimal-LRU takes ssm_lr as its own argument)
            "optim.lr_groups=(('nu_log|theta_log|gamma_log', 0.5),)",
        ],
    },
    "mingru": {
        "cell": "mingru",
        "paper": "Feng et al. 2024, 'Were RNNs All We Needed?', Sec. 4",
        "claim": "stacked in blocks, matches LSTM/GRU on long-range tasks",
        "overrides": [
            "model.architecture=block",
            "model.block_depth=3",
            "model.conv_width=0",
            "model.norm=layer",
        ],  # fmt: skip
    },
    "minlstm": {
        "cell": "minlstm",
        "paper": "Feng et al. 2024, 'Were RNNs All We Needed?', Sec. 4",
        "claim": "stacked in blocks, matches LSTM/GRU on long-range tasks",
        "overrides": [
            "model.architecture=block",
            "model.block_depth=3",
            "model.conv_width=0",
            "model.norm=layer",
        ],  # fmt: skip
    },
    "lstm": {
        "cell": "lstm",
        "paper": "Gers et al. 2000 (forget bias 1); Jozefowicz et al. 2015",
        "claim": "adding solved at T >= 200 with forget bias 1",
        "overrides": ["model.cell_options.forget_bias=1.0"],
    },
    "lstm_chrono": {
        "cell": "lstm",
        "paper": "Tallec & Ollivier 2018, chrono initialization",
        "claim": "b_f ~ log U[1, T_max - 1], T_max = T for adding; faster than forget bias 1",
        "overrides": ["model.cell_options.chrono_tmax={T}"],
    },
    "gru": {
        "cell": "gru",
        "paper": "Cho et al. 2014; Chung et al. 2014",
        "claim": "one gated layer; in the lab's runs the fastest classic cell on adding",
        "overrides": [],
    },
    "elman": {
        "cell": "elman",
        "paper": "Le et al. 2015 (IRNN): relu, W_hh = I",
        "claim": "IRNN matches LSTM on adding up to T = 400 (with a small learning rate)",
        "overrides": [
            "model.cell_options.activation=relu",
            "model.cell_options.recurrent_init=identity",
            "optim.learning_rate=1e-4",
        ],  # fmt: skip
    },
    "rglru": {
        "cell": "rglru",
        "paper": "De et al. 2024 (Griffin/Hawk); google-deepmind/recurrentgemma",
        "claim": "Hawk's residual block: RMSNorm, width-4 conv, RG-LRU, gated MLP (x3)",
        "overrides": [
            "model.architecture=block",
            "model.block_depth=2",
            "model.conv_width=4",
            "model.norm=rms",
        ],  # fmt: skip
    },
    "mamba": {
        "cell": "mamba",
        "paper": "Gu & Dao 2023 (Mamba); state-spaces/mamba",
        "claim": "selective SSM in residual blocks with a width-4 conv; solves selective copy",
        "overrides": [
            "model.architecture=block",
            "model.block_depth=2",
            "model.conv_width=4",
            "model.norm=rms",
            "model.cell_options.state_size=16",
        ],  # fmt: skip
    },
}


def protocol_overrides(name: str, T: int) -> list[str]:
    """The overrides of protocol ``name`` at sequence length ``T`` (``model.cell`` included)."""
    if name not in PROTOCOLS:
        raise KeyError(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    p = PROTOCOLS[name]
    return [f"model.cell={p['cell']}", *(o.replace("{T}", str(T)) for o in p["overrides"])]


def get_config(variant: str | None = None):
    c = config_lib.get_config()
    c.data.name = "adding"
    c.data.batch_size = 32
    c.model.hidden_size = 32
    c.optim.learning_rate = 2e-3
    c.optim.clip_value = 1.0
    c.train.num_steps = 2000
    c.train.num_seeds = 3
    c.train.eval_every = 50
    c.train.log_every = 100
    c.train.checkpoint_every = 0
    c.train.progress = False
    study.with_section(c, cells=(), settings=(), lengths=(16, 32, 64, 128, 256), solve_mse=0.01,
                       protocols=variant == "paper")  # fmt: skip
    if variant == "smoke":
        c.model.hidden_size = 8
        c.data.batch_size = 8
        c.train.num_steps = 4
        c.train.eval_every = 2
        c.train.num_seeds = 2
        c.experiment.cells = ("elman",)
        c.experiment.settings = ("block",)
        c.experiment.lengths = (8,)
        c.experiment.solve_mse = 0.5
    return c


def _runs(config) -> dict[str, dict[str, object]]:
    """``{setting: {row label: callable T -> overrides}}``: the protocols (``:paper``,
    ``experiment.protocols=true``) or every cell in every matched setting."""
    chosen = list(config.experiment.cells)
    if config.experiment.protocols:
        names = chosen or list(PROTOCOLS)
        unknown = sorted(set(names) - set(PROTOCOLS))
        if unknown:
            raise ValueError(
                f"experiment.cells for :paper names protocols; unknown {unknown}, "
                f"known: {', '.join(PROTOCOLS)}"
            )
        return {"paper": {n: (lambda T, n=n: protocol_overrides(n, T)) for n in names}}
    names = chosen or cells.names()
    settings = list(config.experiment.settings) or list(SETTINGS)
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ValueError(f"experiment.settings: unknown {unknown}, known: {list(SETTINGS)}")
    return {
        s: {n: (lambda T, n=n, s=s: [f"model.cell={n}", *SETTINGS[s]]) for n in names}
        for s in settings
    }


def _seed_curves(workdir) -> tuple[list[int], np.ndarray]:
    """``(steps, mse [E, S])``: the per-seed eval MSE of a run's eval records."""
    steps, vals = [], []
    for line in (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "eval" and "val_loss" in rec:
            steps.append(rec["step"])
            vals.append(rec.get("val_loss_per_seed", [rec["val_loss"]]))
    return steps, np.asarray(vals, dtype=float)


def run(config, workdir) -> dict:
    workdir = pathlib.Path(workdir)
    threshold = config.experiment.solve_mse
    results = {}
    for setting, rows in _runs(config).items():
        results[setting] = {}
        for label, overrides in rows.items():
            per_T = {}
            for T in config.experiment.lengths:
                sub = workdir / "runs" / setting.replace(" ", "_") / label / f"T{T}"
                out = study.subrun(config, sub, [*overrides(T), f"data.seq_length={T}"])
                steps, mse = _seed_curves(sub)
                solved = [next((int(s) for s, v in zip(steps, mse[:, i]) if v < threshold), None)
                          for i in range(mse.shape[1])]  # fmt: skip
                per_T[T] = {"solved_step": solved, "final_mse": mse[-1].tolist(),
                            "num_params": out.get("num_params"), "time_s": out.get("time_s")}  # fmt: skip
                if all(s is None for s in solved):
                    break  # the ladder stops after the first T no seed solves
            results[setting][label] = per_T
    setting = {"lengths": list(config.experiment.lengths), "solve_mse": threshold,
               "hidden_size": config.model.hidden_size, "budget_steps": config.train.num_steps,
               "num_seeds": config.train.num_seeds, "protocols": config.experiment.protocols}  # fmt: skip
    return report(workdir, results, setting)


def linear_floor(T: int) -> float:
    """The best MSE of a linear model of the inputs on adding: ``(1/6)(1 - 2/T)``."""
    return (1.0 - 2.0 / T) / 6.0


def _curve_figure(workdir, results, setting):
    from matplotlib.figure import Figure

    Ts, threshold = setting["lengths"], setting["solve_mse"]
    names = list(results)
    fig = Figure(figsize=(3.2 * len(Ts), 2.8 * len(names) + 0.6), layout="constrained")
    axes = fig.subplots(len(names), len(Ts), squeeze=False, sharey=True)
    data = {"series": {}, "notes": {"results": results, "setting": setting}}
    for i, name in enumerate(names):
        for j, T in enumerate(Ts):
            ax = axes[i][j]
            for label, per_T in results[name].items():
                if T not in per_T and str(T) not in per_T:
                    continue
                sub = workdir / "runs" / name.replace(" ", "_") / label / f"T{T}"
                steps, mse = _seed_curves(sub)
                med = np.median(mse, axis=1)
                c = plots.color(label)
                ax.plot(steps, med, color=c, linewidth=1.4, label=label)
                ax.fill_between(steps, mse.min(axis=1), mse.max(axis=1), color=c, alpha=0.2)
                data["series"][f"{name}/{label}/T={T}"] = {
                    "x": steps,
                    "median": med,
                    "min": mse.min(axis=1),
                    "max": mse.max(axis=1),
                }
            for y, what, style in ((1 / 6, "constant 1/6", ":"),
                                   (linear_floor(T), "best linear", "--"),
                                   (threshold, f"solved {threshold:g}", "-.")):  # fmt: skip
                ax.axhline(y, color="black", linestyle=style, linewidth=0.8)
                ax.annotate(what, (0.01, y), xycoords=("axes fraction", "data"), fontsize=6,
                            va="bottom")  # fmt: skip
            ax.set_yscale("log")
            ax.set_title(f"{name}, T={T}", fontsize=8)
            ax.grid(True, alpha=0.3)
            if i == len(names) - 1:
                ax.set_xlabel("step")
        axes[i][0].set_ylabel("eval MSE (median, min-max)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, ncol=min(len(labels), 6), frameon=False,
               loc="outside lower center")  # fmt: skip
    return plots.save(fig, workdir / "figures" / "memory_horizon_curves.png", data)


def report(workdir, results: dict, setting: dict) -> dict:
    """Figures and table from the per-setting results (also usable on a finished workdir)."""
    workdir = pathlib.Path(workdir)
    Ts, threshold = setting["lengths"], setting["solve_mse"]
    per = lambda r, T: r.get(T, r.get(str(T)))  # JSON keys are strings
    _curve_figure(workdir, results, setting)
    rows = [(s, label) for s in results for label in results[s]]
    grid = np.full((len(rows), len(Ts)), np.nan)
    text = [["" for _ in Ts] for _ in rows]
    lines = ["| setting | cell | params | longest T (k of N seeds) | "
             + " | ".join(f"T={T}" for T in Ts) + " |", "|---" * (4 + len(Ts)) + "|"]  # fmt: skip
    for i, (s, label) in enumerate(rows):
        longest, params = "", None
        for j, T in enumerate(Ts):
            p = per(results[s][label], T)
            if p is None:
                text[i][j] = "not tried"
                continue
            solved = [x for x in p["solved_step"] if x is not None]
            k, n = len(solved), len(p["solved_step"])
            grid[i, j] = float(np.median(p["final_mse"]))
            params = p["num_params"]
            step = f"\n@{int(np.median(solved))}" if solved else ""
            text[i][j] = f"{k}/{n}{step}"
            if k:
                longest = f"{T} ({k}/{n})"
        row = []
        for j in range(len(Ts)):
            p = per(results[s][label], Ts[j])
            if p is None:
                row.append("-")
                continue
            solved = [x for x in p["solved_step"] if x is not None]
            cell_text = f"{len(solved)}/{len(p['solved_step'])}"
            if solved:
                cell_text += f", median step {int(np.median(solved))}"
            cell_text += f", median MSE {np.median(p['final_mse']):.3f}"
            row.append(cell_text)
        lines.append(f"| {s} | {label} | {params} | {longest or f'< {Ts[0]}'} | "
                     + " | ".join(row) + " |")  # fmt: skip
    sub = (f"H={setting['hidden_size']}, {setting['budget_steps']} steps, "
           f"{setting['num_seeds']} seeds")  # fmt: skip
    plots.grid(
        grid, text, workdir / "figures" / "memory_horizon.png",
        rows=[f"{s}: {label}" for s, label in rows], cols=[f"T={T}" for T in Ts],
        label="median final eval MSE", vmin=threshold / 10, vmax=1 / 6,
        title=f"adding: k/N seeds solved (MSE < {threshold:g}), median solve step; {sub}",
        notes={"results": results, "setting": setting,
               "linear_floor": {T: linear_floor(T) for T in Ts}},
    )  # fmt: skip
    return {"results": results, "table": "\n".join(lines), **setting,
            "linear_floor": {str(T): linear_floor(T) for T in Ts}}  # fmt: skip
