"""Docs that cannot rot: every code block in README.md and docs/*.md runs here.

A fenced block whose language is ``python`` or ``bash`` is code. It runs unless the line just
above its fence (blank lines aside) is ``<!-- norun: REASON -->`` with a reason. Blocks of
another language (``text`` for program output, a layout tree) are not code and are not run.

Per file, the runnable blocks run in document order in ONE fresh interpreter: a Python block is
executed in a namespace shared with the file's earlier Python blocks, a bash block is run with
``bash -e`` from there (so a later Python block can read what a bash block made, and the other
way round). They run in a scratch folder that holds links to the repository's ``examples/`` and
``experiments/`` (so ``examples/peephole_lstm.py`` and ``rnnlab run NAME:smoke`` work there).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CODE = ("python", "bash")
FENCE = re.compile(r"^```(\S*)\s*$")
NORUN = re.compile(r"^<!--\s*norun:\s*(.*?)\s*-->$")


def doc_files() -> list[pathlib.Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(path: pathlib.Path) -> list[dict]:
    """Every fenced block of ``path``: ``{"lang", "code", "line", "norun"}`` (norun: the reason
    or None)."""
    lines = path.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        lang, start = m.group(1), i
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        if j == len(lines):
            raise AssertionError(f"{path.name}:{start + 1}: unclosed code fence")
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        norun = NORUN.match(lines[k].strip()) if k >= 0 else None
        out.append({
            "lang": lang, "code": "\n".join(lines[start + 1 : j]) + "\n", "line": start + 1,
            "norun": norun.group(1) if norun else None,
        })  # fmt: skip
        i = j + 1
    return out


def test_every_code_block_runs_or_says_why_not():
    """A code block is either run by :func:`test_doc_blocks_run` or marked with its reason."""
    problems = []
    for path in doc_files():
        for b in blocks(path):
            if b["lang"] == "":
                problems.append(f"{path.name}:{b['line']}: a fence without a language")
            if b["norun"] is not None and not b["norun"]:
                problems.append(f"{path.name}:{b['line']}: norun without a reason")
    assert not problems, "\n".join(problems)


def scratch(tmp_path: pathlib.Path) -> pathlib.Path:
    for name in ("examples", "experiments"):
        (tmp_path / name).symlink_to(ROOT / name)
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_blocks_run(path, tmp_path):
    runnable = [b for b in blocks(path) if b["lang"] in CODE and b["norun"] is None]
    if not runnable:
        return  # nothing to run in this file (its blocks are output or marked norun)
    cwd = scratch(tmp_path)
    env = {
        **os.environ,
        "PATH": f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "MPLBACKEND": "Agg",
        "JAX_PLATFORMS": "cpu",
    }
    (cwd / "blocks.json").write_text(
        json.dumps([[b["lang"], b["code"], b["line"]] for b in runnable])
    )
    (cwd / "run_blocks.py").write_text(DRIVER)
    r = subprocess.run(
        [sys.executable, "run_blocks.py"], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, f"{path.name}: {r.stdout[-500:]}\n{r.stderr[-3000:]}"


# runs the blocks in order: Python in one shared namespace, bash through ``bash -e``
DRIVER = """
import json, subprocess, sys
ns = {"__name__": "__main__"}
for lang, code, line in json.load(open("blocks.json")):
    print(f"--- block at line {line} ({lang})", flush=True)
    if lang == "python":
        exec(compile(code, f"block@{line}", "exec"), ns)
    else:
        r = subprocess.run(["bash", "-e", "-c", code])
        if r.returncode:
            sys.exit(f"bash block at line {line} exited {r.returncode}:\\n{code}")
"""
