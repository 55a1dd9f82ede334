"""Every experiment's smoke variant runs end to end and writes results.json and its figures."""

import json

import pytest

from rnnlab import registry

NAMES = registry.names()
# The gradient-flow lab's experiments each draw figures (char-rnn writes samples instead).
FIGURES = {"vanishing", "spectral-sweep", "clipping", "init", "adding", "copy", "memory-horizon"}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.slow
def test_smoke_variant(name, tmp_path):
    module = registry.load(name)
    assert "smoke" in module.VARIANTS, f"experiment {name} has no smoke variant"
    registry.run(f"{name}:smoke", [], workdir=tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["experiment"] == name and results["variant"] == "smoke"
    figures = sorted((tmp_path / "figures").glob("*.png"))
    assert figures or name not in FIGURES, f"{name} wrote no figure"
    for fig in figures:
        assert fig.with_suffix(".json").is_file()  # the data beside every figure
    assert registry.show(tmp_path)
