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
from rnnlab.metrics import write_json


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
    except TypeError as err:  # a value of the wrong type: the CLI reports ValueErrors cleanly
        raise ValueError(str(err)) from None


def _keys(config, prefix="") -> list[str]:
    out = []
    for k, v in config.items():
        if isinstance(v, ml_collections.ConfigDict) and f"{prefix}{k}" not in config_lib.OPEN_DICTS:
            out += _keys(v, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}")
    return out


# ------------------------------------------------------------------------------ run / show


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
    overrides, the resolved config and the run's result dict). With comma-list overrides, or a
    ``sweep()`` in the file, every point runs into ``workdir/<key=value,...>/`` and
    ``summary.md``/``summary.json`` tabulate the points' scalar results. Returns the result (or
    ``{"points": [...]}``).

    Before any work, every point's config is resolved and checked (:func:`resolve`) and the
    workdir is checked to be this run's (:func:`check_workdir`); a refusal raises
    :class:`rnnlab.config.UserError` (a ValueError) and writes nothing.
    """
    module, variant = parse_spec(spec)
    name = spec.split(":")[0].replace("_", "-")
    base = module.get_config(variant)
    overrides = list(overrides or [])
    points = expand(overrides)
    for point in points:  # every key and value parsed before the sweep function runs
        apply(copy.deepcopy(base), point)
    sweeping = len(points) > 1
    if not sweeping and hasattr(module, "sweep"):
        params = inspect.signature(module.sweep).parameters
        extra = module.sweep(variant) if params else module.sweep()
        points = [points[0] + list(p) for p in extra]
        sweeping = len(points) > 1
    configs = [resolve(module, base, point, name=name) for point in points]
    workdir = pathlib.Path(
        workdir or pathlib.Path("runs") / (name + (f"-{variant}" if variant else ""))
    )
    record = {"experiment": name, "variant": variant, "overrides": overrides}
    from rnnlab import cells

    if cells.sources():  # cells from files outside the package: which file, which content
        record["cell_files"] = cells.sources()
    if not sweeping:
        check_workdir(workdir, record, configs[0], module)
        result = _run_point(module, configs[0], workdir)
        write_json(
            workdir / "results.json", {**record, "config": _plain(configs[0]), "results": result}
        )
        return result
    subs = [workdir / ",".join(p.replace("/", "_") for p in point) for point in points]
    check_workdir(workdir, record, None, module)
    for sub, point, config in zip(subs, points, configs, strict=True):
        check_workdir(sub, {**record, "overrides": point}, config, module)
    rows = []
    for sub, point, config in zip(subs, points, configs, strict=True):
        result = _run_point(module, config, sub)
        write_json(
            sub / "results.json",
            {**record, "overrides": point, "config": _plain(config), "results": result},
        )
        rows.append({"overrides": point, "results": result, "metrics": flat_metrics(result)})
    table = summary_table(rows)
    (workdir / "summary.md").write_text(table + "\n")
    write_json(workdir / "summary.json", rows)
    write_json(workdir / "results.json", {**record, "results": {"points": rows, "table": table}})
    _write_comparison(workdir)  # last: the sweep's records stand even if the figure fails
    return {"points": rows, "table": table}


# ------------------------------------------------------------------- checks before any work


def resolve(module, base, point: list[str], *, name: str = "") -> ml_collections.ConfigDict:
    """One point's config: ``base`` plus the overrides, checked so that every key either takes
    effect or is refused (:class:`rnnlab.config.ConfigError`):

    * ``model.cell`` in an experiment that picks its cells from ``experiment.cells`` runs that
      one cell (``experiment.cells = (model.cell,)``; both given and disagreeing: refused);
    * a key the experiment does not read (its ``READS``, a tuple of keys or sections, when it
      declares one) or sets itself per run (its ``IGNORES``, key -> why) is refused when it
      differs from the experiment's own config;
    * the experiment's own ``check_config(config, base)``, when it has one (keys whose use
      depends on other keys, e.g. a size the experiment solves for);
    * :func:`rnnlab.config.validate` (types, ranges, cell and data options, causality; keys
      in the experiment's ``PLANNED`` may be 0: it plans them);
    * for experiments that train (no ``READS``): the dataset and the model are built (no
      params), so a model key the architecture has no field for fails now, not after
      earlier sweep points have trained.
    """
    config = apply(copy.deepcopy(base), point)
    name = name or getattr(module, "__name__", "experiment").rsplit(".", 1)[-1]
    if "experiment" in config and "cells" in config.experiment:
        cell, cells = config.model.cell, tuple(config.experiment.cells)
        if cell != base.model.cell:
            if cells != tuple(base.experiment.cells) and cells != (cell,):
                raise config_lib.ConfigError(
                    f"model.cell={cell!r} and experiment.cells={cells!r} disagree: experiment "
                    f"{name!r} trains the cells of experiment.cells; give one of the two"
                )
            config.experiment.cells = (cell,)
    reads = getattr(module, "READS", None)
    ignores = getattr(module, "IGNORES", {})
    for key in _keys(config):
        if _value(config, key) == _value(base, key):
            continue
        if key in ignores:
            raise config_lib.ConfigError(
                f"{key}={_value(config, key)!r} has no effect in experiment {name!r}: "
                f"{ignores[key]}; leave it out"
            )
        if reads is not None and not any(key == r or key.startswith(r + ".") for r in reads):
            raise config_lib.ConfigError(
                f"{key}={_value(config, key)!r} has no effect in experiment {name!r}: it reads "
                f"only {', '.join(reads)}; leave it out"
            )
    check = getattr(module, "check_config", None)  # refusals only the experiment can tell
    if check is not None:
        check(config, base)
    config_lib.validate(config, planned=getattr(module, "PLANNED", ()))
    if reads is None:
        from rnnlab import data as data_lib
        from rnnlab import models
        from rnnlab.train import data_kwargs

        dataset = data_lib.make(config.data.name, **data_kwargs(config))
        models.build(config.model, dict(dataset.model_spec))
        models.check_causal(config.model, dataset)
    return config


def _value(config, key: str):
    node = config
    for part in key.split("."):
        if part not in node:
            return None
        node = node[part]
    return node.to_dict() if isinstance(node, ml_collections.ConfigDict) else node


def _plain(config) -> dict:
    """The config as JSON would give it back (tuples as lists)."""
    return json.loads(json.dumps(config.to_dict(), default=str))


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key not in config_lib.OPEN_DICTS:
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def _read_record(path: pathlib.Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise config_lib.UserError(
            f"{path} cannot be read as JSON ({err}); move it away, or choose another --workdir"
        ) from None
    if not isinstance(data, dict):
        raise config_lib.UserError(f"{path} holds no run record; move it away")
    return data


def check_workdir(workdir, record: dict, config, module) -> None:
    """Refuse, before any work, a workdir that is not this run's.

    ``workdir`` and its parents must be directories where they exist. Its ``results.json``,
    if any, must record the same experiment and variant and (when it records one) the same
    config; its ``config.json``, if any, the same config. Keys allowed to change on resumption
    (``rnnlab.train.RUN_CONTROL_KEYS``, e.g. ``train.num_steps``) and the keys the experiment
    plans itself (its ``PLANNED``) may differ. ``config=None``: experiment and variant only
    (the top folder of a sweep).
    """
    from rnnlab.train import RUN_CONTROL_KEYS

    workdir = pathlib.Path(workdir)
    for p in (workdir, *workdir.parents):
        if p.exists() and not p.is_dir():
            raise config_lib.UserError(
                f"--workdir {str(workdir)!r}: {str(p)!r} is a file, not a directory; choose "
                "a workdir that is a directory or does not exist yet"
            )
    here = f"{record['experiment']}" + (f":{record['variant']}" if record["variant"] else "")
    free = set(RUN_CONTROL_KEYS) | set(getattr(module, "PLANNED", ()))
    mine = None if config is None else _flat(_plain(config))
    results = workdir / "results.json"
    saved = _read_record(results) if results.is_file() else {}
    if "experiment" in saved:  # a registry record (an experiment's own run() writes one without)
        there = f"{saved.get('experiment')}" + (
            f":{saved['variant']}" if saved.get("variant") else ""
        )
        same = saved.get("experiment") == record["experiment"] and (
            saved.get("variant") or "default"
        ) == (record["variant"] or "default")
        if not same:
            raise config_lib.UserError(
                f"workdir {str(workdir)!r} holds a run of {there} (its results.json); this is "
                f"{here}. Choose another --workdir (or remove that one to start over)."
            )
        if mine is not None and isinstance(saved.get("config"), dict):
            _same_config(workdir, results, _flat(saved["config"]), mine, free, here)
    recorded = workdir / "config.json"
    if mine is not None and recorded.is_file():
        _same_config(workdir, recorded, _flat(_read_record(recorded)), mine, free, here)


def _same_config(workdir, path, theirs: dict, mine: dict, free: set, here: str) -> None:
    diff = [
        k for k in sorted(set(theirs) | set(mine)) if k not in free and theirs.get(k) != mine.get(k)
    ]
    if diff:
        shown = "; ".join(f"{k}: {theirs.get(k)!r} there, {mine.get(k)!r} here" for k in diff[:3])
        more = f" (and {len(diff) - 3} more)" if len(diff) > 3 else ""
        raise config_lib.UserError(
            f"workdir {str(workdir)!r} holds a run with other settings than this {here} run "
            f"({path.name}: {shown}{more}). Choose another --workdir, or rerun with the "
            "recorded settings to resume it."
        )


def _scalars(result: dict) -> dict[str, Any]:
    return {
        k: v
        for k, v in result.items()
        if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
    }


MAX_LISTED = 16  # numeric lists up to this long are per-seed values; longer ones are curves


def flat_metrics(result: dict, *, elements: bool = True, prefix: str = "") -> dict[str, Any]:
    """Every metric of a result dict, nested ones included, under dotted keys.

    A number (not a bool) keeps its key; a dict's entries are ``KEY.SUB``; a list of dicts (a
    table's rows) has each row under ``KEY[LABEL]``, LABEL being its string fields as
    ``name=value`` joined by ``,`` (its int fields added when those do not tell the rows apart,
    the row's index when nothing does; label fields are not metrics); a list of at most
    :data:`MAX_LISTED` numbers (per-seed values) is its mean under ``KEY`` and, with
    ``elements``, each value under ``KEY[i]`` (a ``NAME_per_seed`` list gives its elements only:
    its mean is ``NAME``). Strings, None, longer lists (curves) and lists of lists are left out.
    """
    out: dict[str, Any] = {}
    number = lambda v: isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
    for k, v in result.items():
        key = f"{prefix}{k}"
        if number(v):
            out[key] = v
        elif isinstance(v, dict):
            out.update(flat_metrics(v, elements=elements, prefix=f"{key}."))
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, dict) for x in v):
            for label, row, fields in _row_labels(v):
                rest = {f: x for f, x in row.items() if f not in fields}
                out.update(flat_metrics(rest, elements=elements, prefix=f"{key}[{label}]."))
        elif isinstance(v, (list, tuple)) and 0 < len(v) <= MAX_LISTED and all(map(number, v)):
            if not key.endswith("_per_seed"):
                out[key] = float(np.mean(v))
            if elements:
                out.update({f"{key}[{i}]": x for i, x in enumerate(v)})
    return out


def _row_labels(rows: list[dict]) -> list[tuple[str, dict, tuple]]:
    """``(label, row, label fields)`` per row of a list of dicts (see :func:`flat_metrics`)."""
    text = lambda r: tuple(f for f, x in r.items() if isinstance(x, str))
    ints = lambda r: tuple(
        f for f, x in r.items() if isinstance(x, int) and not isinstance(x, bool)
    )
    for fields_of in (text, lambda r: text(r) + ints(r)):
        labels = [",".join(f"{f}={r[f]}" for f in fields_of(r)) for r in rows]
        if all(labels) and len(set(labels)) == len(rows):
            return [(lab, r, fields_of(r)) for lab, r in zip(labels, rows)]
    return [(str(i), r, ()) for i, r in enumerate(rows)]


def _write_comparison(workdir: pathlib.Path) -> None:
    """A sweep's ``comparison.png``/``.html`` beside its summary (:mod:`rnnlab.compare`)."""
    from rnnlab import compare

    try:
        out = compare.compare([workdir], out=workdir)
    except ValueError as err:  # points that train nothing (no metrics.jsonl) have no curves
        print(f"no comparison written: {err}")
        return
    print(f"wrote {out['png']} and {out['html']}")


def summary_table(rows: list[dict]) -> str:
    """A markdown table: one row per sweep point, columns = overrides + every metric of the
    results, nested ones included (:func:`flat_metrics`; per-seed elements: summary.json)."""
    flat = [flat_metrics(r["results"], elements=False) for r in rows]
    cols = []
    for vals in flat:
        cols += [k for k in vals if k not in cols]
    head = "| point | " + " | ".join(cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    for r, vals in zip(rows, flat):
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
