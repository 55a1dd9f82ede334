"""The experiment registry: lookup, errors with choices, overrides, sweeps, show, the CLI."""

import json
import textwrap

import pytest

from rnnlab import cli, registry

TOY = '''
"""toy: a toy experiment for the registry tests.

More of the record.
"""
from rnnlab import config as config_lib
from rnnlab import registry, study

VARIANTS = ("default", "smoke")


def get_config(variant=None):
    c = config_lib.get_config()
    study.with_section(c, scale=1.0)
    if variant == "smoke":
        c.experiment.scale = 0.5
    return c


def run(config, workdir):
    value = config.experiment.scale * config.model.hidden_size
    return {"value": value, "cell": config.model.cell, "table": "| v |\\n|---|\\n| %g |" % value}
'''

SWEEP = (
    TOY.replace('"""toy:', '"""toy sweep:')
    + """

def sweep():
    return [["model.hidden_size=2"], ["model.hidden_size=3"]]
"""
)


@pytest.fixture
def folder(tmp_path, monkeypatch):
    exp = tmp_path / "experiments"
    exp.mkdir()
    (exp / "toy.py").write_text(textwrap.dedent(TOY))
    (exp / "toy_sweep.py").write_text(textwrap.dedent(SWEEP))
    (exp / "_private.py").write_text("")
    monkeypatch.setenv("RNNLAB_EXPERIMENTS", str(exp))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_names_list_and_default_workdir(folder):
    assert registry.names() == ["toy", "toy-sweep"]
    listing = registry.format_list()
    assert "toy " in listing and "[default, smoke]" in listing and "a toy experiment" in listing
    out = registry.run("toy:smoke", ["model.hidden_size=10"])
    assert out["value"] == 5.0
    saved = json.loads((folder / "runs" / "toy-smoke" / "results.json").read_text())
    assert saved["variant"] == "smoke" and saved["results"]["value"] == 5.0
    shown = registry.show(folder / "runs" / "toy-smoke")
    assert "toy:smoke" in shown and "| 5 |" in shown and "value" in shown


def test_errors_list_the_choices(folder):
    with pytest.raises(KeyError, match="toy-sweep"):
        registry.run("tyo")
    with pytest.raises(KeyError, match="default, smoke"):
        registry.run("toy:fast")
    with pytest.raises(KeyError, match="model.hidden_size"):
        registry.run("toy", ["model.hiden_size=3"])
    with pytest.raises(ValueError, match="expects an int"):
        registry.run("toy", ["model.hidden_size=big"])
    with pytest.raises(FileNotFoundError):
        registry.show(folder / "nowhere")
    assert cli.main(["run", "toy:nope"]) == 2


def test_comma_list_sweeps_into_subdirectories(folder):
    out = registry.run("toy", ["model.hidden_size=2,4", "model.cell=gru"], workdir=folder / "w")
    assert [p["results"]["value"] for p in out["points"]] == [2.0, 4.0]
    assert (folder / "w" / "model.hidden_size=2,model.cell=gru" / "results.json").is_file()
    table = (folder / "w" / "summary.md").read_text()
    assert "model.hidden_size=4 model.cell=gru" in table and "| 4 |" in table
    assert len(json.loads((folder / "w" / "summary.json").read_text())) == 2
    # tuple/dict literals are values, not sweeps
    assert registry.expand(["experiment.x=(1, 2)"]) == [["experiment.x=(1, 2)"]]


def test_sweep_function_and_cli(folder, capsys):
    assert cli.main(["run", "toy-sweep", "--workdir", str(folder / "s")]) == 0
    rows = json.loads((folder / "s" / "summary.json").read_text())
    assert [r["results"]["value"] for r in rows] == [2.0, 3.0]
    assert cli.main(["show", str(folder / "s")]) == 0
    assert "model.hidden_size=3" in capsys.readouterr().out
    assert cli.main(["list"]) == 0


def test_real_experiments_are_registered():
    names = registry.names()  # the repository's experiments folder
    for name in ("vanishing", "spectral-sweep", "clipping", "init", "adding", "copy",
                 "memory-horizon"):  # fmt: skip
        assert name in names
        module = registry.load(name)
        assert "smoke" in module.VARIANTS
        doc = module.__doc__
        assert "Command:" in doc and "Expected runtime" in doc and "Expected result" in doc
        module.get_config("smoke")


def test_cli_overrides_may_follow_the_options(folder):
    """`run NAME --workdir DIR key=value`: argparse alone would drop the late overrides."""
    for argv in (
        ["run", "toy", "--workdir", str(folder / "a"), "model.hidden_size=7"],
        ["run", "toy", "model.hidden_size=7", "--workdir", str(folder / "b")],
    ):
        assert cli.main(argv) == 0
    for run_dir in ("a", "b"):
        saved = json.loads((folder / run_dir / "results.json").read_text())
        assert saved["results"]["value"] == 7.0
    with pytest.raises(SystemExit):  # anything else left over is still an error
        cli.main(["run", "toy", "--workdir", str(folder / "c"), "--bogus"])
    with pytest.raises(SystemExit):
        cli.main(["list", "model.hidden_size=7"])
