"""Interpretable hidden units (Karpathy, Johnson & Fei-Fei 2015), as an HTML page.

Run a trained character model over a text, take one unit's activation after every character
-- LSTM: ``tanh(c_t)`` of the last layer (Karpathy's choice, in [-1, 1]); other cells: the
carry itself (``h_t``; tanh-bounded for GRU and tanh-Elman) -- and color each character by it.

The **feature finder** ranks units by ``|corr|`` (Pearson, over every character of the text)
with interpretable features of the text, each measured *after reading* character ``i``:

* ``in_quotes``      1 between a double quote and its closing quote (prose dialogue);
* ``bracket_depth``  open ``( [ {`` minus closed, floored at 0;
* ``line_position``  characters since the last newline (Karpathy's line-length cell);
* ``indent``         leading spaces/tabs of the current line (his indentation cell);
* ``in_comment``     inside a ``#`` comment (code);
* ``in_string``      inside a '...', "..." or triple-quoted string literal (code; a
  single-quoted string ends at the newline, so apostrophes in prose do little harm).

A feature that is constant over the text (no quotes at all, say) gets no ranking.

Shapes: ``N`` characters, ``U`` units.
"""

from __future__ import annotations

import html
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

FEATURES = ("in_quotes", "bracket_depth", "line_position", "indent", "in_comment", "in_string")
OPEN, CLOSE = "([{", ")]}"


def text_features(text: str) -> dict[str, np.ndarray]:
    """The features above, each ``[N]`` float32, measured after reading each character."""
    N = len(text)
    out = {name: np.zeros(N, np.float32) for name in FEATURES}
    quote, depth, col, indent, leading = False, 0, 0, 0, True
    mode, skip, escaped = "code", 0, False  # mode: code | comment | a string delimiter
    for i, ch in enumerate(text):
        if ch == '"':
            quote = not quote
        if ch in OPEN:
            depth += 1
        elif ch in CLOSE:
            depth = max(depth - 1, 0)
        if ch == "\n":
            col, indent, leading = 0, 0, True
        else:
            col += 1
            if leading and ch in " \t":
                indent += 1
            else:
                leading = False
        # the code state machine: comments and string literals
        if skip:  # the rest of a triple quote
            skip -= 1
        elif mode == "code":
            if ch == "#":
                mode = "comment"
            elif ch in "'\"":
                if text[i : i + 3] == ch * 3:
                    mode, skip = ch * 3, 2
                else:
                    mode = ch
        elif mode == "comment":
            if ch == "\n":
                mode = "code"
        elif escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif len(mode) == 3 and text[i : i + 3] == mode:  # closing triple quote
            mode, skip = "code", 2
        elif len(mode) == 1 and ch in (mode, "\n"):
            mode = "code"
        out["in_quotes"][i] = quote
        out["bracket_depth"][i] = depth
        out["line_position"][i] = col
        out["indent"][i] = indent
        out["in_comment"][i] = mode == "comment"
        out["in_string"][i] = mode not in ("code", "comment")
    return out


def correlations(acts: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """Pearson correlation of every unit ``acts [N, U]`` with ``feature [N]`` -> ``[U]``.

    A constant unit correlates 0; a constant feature gives NaN for every unit.
    """
    a = acts - acts.mean(axis=0, keepdims=True)
    f = feature - feature.mean()
    a_norm = np.sqrt((a * a).sum(axis=0))
    f_norm = np.sqrt((f * f).sum())
    if f_norm == 0:
        return np.full(acts.shape[1], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * f[:, None]).sum(axis=0) / (a_norm * f_norm)
    return np.where(a_norm > 0, r, 0.0)


def rank_units(acts: np.ndarray, features: dict[str, np.ndarray], top: int = 5) -> dict:
    """``{feature: [(unit, corr), ...]}`` -- the ``top`` units by ``|corr|``, best first.

    ``acts``: ``[N, U]``; ``features``: name -> ``[N]``. Constant features map to ``[]``.
    """
    acts = np.asarray(acts, np.float64)
    if acts.ndim != 2:
        raise ValueError(f"expected activations of shape [N, U], got {acts.shape}")
    ranking = {}
    for name, feature in features.items():
        feature = np.asarray(feature, np.float64)
        if feature.shape != acts.shape[:1]:
            raise ValueError(
                f"feature {name!r} has shape {feature.shape}, activations {acts.shape}"
            )
        r = correlations(acts, feature)
        if np.isnan(r).all():
            ranking[name] = []
            continue
        order = np.argsort(-np.abs(r), kind="stable")[:top]
        ranking[name] = [(int(u), float(r[u])) for u in order]
    return ranking


def hidden_activations(model, params, ids, *, layer: int = -1) -> np.ndarray:
    """Run ``model`` over ``ids [N]`` from the zero state; one layer's units -> ``[N, U]``.

    LSTM (carry ``(c, h)``): ``tanh(c)``; a single-array carry: itself; other pytree carries:
    their last leaf.
    """
    variables = params if "params" in params else {"params": params}
    tokens = jnp.asarray(np.asarray(ids, np.int32)[None, :])  # [1, N]
    _, _, states = jax.jit(lambda v, x: model.apply(v, x, return_states=True))(variables, tokens)
    state = states[layer]
    if getattr(model, "cell", None) == "lstm":
        acts = jnp.tanh(state[0])
    elif isinstance(state, jax.Array):
        acts = state
    else:
        acts = jax.tree.leaves(state)[-1]
    return np.asarray(acts[0], np.float32)  # [N, U]


# ------------------------------------------------------------------------------- the page


def _color(a: float) -> str:
    """Activation in [-1, 1] -> a background color: blue for -1, white for 0, red for +1."""
    a = float(np.clip(a, -1.0, 1.0))
    fade = int(round(255 * (1 - abs(a))))
    return f"#ff{fade:02x}{fade:02x}" if a > 0 else f"#{fade:02x}{fade:02x}ff"


def _colored_text(text: str, values: np.ndarray) -> str:
    spans = []
    for ch, v in zip(text, values):
        shown = "\u21b5\n" if ch == "\n" else html.escape(ch)
        spans.append(f'<span style="background:{_color(v)}" title="{v:+.2f}">{shown}</span>')
    return "".join(spans)


def default_units(ranking: dict, limit: int = 8) -> list[int]:
    """The best unit of every ranked feature, then the runners-up, without repeats."""
    units: list[int] = []
    for rank in range(5):
        for best in ranking.values():
            if rank < len(best) and best[rank][0] not in units:
                units.append(best[rank][0])
            if len(units) == limit:
                return units
    return units


def render_html(
    text: str,
    acts: np.ndarray,
    ranking: dict,
    *,
    units: list[int] | None = None,
    num_chars: int = 3000,
    title: str = "hidden units",
    about: str = "",
) -> str:
    """The page: the feature finder's table (links to units) and one colored text per unit."""
    N, U = acts.shape
    units = list(units) if units else default_units(ranking)
    bad = [u for u in units if not 0 <= u < U]
    if bad:
        raise ValueError(f"units {bad} out of range: this layer has {U} units (0..{U - 1})")
    best_for: dict[int, list[str]] = {}
    rows = []
    for name, best in ranking.items():
        if not best:
            rows.append(f"<tr><td>{name}</td><td><i>constant in this text</i></td></tr>")
            continue
        links = []
        for u, r in best:
            best_for.setdefault(u, []).append(f"{name} (r = {r:+.2f})")
            name_u = f'<a href="#unit-{u}">unit {u}</a>' if u in units else f"unit {u}"
            links.append(f"{name_u} ({r:+.2f})")
        rows.append(f"<tr><td>{name}</td><td>{', '.join(links)}</td></tr>")
    shown = text[:num_chars]
    sections = []
    for u in units:
        why = "; ".join(best_for.get(u, [])) or "chosen by hand"
        sections.append(
            f'<h2 id="unit-{u}">unit {u}</h2><p class="why">{html.escape(why)}</p>'
            f'<div class="text">{_colored_text(shown, acts[: len(shown), u])}</div>'
        )
    nav = " ".join(f'<a href="#unit-{u}">unit {u}</a>' for u in units)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 70em; }}
.text {{ font-family: monospace; white-space: pre-wrap; line-height: 1.5; border: 1px solid #ccc;
        padding: .5em; }}
table {{ border-collapse: collapse; }} td {{ border: 1px solid #ccc; padding: .2em .6em; }}
.why {{ color: #555; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(about)}</p>
<p>Each character is colored by the unit's activation after reading it:
<span style="background:#0000ff;color:white">&nbsp;-1&nbsp;</span>
<span style="background:#ffffff;border:1px solid #ccc">&nbsp;0&nbsp;</span>
<span style="background:#ff0000;color:white">&nbsp;+1&nbsp;</span>
(hover a character for the value; newlines are shown as &#8629;).</p>
<h2>Feature finder</h2>
<p>Units ranked by |Pearson correlation| with features of the text, over {N} characters.</p>
<table><tr><td><b>feature</b></td><td><b>best units (correlation)</b></td></tr>
{"".join(rows)}
</table>
<p>Units shown: {nav}</p>
{"".join(sections)}
</body></html>
"""


def write_page(out: str | pathlib.Path, page: str, ranking: dict) -> pathlib.Path:
    """Write the page and, beside it, ``features.json`` (the ranking)."""
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    (out.parent / "features.json").write_text(json.dumps(ranking, indent=1) + "\n")
    return out
