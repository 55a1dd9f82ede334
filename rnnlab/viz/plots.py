"""Figures for the gradient-flow experiments: one color per cell, the data beside every PNG.

Every figure is written as ``NAME.png`` with ``NAME.json`` beside it holding the plotted data, so
a figure can be redrawn or checked without rerunning anything. Colors are fixed per cell name
(:data:`CELL_COLORS`; unknown cells get a stable color from their name), so a cell looks the
same in every figure of the lab.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import re
from collections.abc import Mapping, Sequence

import numpy as np

# Figures are built with matplotlib's object API (Figure, not pyplot): no backend is chosen or
# changed, so importing this module leaves a notebook's inline plotting alone.
from matplotlib.figure import Figure

CELL_COLORS = {
    "elman": "#d62728",  # red
    "jordan": "#ff7f0e",  # orange
    "lstm": "#1f77b4",  # blue
    "gru": "#2ca02c",  # green
    "indrnn": "#9467bd",  # purple
    "lru": "#8c564b",  # brown
    "mingru": "#17becf",  # cyan
    "minlstm": "#e377c2",  # pink
    "irnn": "#bcbd22",  # olive (Elman with identity init, ReLU)
}
_EXTRA = ("#7f7f7f", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d")


def color(name: str) -> str:
    """The fixed color of a cell; a label's first word names it (``"lstm/chrono"``,
    ``"gru T=50"``, ``"elman (init)"`` take the cell's color)."""
    base = re.split(r"[\s/:(]", name.strip(), maxsplit=1)[0]
    if base in CELL_COLORS:
        return CELL_COLORS[base]
    return _EXTRA[int(hashlib.md5(base.encode()).hexdigest(), 16) % len(_EXTRA)]


def _clean(obj):
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return (
            [_clean(v) for v in np.asarray(obj, dtype=object).tolist()]
            if np.ndim(obj)
            else _clean(np.asarray(obj).item())
        )
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def save(fig, path, data) -> pathlib.Path:
    """Write ``fig`` to ``path`` (.png) and ``data`` to the same name with .json; close it."""
    path = pathlib.Path(path).with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    path.with_suffix(".json").write_text(json.dumps(_clean(data), indent=1) + "\n")
    return path


def lines(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path,
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    logx: bool = False,
    logy: bool = False,
    styles: Mapping[str, dict] | None = None,
    hlines: Mapping[str, float] | None = None,
    notes: Mapping | None = None,
) -> pathlib.Path:
    """One line per ``label -> (x, y)``, colored by the cell in the label (see :func:`color`).

    ``styles[label]`` overrides matplotlib keywords (e.g. ``{"linestyle": "--"}``); ``hlines``
    draws labelled horizontal reference lines (a task's baseline); ``notes`` goes into the JSON.
    """
    fig = Figure(figsize=(7.0, 4.4))
    ax = fig.subplots()
    for label, (x, y) in series.items():
        kw = {"color": color(label), "linewidth": 1.6}
        kw.update((styles or {}).get(label, {}))
        ax.plot(np.asarray(x), np.asarray(y, dtype=float), label=label, **kw)
    for label, yv in (hlines or {}).items():
        ax.axhline(yv, color="black", linestyle=":", linewidth=1.0)
        ax.annotate(label, (0.01, yv), xycoords=("axes fraction", "data"), fontsize=8,
                    va="bottom")  # fmt: skip
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log")
        ticks = sorted({float(v) for x, _ in series.values() for v in np.ravel(x)})
        if len(ticks) <= 10:  # few values (sequence lengths): label them plainly
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.minorticks_off()
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, ncol=2 if len(series) > 6 else 1, frameon=False)
    data = {
        "xlabel": xlabel,
        "ylabel": ylabel,
        "series": {k: {"x": v[0], "y": v[1]} for k, v in series.items()},
        "hlines": dict(hlines or {}),
        "notes": dict(notes or {}),
    }
    return save(fig, path, data)


def vanishing(
    curves: Mapping[str, Mapping[str, Sequence[float]]], path, *, title: str = "", notes=None
) -> pathlib.Path:
    """The headline figure: ``||dL/dh_t||`` against the lag ``T-1-t`` (log scale), one color per
    cell, two panels sharing the y axis: at initialization (left) and after training (right).
    ``curves[cell] = {"init": [T], "trained": [T]}`` indexed by ``t``; zero entries (nothing to
    differentiate, e.g. ``t = T-1`` under a last-step readout) are left out."""
    phases = list(dict.fromkeys(p for by_phase in curves.values() for p in by_phase))
    fig = Figure(figsize=(5.2 * len(phases), 4.6))
    axes = fig.subplots(1, len(phases), sharey=True, squeeze=False)
    data = {"xlabel": "lag T-1-t", "ylabel": "||dL/dh_t||", "series": {}, "notes": notes or {}}
    for ax, phase in zip(axes[0], phases):
        for cell, by_phase in curves.items():
            if phase not in by_phase:
                continue
            g = np.asarray(by_phase[phase], dtype=float)
            lag = g.shape[0] - 1 - np.arange(g.shape[0])
            keep = g > 0
            ax.plot(lag[keep], g[keep], color=color(cell), label=cell, linewidth=1.6)
            data["series"][f"{cell} ({phase})"] = {"x": lag[keep], "y": g[keep]}
        ax.set_yscale("log")
        ax.set_xlabel("lag T-1-t (steps back from the loss)")
        ax.set_title("at initialization" if phase == "init" else f"after training ({phase})"
                     if phase != "trained" else "after training", fontsize=10)  # fmt: skip
        ax.grid(True, which="major", alpha=0.3)
    axes[0][0].set_ylabel("||dL/dh_t||  (batch mean, whole state)")
    axes[0][-1].legend(fontsize=8, frameon=False, loc="lower left")
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, path, data)


def grid(
    values,
    text,
    path,
    *,
    rows: Sequence[str],
    cols: Sequence[str],
    label: str,
    title: str = "",
    vmin: float | None = None,
    vmax: float | None = None,
    notes=None,
) -> pathlib.Path:
    """A rows x cols table of values as a log-colored grid with a text label in every cell
    (NaN cells are left blank): e.g. the memory-horizon table (cells x sequence lengths)."""
    from matplotlib.colors import LogNorm

    values = np.asarray(values, dtype=float)
    fig = Figure(figsize=(1.5 + 1.3 * len(cols), 0.9 + 0.45 * len(rows)))
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", aspect="auto",
                      norm=LogNorm(vmin=vmin, vmax=vmax))  # fmt: skip
    for i in range(len(rows)):
        for j in range(len(cols)):
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=7,
                    color="white" if image.norm(values[i, j]) < 0.6 else "black")  # fmt: skip
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    for tick, name in zip(ax.get_yticklabels(), rows):
        tick.set_color(color(name))
    fig.colorbar(image, ax=ax, label=label)
    if title:
        ax.set_title(title, fontsize=9)
    data = {"rows": list(rows), "cols": list(cols), "values": values, "text": text,
            "label": label, "notes": dict(notes or {})}  # fmt: skip
    return save(fig, path, data)
