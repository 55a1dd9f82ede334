"""The experiment registry: ``experiments/NAME.py`` files, looked up by name, run into workdirs.

An experiment is a file in the experiments folder (``rnnlab/../experiments``, or the folder in
the environment variable ``RNNLAB_EXPERIMENTS``); its name is the file stem with ``_`` written
``-`` (``experiments/memory_horizon.py`` is ``memory-horizon``). The file holds:

* a module docstring that is the experiment's record: the command, the expected runtime on 2
  CPU cores, the expected result and the paper it comes from (first line: a one-line summary);
* ``VARIANTS``: a tuple of variant names, every experiment having ``"smoke"``;
* ``get_config(variant=None) -> ConfigDict`` (the base config of :mod:`rnnlab.config`, plus an
  optional ``experiment`` section of its own keys made with :func:`with_section`);
* optional ``run(config, workdir) -> dict`` (default: :func:`rnnlab.train.train_and_evaluate`);
* optional ``sweep() -> list of override lists``: ``run`` then runs every point.

:func:`run` applies ``key=value`` overrides (a comma list, e.g. ``model.hidden_size=32,64``,
sweeps: each point goes into its own subdirectory and ``summary.md``/``summary.json`` tabulate
them) and writes ``results.json``; :func:`show` prints a workdir's headline figures.
"""

from __future__ import annotations

import copy
import difflib
import importlib.util
import inspect
import itertools
import json
import os
import pathlib
import sys
import time
from types import ModuleType
from typing import Any

import ml_collections
import numpy as np

from rnnlab import config as config_lib


def experiments_dir() -> pathlib.Path:
    """``$RNNLAB_EXPERIMENTS``, else ``experiments/`` beside the ``rnnlab`` package."""
    env = os.environ.get("RNNLAB_EXPERIMENTS")
    return (
        pathlib.Path(env) if env else pathlib.Path(__file__).resolve().parent.parent / "experiments"
    )


def names() -> list[str]:
    """Every experiment name (file stems with ``_`` -> ``-``), sorted."""
    folder = experiments_dir()
    return sorted(
        p.stem.replace("_", "-") for p in folder.glob("*.py") if not p.stem.startswith("_")
    )


def load(name: str) -> ModuleType:
    """The experiment module ``name`` (``NAME`` or ``NAME:VARIANT`` accepted; hyphens or not)."""
    name = name.split(":")[0].replace("_", "-")
    known = names()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"unknown experiment {name!r}.{hint} Known: {', '.join(known) or '(none)'}")
    path = experiments_dir() / f"{name.replace('-', '_')}.py"
    modname = f"rnnlab_experiments.{name.replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(modname, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module  # dataclasses/pickling look modules up by name
    spec.loader.exec_module(module)
    for attr in ("VARIANTS", "get_config"):
        if not hasattr(module, attr):
            raise ValueError(f"experiment file {path} defines no {attr}")
    return module


def summary(module: ModuleType) -> str:
    """The first line of the experiment's docstring."""
    return (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else "(no docstring)"


def format_list() -> str:
    """One line per experiment: name, variants, summary."""
    lines = []
    for name in names():
        try:
            mod = load(name)
            lines.append(f"{name:16s} [{', '.join(mod.VARIANTS)}]\n    {summary(mod)}")
        except Exception as err:  # a broken file must not hide the others
            lines.append(f"{name:16s} (cannot load: {type(err).__name__}: {err})")
    return "\n".join(lines)


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


def parse_spec(spec: str) -> tuple[ModuleType, str | None]:
    """``"NAME[:VARIANT]"`` -> (module, variant); unknown variants list the valid ones."""
    name, _, variant = spec.partition(":")
    module = load(name)
    if variant and variant not in module.VARIANTS:
        close = difflib.get_close_matches(variant, module.VARIANTS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(
            f"unknown variant {variant!r} of experiment {name!r}.{hint} "
            f"Known: {', '.join(module.VARIANTS)}"
        )
    return module, variant or None


# ------------------------------------------------------------------------------ overrides


def _is_list(text: str) -> bool:
    """A sweep value: a top-level comma list (not a tuple/list/dict literal or a quoted string)."""
    text = text.strip()
    return "," in text and text[:1] not in "([{'\"" and text[-1:] not in ")]}'\""


def expand(overrides: list[str]) -> list[list[str]]:
    """Cartesian product of comma-list overrides: ``["a=1,2", "b=x"]`` -> two override lists."""
    axes = []
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override must look like key=value, got {item!r}")
        key, text = item.split("=", 1)
        values = text.split(",") if _is_list(text) else [text]
        axes.append([f"{key}={v.strip()}" for v in values])
    return [list(point) for point in itertools.product(*axes)]


def apply(config: ml_collections.ConfigDict, overrides: list[str]) -> ml_collections.ConfigDict:
    """Apply overrides; an unknown key's error lists the valid keys of its section."""
    try:
        return config_lib.apply_overrides(config, overrides)
    except KeyError as err:
        key = next(
            (o.split("=", 1)[0] for o in overrides if o.split("=", 1)[0] not in _keys(config)), ""
        )
        section = key.split(".")[0]
        valid = [k for k in _keys(config) if k.split(".")[0] == section] or sorted(
            {k.split(".")[0] for k in _keys(config)}
        )
        raise KeyError(f"{err.args[0]} Valid keys: {', '.join(valid)}") from None


def _keys(config, prefix="") -> list[str]:
    out = []
    for k, v in config.items():
        if isinstance(v, ml_collections.ConfigDict) and f"{prefix}{k}" not in config_lib.OPEN_DICTS:
            out += _keys(v, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}")
    return out


def subrun(config, workdir, overrides=(), *, hooks=(), dataset=None) -> dict:
    """``train_and_evaluate`` on a copy of ``config`` with ``overrides``: experiments use it for
    each cell/length they train."""
    from rnnlab import train

    config = apply(copy.deepcopy(config), list(overrides))
    return train.train_and_evaluate(config, workdir, hooks=hooks, dataset=dataset)


# ------------------------------------------------------------------------------ run / show


def _json(obj):
    if isinstance(obj, dict):
        return {str(k): _json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json(v) for v in obj]
    if isinstance(obj, (np.generic, np.ndarray)):
        return _json(obj.tolist())
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def write_json(path, obj) -> None:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_json(obj), indent=1) + "\n")


def _run_point(module, config, workdir: pathlib.Path) -> dict:
    from rnnlab import train

    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    fn = getattr(module, "run", None)
    result = fn(config, workdir) if fn else train.train_and_evaluate(config, workdir)
    result = dict(result or {})
    result.setdefault("time_s", time.time() - t0)
    return result


def run(spec: str, overrides: list[str] | None = None, workdir=None) -> dict:
    """Run experiment ``spec`` (``NAME[:VARIANT]``) with ``key=value`` overrides.

    Default workdir: ``runs/NAME[-VARIANT]``. Writes ``results.json`` (experiment, variant,
    overrides and the run's result dict). With comma-list overrides, or a ``sweep()`` in the
    file, every point runs into ``workdir/<key=value,...>/`` and ``summary.md``/``summary.json``
    tabulate the points' scalar results. Returns the result (or ``{"points": [...]}``).
    """
    module, variant = parse_spec(spec)
    name = spec.split(":")[0].replace("_", "-")
    base = module.get_config(variant)
    overrides = list(overrides or [])
    points = expand(overrides)
    for point in points:  # every key and value checked before any work
        apply(copy.deepcopy(base), point)
    sweeping = len(points) > 1
    if not sweeping and hasattr(module, "sweep"):
        params = inspect.signature(module.sweep).parameters
        extra = module.sweep(variant) if params else module.sweep()
        points = [points[0] + list(p) for p in extra]
        for point in points:
            apply(copy.deepcopy(base), point)
        sweeping = len(points) > 1
    workdir = pathlib.Path(
        workdir or pathlib.Path("runs") / (name + (f"-{variant}" if variant else ""))
    )
    record = {"experiment": name, "variant": variant, "overrides": overrides}
    if not sweeping:
        config = apply(copy.deepcopy(base), points[0])
        result = _run_point(module, config, workdir)
        write_json(workdir / "results.json", {**record, "results": result})
        return result
    rows = []
    for point in points:
        sub = workdir / ",".join(p.replace("/", "_") for p in point)
        result = _run_point(module, apply(copy.deepcopy(base), point), sub)
        write_json(sub / "results.json", {**record, "overrides": point, "results": result})
        rows.append({"overrides": point, "results": result})
    table = summary_table(rows)
    (workdir / "summary.md").write_text(table + "\n")
    write_json(workdir / "summary.json", rows)
    write_json(workdir / "results.json", {**record, "results": {"points": rows, "table": table}})
    return {"points": rows, "table": table}


def _scalars(result: dict) -> dict[str, Any]:
    return {
        k: v
        for k, v in result.items()
        if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
    }


def summary_table(rows: list[dict]) -> str:
    """A markdown table: one row per sweep point, columns = overrides + scalar results."""
    cols = []
    for r in rows:
        cols += [k for k in _scalars(r["results"]) if k not in cols]
    head = "| point | " + " | ".join(cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    for r in rows:
        vals = _scalars(r["results"])
        cells = [f"{vals[c]:.4g}" if c in vals else "" for c in cols]
        lines.append(f"| {' '.join(r['overrides'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def show(workdir) -> str:
    """The headline figures of a workdir's ``results.json``: its table, then its scalars."""
    path = pathlib.Path(workdir) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: is {workdir!r} a finished run's workdir?")
    data = json.loads(path.read_text())
    res = data.get("results", {})
    lines = [f"{data.get('experiment')}" + (f":{data['variant']}" if data.get("variant") else "")]
    if data.get("overrides"):
        lines.append("overrides: " + " ".join(data["overrides"]))
    if isinstance(res.get("table"), str):
        lines += ["", res["table"], ""]
    for k, v in _scalars(res).items():
        lines.append(f"{k:28s} {v:.6g}" if isinstance(v, float) else f"{k:28s} {v}")
    figures = sorted((pathlib.Path(workdir) / "figures").glob("*.png"))
    if figures:
        lines.append("figures: " + ", ".join(str(f) for f in figures))
    return "\n".join(lines)


# ------------------------------------------------------------------- shared by experiments


class _Solved(Exception):
    def __init__(self, step: int, mse: float):
        super().__init__(f"solved at step {step}")
        self.step, self.mse = step, mse


def train_until(config, workdir, overrides=(), *, solve_mse: float | None = None) -> dict:
    """:func:`subrun`, stopped at the first evaluation whose eval MSE is below ``solve_mse``.

    The check is a training hook (it runs at every ``train.eval_every``), which ends the run by
    raising; the result then has ``solved_step`` and ``val_loss`` (the MSE it saw). Without
    ``solve_mse`` this is :func:`subrun`. Single-seed runs only (``train.num_seeds = 1``).
    """
    if solve_mse is None:
        return subrun(config, workdir, overrides)
    import jax
    import jax.numpy as jnp

    from rnnlab.probes._carry import wrap

    compiled = {}

    def check(step, params, model, dataset):
        if "mse" not in compiled:  # one compile per run, not op-by-op dispatch at every eval
            compiled["mse"] = jax.jit(
                lambda p, x, y: jnp.mean(jnp.square(model.apply(wrap(p), x)[0] - y))
            )
        errs = [
            float(compiled["mse"](params, jnp.asarray(b["inputs"]), jnp.asarray(b["targets"])))
            for b in dataset.eval_batches()
        ]
        mse = float(np.mean(errs))
        if mse < solve_mse:
            raise _Solved(step, mse)
        return {}

    t0 = time.time()
    try:
        result = subrun(config, workdir, overrides, hooks=[check])
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
