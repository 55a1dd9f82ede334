"""Synthetic long-range tasks: adding (two versions), copy memory, temporal order, parity.

All are ``kind="batch"`` datasets (:class:`rnnlab.data.Dataset`): train batch ``step`` is a pure
function of ``(seed, step)`` (:func:`rnnlab.data.seed_for`), the eval set is fixed by ``seed``
alone, and ``metadata()["baseline"]`` is the analytic score of the best input-blind predictor,
which the tests check numerically. ``seq_length`` is ``T``, the dependency length each paper
varies. Shapes: ``B`` batch, ``T`` time.

=====================  ======================================================================
name                   task (baseline)
=====================  ======================================================================
``adding``             Le et al. 2015 / Arjovsky et al. 2016. Inputs ``[B, T, 2]``: values
                       ``U[0, 1]`` and a marker channel with exactly two 1s, one uniform in
                       each half (``[0, T//2)``, ``[T//2, T)``); target ``[B, 1]`` = sum of the
                       two marked values; MSE. Predicting 1: ``Var(U1 + U2) = 1/6``.
``adding_hochreiter``  Hochreiter & Schmidhuber 1997 (experiment 4). Values ``U[-1, 1]``;
                       marker 1 at the first relevant step (uniform in the first 10) and the
                       second (uniform in ``[1, T/2 - 1)``, distinct), marker -1 at steps 0
                       and ``T-1`` when they are not relevant; the marked value at step 0 is set
                       to 0 (their rule). Target ``0.5 + (X1 + X2)/4``; a sequence counts as
                       solved if ``|error| < 0.04``. Predicting 0.5: MSE ``(0.9/3 + 1/3)/16 =
                       0.0396``, accuracy 0.1542. (They drew lengths in ``[T, T + T/10]``; here
                       every sequence has length ``T``.)
``copy``               Arjovsky et al. 2016. Tokens ``[B, T + 20]``: 10 symbols from
                       ``{1..8}``, ``T - 1`` blanks (0), the marker 9, 10 blanks. Targets
                       ``[B, T + 20]``: ``T + 10`` blanks, then the 10 symbols. **Convention**:
                       the marker is input step ``T + 9`` (0-based) and the first symbol is due
                       at output step ``T + 10``, the step *after* the marker, so symbol ``i``
                       is recalled ``T + 10`` steps after it was shown. Cross-entropy averaged
                       over all ``T + 20`` steps; memoryless baseline ``10 ln 8 / (T + 20)``.
``temporal_order``     Hochreiter & Schmidhuber 1997 (experiment 6a). Tokens ``[B, T]``:
                       distractors ``a, b, c, d`` (ids 0-3), start ``B`` (6) at step 0, end
                       ``E`` (7) at step ``T-1``, and two relevant symbols ``X`` (4) or ``Y``
                       (5) at ``t1 ~ U[0.1T, 0.2T]``, ``t2 ~ U[0.5T, 0.6T]``. Class (4): XX, XY,
                       YX, YY. Baseline: ``ln 4`` nats, accuracy 1/4.
``parity``             Tokens ``[B, T]`` of bits; class = sum mod 2. Baseline ``ln 2``, 1/2.
``selective_copy``     Gu & Dao 2023 (Mamba), Table 1. Tokens ``[B, T + K]``: ``K`` data tokens
                       (ids ``1..V``) at random distinct positions of the first ``T`` steps,
                       noise (0) elsewhere, then ``K`` recall markers (``V + 1``). Targets
                       ``[B, T + K]``: the data tokens in order of appearance at the last ``K``
                       steps (mask 1 there, 0 elsewhere). Memoryless baseline: ``ln V`` nats,
                       accuracy ``1/V`` (paper: ``K = 16``, ``V = 16``, ``T = 4096``).
=====================  ======================================================================
"""

from __future__ import annotations

import abc
import ast
import copy
from collections.abc import Iterator
from typing import Any

import numpy as np

from rnnlab.data import seed_for

Batch = dict[str, np.ndarray]


class Task(abc.ABC):
    """Step-indexed batches of a generator ``_make(rng, B) -> batch``."""

    kind = "batch"
    name = "task"
    paper = ""
    model_spec: dict[str, Any] = {}
    min_length = 2

    def __init__(self, *, seq_length: int, batch_size: int, eval_batches: int | None = None,
                 seed: int = 0):  # fmt: skip
        if int(seq_length) < self.min_length:
            raise ValueError(
                f"{self.name}: seq_length must be >= {self.min_length}, got {seq_length}"
            )
        if int(batch_size) < 1:
            raise ValueError(f"{self.name}: batch_size must be >= 1, got {batch_size}")
        self.T, self.B, self.seed = int(seq_length), int(batch_size), int(seed)
        self.num_eval = int(eval_batches or 4)

    def train_batch(self, step: int) -> tuple[Batch, bool]:
        return self._make(seed_for(step, self.seed), self.B), True

    def eval_batches(self) -> Iterator[Batch]:
        # A separate seed stream (3 entries, not 2) so no train step ever repeats an eval batch.
        for i in range(self.num_eval):
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, i, 0xE7A1]))
            yield self._make(rng, self.B)

    @abc.abstractmethod
    def baseline(self) -> dict[str, float]:
        """The task's analytic baselines (e.g. the MSE of always predicting the mean)."""

    def metadata(self) -> dict[str, Any]:
        return {
            "task": self.name,
            "paper": self.paper,
            "seq_length": self.T,
            "batch_size": self.B,
            "eval_sequences": self.B * self.num_eval,
            "seed": self.seed,
            "baseline": self.baseline(),
        }

    @abc.abstractmethod
    def _make(self, rng: np.random.Generator, B: int) -> Batch:
        """``B`` fresh examples drawn from ``rng``."""


class Adding(Task):
    name, paper = "adding", "Le et al. 2015; Arjovsky et al. 2016"
    model_spec = {"readout": "last", "loss": "mse", "out_features": 1}

    def baseline(self):
        return {"mse": 1.0 / 6.0, "predictor": "always 1", "solved_mse": 0.01}

    def _make(self, rng, B):
        T, half = self.T, self.T // 2
        values = rng.uniform(0.0, 1.0, (B, T))
        p1 = rng.integers(0, half, B)
        p2 = rng.integers(half, T, B)
        marks = np.zeros((B, T))
        rows = np.arange(B)
        marks[rows, p1] = marks[rows, p2] = 1.0
        target = values[rows, p1] + values[rows, p2]
        inputs = np.stack([values, marks], axis=-1).astype(np.float32)  # [B, T, 2]
        return {"inputs": inputs, "targets": target[:, None].astype(np.float32)}


class AddingHochreiter(Task):
    name, paper = "adding_hochreiter", "Hochreiter & Schmidhuber 1997, experiment 4"
    model_spec = {"readout": "last", "loss": "mse", "out_features": 1}
    min_length = 12

    def baseline(self):
        # P(|X1 + X2| < 0.16) for X ~ U[-1, 1] (triangular density): (0.32 - 0.16^2/2) / 2;
        # with X1 = 0 (prob 1/10): P(|X2| < 0.16) = 0.16.
        acc = 0.9 * (0.32 - 0.0128) / 2 + 0.1 * 0.16
        return {"mse": (0.9 / 3 + 1 / 3) / 16, "accuracy": acc, "predictor": "always 0.5",
                "tolerance": 0.04}  # fmt: skip

    def _make(self, rng, B):
        T = self.T
        rows = np.arange(B)
        values = rng.uniform(-1.0, 1.0, (B, T))
        p1 = rng.integers(0, 10, B)
        p2 = rng.integers(1, T // 2 - 1, B)
        clash = p2 == p1  # redraw the second position among the others, uniformly
        p2 = np.where(clash, 1 + (p2 - 1 + rng.integers(1, T // 2 - 2, B)) % (T // 2 - 2), p2)
        values[rows[p1 == 0], 0] = 0.0
        marks = np.zeros((B, T))
        marks[:, 0] = marks[:, T - 1] = -1.0
        marks[rows, p1] = marks[rows, p2] = 1.0
        target = 0.5 + (values[rows, p1] + values[rows, p2]) / 4.0
        inputs = np.stack([values, marks], axis=-1).astype(np.float32)
        return {"inputs": inputs, "targets": target[:, None].astype(np.float32)}


class Copy(Task):
    name, paper = "copy", "Arjovsky, Shah & Bengio 2016"
    model_spec = {"readout": "all", "loss": "xent", "out_features": 10, "vocab_size": 10}
    min_length = 1

    def baseline(self):
        return {"xent": 10 * np.log(8) / (self.T + 20), "accuracy": (self.T + 10 + 10 / 8)
                / (self.T + 20), "predictor": "blanks, then uniform over the 8 symbols",
                "sequence_length": self.T + 20}  # fmt: skip

    def _make(self, rng, B):
        T = self.T
        symbols = rng.integers(1, 9, (B, 10))
        inputs = np.zeros((B, T + 20), np.int32)
        inputs[:, :10] = symbols
        inputs[:, T + 9] = 9  # the marker
        targets = np.zeros((B, T + 20), np.int32)
        targets[:, T + 10 :] = symbols
        return {"inputs": inputs, "targets": targets}


class TemporalOrder(Task):
    name, paper = "temporal_order", "Hochreiter & Schmidhuber 1997, experiment 6a"
    model_spec = {"readout": "last", "loss": "xent", "out_features": 4, "vocab_size": 8}
    min_length = 20

    def baseline(self):
        return {"xent": float(np.log(4)), "accuracy": 0.25, "predictor": "uniform"}

    def _make(self, rng, B):
        T = self.T
        rows = np.arange(B)
        tokens = rng.integers(0, 4, (B, T)).astype(np.int32)
        tokens[:, 0], tokens[:, T - 1] = 6, 7
        t1 = rng.integers(int(0.1 * T), int(0.2 * T) + 1, B)
        t2 = rng.integers(int(0.5 * T), int(0.6 * T) + 1, B)
        a, b = rng.integers(0, 2, B), rng.integers(0, 2, B)  # 0: X, 1: Y
        tokens[rows, t1], tokens[rows, t2] = 4 + a, 4 + b
        return {"inputs": tokens, "targets": (2 * a + b).astype(np.int32)}


class Parity(Task):
    name, paper = "parity", "classic (e.g. Hochreiter & Schmidhuber 1997, Minsky & Papert)"
    model_spec = {"readout": "last", "loss": "xent", "out_features": 2, "vocab_size": 2}
    min_length = 1

    def baseline(self):
        return {"xent": float(np.log(2)), "accuracy": 0.5, "predictor": "uniform"}

    def _make(self, rng, B):
        bits = rng.integers(0, 2, (B, self.T)).astype(np.int32)
        return {"inputs": bits, "targets": (bits.sum(axis=1) % 2).astype(np.int32)}


class SelectiveCopy(Task):
    """Selective copying (Gu & Dao 2023, Sec. 3.1 and Table 1): unlike ``copy``, the tokens to
    remember sit at random positions, so a time-invariant recurrence (LRU, S4: a fixed
    convolution kernel) cannot know where to look; an input-dependent (selective) one can
    skip the noise. The answer steps carry the loss (``mask``); a model that ignores its input
    can do no better than uniform over the ``V`` symbols: ``ln V`` nats, accuracy ``1/V``.
    (One that remembers which symbols appeared but not their order does better; the baseline
    is the memoryless one.) Options: ``num_memorize`` (K, default 16), ``vocab`` (V, default
    16); ``seq_length`` (T >= K) is the span the K tokens are scattered over.
    """

    name, paper = "selective_copy", "Gu & Dao 2023 (Mamba), selective copying"
    min_length = 1

    def __init__(self, *, num_memorize: int = 16, vocab: int = 16, **kw):
        super().__init__(**kw)
        self.K, self.V = int(num_memorize), int(vocab)
        if self.K < 1:
            raise ValueError(f"selective_copy: num_memorize must be >= 1, got {num_memorize}")
        if self.V < 2:
            raise ValueError(f"selective_copy: vocab must be >= 2, got {vocab}")
        if self.K > self.T:
            raise ValueError(
                f"selective_copy: seq_length (T={self.T}) must be >= num_memorize (K={self.K})"
            )
        V = self.V
        self.model_spec = {"readout": "all", "loss": "xent", "out_features": V + 2,
                           "vocab_size": V + 2}  # fmt: skip

    def baseline(self):
        return {"xent": float(np.log(self.V)), "accuracy": 1.0 / self.V,
                "predictor": "uniform over the V symbols at the K answer steps",
                "num_memorize": self.K, "vocab": self.V}  # fmt: skip

    def _make(self, rng, B):
        T, K, V = self.T, self.K, self.V
        # K distinct positions per row, sorted: the order the tokens must be recalled in
        pos = np.sort(np.argsort(rng.random((B, T)), axis=1)[:, :K], axis=1)
        symbols = rng.integers(1, V + 1, (B, K))
        inputs = np.zeros((B, T + K), np.int32)
        np.put_along_axis(inputs, pos, symbols, axis=1)
        inputs[:, T:] = V + 1  # the recall markers
        targets = np.zeros((B, T + K), np.int32)
        targets[:, T:] = symbols
        mask = np.zeros((B, T + K), np.float32)
        mask[:, T:] = 1.0
        return {"inputs": inputs, "targets": targets, "mask": mask}


TASKS = {c.name: c for c in (Adding, AddingHochreiter, Copy, TemporalOrder, Parity, SelectiveCopy)}


def _factory(cls):
    def make(*, seq_length: int = 100, batch_size: int = 32, eval_batches: int | None = None,
             seed: int = 0) -> Task:  # fmt: skip
        return cls(seq_length=seq_length, batch_size=batch_size, eval_batches=eval_batches,
                   seed=seed)  # fmt: skip

    make.__doc__ = f"The {cls.name!r} task ({cls.paper}); see :mod:`rnnlab.data.tasks`."
    return make


make_adding = _factory(Adding)
make_adding_hochreiter = _factory(AddingHochreiter)
make_copy = _factory(Copy)
make_temporal_order = _factory(TemporalOrder)
make_parity = _factory(Parity)


def make_selective_copy(*, seq_length: int = 64, batch_size: int = 32,
                        eval_batches: int | None = None, seed: int = 0, num_memorize: int = 16,
                        vocab: int = 16) -> Task:  # fmt: skip
    """The ``selective_copy`` task (Gu & Dao 2023); see :class:`SelectiveCopy`."""
    return SelectiveCopy(seq_length=seq_length, batch_size=batch_size, eval_batches=eval_batches,
                         seed=seed, num_memorize=num_memorize, vocab=vocab)  # fmt: skip


# ------------------------------------------------------------------------------ curriculum


def parse_curriculum(spec) -> tuple[tuple[int, int], ...]:
    """``train.curriculum`` -> ``((step_0, length_0), (step_1, length_1), ...)``.

    ``spec``: ``""`` (none: every step at ``data.seq_length``) or a literal like ``"((0, 50),
    (500, 100), (1000, 200))"``: from step ``step_i`` on, training batches have length
    ``length_i`` (the task's ``T``). Rules: at least one pair; each pair two ints; the first
    step 0; steps strictly increasing; lengths >= 1 (and the task's own minimum, checked by
    :func:`with_curriculum`). Raises ValueError naming what was expected and what was given.
    """
    if spec in ("", None, ()):
        return ()
    expected = ("train.curriculum expects '' or a tuple of (step, length) int pairs starting "
                "at step 0 with increasing steps, e.g. '((0, 50), (500, 100))'")  # fmt: skip
    value = spec
    if isinstance(spec, str):
        try:
            value = ast.literal_eval(spec)
        except (ValueError, SyntaxError):
            raise ValueError(f"{expected}; got {spec!r} (not a Python literal)") from None
    pairs = value if isinstance(value, (tuple, list)) else None
    if not pairs or not all(
        isinstance(p, (tuple, list)) and len(p) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in p)
        for p in pairs
    ):  # fmt: skip
        raise ValueError(f"{expected}; got {spec!r}")
    steps = [p[0] for p in pairs]
    if steps[0] != 0:
        raise ValueError(f"{expected}; got a first step of {steps[0]} in {spec!r}")
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise ValueError(f"{expected}; got steps {steps} (not strictly increasing)")
    if any(p[1] < 1 for p in pairs):
        raise ValueError(f"{expected}; got lengths {[p[1] for p in pairs]} (each must be >= 1)")
    return tuple((int(a), int(b)) for a, b in pairs)


class Curriculum:
    """A :class:`Task` whose training length follows a schedule (Bengio et al. 2009;
    Zaremba & Sutskever 2014: start with short sequences, lengthen them).

    Train batch ``step`` is the task's batch drawn from ``seed_for(step, seed)`` at length
    ``length_at(step) = length_i`` for the last ``step_i <= step``, so it stays a pure function
    of the step (a resumed run sees the same batches, bit for bit). Evaluation is the task's
    own, at ``data.seq_length``: the length the curriculum is for. Each new length is a new
    batch shape, so the jitted train step compiles once more when it first appears.
    """

    def __init__(self, task: Task, schedule):
        self.task, self.schedule = task, parse_curriculum(schedule)
        if not self.schedule:
            raise ValueError("Curriculum needs a non-empty schedule")
        self.kind, self.model_spec = task.kind, task.model_spec
        self._at = {}
        for _, length in self.schedule:
            if length < task.min_length:
                raise ValueError(
                    f"train.curriculum: {task.name} needs lengths >= {task.min_length}, "
                    f"got {length}"
                )
            variant = copy.copy(task)
            variant.T = int(length)
            try:  # a task with its own constraints on T (e.g. selective_copy's K <= T)
                variant._make(np.random.default_rng(0), 1)
            except (ValueError, IndexError) as err:
                raise ValueError(
                    f"train.curriculum: {task.name} at length {length}: {err}"
                ) from None
            self._at[length] = variant

    def length_at(self, step: int) -> int:
        length = self.schedule[0][1]
        for start, value in self.schedule:
            if step >= start:
                length = value
        return length

    def train_batch(self, step: int) -> tuple[Batch, bool]:
        task = self._at[self.length_at(step)]
        return task._make(seed_for(step, task.seed), task.B), True

    def eval_batches(self) -> Iterator[Batch]:
        return self.task.eval_batches()

    def metadata(self) -> dict[str, Any]:
        return {**self.task.metadata(), "curriculum": [list(p) for p in self.schedule]}


def with_curriculum(dataset, spec):
    """``dataset`` under the ``train.curriculum`` schedule ``spec`` (``""``: unchanged).

    Refuses datasets that are not synthetic tasks (:class:`Task`): a text stream or a corpus
    has no length to grow."""
    schedule = parse_curriculum(spec)
    if not schedule:
        return dataset
    if not isinstance(dataset, Task):
        raise ValueError(
            f"train.curriculum works on the synthetic tasks ({', '.join(TASKS)}); the dataset "
            f"here is a {type(dataset).__name__}: set train.curriculum=''"
        )
    return Curriculum(dataset, schedule)
