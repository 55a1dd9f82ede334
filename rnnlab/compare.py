"""Compare runs: learning curves coloured by a config key, final/best metrics, hyperparameters.

    rnnlab compare RUN_DIR... [--by KEY] [--metric NAME] [--out DIR]
    rnnlab.compare.compare(run_dirs, by=None, metric=None, out=None) -> dict

**Runs.** A run workdir is a folder holding ``config.json`` and ``metrics.jsonl`` (what
:func:`rnnlab.train.train_and_evaluate` writes). A folder that is not one stands for the
workdirs below it (a sweep's point folders, an experiment's sub-runs), found up to
:data:`MAX_DEPTH` levels down, in path order; a run is never searched inside. Paths holding no run are
passed over when other paths hold runs (``rnnlab compare runs/sweep/*`` also names its
``summary.md`` and ``figures/``), and an error otherwise.

**Metrics** are read from ``metrics.jsonl``: the keys of ``eval`` records as they are
(``val_loss``, ``val_accuracy``, ``val_bpc``), those of ``train`` records prefixed ``train_``
(``train_loss``, ``train_grad_norm``, ...), those of any other kind ``KIND_`` (``probe_...``);
only numbers (``*_per_seed`` lists are left out: their mean is the name without the suffix).
Per run, *final* is the value of the last record holding the metric and *best* the lowest
finite value, or the highest for a name that reads as a score (:func:`higher_is_better`:
accuracy, AUC, F1, throughput). Default metric: ``val_loss`` if a run has it, else the first
eval metric, else ``train_loss``.

**Colour.** ``by`` is a dotted config key (``model.hidden_size``, ``optim.learning_rate``); with
a number in every run (bools excepted) the runs take colours from a continuous colormap
(viridis; log-spaced when the values are positive and span a factor of 10 or more) with a
colour bar, and are listed in its order; otherwise one categorical colour per value (tab10)
with a legend, the runs in path order. Default: the first config key whose value differs
between the runs (none differ: one colour per run).

**Figure** (``OUT/comparison.png``, matplotlib Agg): the metric against the step for every run;
a parallel-coordinates view, one vertical axis per hyperparameter that differs between the runs
(at most :data:`MAX_AXES`) and a last axis for the final metric, each run a polyline in its
colour (numeric axes scaled to [min, max], log-scaled as above; categorical axes evenly
spaced); and the table of the metric's final and best values per run. **Page**
(``OUT/comparison.html``): the figure inlined as base64 PNG, the full table (every metric's
final and best) and the differing hyperparameters as HTML tables; no network assets.
``OUT`` defaults to the one folder given, else the deepest folder holding all of them.
"""

from __future__ import annotations

import base64
import difflib
import html
import json
import math
import os
import pathlib
import re
from typing import Any

from rnnlab import metrics as metrics_lib

MAX_DEPTH = 5  # sweep folder / point / runs / label / T: an experiment's sub-runs are found
MAX_AXES = 8  # parallel-coordinates axes for hyperparameters (then the metric's)
MAX_PNG_ROWS = 24  # table rows drawn in the figure; the HTML page has every run
_SCORE = re.compile(r"acc|auc|f1|precision|recall|tokens_per_s|reward|r2", re.IGNORECASE)


def higher_is_better(metric: str) -> bool:
    """A score (accuracy, AUC, F1, precision, recall, throughput, reward, R^2): best = max."""
    return bool(_SCORE.search(metric))


# ------------------------------------------------------------------------------ reading


def is_workdir(path: pathlib.Path) -> bool:
    return (path / "config.json").is_file() and (path / "metrics.jsonl").is_file()


def find_runs(paths, skipped: list | None = None) -> list[pathlib.Path]:
    """The run workdirs the given paths stand for (see the module docstring), in order.

    A given path that holds no run is an error, unless other given paths hold runs (a shell
    glob's ``figures/``, ``summary.md``): then it is passed over and appended to ``skipped``.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise ValueError("compare needs at least one run workdir or sweep folder; none given")
    found: list[pathlib.Path] = []
    empty: list[pathlib.Path] = []
    for given in paths:
        path = pathlib.Path(given)
        if not path.exists():
            raise FileNotFoundError(f"{str(path)!r} does not exist (expected a run workdir)")
        below = [path] if is_workdir(path) else _below(path, MAX_DEPTH)
        empty += [] if below else [path]
        found += [p for p in below if p not in found]
    if not found:
        path = empty[0]
        entries = sorted(p.name for p in path.iterdir())[:12] if path.is_dir() else []
        raise ValueError(
            f"{str(path)!r} is not a run workdir (expected config.json and metrics.jsonl "
            f"in it, or run workdirs up to {MAX_DEPTH} levels below it); it holds: "
            + (", ".join(entries) or "(nothing)")
        )
    if skipped is not None:
        skipped += [str(p) for p in empty]
    return found


def _below(folder: pathlib.Path, depth: int) -> list[pathlib.Path]:
    if depth == 0 or not folder.is_dir():
        return []
    out = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        out += [sub] if is_workdir(sub) else _below(sub, depth - 1)
    return out


def flat_config(config: dict, prefix: str = "") -> dict[str, Any]:
    """Nested config dict -> ``{"model.hidden_size": 128, ...}`` (lists kept as values)."""
    out = {}
    for k, v in config.items():
        if isinstance(v, dict) and v:
            out.update(flat_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def curves(workdir) -> dict[str, tuple[list[int], list[float]]]:
    """``metric -> (steps, values)`` from a run's ``metrics.jsonl`` (names as above)."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    for rec in metrics_lib.read_metrics(workdir):
        kind = rec.get("kind", "train")
        for key, value in rec.items():
            if key in ("step", "kind") or not _number(value):
                continue
            name = key if kind == "eval" else f"{kind}_{key}"
            steps, values = out.setdefault(name, ([], []))
            steps.append(int(rec.get("step", len(steps))))
            values.append(float(value))
    return out


class RunRecord:
    """One run: its label, flat config, curves, and final/best per metric."""

    def __init__(self, path: pathlib.Path, label: str):
        self.path, self.label = path, label
        try:
            self.config = flat_config(metrics_lib.read_json(path / "config.json"))
            self.curves = curves(path)
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read the run in {str(path)!r}: {err}") from None

    def final(self, metric: str) -> float | None:
        c = self.curves.get(metric)
        return c[1][-1] if c else None

    def best(self, metric: str) -> tuple[float | None, int | None]:
        """``(best value, its step)`` over the finite values (see the module docstring)."""
        c = self.curves.get(metric)
        pairs = [(v, s) for s, v in zip(*c) if math.isfinite(v)] if c else []
        if not pairs:
            return None, None
        pick = max if higher_is_better(metric) else min
        return pick(pairs, key=lambda p: p[0])

    def last_step(self) -> int:
        return max((s[-1] for s, _ in self.curves.values() if s), default=0)


def _labels(paths: list[pathlib.Path]) -> list[str]:
    """Run labels: paths below the common folder, less the parts every run shares.

    A sweep names its points ``key=value,key=value,...`` with every override, swept or not;
    the parts (split at ``/`` and ``,``) common to all runs are dropped when the rest still
    tells the runs apart (``model.hidden_size=8,train.num_steps=300`` -> ``model.hidden_size=8``).
    """
    resolved = [p.resolve() for p in paths]
    if len(resolved) == 1:
        return [resolved[0].name]
    root = pathlib.Path(os.path.commonpath(resolved))
    full = [str(p.relative_to(root)) or p.name for p in resolved]
    parts = [re.split(r"[,/]", label) for label in full]
    common = set.intersection(*(set(p) for p in parts))
    short = [",".join(x for x in p if x not in common) for p in parts]
    return short if all(short) and len(set(short)) == len(short) else full


def _key(value) -> str:
    """A hashable, printable form of a config value (lists/dicts as JSON)."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def differing_keys(runs: list[RunRecord]) -> list[str]:
    """Config keys whose values are not the same in every run, in config order."""
    keys: list[str] = []
    for r in runs:
        keys += [k for k in r.config if k not in keys]
    return [k for k in keys if len({_key(r.config.get(k)) for r in runs}) > 1]


# ------------------------------------------------------------------------------ colours


class Colouring:
    """Run colours from a config key: a colormap for numbers, categorical colours otherwise."""

    def __init__(self, runs: list[RunRecord], by: str | None):
        import matplotlib
        import matplotlib.colors as mcolors

        self.by = by
        if by is None:
            values = [r.label for r in runs]
        else:
            values = [r.config.get(by) for r in runs]
        self.values = values
        self.numeric = by is not None and all(_number(v) for v in values)
        if self.numeric:
            lo, hi = min(values), max(values)
            self.log = lo > 0 and hi / lo >= 10
            norm_cls = mcolors.LogNorm if self.log else mcolors.Normalize
            self.norm = norm_cls(vmin=lo, vmax=hi if hi > lo else lo + 1)
            self.cmap = matplotlib.colormaps["viridis"]
            self.colours = [self.cmap(self.norm(v) * 0.9) for v in values]  # skip pale yellow
        else:
            cats = list(dict.fromkeys(_key(v) for v in values))
            palette = matplotlib.colormaps["tab10"].colors
            self.categories = {c: palette[i % len(palette)] for i, c in enumerate(cats)}
            self.colours = [self.categories[_key(v)] for v in values]


# ------------------------------------------------------------------------------ the figure


def _fmt(v) -> str:
    if v is None:
        return "—"
    if _number(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    return _key(v)


def _plot_curves(ax, runs, metric, colouring):
    shown = set()
    for r, colour, value in zip(runs, colouring.colours, colouring.values):
        c = r.curves.get(metric)
        if not c:
            continue
        label = None
        if not colouring.numeric and _key(value) not in shown:
            label = _fmt(value)
            shown.add(_key(value))
        ax.plot(c[0], c[1], color=colour, lw=1.5, marker="." if len(c[0]) < 30 else None,
                label=label)  # fmt: skip
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    better = "higher" if higher_is_better(metric) else "lower"
    ax.set_title(f"{metric} ({better} is better)")
    ax.grid(alpha=0.3)
    if not colouring.numeric and 0 < len(shown) <= 12:
        ax.legend(title=colouring.by or "run", fontsize=8, title_fontsize=8)


def _axis_positions(values: list) -> tuple[list[float], list[tuple[float, str]]]:
    """Values of one axis -> positions in [0, 1] and (position, tick label) pairs."""
    present = [v for v in values if v is not None]
    if present and all(_number(v) for v in present):
        finite = [v for v in present if math.isfinite(v)]
        if not finite:
            return [math.nan] * len(values), []
        lo, hi = min(finite), max(finite)
        log = lo > 0 and hi / lo >= 10
        f = (lambda x: math.log10(x)) if log else (lambda x: x)
        span = f(hi) - f(lo)

        def pos(v):
            if v is None or not math.isfinite(v):
                return math.nan
            return 0.5 if span == 0 else (f(v) - f(lo)) / span

        ticks = [(pos(lo), _fmt(lo))] + ([(pos(hi), _fmt(hi))] if span else [])
        return [pos(v) for v in values], ticks
    cats = list(dict.fromkeys(_key(v) for v in values))
    where = {c: (0.5 if len(cats) == 1 else i / (len(cats) - 1)) for i, c in enumerate(cats)}
    return [where[_key(v)] for v in values], [(where[c], c) for c in cats]


def _plot_parallel(ax, runs, metric, colouring, keys):
    axes = keys[:MAX_AXES] + [f"final {metric}"]
    columns = [[r.config.get(k) for r in runs] for k in keys[:MAX_AXES]]
    columns.append([r.final(metric) for r in runs])
    placed = [_axis_positions(col) for col in columns]
    for i, colour in enumerate(colouring.colours):
        ys = [pos[i] for pos, _ in placed]
        ax.plot(range(len(axes)), ys, color=colour, lw=1.5, alpha=0.85, marker="o", ms=3)
    for x, (_, ticks) in enumerate(placed):
        ax.axvline(x, color="0.5", lw=0.8)
        for y, text in ticks:
            ax.text(x + 0.03, y, text[:18], fontsize=7, va="center", ha="left")
    ax.set_xticks(range(len(axes)))
    ax.set_xticklabels(axes, rotation=20, ha="right", fontsize=8)
    ax.set_yticks([])
    ax.set_xlim(-0.2, len(axes) - 0.5)
    ax.set_ylim(-0.08, 1.08)
    title = "hyperparameters that differ vs the final metric"
    if not keys:
        title = "the runs share every hyperparameter: final metric only"
    elif len(keys) > MAX_AXES:
        title += f" (first {MAX_AXES} of {len(keys)})"
    ax.set_title(title, fontsize=10)


def _png_table(ax, runs, metric, colouring):
    head = ["run", colouring.by or "", f"final {metric}", f"best {metric}", "best step", "steps"]
    rows = []
    for r, value in zip(runs[:MAX_PNG_ROWS], colouring.values):
        best, best_step = r.best(metric)
        short = re.sub(r"[\w.]*\.(\w+=)", r"\1", r.label)  # model.hidden_size=8 -> hidden_size=8
        rows.append([short if len(short) <= 48 else "..." + short[-45:], _fmt(value) if colouring.by else "", _fmt(r.final(metric)),
                     _fmt(best), _fmt(best_step), str(r.last_step())])  # fmt: skip
    if len(runs) > MAX_PNG_ROWS:
        rows.append([f"... {len(runs) - MAX_PNG_ROWS} more runs: see the HTML page"] + [""] * 5)
    ax.axis("off")
    table = ax.table(cellText=rows, colLabels=head, loc="upper center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.auto_set_column_width(list(range(len(head))))
    for i, colour in enumerate(colouring.colours[:MAX_PNG_ROWS]):
        table[i + 1, 0].set_text_props(color=colour, weight="bold")


def draw(runs, metric, colouring, keys, path: pathlib.Path) -> None:
    """Write the comparison figure (module docstring) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows = min(len(runs), MAX_PNG_ROWS) + 1 + (len(runs) > MAX_PNG_ROWS)
    table_h = 0.3 + 0.24 * n_rows
    fig = plt.figure(figsize=(13, 4.8 + table_h), dpi=100)
    grid = fig.add_gridspec(2, 2, height_ratios=[4.8, table_h], width_ratios=[1.15, 1])
    ax_curves = fig.add_subplot(grid[0, 0])
    _plot_curves(ax_curves, runs, metric, colouring)
    _plot_parallel(fig.add_subplot(grid[0, 1]), runs, metric, colouring, keys)
    _png_table(fig.add_subplot(grid[1, :]), runs, metric, colouring)
    if colouring.numeric:
        sm = matplotlib.cm.ScalarMappable(norm=colouring.norm, cmap=colouring.cmap)
        bar = fig.colorbar(sm, ax=ax_curves, label=colouring.by, pad=0.01)
        distinct = sorted(set(colouring.values))
        if len(distinct) <= 10:  # the swept values themselves, in plain numbers
            bar.set_ticks(distinct, labels=[_fmt(v) for v in distinct])
            bar.ax.minorticks_off()
    fig.suptitle(f"{len(runs)} runs, coloured by {colouring.by or 'run'}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ------------------------------------------------------------------------------ the page


def table_metrics(runs: list[RunRecord], metric: str) -> list[str]:
    """The metrics the page tabulates: ``metric``, then every eval metric, then train_loss."""
    names: list[str] = [metric]
    for r in runs:
        names += [m for m in r.curves if m.startswith("val_") and m not in names]
    if any("train_loss" in r.curves for r in runs) and "train_loss" not in names:
        names.append("train_loss")
    return names


def _html_page(runs, metric, colouring, keys, png: bytes) -> str:
    e = html.escape
    names = table_metrics(runs, metric)
    head = ["run"] + [f"{w} {m}" for m in names for w in ("final", "best")] + ["steps"]
    body = []
    for r, colour in zip(runs, colouring.colours):
        cells = [f'<td class="label" style="color:{_hex(colour)}">{e(r.label)}</td>']
        for m in names:
            best, step = r.best(m)
            cells.append(f"<td>{e(_fmt(r.final(m)))}</td>")
            cells.append(
                f"<td>{e(_fmt(best))}" + (f" @{step}" if step is not None else "") + "</td>"
            )
        cells.append(f"<td>{r.last_step()}</td>")
        body.append(f'<tr class="run" data-run="{e(r.label)}">' + "".join(cells) + "</tr>")
    hp_head = "".join(f"<th>{e(k)}</th>" for k in ["run", *keys])
    hp_rows = [
        f'<tr data-run="{e(r.label)}"><td>{e(r.label)}</td>'
        + "".join(f"<td>{e(_fmt(r.config.get(k)))}</td>" for k in keys)
        + "</tr>"
        for r in runs
    ]
    style = (
        "body{font-family:sans-serif;margin:1.5em;color:#222}"
        "table{border-collapse:collapse;font-size:13px;margin-bottom:1.5em}"
        "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}"
        "td.label,th:first-child{text-align:left;font-weight:bold}"
        "img{max-width:100%;border:1px solid #eee}"
    )
    better = "higher" if higher_is_better(metric) else "lower"
    return "\n".join([
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>rnnlab compare: {len(runs)} runs</title><style>{style}</style></head><body>",
        f"<h1>{len(runs)} runs, coloured by {e(colouring.by or 'run')}</h1>",
        f"<p>metric: <b>{e(metric)}</b> ({better} is better); best = the "
        f"{'highest' if better == 'higher' else 'lowest'} value logged, @ its step.</p>",
        '<img id="figure" alt="learning curves, parallel coordinates and table" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">',
        "<h2>Final and best metrics</h2>",
        '<table id="metrics"><thead><tr>' + "".join(f"<th>{e(h)}</th>" for h in head),
        "</tr></thead><tbody>",
        *body,
        "</tbody></table>",
        "<h2>Hyperparameters that differ</h2>",
        (
            f'<table id="hparams"><thead><tr>{hp_head}</tr></thead><tbody>'
            + "".join(hp_rows)
            + "</tbody></table>"
            if keys
            else "<p>none: the runs share every config value.</p>"
        ),
        "</body></html>",
    ])  # fmt: skip


def _hex(colour) -> str:
    import matplotlib.colors as mcolors

    return mcolors.to_hex(colour)


# ------------------------------------------------------------------------------ entry point


def compare(run_dirs, *, by: str | None = None, metric: str | None = None, out=None) -> dict:
    """Write ``OUT/comparison.png`` and ``OUT/comparison.html`` for the runs (module docstring).

    Args:
      run_dirs: run workdirs and/or folders holding them (a sweep's folder).
      by: dotted config key to colour by (default: the first that differs; see above).
      metric: metric name (default ``val_loss`` when present; see above).
      out: output folder (default: the one folder given, else their deepest common folder).

    Returns:
      ``{"png", "html", "runs" (labels), "by", "metric", "differing" (keys), "rows",
      "skipped"}``, rows being ``{"run", "final", "best", "best_step"}`` for the metric and
      skipped the given paths that held no run.

    Raises:
      FileNotFoundError: a path that does not exist.
      ValueError: a folder that holds no run, an unknown ``by`` key or ``metric`` (the message
        lists the valid ones).
    """
    skipped: list[str] = []
    paths = find_runs(run_dirs, skipped)
    runs = [RunRecord(p, label) for p, label in zip(paths, _labels(paths))]
    keys = differing_keys(runs)
    all_keys = list(dict.fromkeys(k for r in runs for k in r.config))
    if by is None:
        by = keys[0] if keys else None
    elif by not in all_keys:
        close = difflib.get_close_matches(by, all_keys, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown --by key {by!r}.{hint} Keys that differ between the runs: "
            f"{', '.join(keys) or '(none)'}; every config key: {', '.join(all_keys)}"
        )
    if by is not None and runs and all(_number(r.config.get(by)) for r in runs):
        runs.sort(key=lambda r: r.config[by])  # a numeric key: the runs in its order
    names = list(dict.fromkeys(m for r in runs for m in r.curves))
    if not names:
        raise ValueError("the runs' metrics.jsonl files hold no metrics yet")
    if metric is None:
        evals = [m for m in names if m.startswith("val_")]
        metric = "val_loss" if "val_loss" in names else (evals or ["train_loss"])[0]
        metric = metric if metric in names else names[0]
    elif metric not in names:
        close = difflib.get_close_matches(metric, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown metric {metric!r}.{hint} Metrics the runs logged: {', '.join(names)}"
        )
    if out is None:
        given = [pathlib.Path(p).resolve() for p in run_dirs] if not isinstance(
            run_dirs, (str, os.PathLike)) else [pathlib.Path(run_dirs).resolve()]  # fmt: skip
        out = given[0] if len(given) == 1 else pathlib.Path(os.path.commonpath(given))
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    colouring = Colouring(runs, by)
    png_path, html_path = out / "comparison.png", out / "comparison.html"
    draw(runs, metric, colouring, keys, png_path)
    page = _html_page(runs, metric, colouring, keys, png_path.read_bytes())
    html_path.write_text(page, encoding="utf-8")
    rows = []
    for r in runs:
        best, step = r.best(metric)
        rows.append({"run": r.label, "final": r.final(metric), "best": best, "best_step": step})
    return {
        "png": str(png_path),
        "html": str(html_path),
        "runs": [r.label for r in runs],
        "by": by,
        "metric": metric,
        "differing": keys,
        "rows": rows,
        "skipped": skipped,
    }
