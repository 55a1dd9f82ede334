"""The suite's shared settings: strict JAX, CPU only, and the check that keeps ``slow`` honest.

Strict JAX (Equinox style): implicit rank promotion is an error.

The ``slow`` marker (declared in pyproject.toml) goes on every test that takes more than
:data:`SLOW_S` seconds on 2 CPU cores (setup + call + teardown), and on whole files that are
slow by nature (experiment smoke runs, notebooks, multi-process runs, long kernel grids). The
fast loop ``pytest -m "not slow" -n 2 -q`` leaves them out; CI (``.ci/run``) runs them all.
The marker stays honest because every run ends with the list of the tests *without* the marker
that took longer than :data:`SLOW_S`, and ``--fast-budget SECONDS`` fails a run whose wall time
exceeds SECONDS (``pytest -m "not slow" -n 2 -q --fast-budget 90``).
"""

import os
import time

# Tests never touch the network and never pick up a GPU by accident.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

SLOW_S = 1.5  # seconds per test on 2 cores above which a test carries @pytest.mark.slow
# The fast loop's one end-to-end run (train, eval, hooks, checkpoints, load_run, a refused
# workdir): kept in the fast loop on purpose, though it takes a few seconds.
END_TO_END = {"tests/test_train.py::test_train_end_to_end"}


def pytest_addoption(parser):
    parser.addoption(
        "--fast-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="fail the run when its wall time exceeds SECONDS (for the fast loop, -m 'not slow')",
    )


def pytest_configure(config):
    if not hasattr(config, "workerinput"):  # the xdist controller (or a plain run) reports
        config.pluginmanager.register(_SlowCheck(config.getoption("fast_budget")), "slow-check")


class _SlowCheck:
    """Sums each unmarked test's phases; lists those over SLOW_S; applies ``--fast-budget``."""

    def __init__(self, budget: float | None):
        if budget is not None and budget <= 0:
            raise pytest.UsageError(
                f"--fast-budget must be a positive number of seconds, got {budget:g}"
            )
        self.budget = budget
        self.start = time.perf_counter()
        self.unmarked: dict[str, float] = {}

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def pytest_runtest_logreport(self, report):
        if "slow" not in report.keywords and report.nodeid not in END_TO_END:
            self.unmarked[report.nodeid] = self.unmarked.get(report.nodeid, 0.0) + report.duration

    def pytest_sessionfinish(self, session, exitstatus):
        if self.budget is not None and self.elapsed() > self.budget and exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter, exitstatus, config):
        write = terminalreporter.write_line
        over = sorted(((t, n) for n, t in self.unmarked.items() if t > SLOW_S), reverse=True)
        if over:
            terminalreporter.section(f"tests without the slow marker that took over {SLOW_S} s")
            for t, name in over[:20]:
                write(f"{t:6.2f} s  {name}")
            if len(over) > 20:
                write(f"... and {len(over) - 20} more")
            write("mark them @pytest.mark.slow (or make them faster): see docs/developing.md")
        if self.budget is not None:
            verdict = "over" if self.elapsed() > self.budget else "within"
            write(f"fast budget: {self.elapsed():.0f} s, {verdict} the budget of {self.budget:g} s")
