"""Every registered cell passes every conformance check (rnnlab/conformance.py).

Parameterized over ``rnnlab.cells.names()``: a new file in rnnlab/cells/ is tested without
editing this file. One test per (check, cell), so a failure names both.
"""

import pathlib

import pytest

import rnnlab
from rnnlab import conformance
from rnnlab.cells import elman

SLOW = {"fast_loops"}  # compiles each declared fast loop at the size the plan takes it
# The fast loop (-m "not slow") runs the whole grid on one dense and one linear cell, and two
# cheap checks on every other cell (so each cell file is still touched); the rest of the grid
# is slow: the full suite runs every (check, cell).
FULL_IN_FAST_LOOP = {"lstm", "mingru"}
CHEAP = {"scan_matches_loop", "probe_contract"}
ROOT = pathlib.Path(__file__).resolve().parents[1]


def _case(check: str, cell: str):
    fast = check not in SLOW and (cell in FULL_IN_FAST_LOOP or check in CHEAP)
    return pytest.param(check, cell, marks=() if fast else pytest.mark.slow, id=f"{check}-{cell}")


@pytest.mark.parametrize(
    "check, cell", [_case(k, c) for c in rnnlab.cells.names() for k in conformance.CHECKS]
)
def test_conformance(check, cell):
    conformance.CHECKS[check](cell)


def test_check_cell_rejects_unknown_names():
    with pytest.raises(KeyError, match="Did you mean 'lstm'"):
        conformance.check_cell("lsmt")


class Scaled(elman.Cell):
    """An SRU-like output: ``y_t = 2 h_t`` is not a leaf of the carry, and no ``output``."""

    def step(self, carry, xp_t):
        h, _ = super().step(carry, xp_t)
        return h, 2.0 * h


def test_probe_contract_names_what_the_probes_need():
    with pytest.raises(AssertionError, match="probe contract.*leaf of the new carry"):
        conformance.check_probe_contract(Scaled)


def test_loops_say_what_each_cell_can_take():
    lstm = dict(line.split(": ", 1) for line in conformance.loops("lstm"))
    assert lstm["fused backward"].startswith("yes") and "lstm kernel" in lstm["native kernel"]
    assert lstm["associative scan"].startswith("no: not linear")
    mingru = dict(line.split(": ", 1) for line in conformance.loops("mingru"))
    assert mingru["associative scan"].startswith("yes")
    assert mingru["fused backward"].startswith("no: no fused-backward contract")
    assert (
        "does not declare one itself"
        in dict(line.split(": ", 1) for line in conformance.loops(Scaled))["native kernel"]
    )


@pytest.mark.slow
def test_a_one_file_cell_gets_the_fused_backward_by_declaring_the_contract(capsys):
    """examples/peephole_lstm.py declares the fused contract: the plan takes the fused
    backward at H=64 and it equals autodiff (its peepholes, read by the gates, included)."""
    name = "peephole_conformance"
    rnnlab.cells.register(name, ROOT / "examples" / "peephole_lstm.py")
    try:
        assert conformance.loops(name)[1].startswith("fused backward: yes")
        conformance.check_fast_loops(name)
        conformance.check_probe_contract(name)
    finally:
        rnnlab.cells.unregister(name)
