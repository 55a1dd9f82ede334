"""Visualization: the hidden-unit HTML view and feature finder (:mod:`rnnlab.viz.hidden`).

:func:`render_workdir` is what ``rnnlab viz WORKDIR`` runs: it loads the run's best
checkpoint, runs the model over a text -- a file given by the user, or by default the start of
the run's own held-out validation text -- ranks the units of the last layer against the text
features, and writes ``WORKDIR/viz/index.html`` and ``WORKDIR/viz/features.json``.
"""

from __future__ import annotations

import os
import pathlib

from rnnlab.viz.hidden import (
    FEATURES,
    correlations,
    hidden_activations,
    rank_units,
    render_html,
    text_features,
    write_page,
)

__all__ = [
    "FEATURES",
    "correlations",
    "hidden_activations",
    "heldout_text",
    "rank_units",
    "render",
    "render_html",
    "render_workdir",
    "text_features",
    "write_page",
]

ANALYSIS_CHARS = 20_000  # characters the finder correlates over (the page shows num_chars)


def heldout_text(run) -> str:
    """The run's validation text: the tail of its corpus after ``train_chars`` characters, read
    only if it is the text the run trained on (:func:`rnnlab.sample.training_text`)."""
    from rnnlab.sample import training_text

    corpus = training_text(run, hint="pass a text file to run over instead (--text FILE)")
    return corpus[run.metadata["train_chars"] :]


def render(
    model,
    params,
    vocab,
    text: str,
    out: str | os.PathLike,
    *,
    units: list[int] | None = None,
    num_chars: int = 3000,
    layer: int = -1,
    title: str = "hidden units",
    about: str = "",
) -> pathlib.Path:
    """Run the model over ``text`` (the first :data:`ANALYSIS_CHARS`), write the page."""
    _check_num_chars(num_chars)
    text = text[: max(num_chars, ANALYSIS_CHARS)]
    if not text:
        raise ValueError("the text to visualize is empty")
    acts = hidden_activations(model, params, vocab.encode(text), layer=layer)  # [N, U]
    ranking = rank_units(acts, text_features(text))
    page = render_html(
        text, acts, ranking, units=units, num_chars=num_chars, title=title, about=about
    )
    return write_page(out, page, ranking)


def _check_num_chars(num_chars) -> None:
    if isinstance(num_chars, bool) or not isinstance(num_chars, int) or num_chars < 1:
        raise ValueError(f"num_chars (--chars) must be an int >= 1, got {num_chars!r}")


def render_workdir(
    workdir: str | os.PathLike,
    text_path: str | os.PathLike | None = None,
    units: list[int] | None = None,
    num_chars: int = 3000,
    out: str | os.PathLike | None = None,
) -> pathlib.Path:
    """The page for a trained character model (see the module docstring); returns its path."""
    from rnnlab.config import check_text_file
    from rnnlab.data import corpora
    from rnnlab.sample import run_vocab
    from rnnlab.train import load_run

    _check_num_chars(num_chars)
    if text_path:
        check_text_file(text_path, what="--text")  # a regular text file, before reading it
    run = load_run(workdir)
    vocab = run_vocab(run)
    width = run.config.model.hidden_size  # the last layer's units (causal char models)
    bad = [u for u in units or () if isinstance(u, bool) or not 0 <= u < width]
    if bad:
        raise ValueError(
            f"unit (--unit) must lie in 0..{width - 1} (the last layer has {width} units), "
            f"got {', '.join(map(str, bad))}"
        )
    if text_path:
        text, source = corpora.read_text_file(text_path), str(text_path)
    else:
        text, source = heldout_text(run), "the run's held-out validation text"
    c = run.config.model
    cell = c.cell
    what = "tanh(c)" if cell == "lstm" else "the state h"
    about = (
        f"{workdir}: {c.num_layers} x {c.hidden_size} {cell} (checkpoint step {run.step}, "
        f"{run.which}); units of the last layer, {what}; text: {source}."
    )
    out = pathlib.Path(out) if out else pathlib.Path(workdir) / "viz" / "index.html"
    return render(
        run.model,
        run.params,
        vocab,
        text,
        out,
        units=units,
        num_chars=num_chars,
        title=f"hidden units of {pathlib.Path(workdir).name}",
        about=about,
    )
