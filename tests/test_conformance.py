"""Every registered cell passes every conformance check (rnnlab/conformance.py).

Parameterized over ``rnnlab.cells.names()``: a new file in rnnlab/cells/ is tested without
editing this file. One test per (check, cell), so a failure names both.
"""

import pytest

import rnnlab
from rnnlab import conformance


@pytest.mark.parametrize("cell", rnnlab.cells.names())
@pytest.mark.parametrize("check", list(conformance.CHECKS))
def test_conformance(check, cell):
    conformance.CHECKS[check](cell)


def test_check_cell_rejects_unknown_names():
    with pytest.raises(KeyError, match="Did you mean 'lstm'"):
        conformance.check_cell("lsmt")
