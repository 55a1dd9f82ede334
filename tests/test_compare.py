"""rnnlab compare: the figure, the page, colour-by, bad input; sweeps write it; HParams."""

import html.parser
import json
import pathlib
import struct
import subprocess

import pytest

from rnnlab import cli, compare, registry


def fake_run(folder: pathlib.Path, *, hidden=32, cell="lstm", lr=1e-3, losses=(3.0, 2.0, 1.5)):
    """A workdir written by hand: config.json and metrics.jsonl as the trainer writes them."""
    folder.mkdir(parents=True)
    config = {
        "seed": 0,
        "model": {"cell": cell, "hidden_size": hidden, "cell_options": {}},
        "optim": {"learning_rate": lr},
    }
    (folder / "config.json").write_text(json.dumps(config))
    lines = []
    for i, loss in enumerate(losses):
        step = 10 * (i + 1)
        lines.append({"step": step, "kind": "train", "loss": loss + 0.1, "grad_norm": 1.0})
        lines.append({"step": step, "kind": "eval", "val_loss": loss, "val_accuracy": 1 / loss,
                      "val_loss_per_seed": [loss, loss]})  # fmt: skip
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return folder


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "sweep"
    fake_run(root / "h=16", hidden=16, cell="gru", lr=1e-2, losses=(3.0, 2.5, 2.6))
    fake_run(root / "h=64", hidden=64, cell="lstm", lr=1e-3, losses=(2.9, 1.8, 1.2))
    fake_run(root / "h=256", hidden=256, cell="lstm", lr=1e-4, losses=(2.8, 1.6, 1.4))
    (root / "summary.md").write_text("not a run")
    return root


def png_size(path) -> tuple[int, int]:
    data = pathlib.Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


class Page(html.parser.HTMLParser):
    """Collects the metrics table's rows (cell texts) and the images' sources."""

    def __init__(self):
        super().__init__()
        self.rows, self.images, self._row, self._cell, self._table = [], [], None, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = attrs.get("id")
        elif tag == "tr" and self._table == "metrics" and "data-run" in attrs:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = ""
        elif tag == "img":
            self.images.append(attrs.get("src", ""))

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None


def parse(path) -> Page:
    page = Page()
    page.feed(pathlib.Path(path).read_text())
    page.close()
    return page


def test_sweep_folder_expands_and_writes_png_and_html(sweep):
    out = compare.compare([sweep], by="model.hidden_size")
    assert out["runs"] == ["h=16", "h=64", "h=256"]  # by the numeric key; summary.md no run
    assert out["metric"] == "val_loss" and pathlib.Path(out["png"]).parent == sweep
    assert out["differing"] == ["model.cell", "model.hidden_size", "optim.learning_rate"]
    w, h = png_size(out["png"])
    assert 800 <= w <= 2500 and 500 <= h <= 2500
    rows = {r["run"]: r for r in out["rows"]}
    assert rows["h=16"]["final"] == 2.6 and rows["h=16"]["best"] == 2.5
    assert rows["h=16"]["best_step"] == 20 and rows["h=64"]["best"] == 1.2
    page = parse(out["html"])
    assert [r[0] for r in page.rows] == ["h=16", "h=64", "h=256"]
    # final, best val_loss are the 2nd and 3rd cells; best carries its step
    assert page.rows[0][1] == "2.6" and page.rows[0][2] == "2.5 @20"
    assert len(page.images) == 1 and page.images[0].startswith("data:image/png;base64,")
    text = pathlib.Path(out["html"]).read_text()
    assert "http://" not in text and "https://" not in text  # self-contained
    assert "best val_accuracy" in text and "final train_loss" in text


def test_scores_take_the_highest_as_best(sweep):
    out = compare.compare([sweep], metric="val_accuracy", out=sweep / "acc")
    rows = {r["run"]: r for r in out["rows"]}
    assert rows["h=64"]["best"] == pytest.approx(1 / 1.2)
    assert rows["h=16"]["best"] == pytest.approx(1 / 2.5) and rows["h=16"]["best_step"] == 20
    assert compare.higher_is_better("val_accuracy") and not compare.higher_is_better("val_bpc")
    assert out["by"] == "model.cell"  # the default: the first key that differs
    assert out["runs"] == ["h=16", "h=256", "h=64"]  # a categorical key keeps the path order


@pytest.mark.parametrize(
    "by, numeric", [("model.hidden_size", True), ("optim.learning_rate", True),
                    ("model.cell", False), (None, False)],
)  # fmt: skip
def test_colour_by_numeric_and_string_keys(sweep, by, numeric):
    runs = [compare.RunRecord(p, p.name) for p in compare.find_runs([sweep])]
    colouring = compare.Colouring(runs, by)
    assert colouring.numeric is numeric
    if by == "model.cell":  # one colour per value: the two lstm runs share theirs
        assert colouring.colours[1] == colouring.colours[2] != colouring.colours[0]
    else:  # numbers: distinct shades of one colormap; None: one colour per run
        assert len(set(colouring.colours)) == 3
    if by == "optim.learning_rate":
        assert colouring.log  # 1e-4 .. 1e-2 spans 100x: log-spaced
    out = compare.compare([sweep], by=by, out=sweep / f"by-{by}")
    assert png_size(out["png"])[0] > 0


def test_bad_input_lists_the_valid_choices(sweep, tmp_path, capsys):
    with pytest.raises(
        ValueError, match=r"unknown --by key 'model.hiden_size'.*'model.hidden_size'"
    ):
        compare.compare([sweep], by="model.hiden_size")
    with pytest.raises(
        ValueError,
        match=r"Metrics the runs logged: train_loss, train_grad_norm, val_loss, val_accuracy$",
    ):
        compare.compare([sweep], metric="val_bpc")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"not a run workdir .*config.json.*notes.txt"):
        compare.compare([tmp_path / "empty"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        compare.compare([tmp_path / "nowhere"])
    assert cli.main(["compare", str(tmp_path / "empty")]) == 2
    with pytest.raises(ValueError, match="not a run workdir"):
        compare.compare([sweep / "summary.md"])  # a file alone is no run
    (sweep / "figures").mkdir()
    globbed = sorted(sweep.iterdir())  # `rnnlab compare sweep/*`: summary.md, figures/ too
    out = compare.compare(globbed, out=tmp_path / "g")
    assert len(out["runs"]) == 3
    assert sorted(out["skipped"]) == [str(sweep / "figures"), str(sweep / "summary.md")]
    assert cli.main(["compare", str(sweep), "--metric", "val_bpc"]) == 2
    err = capsys.readouterr().err
    assert "rnnlab compare: error: unknown metric 'val_bpc'" in err and "Traceback" not in err


def test_cli_with_runs_given_one_by_one(sweep, tmp_path, capsys):
    argv = ["compare", str(sweep / "h=16"), str(sweep / "h=64"), "--by", "model.cell",
            "--metric", "train_loss", "--out", str(tmp_path / "cmp")]  # fmt: skip
    assert cli.main(argv) == 0
    assert "comparison.html" in capsys.readouterr().out
    page = parse(tmp_path / "cmp" / "comparison.html")
    assert [r[0] for r in page.rows] == ["h=16", "h=64"]
    assert page.rows[1][1] == "1.3"  # final train_loss of h=64 (1.2 + 0.1)


@pytest.mark.skipif(not pathlib.Path("/usr/bin/chromium").exists(), reason="chromium not installed")
def test_page_renders_in_headless_chromium(sweep):
    out = compare.compare([sweep])
    dom = subprocess.run(
        ["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--dump-dom", f"file://{out['html']}"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    page = Page()
    page.feed(dom)
    assert [r[0] for r in page.rows] == ["h=16", "h=256", "h=64"]
    assert page.images and page.images[0].startswith("data:image/png;base64,")


def test_registry_summary_keeps_nested_metrics():
    rows = [
        {"overrides": ["a=1"], "results": {"loss": 1.0, "rows": [
            {"cell": "lstm", "T": 4, "val_accuracy": [1.0, 0.5]},
            {"cell": "gru", "T": 4, "val_accuracy": [0.5, 0.5]}], "stats": {"x": {"y": 2}},
            "val_loss_per_seed": [1.0, 1.0], "curve": list(range(40)), "table": "| a |"}},
    ]  # fmt: skip
    flat = registry.flat_metrics(rows[0]["results"])
    assert flat["rows[cell=lstm].val_accuracy"] == 0.75
    assert flat["rows[cell=lstm].val_accuracy[1]"] == 0.5
    assert flat["stats.x.y"] == 2 and flat["loss"] == 1.0
    assert "curve" not in flat and "table" not in flat and "val_loss_per_seed" not in flat
    assert "val_loss_per_seed[0]" in flat
    table = registry.summary_table(rows)
    assert "rows[cell=gru].val_accuracy" in table and "| 0.5 |" in table
    assert "[1]" not in table  # per-element values live in summary.json only


@pytest.mark.slow
def test_a_real_sweep_writes_its_comparison(tmp_path):
    """parity:smoke over two hidden sizes: summary keeps the accuracy, comparison beside it."""
    out = tmp_path / "sw"
    registry.run("parity:smoke", ["model.hidden_size=4,8", "experiment.cells=('lstm',)"],
                 workdir=out)  # fmt: skip
    summary = (out / "summary.md").read_text()
    assert "rows[cell=lstm].val_accuracy" in summary
    saved = json.loads((out / "summary.json").read_text())
    assert all("rows[cell=lstm].val_accuracy[0]" in r["metrics"] for r in saved)
    assert png_size(out / "comparison.png")[0] > 0
    page = parse(out / "comparison.html")
    assert len(page.rows) == 2 and all("model.hidden_size" in r[0] for r in page.rows)


def read_events(folder: pathlib.Path) -> list:
    """Every Event in the TFRecord event files of ``folder`` (length, crc, data, crc)."""
    from tensorboardX.proto import event_pb2

    events = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, i = path.read_bytes(), 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i : i + 8])
            events.append(event_pb2.Event.FromString(data[i + 12 : i + 12 + n]))
            i += 12 + n + 4
    return events


@pytest.mark.slow
def test_tensorboard_hparams_of_a_run(tmp_path):
    """train.tensorboard on: the config and the final metrics go to TensorBoard's HParams."""
    pytest.importorskip("tensorboardX", reason="tensorboardX not installed")
    from tensorboardX.proto import plugin_hparams_pb2

    from rnnlab import train
    from rnnlab.config import get_config

    c = get_config()
    c.data.name, c.data.seq_length, c.data.batch_size = "parity", 4, 8
    c.model.hidden_size, c.model.embed_dim = 4, 4
    c.train.num_steps = c.train.eval_every = c.train.log_every = 2
    c.train.checkpoint_every, c.train.progress, c.train.tensorboard = 0, False, True
    out = train.train_and_evaluate(c, tmp_path / "run")
    events = read_events(tmp_path / "run" / "tb" / "hparams")
    starts, finals = {}, {}
    for ev in events:
        for v in ev.summary.value:
            if v.metadata.plugin_data.plugin_name == "hparams":
                data = plugin_hparams_pb2.HParamsPluginData.FromString(
                    v.metadata.plugin_data.content
                )
                if data.HasField("session_start_info"):
                    starts = dict(data.session_start_info.hparams)
            elif v.tag.startswith("hparam/"):
                finals[v.tag] = v.simple_value
    assert starts["model.hidden_size"].number_value == 4
    assert starts["data.name"].string_value == "parity"
    assert starts["train.tensorboard"].bool_value is True
    assert finals["hparam/val_loss"] == pytest.approx(out["val_loss"], rel=1e-5)
    assert finals["hparam/val_accuracy"] == pytest.approx(out["val_accuracy"], rel=1e-5)
    assert "hparam/train_loss" in finals


def test_labels_drop_the_override_parts_every_run_shares(tmp_path):
    fake_run(tmp_path / "model.hidden_size=8,train.num_steps=300", hidden=8)
    fake_run(tmp_path / "model.hidden_size=16,train.num_steps=300", hidden=16)
    out = compare.compare([tmp_path])
    assert out["runs"] == ["model.hidden_size=8", "model.hidden_size=16"]
    fake_run(tmp_path / "x" / "run", hidden=4)
    fake_run(tmp_path / "y" / "run", hidden=5)
    assert compare.compare([tmp_path / "x", tmp_path / "y"])["runs"] == ["x", "y"]
