"""viz.plots in the fast loop: a figure is a PNG with its plotted data beside it as JSON, and a
cell keeps its color in every label that names it."""

import json

import numpy as np

from rnnlab.viz import plots


def test_lines_writes_the_png_and_its_data(tmp_path):
    series = {"lstm": ([1, 2, 3], np.array([0.5, 0.25, 0.125])), "gru T=50": ([1, 2], [1.0, 0.5])}
    path = plots.lines(
        series, tmp_path / "sub" / "curves", xlabel="step", ylabel="loss", logy=True,
        hlines={"baseline": 0.3}, notes={"seed": 0},
    )  # fmt: skip
    assert path == tmp_path / "sub" / "curves.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(path.with_suffix(".json").read_text())
    assert data["series"]["lstm"] == {"x": [1, 2, 3], "y": [0.5, 0.25, 0.125]}
    assert data["hlines"] == {"baseline": 0.3} and data["notes"] == {"seed": 0}
    assert (data["xlabel"], data["ylabel"]) == ("step", "loss")


def test_a_cell_keeps_its_color_whatever_the_label():
    assert plots.color("lstm") == plots.color("lstm/chrono") == plots.color("lstm T=50")
    assert plots.color("gru") != plots.color("lstm")
    assert plots.color("my-cell") == plots.color("my-cell (init)")  # stable for unknown cells
