"""The notebooks stay true: each matches its source, carries outputs of a full run, uses the
public API only, and runs top to bottom under the smoke setting (``RNNLAB_NOTEBOOK_SMOKE=1``).

The kernel is ``python3`` started with this interpreter (jupyter_client replaces the spec's
``python`` with ``sys.executable``), so a fresh virtual environment with ``.[test]`` installed
runs them. Workdirs go to pytest's temporary directory (``TMPDIR``).
"""

from __future__ import annotations

import importlib.util
import pathlib
import re

import nbformat
import pytest

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
_spec = importlib.util.spec_from_file_location("rnnlab_notebooks_build", NOTEBOOKS / "_build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

PRIVATE = re.compile(r"\brnnlab(\.\w+)*\._\w|from\s+rnnlab[\w.]*\s+import\s+[^\n]*\b_\w")


def read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def texts(nb) -> list[str]:
    """Every text output (streams, text/plain, markdown, html) of the code cells."""
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.output_type == "stream":
                out.append(o.text)
            elif o.output_type in ("display_data", "execute_result"):
                out += [v for k, v in o.data.items() if k.startswith("text/")]
    return out


def errors(nb) -> list[str]:
    return [
        f"{o.ename}: {o.evalue}"
        for cell in nb.cells
        for o in cell.get("outputs", [])
        if o.output_type == "error"
    ]


@pytest.mark.parametrize("name", build.NAMES)
def test_matches_its_source(name):
    committed = [(c.cell_type, c.source) for c in read(name).cells]
    source = [(c.cell_type, c.source) for c in build.build(name).cells]
    assert committed == source, (
        f"notebooks/{name}.ipynb differs from notebooks/src/{name}.py: "
        f"run `python notebooks/_build.py --execute {name}`"
    )


@pytest.mark.parametrize("name", build.NAMES)
def test_committed_with_outputs_of_a_full_run(name):
    nb = read(name)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code), f"{name}: not every cell was executed"
    assert not errors(nb), f"{name}: committed with errors: {errors(nb)}"
    assert any("settings: full" in t for t in texts(nb)), f"{name}: outputs are not a full run"
    images = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, f"{name}: no figure in the outputs"


@pytest.mark.parametrize("name", build.NAMES)
def test_public_api_only(name):
    for cell in build.build(name).cells:
        if cell.cell_type == "code":
            bad = PRIVATE.search(cell.source)
            assert bad is None, f"{name}: private name {bad.group(0)!r} in:\n{cell.source}"


def test_private_pattern_catches_private_imports():
    for bad in ("from rnnlab.probes import _carry", "rnnlab.probes._carry.wrap(p)",
                "from rnnlab.sample import run_vocab, _Static"):  # fmt: skip
        assert PRIVATE.search(bad), bad
    for ok in ("from rnnlab import probes", "x._y = 1", "rnnlab.cells.register('a', A)"):
        assert not PRIVATE.search(ok), ok


@pytest.mark.parametrize("name", build.NAMES)
@pytest.mark.slow
def test_runs_under_smoke_setting(name, monkeypatch, tmp_path):
    monkeypatch.setenv("RNNLAB_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("JAX_NUMPY_RANK_PROMOTION", "raise")  # as strict as tests/conftest.py
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebooks' workdirs
    nb = read(name)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    build.execute(nb, timeout=600)  # raises CellExecutionError naming the cell that failed
    assert not errors(nb)
    assert any("settings: smoke" in t for t in texts(nb))
