"""The helper block every notebook shares: ``SMOKE``, ``size(full, smoke)`` and ``show(figure)``.

One copy, used by all of ``notebooks/src/*.py``: each source imports it with the line

    from _common import SMOKE, show, size  # inlined by notebooks/_build.py

and ``notebooks/_build.py`` writes the block below the ``BLOCK`` line in place of that import,
so every ``.ipynb`` stays a standalone document (it runs wherever ``rnnlab`` is installed,
without this folder on the path). Running a source directly (``python notebooks/src/NAME.py``,
or VS Code's cells) imports this module instead. Edit the block here, then rebuild.

The names the block needs (``io``, ``os``, ``pathlib``, ``plt``, ``PIL.Image``, ``Image``,
``display``) are imported by each notebook's first cell; they are imported here too so that
the module also works on its own.
"""

import io
import os
import pathlib

import matplotlib.pyplot as plt
import PIL.Image
from IPython.display import Image, display

# BLOCK: everything below this line is what each notebook gets.
SMOKE = os.environ.get("RNNLAB_NOTEBOOK_SMOKE") == "1"  # the test suite's tiny setting
print("settings:", "smoke (RNNLAB_NOTEBOOK_SMOKE=1: tiny sizes)" if SMOKE else "full")


def size(full, smoke):
    """``full`` normally; ``smoke`` when the test suite runs this notebook."""
    return smoke if SMOKE else full


def show(figure, width=640):
    """Display a matplotlib figure or a PNG file inline, as a compact 128-color PNG."""
    if isinstance(figure, (str, pathlib.Path)):
        image = PIL.Image.open(figure)
    else:
        buf = io.BytesIO()
        figure.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        plt.close(figure)
        image = PIL.Image.open(buf)
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), PIL.Image.LANCZOS)
    out = io.BytesIO()
    image.convert("RGB").quantize(colors=128).save(out, format="PNG", optimize=True)
    display(Image(out.getvalue()))
