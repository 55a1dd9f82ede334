"""The trainer: ``train_and_evaluate(config, workdir)`` and ``load_run(workdir)``.

The loop on the host: for each step, ``dataset.train_batch(step)`` is placed on the device mesh
(:mod:`rnnlab.devices`) and fed to the jitted update (:mod:`rnnlab.steps`; the state is donated);
measurements stay on the device until a log/eval/checkpoint boundary, where they are fetched
together, checked for NaN/Inf, averaged into one ``metrics.jsonl`` record and one log line.
Evaluation runs over ``dataset.eval_batches()`` (the carry carried across chunks of streams).

Exactness: data and dropout randomness derive from the step number, and the stream carry is
checkpointed with params and optimizer state, so a run killed at any moment and started again
with the same command ends with bitwise the same params as an uninterrupted one.

Workdir: ``config.json``, ``data.json`` (dataset metadata + ``model_spec``), ``metrics.jsonl``
(:mod:`rnnlab.metrics`), ``checkpoints/`` (:mod:`rnnlab.checkpoint`), ``.lock`` (held for the
whole run, :mod:`rnnlab.workdir`: a second run on the workdir is refused).

Stops: SIGTERM/SIGINT end training at the next step boundary with a checkpoint of that step
(the measurements not yet logged are kept in it, so the resumed run's ``metrics.jsonl`` equals an
uninterrupted one's) and raise :class:`Preempted`; a second signal stops at once. A NaN/Inf loss
or gradient norm raises :class:`NonFiniteError`; a train loss that stays above
``train.divergence_factor`` times its best for ``train.divergence_patience`` steps raises
:class:`DivergenceError`. Both name the last good checkpoint: the newest whose state is finite
and whose loss was within that threshold when it was saved.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import json
import os
import pathlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rnnlab import checkpoint, models, optim
from rnnlab import config as config_lib
from rnnlab import data as data_lib
from rnnlab import metrics as metrics_lib
from rnnlab import workdir as workdir_lib
from rnnlab.devices import data_mesh, initialize_distributed, shard_batch
from rnnlab.engine import explainer as engine_explainer
from rnnlab.steps import jitted_steps, make_steps, optax_norm  # noqa: F401 (public here too)

# keys that may change between a run and its resumption (they do not change what is computed)
RUN_CONTROL_KEYS = {
    "train.num_steps",
    "train.time_limit_s",
    "train.eval_every",
    "train.log_every",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.progress",
    "train.tensorboard",
    "train.probe_every",
    "data.eval_batches",
    "train.divergence_factor",  # a run the guard stopped may be resumed with another threshold
    "train.divergence_patience",
}

Hook = Callable[[int, Any, Any, Any], dict]


class NonFiniteError(RuntimeError):
    """The loss or the gradient norm became NaN/Inf; the message names the step and the last
    good checkpoint."""


class DivergenceError(NonFiniteError):
    """The train loss stayed above ``train.divergence_factor`` x its best for
    ``train.divergence_patience`` steps. A :class:`NonFiniteError`, so that code catching a run
    gone bad (e.g. the clipping experiment) catches both."""


class Preempted(Exception):
    """SIGTERM or SIGINT stopped training (see :func:`train_and_evaluate`).

    ``signum``: the signal; ``step``: the step saved (``None`` after a second signal, which
    stops at once without saving); ``exit_code``: ``128 + signum`` (143 for SIGTERM, 130 for
    SIGINT), the status ``rnnlab run`` exits with. The message is one line saying how to resume.
    """

    def __init__(self, message: str, signum: int, step: int | None):
        super().__init__(message)
        self.signum, self.step, self.exit_code = signum, step, 128 + signum


class _StopSignals:
    """While active: SIGTERM/SIGINT set ``received`` (read by the loop at each step boundary);
    a second one stops at once (SIGINT: ``KeyboardInterrupt``, SIGTERM: :class:`Preempted`).
    The previous handlers are put back on exit. Outside the main thread Python cannot install
    handlers: nothing is changed there."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: int | None = None
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self.previous[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.received is None:
            self.received = signum
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Preempted(
            f"second {signal.Signals(signum).name}: stopped at once without saving; run the same "
            "command again to resume from the last checkpoint",
            signum,
            None,
        )

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            if handler is not None:  # None: a handler installed from C, cannot be restored
                signal.signal(s, handler)


class _DivergenceGuard:
    """Per seed: the best logged train loss so far, and since when the loss has been above
    ``factor`` x that best. :meth:`update` at every train record; ``factor <= 0``: off.

    A record at step ``s`` with loss ``l`` (per seed ``[S]``) is *within* the threshold when
    ``l <= factor * best`` (``best``: the lowest loss of the earlier records); the run has
    diverged when a seed has been outside it from a record at step ``s0`` to one at
    ``s >= s0 + patience``.
    """

    def __init__(self, factor: float, patience: int):
        self.factor, self.patience = float(factor), int(patience)
        self.best = self.since = self.last = None
        self.within = True

    def update(self, step: int, loss) -> str | None:
        """Take one record; return a message when the run has diverged, else ``None``."""
        loss = np.atleast_1d(np.asarray(loss, np.float64))
        self.last = loss
        if self.factor <= 0:
            return None
        if self.best is None:
            self.best, self.since = loss.copy(), np.full(loss.shape, -1)
            return None
        above = loss > self.factor * self.best
        self.within = not bool(above.any())
        self.since = np.where(above, np.where(self.since < 0, step, self.since), -1)
        self.best = np.minimum(self.best, loss)
        gone = above & (step - self.since >= self.patience)
        if not gone.any():
            return None
        i = int(np.argmax(gone))
        seed = f" of seed {i}" if loss.size > 1 else ""
        return (
            f"train loss{seed} {loss[i]:.4g} at step {step} has stayed above "
            f"train.divergence_factor={self.factor:g} x its best ({self.best[i]:.4g}) since "
            f"step {self.since[i]} (train.divergence_patience={self.patience}); training stopped"
        )

    def replay(self, records) -> None:
        """Rebuild the state from the train records of the run so far (a resumed run)."""
        for r in records:
            self.update(r["step"], r.get("loss_per_seed", r["loss"]))


# ------------------------------------------------------------------------------- the data


def data_kwargs(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """``config.data`` -> keyword arguments for ``rnnlab.data.make(config.data.name, ...)``.

    The common keys (``path``, ``seq_length``, ``batch_size``, ``val_fraction``,
    ``eval_batches`` (0 -> ``None``: all), and ``seed`` = ``config.seed``) go to the factory when
    its signature takes them; a common key it does not take is an error only if the config sets
    it away from the base default. ``data.options`` are passed as they are (the factory checks).
    """
    d = config.data
    if d.name not in data_lib.REGISTRY:
        data_lib.make(d.name)  # raises the "unknown dataset" error with the known names
    module, factory = data_lib.REGISTRY[d.name].split(":")
    fn = getattr(importlib.import_module(f"rnnlab.data.{module}"), factory)
    params = inspect.signature(fn).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    base = config_lib.get_config().data
    common = {
        "path": d.path,
        "seq_length": d.seq_length,
        "batch_size": d.batch_size,
        "val_fraction": d.val_fraction,
        "eval_batches": d.eval_batches or None,
    }
    kwargs = {}
    for key, value in common.items():
        if key in params or takes_any:
            kwargs[key] = value
        elif d[key] != base[key]:
            raise ValueError(f"dataset {d.name!r} takes no {key!r} (config sets data.{key})")
    if "seed" in params or takes_any:
        kwargs["seed"] = config.seed
    kwargs.update(d.options.to_dict())
    return kwargs


# ------------------------------------------------------------------------------ the loop


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    dataset=None,
    hooks: Sequence[Hook] = (),
) -> dict[str, Any]:
    """Train ``config`` into ``workdir`` (resuming from its checkpoints) and return a summary.

    Args:
      config: the full config (:func:`rnnlab.config.get_config` plus changes); copied, never
        mutated.
      workdir: where ``config.json``, ``data.json``, ``metrics.jsonl``, ``checkpoints/`` go.
      dataset: a :class:`rnnlab.data.Dataset`; default
        ``rnnlab.data.make(config.data.name, **data_kwargs(config))``.
      hooks: callables ``hook(step, params, model, dataset) -> dict`` run every
        ``train.probe_every`` steps (0: at every eval); their values go to ``metrics.jsonl`` as
        ``kind="probe"`` records. ``params`` has a leading seed axis when ``num_seeds > 1``;
        hooks must not keep it (its buffers are reused by the next step).

    Returns:
      ``{"step", "num_steps", "stopped_early", "time_s", "train_loss", ..., "val_loss",
      "val_accuracy", "val_bpc" (token models), "best_step", "best_val_loss", "resumed_from",
      "num_params"}`` (per-seed lists as ``*_per_seed`` when ``num_seeds > 1``).

    Raises:
      ValueError: bad config values, an unwritable or foreign workdir, a batch size not
        divisible by the device count -- all before training starts.
      rnnlab.workdir.WorkdirBusyError: another live run holds the workdir (a ValueError).
      NonFiniteError: the loss or gradient norm became NaN/Inf (the message names the step and
        the last good checkpoint); the checkpoints written before stay intact.
      DivergenceError: the loss stayed far above its best (``train.divergence_*``).
      Preempted: SIGTERM/SIGINT; the step it stopped at is checkpointed (unless a second
        signal came), and the same call again resumes from it.
      rnnlab.checkpoint.DiskFullError: no space left while writing (the message names the
        step, the workdir and the previous intact checkpoint).
    """
    t_start = time.time()
    config_lib.validate(config, dataset=dataset)  # a given dataset is the one checked
    config = copy.deepcopy(config)
    tc = config.train
    for key in ("num_steps", "eval_every", "log_every", "num_seeds", "keep_checkpoints"):
        if tc[key] < 1:
            raise ValueError(f"train.{key} must be >= 1, got {tc[key]}")
    for key in ("checkpoint_every", "probe_every", "time_limit_s"):
        if tc[key] < 0:
            raise ValueError(f"train.{key} must be >= 0, got {tc[key]}")
    initialize_distributed()
    active = jax.process_index() == 0
    if dataset is None:
        dataset = data_lib.make(config.data.name, **data_kwargs(config))
    from rnnlab.data.tasks import with_curriculum  # train.curriculum: lengths over steps

    dataset = with_curriculum(dataset, tc.get("curriculum", ""))
    spec = dict(dataset.model_spec)
    model = models.build(config.model, spec)
    optim.make(config.optim, tc.num_steps)  # bad optimizer settings fail here, before any work
    first, _ = dataset.train_batch(0)
    mesh = data_mesh(np.shape(first["inputs"])[0])
    config_json = json_roundtrip(config.to_dict())
    data_json = json_roundtrip({**dataset.metadata(), "model_spec": spec})
    path = workdir_lib.prepare_workdir(
        workdir, {"config.json": (config_json, RUN_CONTROL_KEYS), "data.json": (data_json, ())}
    )
    # one writer per workdir: only the writing process of a multi-host run takes the lock
    lock = workdir_lib.WorkdirLock(path).acquire() if active else None
    try:
        if active:  # the engine's plan of every layer: printed first, and kept as plan.json
            engine_explainer.record_run(model, first, path)
        with _StopSignals() as stop:
            files = {"config.json": config_json, "data.json": data_json}
            summary, start = _train(config, model, dataset, mesh, path, hooks, stop, files, first)
            if stop.received is not None:  # came during the last eval or save: all is saved
                raise Preempted(
                    f"stopped by {signal.Signals(stop.received).name} after the run finished "
                    f"(step {summary['step']}, saved in {path / 'checkpoints'})",
                    stop.received,
                    summary["step"],
                )
    except OSError as err:
        if not checkpoint.is_disk_full(err):
            raise
        raise checkpoint.DiskFullError(
            f"no space left on the device in workdir {path} ({err}); free space and rerun the "
            "same command to resume from the last checkpoint"
        ) from None
    finally:
        if lock is not None:
            lock.release()
    summary.update(time_s=time.time() - t_start, resumed_from=start or None)
    return summary


def _train(config, model, dataset, mesh, path, hooks, stop, files, first):
    """Restore or initialize the state, write ``files`` (name -> JSON), run the loop; return
    ``(summary, start step)``."""
    tc = config.train
    active = jax.process_index() == 0
    stream = dataset.kind == "stream"
    B, T = np.shape(first["inputs"])[:2]
    S = tc.num_seeds
    keys = jnp.stack([jax.random.PRNGKey(config.seed + s) for s in range(S)])  # [S, 2]
    init, train_step, eval_step = jitted_steps(model, config.optim, tc.num_steps, stream, S)
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    keys = jax.device_put(keys, replicated)
    sample = shard_batch(first, mesh)
    abstract = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated),
        jax.eval_shape(init, keys, sample),
    )

    writer = metrics_lib.Writer(
        path, total_steps=tc.num_steps, initial_step=0, progress=tc.progress,
        tensorboard=tc.tensorboard, active=active,
    )  # fmt: skip
    ckpt = checkpoint.Checkpoints(path / "checkpoints", keep=tc.keep_checkpoints, log=writer.log)
    try:
        start, state = ckpt.restore(abstract)
        pending = []
        if state is None:
            start, state = 0, jax.device_put(init(keys, sample), replicated)
        else:
            writer.log(f"resumed from the checkpoint at step {start} in {path / 'checkpoints'}")
            pending = _pending_from_json((ckpt.info(start) or {}).get("pending", []))
        writer.truncate_after(start)
        if active:  # written before training: a run stopped early still records what it is
            for name, content in files.items():
                metrics_lib.write_json(path / name, content)
        loop = _Loop(config, model, dataset, mesh, writer, ckpt, hooks, stream, B * T * S)
        loop.jit_step, loop.jit_eval, loop.stop = train_step, eval_step, stop
        loop.guard.replay(metrics_lib.read_metrics(path, "train"))
        summary = loop.run(state, start, keys, pending)
    finally:
        writer.close()
        ckpt.close()
    return summary, start


def json_roundtrip(obj):
    return json.loads(json.dumps(obj))


def _pending_to_json(host: list[tuple[int, dict]]) -> list[dict]:
    """Measurements not yet logged -> JSON that restores them exactly (a float32 is exact as a
    Python float)."""

    def array(v):
        a = np.asarray(v)
        return {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.reshape(-1).tolist()}

    return [{"step": int(s), "values": {k: array(v) for k, v in m.items()}} for s, m in host]


def _pending_from_json(items: list[dict]) -> list[tuple[int, dict]]:
    def array(v):
        return np.asarray(v["data"], np.dtype(v["dtype"])).reshape(v["shape"])

    return [(it["step"], {k: array(v) for k, v in it["values"].items()}) for it in items]


class _Loop:
    """The host side of training: steps, flushes (NaN check, logs), evals, hooks, saves."""

    def __init__(self, config, model, dataset, mesh, writer, ckpt, hooks, stream, tokens):
        self.config, self.model, self.dataset, self.mesh = config, model, dataset, mesh
        self.writer, self.ckpt, self.hooks, self.stream = writer, ckpt, hooks, stream
        self.tokens_per_step = tokens
        self.lm = model_is_token_lm(dataset.model_spec)
        tc = config.train
        self.guard = _DivergenceGuard(tc.divergence_factor, tc.divergence_patience)
        self.stop = None  # the _StopSignals of the call

    def last_good(self) -> str:
        """The newest checkpoint whose state is finite and whose loss was within the divergence
        threshold when saved (as text for an error message)."""
        for s in reversed(self.ckpt.steps()):
            try:
                info = self.ckpt.info(s) or {}
            except Exception:  # an unreadable record is not a good checkpoint
                continue
            if info.get("finite") and info.get("within_divergence_threshold"):
                return f"step {s} in {self.ckpt.directory}"
        return "none"

    def check(self, pending) -> list[tuple[int, dict]]:
        """Fetch the pending measurements to the host; stop on NaN/Inf."""
        host = jax.device_get([m for _, m in pending])
        for (step, _), m in zip(pending, host):
            for name in ("loss", "grad_norm"):
                v = np.asarray(m[name])
                if not np.all(np.isfinite(v)):
                    raise NonFiniteError(
                        f"non-finite {name} ({v.tolist()}) at step {step}; training stopped. "
                        f"Last good checkpoint: {self.last_good()}"
                    )
        return [(step, m) for (step, _), m in zip(pending, host)]

    def flush(self, pending, t0) -> dict:
        """Check the pending measurements; write one train record; stop on divergence."""
        host = [m for _, m in self.check(pending)]
        dt = max(time.time() - t0, 1e-9)
        values = {k: np.mean([m[k] for m in host], axis=0) for k in host[0] if k != "lr"}
        values["lr"] = host[-1]["lr"]
        values["tokens_per_s"] = len(pending) * self.tokens_per_step / dt
        step = pending[-1][0]
        record = self.writer.write(step, "train", values)
        n = self.config.train.num_steps
        self.writer.log(
            f"step {step:>6}/{n} | loss {record['loss']:.4f} | grad_norm "
            f"{record['grad_norm']:.3f} | lr {record['lr']:.2e} | "
            f"{record['tokens_per_s']:,.0f} tok/s"
        )
        self.writer.progress(
            step, loss=f"{record['loss']:.4f}", tok_s=f"{values['tokens_per_s']:,.0f}"
        )
        diverged = self.guard.update(step, record.get("loss_per_seed", record["loss"]))
        if diverged:
            raise DivergenceError(f"{diverged}. Last good checkpoint: {self.last_good()}")
        return record

    def save(self, step, state, val_loss=None, pending=()) -> None:
        """A checkpoint, with what the trainer knows of the step (see :meth:`last_good`)."""
        last = self.guard.last
        info = {
            "train_loss": None if last is None else last.tolist(),
            "within_divergence_threshold": self.guard.within,
            "pending": _pending_to_json(pending),
        }
        self.ckpt.save(step, state, val_loss=val_loss, info=info)

    def evaluate(self, state) -> dict:
        """Mean of the model's aux over ``dataset.eval_batches()``, carry carried (streams)."""
        carry = None  # zeros / the learned initial carry, then carried (streams)
        if self.stream and getattr(self.model, "initial_carry", "zeros") != "learned":
            carry = jax.tree.map(jnp.zeros_like, state["carry"])  # one eval compile, not two
        sums, n = None, 0
        for batch in self.dataset.eval_batches():
            aux, carry = self.jit_eval(state["params"], carry, shard_batch(batch, self.mesh))
            sums = aux if sums is None else jax.tree.map(jnp.add, sums, aux)
            n += 1
        if n == 0:
            return {}
        out = {f"val_{k}": np.asarray(v) / n for k, v in jax.device_get(sums).items()}
        if self.lm and "val_loss" in out:
            out["val_bpc"] = out["val_loss"] / np.log(2.0)  # bits per token
        return out

    def stopped(self) -> int | None:
        """The signal that asked to stop (the same answer on every process), else ``None``."""
        got = self.stop.received if self.stop is not None else None
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            got = int(multihost_utils.broadcast_one_to_all(np.int32(got or 0))) or None
        return got

    def preempt(self, signum, state, step, start, pending):
        """Save the step we stopped at (with its unlogged measurements) and raise."""
        name = signal.Signals(signum).name
        where = self.ckpt.directory
        if step > start:
            if step != self.ckpt.latest_step():  # else it came during this step's own save
                self.save(step, state, pending=self.check(pending))
            msg = f"stopped by {name} at step {step}/{self.config.train.num_steps}: saved in"
        else:
            msg = f"stopped by {name} before any new step (at step {step}); checkpoints in"
        raise Preempted(f"{msg} {where}; run the same command again to resume", signum, step)

    def run(self, state, start: int, keys, pending=()) -> dict:
        tc = self.config.train
        t_start = t0 = time.time()
        pending, train, evals, stopped_early = list(pending), {}, {}, False
        step = start
        while step < tc.num_steps:
            signum = self.stopped()  # the step boundary: a signal stops here, saved
            if signum is not None:
                self.preempt(signum, state, step, start, pending)
            batch, reset = self.dataset.train_batch(step)
            batch = shard_batch(batch, self.mesh)
            state, m = self.jit_step(state, batch, jnp.asarray(bool(reset)), keys)
            step += 1
            pending.append((step, m))
            out_of_time = 0 < tc.time_limit_s < time.time() - t_start
            if jax.process_count() > 1:  # every process must stop at the same step
                from jax.experimental import multihost_utils

                out_of_time = bool(multihost_utils.broadcast_one_to_all(np.bool_(out_of_time)))
            last = step == tc.num_steps or out_of_time
            do_eval = step % tc.eval_every == 0 or last
            do_probe = bool(self.hooks) and (
                step % tc.probe_every == 0 if tc.probe_every else do_eval
            )
            do_ckpt = last or (tc.checkpoint_every and step % tc.checkpoint_every == 0)
            flushed = step % tc.log_every == 0 or do_eval or do_ckpt or do_probe
            if flushed:
                train = self.flush(pending, t0)
                pending = []
            if do_eval:
                evals = self.writer.write(step, "eval", self.evaluate(state))
            if do_probe:
                probes = {}
                for hook in self.hooks:
                    probes.update(hook(step, state["params"], self.model, self.dataset) or {})
                self.writer.write(step, "probe", probes)
            if do_ckpt:
                self.save(step, state, evals.get("val_loss") if do_eval else None)
            if flushed:  # tokens/s counts training time only, not evals and saves
                t0 = time.time()
            if out_of_time and step < tc.num_steps:
                stopped_early = True
                self.writer.log(
                    f"time limit of {tc.time_limit_s:g} s reached at step {step}/{tc.num_steps}; "
                    "checkpoint saved: run the same command again to continue"
                )
                break
        if step == start:  # nothing left to train: report the checkpoint as it is
            evals = {"step": step, **metrics_lib.scalars(self.evaluate(state))}
        summary = {"step": step, "num_steps": tc.num_steps, "stopped_early": stopped_early}
        summary.update({f"train_{k}": v for k, v in train.items() if k not in ("step", "kind")})
        summary.update({k: v for k, v in evals.items() if k not in ("step", "kind")})
        best = self.ckpt.best_step()
        summary.update(best_step=best, best_val_loss=best and self.ckpt.val_loss(best))
        params = state["params"]
        summary["num_params"] = int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))
        summary["num_params"] //= tc.num_seeds
        return summary


def model_is_token_lm(spec: dict) -> bool:
    """A per-step softmax over a vocabulary of tokens (bits per token make sense)."""
    return (
        bool(spec.get("vocab_size"))
        and spec.get("readout", "all") == "all"
        and (spec.get("loss", "xent") == "xent")
    )


# ----------------------------------------------------------------------------- reading


@dataclasses.dataclass
class Run:
    """A finished (or running) run, read back from its workdir by :func:`load_run`."""

    model: Any  # the Flax module (rnnlab.models.build of the run's config and model_spec)
    params: Any  # nested dict of arrays (one seed's, see load_run)
    config: ml_collections.ConfigDict
    metadata: dict  # data.json without model_spec (vocab, split, ...)
    model_spec: dict
    step: int  # the checkpoint's step
    which: str  # "best" (lowest val loss) or "latest"
    workdir: pathlib.Path


def load_run(workdir, *, which: str = "best", seed_index: int = 0) -> Run:
    """Read a workdir: the model, the params of the best checkpoint (lowest validation loss;
    ``which="latest"`` for the newest), the config and the dataset metadata.

    Falls back to the newest checkpoint that restores when the best is missing or corrupt
    (reported). With ``num_seeds > 1`` the params of seed ``seed_index`` are returned.
    """
    if which not in ("best", "latest"):
        raise ValueError(f"which must be 'best' or 'latest', got {which!r}")
    path = pathlib.Path(workdir)
    for name in ("config.json", "data.json", "checkpoints"):
        if not (path / name).exists():
            raise FileNotFoundError(f"{str(path)!r} is not an rnnlab workdir: no {name}")
    raw = {name: metrics_lib.read_json(path / name) for name in ("config.json", "data.json")}
    for name, key in (("config.json", "model"), ("data.json", "model_spec")):
        if not isinstance(raw[name], dict) or key not in raw[name]:
            raise metrics_lib.CorruptFileError(
                f"{str(path / name)!r} is corrupt: it holds no {key!r} entry. It records the "
                "run: restore it from a backup, or move the whole workdir away to start afresh"
            )
    config = ml_collections.ConfigDict(raw["config.json"])
    metadata = raw["data.json"]
    spec = metadata.pop("model_spec")
    model = models.build(config.model, spec)
    say = lambda line: print(line, file=sys.stderr)  # stdout may carry the sample's text
    ckpt = checkpoint.Checkpoints(path / "checkpoints", read_only=True, log=say)
    try:
        step, state = None, None
        best = ckpt.best_step() if which == "best" else None
        if best is not None:
            try:
                step, state = ckpt.restore(step=best)
            except Exception as err:
                say(f"best checkpoint (step {best}) does not restore ({type(err).__name__}: "
                    f"{str(err)[:300]}); using the newest one that does")  # fmt: skip
                ckpt.skipped.add(best)
        if state is None:
            which = "latest"
            step, state = ckpt.restore()
        if state is None:
            raise FileNotFoundError(f"no restorable checkpoint in {str(path / 'checkpoints')!r}")
    finally:
        ckpt.close()
    params = state["params"]
    S = config.train.num_seeds
    if S > 1:
        if not 0 <= seed_index < S:
            raise ValueError(f"seed_index must lie in [0, {S}), got {seed_index}")
        params = jax.tree.map(lambda p: p[seed_index], params)
    return Run(model, params, config, metadata, spec, int(step), which, path)
