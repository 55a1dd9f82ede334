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
(:mod:`rnnlab.metrics`), ``checkpoints/`` (:mod:`rnnlab.checkpoint`).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import json
import os
import pathlib
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
from rnnlab.devices import data_mesh, initialize_distributed, shard_batch
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
}

Hook = Callable[[int, Any, Any, Any], dict]


class NonFiniteError(RuntimeError):
    """The loss or the gradient norm became NaN/Inf; the message names the step."""


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
      NonFiniteError: the loss or gradient norm became NaN/Inf (the message names the step);
        the checkpoints written before stay intact.
    """
    t_start = time.time()
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
    spec = dict(dataset.model_spec)
    model = models.build(config.model, spec)
    optim.make(config.optim, tc.num_steps)  # bad optimizer settings fail here, before any work
    stream = dataset.kind == "stream"
    first, _ = dataset.train_batch(0)
    B, T = np.shape(first["inputs"])[:2]
    mesh = data_mesh(B)
    path = metrics_lib.prepare_workdir(
        workdir,
        {
            "config.json": (json_roundtrip(config.to_dict()), RUN_CONTROL_KEYS),
            "data.json": (json_roundtrip({**dataset.metadata(), "model_spec": spec}), ()),
        },
    )

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
        quarantine = lambda s, err: ckpt.quarantine(s) if active else None
        start, state = ckpt.restore(abstract, on_corrupt=quarantine)
        if state is None:
            start, state = 0, jax.device_put(init(keys, sample), replicated)
        else:
            writer.log(f"resumed from the checkpoint at step {start} in {path / 'checkpoints'}")
        writer.truncate_after(start)
        if active:
            metrics_lib.write_json(path / "config.json", json_roundtrip(config.to_dict()))
            metrics_lib.write_json(path / "data.json", {**dataset.metadata(), "model_spec": spec})
        loop = _Loop(config, model, dataset, mesh, writer, ckpt, hooks, stream, B * T * S)
        loop.jit_step, loop.jit_eval = train_step, eval_step
        summary = loop.run(state, start, keys)
    finally:
        writer.close()
        ckpt.close()
    summary.update(time_s=time.time() - t_start, resumed_from=start or None)
    return summary


def json_roundtrip(obj):
    return json.loads(json.dumps(obj))


class _Loop:
    """The host side of training: steps, flushes (NaN check, logs), evals, hooks, saves."""

    def __init__(self, config, model, dataset, mesh, writer, ckpt, hooks, stream, tokens):
        self.config, self.model, self.dataset, self.mesh = config, model, dataset, mesh
        self.writer, self.ckpt, self.hooks, self.stream = writer, ckpt, hooks, stream
        self.tokens_per_step = tokens
        self.lm = model_is_token_lm(dataset.model_spec)

    def flush(self, pending, t0) -> dict:
        """Fetch the pending measurements; stop on NaN/Inf; write one train record."""
        host = jax.device_get([m for _, m in pending])
        for (step, _), m in zip(pending, host):
            for name in ("loss", "grad_norm"):
                v = np.asarray(m[name])
                if not np.all(np.isfinite(v)):
                    good = self.ckpt.latest_step()
                    raise NonFiniteError(
                        f"non-finite {name} ({v.tolist()}) at step {step}; training stopped. "
                        f"Last good checkpoint: "
                        + (f"step {good} in {self.ckpt.directory}" if good else "none")
                    )
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
        return record

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

    def run(self, state, start: int, keys) -> dict:
        tc = self.config.train
        t_start = t0 = time.time()
        pending, train, evals, stopped_early = [], {}, {}, False
        step = start
        while step < tc.num_steps:
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
                val = evals.get("val_loss") if do_eval else None
                self.ckpt.save(step, state, val_loss=val)
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
    config = ml_collections.ConfigDict(metrics_lib.read_json(path / "config.json"))
    metadata = metrics_lib.read_json(path / "data.json")
    spec = metadata.pop("model_spec")
    model = models.build(config.model, spec)
    ckpt = checkpoint.Checkpoints(path / "checkpoints", read_only=True)
    try:
        step, state = None, None
        best = ckpt.best_step() if which == "best" else None
        if best is not None:
            try:
                step, state = ckpt.restore(step=best)
            except Exception as err:
                print(f"best checkpoint (step {best}) does not restore ({type(err).__name__})")
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
