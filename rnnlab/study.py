"""What experiment files share: their own config section, sub-runs, task grids, early stops.

The registry (:mod:`rnnlab.registry`) finds and runs experiments; this module holds the few
building blocks several ``experiments/*.py`` use, so each experiment file stays a short record:

* :func:`with_section` -- an ``experiment`` section of the experiment's own keys (overridable
  from the CLI like any other key: ``experiment.lengths="(50, 100)"``);
* :func:`subrun` -- ``train_and_evaluate`` on a copy of the config plus overrides;
* :func:`train_until` -- the same, stopped once the eval MSE is below a threshold;
* :func:`task_grid` / :func:`grid_table` -- a (run label x T) grid of trainings and its table;
* :func:`eval_curve` -- the eval losses of a workdir's ``metrics.jsonl``.
"""

from __future__ import annotations

import copy
import json
import pathlib
import time

import ml_collections
import numpy as np

from rnnlab import config as config_lib
from rnnlab.registry import apply


def with_section(config: ml_collections.ConfigDict, **keys) -> ml_collections.ConfigDict:
    """Add a locked ``experiment`` section (the experiment's own keys) to a base config."""
    config.unlock()
    config.experiment = ml_collections.ConfigDict(keys)
    config.lock()
    for path in config_lib.OPEN_DICTS:  # lock() is recursive: reopen the open dicts
        node = config
        for part in path.split("."):
            node = node[part]
        node.unlock()
    return config


def subrun(config, workdir, overrides=(), *, hooks=(), dataset=None) -> dict:
    """``train_and_evaluate`` on a copy of ``config`` with ``overrides``: experiments use it for
    each cell/length they train."""
    from rnnlab import train

    config = apply(copy.deepcopy(config), list(overrides))
    return train.train_and_evaluate(config, workdir, hooks=hooks, dataset=dataset)


class _Solved(Exception):
    def __init__(self, step: int, mse: float):
        super().__init__(f"solved at step {step}")
        self.step, self.mse = step, mse


def train_until(config, workdir, overrides=(), *, solve_mse: float | None = None) -> dict:
    """:func:`subrun`, stopped at the first evaluation whose eval MSE is below ``solve_mse``.

    The eval MSE is the model's own loss through the trainer's public contract,
    ``model.apply({"params": p}, batch, None, method="loss")[0]``, averaged over
    ``dataset.eval_batches()``; so the task must train with ``loss="mse"``. The check is a
    training hook (it runs at every ``train.eval_every``), which ends the run by raising; the
    result then has ``solved_step`` and ``val_loss`` (the MSE it saw). Without ``solve_mse``
    this is :func:`subrun`. Single-seed runs only (``train.num_seeds = 1``).

    Raises:
      ValueError: ``train.num_seeds > 1``, or a task whose loss is not ``"mse"`` (both before
        any training).
    """
    if solve_mse is None:
        return subrun(config, workdir, overrides)
    import jax

    from rnnlab import data, train

    cfg = apply(copy.deepcopy(config), list(overrides))
    if cfg.train.num_seeds != 1:
        raise ValueError(
            f"train_until stops one run: train.num_seeds must be 1, got {cfg.train.num_seeds}"
        )
    dataset = data.make(cfg.data.name, **train.data_kwargs(cfg))
    loss = dataset.model_spec.get("loss")
    if loss != "mse":
        raise ValueError(
            f"train_until(solve_mse=...) needs a task trained with loss 'mse'; "
            f"data.name={cfg.data.name!r} trains with {loss!r}"
        )
    compiled = {}

    def check(step, params, model, dataset):
        if "loss" not in compiled:  # one compile per run, not op-by-op dispatch at every eval
            compiled["loss"] = jax.jit(
                lambda p, b: model.apply({"params": p}, b, None, method="loss")[0]
            )
        mse = float(np.mean([compiled["loss"](params, b) for b in dataset.eval_batches()]))
        if mse < solve_mse:
            raise _Solved(step, mse)
        return {}

    t0 = time.time()
    try:
        result = subrun(cfg, workdir, hooks=[check], dataset=dataset)
        result["solved_step"] = None
    except _Solved as done:
        result = {"solved_step": done.step, "step": done.step, "val_loss": done.mse}
    result["time_s"] = time.time() - t0
    return result


def eval_curve(workdir) -> tuple[list[int], list[float]]:
    """``(steps, val_loss)`` of a run's eval records in ``metrics.jsonl``."""
    steps, vals = [], []
    for line in (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "eval" and "val_loss" in rec:
            steps.append(rec["step"])
            vals.append(rec["val_loss"])
    return steps, vals


def task_grid(config, workdir, runs: dict[str, list[str]], lengths) -> list[dict]:
    """Train every ``runs[label]`` (override list) at every ``T`` in ``lengths`` into
    ``workdir/runs/LABEL/T{T}``; ``train.num_seeds`` seeds each (vmapped).

    Returns one row per (label, T): ``label, T, val`` (per-seed final eval losses),
    ``baseline`` (the task's input-blind score, from its metadata), ``curve`` (eval steps and
    mean eval loss), ``time_s``.
    """
    from rnnlab import data, train

    rows = []
    for label, overrides in runs.items():
        for T in lengths:
            sub = pathlib.Path(workdir) / "runs" / label.replace("/", "_") / f"T{T}"
            cfg = apply(copy.deepcopy(config), [*overrides, f"data.seq_length={T}"])
            meta = data.make(cfg.data.name, **train.data_kwargs(cfg)).metadata()["baseline"]
            t0 = time.time()
            summary = subrun(cfg, sub)
            val = summary.get("val_loss_per_seed", [summary["val_loss"]])
            rows.append({
                "label": label, "T": T, "val": [float(v) for v in val],
                "baseline": meta.get("mse", meta.get("xent")), "curve": eval_curve(sub),
                "time_s": time.time() - t0,
            })  # fmt: skip
    return rows


def grid_table(rows: list[dict], *, metric: str, solved: float | None = None) -> str:
    """Markdown: label, T, mean +- std over seeds, min, baseline, (seeds below ``solved``)."""
    head = f"| run | T | final {metric} (mean +- std over seeds) | best seed | baseline |"
    head += " solved seeds |" if solved is not None else ""
    lines = [head, "|---" * (5 + (solved is not None)) + "|"]
    for r in rows:
        v = np.asarray(r["val"])
        line = (f"| {r['label']} | {r['T']} | {v.mean():.4f} +- {v.std():.4f} | {v.min():.4f} "
                f"| {r['baseline']:.4f} |")  # fmt: skip
        if solved is not None:
            line += f" {int((v < solved).sum())}/{len(v)} |"
        lines.append(line)
    return "\n".join(lines)
