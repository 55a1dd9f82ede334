"""Build the notebooks from their Python sources, and optionally execute them.

The source of each notebook is ``notebooks/src/NAME.py`` in the "percent" format (as jupytext
and VS Code read it): ``# %%`` starts a code cell, ``# %% [markdown]`` a markdown cell whose
lines start with ``# ``. Edit the sources, never the ``.ipynb`` files, then::

    .venv/bin/python notebooks/_build.py                   # write notebooks/NAME.ipynb (*)
    .venv/bin/python notebooks/_build.py --execute         # ... and run them (full settings)
    .venv/bin/python notebooks/_build.py --execute char_rnn   # one notebook
    RNNLAB_NOTEBOOK_SMOKE=1 .venv/bin/python notebooks/_build.py --execute   # tiny settings

(*) Without ``--execute`` the outputs of the existing ``.ipynb`` are kept when every code cell
is unchanged (a markdown edit needs no re-run); otherwise the notebook is written without
outputs. Executed notebooks keep their outputs (the committed ones come from a full run); execution
metadata (timestamps) is not recorded, so a re-run changes only what the code printed.
``tests/test_notebooks.py`` checks that every ``.ipynb`` matches its source and runs each one
under ``RNNLAB_NOTEBOOK_SMOKE=1``.

The helpers every notebook uses (``SMOKE``, ``size``, ``show``) live once, in
``src/_common.py``; a source imports them with the line :data:`INCLUDE`, which the build
replaces by the module's block (see :func:`inline_common`) so each ``.ipynb`` runs on its own.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import nbformat

HERE = pathlib.Path(__file__).resolve().parent
SOURCES = HERE / "src"
NAMES = ("char_rnn", "vanishing_gradients", "add_a_cell", "long_range_tasks")
KERNEL = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
COMMON = SOURCES / "_common.py"
INCLUDE = "from _common import SMOKE, show, size  # inlined by notebooks/_build.py"
BLOCK = "# BLOCK: everything below this line is what each notebook gets."


def inline_common(text: str) -> str:
    """A source with its :data:`INCLUDE` line replaced by ``_common.py``'s block.

    Every notebook source must import the shared helpers this way (exactly once), so that no
    notebook grows its own copy of them again.
    """
    lines = text.splitlines()
    if lines.count(INCLUDE) != 1:
        raise ValueError(
            f"a notebook source must contain the line {INCLUDE!r} exactly once; "
            f"found it {lines.count(INCLUDE)} times"
        )
    common = COMMON.read_text()
    if BLOCK not in common:
        raise ValueError(f"{COMMON} lost its marker line {BLOCK!r}")
    block = common.split(BLOCK + "\n", 1)[1].strip("\n")
    return "\n".join(block if line == INCLUDE else line for line in lines) + "\n"


def parse(text: str) -> list[tuple[str, str]]:
    """Percent-format source -> ``[(kind, source), ...]`` with kind ``"code"`` or ``"markdown"``."""
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("# %%"):
            kind = "markdown" if "[markdown]" in line else "code"
            cells.append((kind, []))
        elif cells:
            kind, lines = cells[-1]
            if kind == "markdown":
                if line and not line.startswith("#"):
                    raise ValueError(f"markdown line does not start with '#': {line!r}")
                line = line[2:] if line.startswith("# ") else line[1:]
            lines.append(line)
    return [(kind, "\n".join(lines).strip("\n")) for kind, lines in cells]


def build(name: str) -> nbformat.NotebookNode:
    """The notebook ``name`` (no outputs) from ``src/NAME.py``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": dict(KERNEL), "language_info": {"name": "python"}}
    for kind, source in parse(inline_common((SOURCES / f"{name}.py").read_text())):
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        nb.cells.append(make(source))
    for i, cell in enumerate(nb.cells):
        cell.id = f"{name.replace('_', '-')}-{i:02d}"  # stable ids: no diff noise on rebuild
    return nb


def keep_outputs(nb: nbformat.NotebookNode, path: pathlib.Path) -> bool:
    """Copy the outputs of the notebook at ``path`` into ``nb`` if their code is the same."""
    if not path.exists():
        return False
    old = nbformat.read(path, as_version=4)
    code = lambda book: [c.source for c in book.cells if c.cell_type == "code"]
    if code(old) != code(nb):
        return False
    done = iter([c for c in old.cells if c.cell_type == "code"])
    for cell in nb.cells:
        if cell.cell_type == "code":
            prev = next(done)
            cell.outputs, cell.execution_count = prev.outputs, prev.execution_count
    return True


def execute(nb: nbformat.NotebookNode, *, timeout: int = 1200) -> nbformat.NotebookNode:
    """Run every cell in a fresh ``python3`` kernel (this interpreter's), cwd = notebooks/.

    jupyter_client starts ``python3`` with ``sys.executable`` (the spec's ``python`` is replaced
    by the running interpreter), so the kernel sees the same environment as the caller.
    """
    from nbclient import NotebookClient

    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=timeout,
        record_timing=False,
        resources={"metadata": {"path": str(HERE)}},
    )
    client.execute()
    nb.metadata = {"kernelspec": dict(KERNEL), "language_info": {"name": "python"}}
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", default=list(NAMES), help="notebooks (default all)")
    parser.add_argument("--execute", action="store_true", help="run them and keep the outputs")
    args = parser.parse_args(argv)
    for name in args.names:
        if name not in NAMES:
            parser.error(f"unknown notebook {name!r}; known: {', '.join(NAMES)}")
        nb = build(name)
        t0 = time.time()
        path = HERE / f"{name}.ipynb"
        if args.execute:
            try:
                nb = execute(nb)
            except Exception:
                nbformat.write(nb, path)  # the outputs up to the failing cell, to read
                print(f"{name}: execution failed; partial outputs in {path}", file=sys.stderr)
                raise
        kept = not args.execute and keep_outputs(nb, path)
        nbformat.write(nb, path)
        took = f" (executed in {time.time() - t0:.0f} s)" if args.execute else ""
        took += " (outputs kept: code unchanged)" if kept else ""
        print(f"wrote {path.relative_to(HERE.parent)}: {path.stat().st_size / 1e3:.0f} KB{took}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
