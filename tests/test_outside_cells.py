"""Cells from outside the package: ``--cells PATH.py``, ``$RNNLAB_CELLS`` and entry points."""

import json
import pathlib
import shutil

import pytest

from rnnlab import cells, cli

EXAMPLE = pathlib.Path(__file__).parents[1] / "examples" / "peephole_lstm.py"


@pytest.fixture
def cell_file(tmp_path):
    path = tmp_path / "my_peephole.py"
    shutil.copy(EXAMPLE, path)
    yield path
    cells.unregister("my_peephole")


def test_load_files_registers_under_the_stem_and_records_the_source(cell_file):
    assert cells.load_files([cell_file]) == ["my_peephole"]
    assert cells.get("my_peephole").__name__ == "Cell" and "my_peephole" in cells.names()
    assert cells.load_files([cell_file]) == ["my_peephole"]  # the same file again: a no-op
    src = cells.sources()["my_peephole"]
    assert src["path"] == str(cell_file.resolve()) and len(src["sha256"]) == 64


def test_a_second_file_under_a_taken_name_or_a_bad_path_is_refused(cell_file, tmp_path):
    cells.load_files([cell_file])
    other = tmp_path / "sub" / "my_peephole.py"
    other.parent.mkdir()
    shutil.copy(EXAMPLE, other)
    with pytest.raises(ValueError, match="already registered"):
        cells.load_files([other])
    with pytest.raises(FileNotFoundError, match=r"expected an existing \.py file"):
        cells.load_files([tmp_path / "nope.py"])
    with pytest.raises(ValueError, match="built-in"):
        lstm = tmp_path / "lstm.py"
        shutil.copy(EXAMPLE, lstm)
        cells.load_files([lstm])


def test_environment_variable_registers_on_lookup(cell_file, monkeypatch):
    monkeypatch.setenv(cells.ENV, str(cell_file))
    assert "my_peephole" in cells.names()


def test_entry_points_are_looked_up_by_name(monkeypatch):
    class FakeEntryPoint:
        name = "ep_cell"

        def load(self):
            return cells.get("lstm")

    monkeypatch.setattr(cells, "_entry_points", lambda: {"ep_cell": FakeEntryPoint()})
    try:
        assert "ep_cell" in cells.names()
        assert cells.get("ep_cell") is cells.get("lstm")
    finally:
        cells.unregister("ep_cell")


def test_unknown_cell_says_how_to_bring_one_from_a_file():
    with pytest.raises(KeyError, match="--cells PATH.py"):
        cells.get("no_such_cell")


def test_cli_refuses_a_missing_cell_file_in_one_line(tmp_path, capsys):
    rc = cli.main(["run", "adding:smoke", "--cells", str(tmp_path / "x.py")])
    err = capsys.readouterr().err
    assert rc == 2 and "x.py" in err and "Traceback" not in err


@pytest.mark.slow
def test_cli_run_trains_a_cell_from_a_file_and_records_it(cell_file, tmp_path):
    workdir = tmp_path / "run"
    argv = ["run", "adding:smoke", "--cells", str(cell_file), "model.cell=my_peephole"]
    assert cli.main([*argv, "--workdir", str(workdir)]) == 0
    record = json.loads((workdir / "results.json").read_text())
    assert record["cell_files"]["my_peephole"]["sha256"] == cells.sources()["my_peephole"]["sha256"]
    plans = list(workdir.rglob("plan.json"))
    assert plans, "the run records its plan"
