"""Checkpoints with Orbax: the only module in rnnlab that imports orbax.

Layout: ``workdir/checkpoints/<step>/state`` (an Orbax ``StandardSave`` of the train-state
pytree), written atomically by Orbax (a temporary directory renamed on commit, so a SIGKILL
mid-write leaves no half checkpoint under a step name). Kept: the latest ``keep`` steps plus the
best by validation loss (``AnyPreservationPolicy(LatestN, BestN)``; the val loss of a step is
stored with it as Orbax metrics, so the choice survives restarts).

A checkpoint that fails to restore (truncated or deleted files) is reported and the next older
one is tried; the trainer moves the bad one to ``workdir/corrupt_checkpoints/<step>`` (nothing is
deleted) so that training can write that step again.
"""

from __future__ import annotations

import pathlib
import shutil
import time
from collections.abc import Callable
from typing import Any

import orbax.checkpoint as ocp
from absl import logging as absl_logging
from orbax.checkpoint import checkpoint_managers as policies

# Orbax warns on every save without metrics ("Requested tracked_metric"): keep logs readable.
absl_logging.set_verbosity(absl_logging.ERROR)


class IncompatibleCheckpointError(ValueError):
    """A checkpoint that reads fine but holds params of another shape or structure."""


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


class Checkpoints:
    """``save(step, state, val_loss)``, ``restore(abstract_state)``, ``best_step()``.

    Args:
      directory: the checkpoint folder (``workdir/checkpoints``).
      keep: how many of the latest checkpoints to keep (the best one is kept besides).
      read_only: open without writing anything (``load_run``).
      log: a ``str -> None`` callable for reports (corrupt checkpoints).
    """

    def __init__(self, directory, *, keep: int = 3, read_only: bool = False, log=print):
        if keep < 1:
            raise ValueError(f"keep_checkpoints must be >= 1, got {keep}")
        self.directory = pathlib.Path(directory).absolute()
        self.log = log
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
        )
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=options,
            item_handlers={"state": ocp.StandardCheckpointHandler()},
        )

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        """The kept step with the lowest validation loss (``None`` if none has one)."""
        return self.manager.best_step()

    def val_loss(self, step: int) -> float | None:
        metrics = self.manager.metrics(step)
        return None if not metrics else float(metrics["val_loss"])

    def save(self, step: int, state: Any, *, val_loss: float | None = None) -> None:
        """Write ``state`` as step ``step`` (blocking; atomic)."""
        metrics = None if val_loss is None else {"val_loss": float(val_loss)}
        self.manager.save(
            int(step),
            args=ocp.args.Composite(state=ocp.args.StandardSave(state)),
            metrics=metrics,
            force=True,
        )
        self.manager.wait_until_finished()

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
        return self.manager.restore(step, args=ocp.args.Composite(state=arg))["state"]

    def restore(
        self,
        abstract_state: Any = None,
        *,
        step: int | None = None,
        on_corrupt: Callable[[int, Exception], None] | None = None,
    ) -> tuple[int, Any] | tuple[None, None]:
        """Restore ``step`` (default: the newest one that restores); ``(None, None)`` if none.

        ``abstract_state``: a pytree of ``jax.ShapeDtypeStruct`` (with shardings) giving the
        structure and placement; ``None``: the saved structure (nested dicts/lists) on one device.
        A step that fails to restore is reported (and passed to ``on_corrupt``), then the next
        older one is tried. Asking for a specific ``step`` that fails raises.
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
                self.log(
                    f"checkpoint at step {s} in {self.directory} is corrupt or incomplete "
                    f"({type(err).__name__}: {first}); trying the previous one"
                )
                if on_corrupt is not None:
                    on_corrupt(s, err)
        return None, None

    def quarantine(self, step: int) -> pathlib.Path:
        """Move a bad step out of the way (to ``../corrupt_checkpoints/<step>-<time>``)."""
        src = self.directory / str(step)
        dst_dir = self.directory.parent / "corrupt_checkpoints"
        dst_dir.mkdir(exist_ok=True)
        dst = dst_dir / f"{step}-{int(time.time())}"
        shutil.move(str(src), str(dst))
        self.manager.reload()
        self.log(f"moved the bad checkpoint to {dst}")
        return dst

    def close(self) -> None:
        self.manager.close()
