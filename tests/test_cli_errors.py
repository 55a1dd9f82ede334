"""Bad input at the real CLI: exit status 2, one to three lines naming the key or flag, no
traceback, and a trained workdir nearby loses nothing (issue 15).

One tiny char-rnn:smoke run is trained once (module fixture); every case then runs through
``rnnlab.cli.main`` in this process (fast), and a handful again as real ``python -m
rnnlab.cli`` subprocesses. All slow: the fixture trains, the subprocesses import JAX.
"""

import hashlib
import os
import pathlib
import subprocess
import sys

import pytest

from rnnlab import cli, registry
from rnnlab import config as config_lib

pytestmark = pytest.mark.slow


def _tree(folder: pathlib.Path) -> dict[str, str]:
    """Every file below ``folder`` -> its sha256 (what "lost nothing" compares)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_errors")
    workdir = root / "char"
    registry.run("char-rnn:smoke", ["train.num_steps=6"], workdir=workdir)
    files = root / "files"
    files.mkdir()
    (files / "binary.bin").write_bytes(b"abc\x00\x01\x02" * 100)
    (files / "plain.txt").write_text("not a workdir\n")
    (files / "empty_dir").mkdir()
    return root, workdir, files


def _cases(root, workdir, files):
    """``(argv, words the message must contain)``: at least 40 bad inputs."""
    new = str(root / "never")  # a workdir no refused run may create
    run = lambda *args: ["run", *args, "--workdir", new]  # noqa: E731
    w = str(workdir)
    return [
        # config values out of range or of the wrong type
        (run("char-rnn:smoke", "model.hidden_size=-5"), ["model.hidden_size", "-5"]),
        (run("char-rnn:smoke", "model.hidden_size=0"), ["model.hidden_size", ">= 1"]),
        (run("char-rnn:smoke", "model.embed_dim=0"), ["model.embed_dim"]),
        (run("char-rnn:smoke", "model.num_layers=0"), ["model.num_layers"]),
        (run("char-rnn:smoke", "model.dropout=1.5"), ["model.dropout", "[0, 1)"]),
        (run("char-rnn:smoke", "model.remat=sqrt"), ["model.remat", "chunked"]),
        (run("char-rnn:smoke", "model.cell=lsmt"), ["model.cell", "lstm"]),
        (run("char-rnn:smoke", "model.hidden_size=big"), ["model.hidden_size", "int"]),
        (run("char-rnn:smoke", "model.hiden_size=3"), ["model.hidden_size"]),
        (run("char-rnn:smoke", "optim.learning_rate=-1"), ["optim.learning_rate", "> 0"]),
        (run("char-rnn:smoke", "optim.learning_rate=0"), ["optim.learning_rate"]),
        (run("char-rnn:smoke", "optim.learning_rate=nan"), ["optim.learning_rate", "finite"]),
        (run("char-rnn:smoke", "optim.name=adamx"), ["optim.name", "adamw"]),
        (run("char-rnn:smoke", "optim.weight_decay=-0.1"), ["optim.weight_decay"]),
        (run("char-rnn:smoke", "optim.momentum=1.0"), ["optim.momentum"]),
        (run("char-rnn:smoke", "optim.warmup_steps=100"), ["optim.warmup_steps"]),
        (run("char-rnn:smoke", "data.val_fraction=0"), ["data.val_fraction"]),
        (run("char-rnn:smoke", "data.batch_size=0"), ["data.batch_size"]),
        (run("char-rnn:smoke", "data.seq_length=-1"), ["data.seq_length"]),
        (run("char-rnn:smoke", "train.num_seeds=0"), ["train.num_seeds"]),
        (run("char-rnn:smoke", "train.time_limit_s=inf"), ["train.time_limit_s"]),
        # the open dicts, checked by their owners' signatures
        (run("char-rnn:smoke", "model.cell_options.forget_bias=abc"), ["forget_bias", "abc"]),
        (run("char-rnn:smoke", "model.cell_options.forgetbias=1"), ["forgetbias", "forget_bias"]),
        (run("char-rnn:smoke", "model.cell_options.hidden_size=3"), ["model.hidden_size"]),
        (run("char-rnn:smoke", "data.options.nosuch=1"), ["nosuch"]),
        (run("char-rnn:smoke", "data.options.seq_length=3"), ["data.seq_length"]),
        # keys that would do nothing
        (run("seq2seq:smoke", "model.dropout=0.3"), ["model.dropout", "seq2seq"]),
        (run("char-rnn:smoke", "model.attention=true"), ["model.attention", "sequence"]),
        (run("char-rnn:smoke", "model.bidirectional=true"), ["bidirectional", "next-token"]),
        (run("adding:smoke", "data.seq_length=30"), ["data.seq_length", "experiment.lengths"]),
        (run("adding:smoke", "model.cell=gru", "experiment.cells=('elman',)"), ["model.cell"]),
        (run("init:smoke", "model.cell=gru"), ["model.cell", "init"]),
        (run("clipping:smoke", "optim.clip=none"), ["optim.clip", "clip_values"]),
        (run("spectral-sweep:smoke", "model.cell=gru"), ["model.cell", "spectral-sweep"]),
        # data files
        (run("char-rnn:smoke", "--data", "/dev/zero"), ["data.path", "/dev/zero"]),
        (run("char-rnn:smoke", "--data", str(files / "empty_dir")), ["data.path", "directory"]),
        (run("char-rnn:smoke", "--data", str(files / "binary.bin")), ["data.path", "binary"]),
        (run("char-rnn:smoke", "--data", str(root / "nothing.txt")), ["data.path"]),
        # workdirs
        (["run", "char-rnn:smoke", "--workdir", str(files / "plain.txt")], ["--workdir"]),
        (["run", "adding:smoke", "--workdir", w], ["char-rnn:smoke", "results.json"]),
        (["run", "char-rnn:smoke", "--workdir", w, "model.hidden_size=32"], ["model.hidden_size"]),
        (["run", "char-rnn", "--workdir", w], ["char-rnn:smoke"]),
        # sampling flags
        (["sample", w, "--temperature", "inf"], ["--temperature", "inf"]),
        (["sample", w, "--temperature", "0"], ["--temperature", "--argmax"]),
        (["sample", w, "--temperature", "-1"], ["--temperature"]),
        (["sample", w, "--temperature", "nan"], ["--temperature", "nan"]),
        (["sample", w, "--warmup", "-5"], ["--warmup", "-5"]),
        (["sample", w, "--length", "0"], ["--length"]),
        (["sample", w, "--length", "-3"], ["--length"]),
        (["sample", w, "--top-k", "-1"], ["--top-k"]),
        # viz flags
        (["viz", w, "--chars", "-10"], ["--chars", "-10"]),
        (["viz", w, "--chars", "0"], ["--chars"]),
        (["viz", w, "--unit", "99"], ["--unit", "99", "16 units"]),
        (["viz", w, "--unit", "-1"], ["--unit"]),
        (["viz", w, "--text", "/dev/zero"], ["--text", "/dev/zero"]),
        (["viz", w, "--text", str(files / "binary.bin")], ["--text", "binary"]),
    ]


def _check(code: int, err: str, argv, words) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2, (argv, code, err)
    assert "Traceback" not in err, (argv, err)
    assert 1 <= len(lines) <= 3, (argv, err)
    for word in words:
        assert word in err, (argv, word, err)


def test_bad_inputs_exit_2_with_a_short_message_and_the_workdir_intact(trained, capsys):
    root, workdir, files = trained
    before = _tree(workdir)
    cases = _cases(root, workdir, files)
    assert len(cases) >= 40
    for argv, words in cases:
        code = cli.main(argv)
        _check(code, capsys.readouterr().err, argv, words)
    assert not (root / "never").exists()  # no refused run made its workdir
    assert _tree(workdir) == before  # the trained run lost (and gained) nothing


def test_oversized_text_file_is_refused_before_reading(trained, capsys, monkeypatch):
    root, _, files = trained
    monkeypatch.setattr(config_lib, "MAX_TEXT_BYTES", 1000)
    big = files / "big.txt"
    big.write_text("x" * 5000)
    code = cli.main(["run", "char-rnn:smoke", "--data", str(big), "--workdir", str(root / "n")])
    _check(code, capsys.readouterr().err, "big", ["data.path", "MiB"])
    assert not (root / "n").exists()


def test_real_cli_subprocesses(trained):
    """A handful of the cases through ``python -m rnnlab.cli``, as a user runs it."""
    root, workdir, files = trained
    before = _tree(workdir)
    picked = [c for i, c in enumerate(_cases(root, workdir, files)) if i % 7 == 0]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    for argv, words in picked:
        proc = subprocess.run(
            [sys.executable, "-m", "rnnlab.cli", *argv],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        _check(proc.returncode, proc.stderr, argv, words)
    assert _tree(workdir) == before


def test_a_bug_keeps_its_traceback(monkeypatch):
    """Only bad input is reported in one line: an internal error (here an AttributeError from
    inside the library) propagates with its traceback."""

    def broken(*args, **kwargs):
        raise AttributeError("a bug")

    monkeypatch.setattr(registry, "run", broken)
    with pytest.raises(AttributeError, match="a bug"):
        cli.main(["run", "char-rnn:smoke"])
