"""Checkpoints with Orbax: the only module in rnnlab that imports orbax.

Layout: ``workdir/checkpoints/<step>/`` holds ``state`` (an Orbax ``StandardSave`` of the
train-state pytree), ``integrity`` (JSON: the content hash of the state and what the trainer
records about the step, see :meth:`Checkpoints.save`) and ``metrics`` (the step's validation
loss, for the best-checkpoint policy). Orbax writes a step atomically (a temporary directory
renamed on commit), so a SIGKILL mid-write leaves no half checkpoint under a step name. Kept: the
latest ``keep`` steps plus the best by validation loss (``AnyPreservationPolicy(LatestN,
BestN)``; the choice survives restarts).

Integrity: the content hash is ``sha256`` over, for every array leaf in sorted tree-path order,
``path \\0 dtype \\0 shape \\0`` followed by the array's bytes (C order); paths are written with
plain names (``opt_state/0/mu/w``) so a tree restored as dicts hashes like the saved namedtuples.
It is computed from the arrays at save and from the restored arrays at restore: one flipped bit in
an array file, a truncated file, a garbled Orbax metadata or metrics file all make the step
*corrupt*. A corrupt step is reported (step, folder, what failed) and the next older one is tried;
a writable :class:`Checkpoints` moves it to ``workdir/corrupt_checkpoints/<step>-<time>`` (nothing
is deleted), so that training can write that step again; a read-only one (``rnnlab sample``,
``viz``) only skips it.

Disk full while saving: the partial step and Orbax's temporary folders are removed and
:class:`DiskFullError` names the step, the workdir and the previous intact checkpoint.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import math
import pathlib
import shutil
import time
from typing import Any

import numpy as np
import orbax.checkpoint as ocp
from absl import logging as absl_logging
from orbax.checkpoint import checkpoint_managers as policies

# Orbax warns on every save without metrics ("Requested tracked_metric"): keep logs readable.
absl_logging.set_verbosity(absl_logging.ERROR)

#: the JSON files Orbax (and we) read from a step folder before its arrays; one that does not
#: parse makes the step corrupt (Orbax would otherwise fail while listing the steps)
JSON_FILES = (
    "_CHECKPOINT_METADATA",
    "metrics/metrics",
    "integrity/metadata",
    "state/_METADATA",
    "state/_sharding",
)
TMP_MARK = ".orbax-checkpoint-tmp"  # Orbax's suffix for a step folder being written


class IncompatibleCheckpointError(ValueError):
    """A checkpoint that reads fine but holds params of another shape or structure."""


class CorruptCheckpointError(ValueError):
    """A step whose files do not restore to what was saved (the message names step and file)."""


class DiskFullError(RuntimeError):
    """No space left on the device while saving a checkpoint (one line: step, workdir, the
    previous intact checkpoint, what to do). ``errno`` is ``errno.ENOSPC``."""

    errno = errno.ENOSPC


def param_differences(saved, wanted) -> list[str]:
    """``"path: shape -> shape"`` for every params leaf that differs between two state trees."""
    import jax

    def shapes(tree):
        leaves = jax.tree_util.tree_flatten_with_path(tree.get("params", {}))[0]
        return {jax.tree_util.keystr(p): tuple(x.shape) for p, x in leaves}

    a, b = shapes(saved), shapes(wanted)
    return [
        f"params{k}: {a.get(k, '<absent>')} -> {b.get(k, '<absent>')}"
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k)
    ]


# ------------------------------------------------------------------------------ the hash


def _path_name(path) -> str:
    """A tree path with plain names: ``opt_state/0/mu/w`` for dicts, lists and namedtuples."""
    parts = []
    for k in path:
        for attr in ("key", "idx", "name"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def _host_array(x) -> np.ndarray:
    """A leaf as a host array; a replicated array is read from one local shard (multi-host)."""
    import jax

    if isinstance(x, jax.Array):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        if not x.is_fully_addressable and x.is_fully_replicated:
            x = x.addressable_shards[0].data
        elif not x.is_fully_addressable:  # sharded over processes: every process takes part
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def digest(tree) -> dict[str, Any]:
    """``{"sha256": hex, "leaves": {path: hex}, "finite": bool}`` of a pytree's arrays.

    ``sha256`` covers every leaf's path, dtype, shape and bytes (see the module docstring);
    ``finite`` is whether every floating-point leaf is free of NaN and Inf.
    """
    import jax

    total, leaves, finite = hashlib.sha256(), {}, True
    named = [(_path_name(p), x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]]
    for name, x in sorted(named, key=lambda item: item[0]):
        a = np.ascontiguousarray(_host_array(x))
        h = hashlib.sha256(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
        leaves[name] = h.hexdigest()
        total.update(h.digest())
        if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
            finite = False
    return {"sha256": total.hexdigest(), "leaves": leaves, "finite": finite}


# ---------------------------------------------------------------------------- the manager


@dataclasses.dataclass(frozen=True)
class _SkipSteps:
    """Orbax's standard step naming, hiding the steps in ``skip`` (corrupt ones a read-only
    reader cannot move away; Orbax would fail listing them)."""

    base: Any
    skip: frozenset

    def build_name(self, step: int) -> str:
        return self.base.build_name(step)

    def find_all(self, base_path):
        return (m for m in self.base.find_all(base_path) if m.step not in self.skip)

    def find_step(self, base_path, step: int):
        if step in self.skip:
            raise ValueError(f"step {step} is corrupt and skipped")
        return self.base.find_step(base_path, step)

    def __getattr__(self, name):  # other attributes Orbax may ask the naming for
        if name == "base":  # not set yet (a copy being built): no recursion
            raise AttributeError(name)
        return getattr(self.base, name)


def _bad_json(step_dir: pathlib.Path) -> str | None:
    """What is wrong with a step folder's JSON files (``None``: nothing found)."""
    for rel in JSON_FILES:
        f = step_dir / rel
        if not f.exists():
            continue
        try:
            value = json.loads(f.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            return f"{f} does not parse ({type(err).__name__}: {err})"
        if rel == "metrics/metrics":  # the best-checkpoint policy reads m["val_loss"]
            v = value.get("val_loss") if isinstance(value, dict) else None
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                return f"{f} holds no finite val_loss ({str(value)[:80]!r})"
    return None


def is_disk_full(err: BaseException) -> bool:
    """``err`` (or an exception it was raised from) says the device has no space left."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if getattr(err, "errno", None) == errno.ENOSPC or "No space left on device" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


class Checkpoints:
    """``save(step, state, val_loss, info)``, ``restore(abstract_state)``, ``best_step()``.

    Args:
      directory: the checkpoint folder (``workdir/checkpoints``).
      keep: how many of the latest checkpoints to keep (the best one is kept besides).
      read_only: open without writing anything (``load_run``): corrupt steps are skipped, not
        moved.
      log: a ``str -> None`` callable for reports (corrupt checkpoints).
    """

    def __init__(self, directory, *, keep: int = 3, read_only: bool = False, log=print):
        import jax

        if keep < 1:
            raise ValueError(f"keep_checkpoints must be >= 1, got {keep}")
        self.directory = pathlib.Path(directory).absolute()
        self.log = log
        self.read_only = read_only
        self.primary = jax.process_index() == 0  # the one process that moves files
        self.skipped: set[int] = set()
        if self.directory.is_dir():  # corrupt metadata would stop Orbax listing the steps
            for step_dir in sorted(self.directory.iterdir()):
                if step_dir.name.isdigit() and step_dir.is_dir():
                    problem = _bad_json(step_dir)
                    if problem:
                        self._corrupt(int(step_dir.name), problem, reload=False)
        policy = policies.AnyPreservationPolicy(
            [
                policies.LatestN(n=keep),
                policies.BestN(
                    get_metric_fn=lambda m: -m["val_loss"],  # BestN keeps the largest
                    n=1,
                    keep_checkpoints_without_metrics=False,
                ),
            ]
        )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy,
            best_fn=lambda m: m["val_loss"],  # makes Orbax write and reload the metrics
            best_mode="min",
            enable_async_checkpointing=False,
            create=not read_only,
            read_only=read_only,
            cleanup_tmp_directories=not read_only,  # half-written saves of a killed run
            step_name_format=_SkipSteps(ocp.step.standard_name_format(), frozenset(self.skipped)),
        )
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=options,
            item_handlers={
                "state": ocp.StandardCheckpointHandler(),
                "integrity": ocp.JsonCheckpointHandler(),
            },
        )

    def steps(self) -> list[int]:
        return sorted(s for s in self.manager.all_steps() if s not in self.skipped)

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def best_step(self) -> int | None:
        """The kept step with the lowest validation loss (``None`` if none has one)."""
        best = self.manager.best_step()
        return None if best in self.skipped else best

    def val_loss(self, step: int) -> float | None:
        metrics = self.manager.metrics(step)
        return None if not metrics else float(metrics["val_loss"])

    def info(self, step: int) -> dict | None:
        """The step's ``integrity`` record (``None``: a checkpoint written without one)."""
        if not (self.directory / str(step) / "integrity").is_dir():
            return None
        args = ocp.args.Composite(integrity=ocp.args.JsonRestore())
        return self.manager.restore(step, args=args)["integrity"]

    def save(
        self, step: int, state: Any, *, val_loss: float | None = None, info: dict | None = None
    ) -> dict:
        """Write ``state`` as step ``step`` (blocking; atomic) and return its integrity record.

        The record is :func:`digest` of ``state`` plus ``info`` (JSON the caller wants kept with
        the step, e.g. the trainer's loss at that step). Raises :class:`DiskFullError` when the
        device is full (after removing the partial step and Orbax's temporary folders).
        """
        metrics = None if val_loss is None else {"val_loss": float(val_loss)}
        record = {**(info or {}), **digest(state)}
        existed = (self.directory / str(step)).exists()
        try:
            self.manager.save(
                int(step),
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), integrity=ocp.args.JsonSave(record)
                ),
                metrics=metrics,
                force=True,
            )
            self.manager.wait_until_finished()
        except Exception as err:
            if not is_disk_full(err):
                raise
            self._remove_partial(step, existed)
            previous = self.latest_step()
            where = f"step {previous} ({self.directory / str(previous)})" if previous else "none"
            raise DiskFullError(
                f"no space left on the device while saving the checkpoint of step {step} in "
                f"workdir {self.directory.parent}; the previous intact checkpoint: {where}. "
                "Free space and rerun the same command to resume."
            ) from None
        return record

    def _remove_partial(self, step: int, existed: bool) -> None:
        for tmp in self.directory.glob(f"*{TMP_MARK}*"):
            shutil.rmtree(tmp, ignore_errors=True)
        if not existed:
            shutil.rmtree(self.directory / str(step), ignore_errors=True)
        try:
            self.manager.reload()
        except Exception:  # a listing that fails here must not hide the disk-full message
            pass

    def abstract_state(self, step: int, sharding=None):
        """The saved tree of ``step`` as ``jax.ShapeDtypeStruct`` leaves placed by ``sharding``
        (default: the first local device), so a checkpoint written on N devices loads on any."""
        import jax

        sharding = sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        tree = self.manager.item_metadata(step)["state"]
        tree = getattr(tree, "tree", tree)
        return jax.tree.map(
            lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding), tree
        )

    def _restore_one(self, step: int, abstract_state):
        if abstract_state is None:
            abstract_state = self.abstract_state(step)
        arg = ocp.args.StandardRestore(abstract_state)
        state = self.manager.restore(step, args=ocp.args.Composite(state=arg))["state"]
        saved = self.info(step)
        if saved is None:  # written before checkpoints carried a hash
            self.log(f"checkpoint at step {step} in {self.directory} has no content hash (an "
                     "older rnnlab wrote it): restored without verification")  # fmt: skip
            return state
        got = digest(state)
        if got["sha256"] != saved.get("sha256"):
            want = saved.get("leaves", {})
            bad = [k for k, h in got["leaves"].items() if want.get(k) != h]
            bad += [k for k in want if k not in got["leaves"]]
            raise CorruptCheckpointError(
                f"content hash mismatch in {self.directory / str(step) / 'state'}: "
                f"{', '.join(bad[:5]) or 'the tree'} differ(s) from what was saved"
            )
        return state

    def restore(
        self, abstract_state: Any = None, *, step: int | None = None
    ) -> tuple[int, Any] | tuple[None, None]:
        """Restore ``step`` (default: the newest one that restores); ``(None, None)`` if none.

        ``abstract_state``: a pytree of ``jax.ShapeDtypeStruct`` (with shardings) giving the
        structure and placement; ``None``: the saved structure (nested dicts/lists) on one device.
        A step that fails to restore or to match its content hash is reported, moved to
        ``corrupt_checkpoints/`` (unless read-only), and the next older one is tried. Asking for
        a specific ``step`` that fails raises (:class:`CorruptCheckpointError` or Orbax's error).
        """
        candidates = [step] if step is not None else sorted(self.steps(), reverse=True)
        for s in candidates:
            try:
                if abstract_state is not None:  # a checkpoint of another model is not "corrupt"
                    diff = param_differences(self.abstract_state(s), abstract_state)
                    if diff:
                        raise IncompatibleCheckpointError(
                            f"checkpoint at step {s} in {self.directory} was written by a "
                            "different model; differing params (saved -> now):\n  "
                            + "\n  ".join(diff[:20])
                        )
                return s, self._restore_one(s, abstract_state)
            except IncompatibleCheckpointError:
                raise
            except Exception as err:  # Orbax/TensorStore raise many kinds for bad files
                if step is not None:
                    raise
                first = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
                self._corrupt(s, f"{type(err).__name__}: {first}")
        return None, None

    def _corrupt(self, step: int, problem: str, *, reload: bool = True) -> None:
        """Report a corrupt step; move it aside (writable, primary process) or skip it."""
        self.log(
            f"checkpoint at step {step} in {self.directory} is corrupt or incomplete "
            f"({problem}); trying the previous one"
        )
        if self.read_only or not self.primary:
            self.skipped.add(step)
            return
        self.quarantine(step, reload=reload)

    def quarantine(self, step: int, *, reload: bool = True) -> pathlib.Path:
        """Move a bad step out of the way (to ``../corrupt_checkpoints/<step>-<time>``)."""
        src = self.directory / str(step)
        dst_dir = self.directory.parent / "corrupt_checkpoints"
        dst_dir.mkdir(exist_ok=True)
        dst = dst_dir / f"{step}-{int(time.time())}"
        n = 1
        while dst.exists():  # the same step, moved twice within a second
            dst, n = dst_dir / f"{step}-{int(time.time())}-{n}", n + 1
        shutil.move(str(src), str(dst))
        if reload:
            self.manager.reload()
        self.log(f"moved the bad checkpoint to {dst}")
        return dst

    def close(self) -> None:
        self.manager.close()
