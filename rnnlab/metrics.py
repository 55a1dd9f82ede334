"""What a run writes besides checkpoints: JSON files, ``metrics.jsonl``, log lines, TensorBoard
(the workdir checks before a run starts are in :mod:`rnnlab.workdir`).

``metrics.jsonl`` holds one JSON object per line, ``{"step": n, "kind": "train"|"eval", ...}``;
``step`` counts completed optimizer updates (a record at step n describes the n-th update, or
the params after it for ``eval``). Per-seed values (``num_seeds > 1``) appear as
``NAME_per_seed`` lists beside their mean ``NAME``.

TensorBoard event files (``workdir/tb``) are written when asked for and ``tensorboardX`` is
installed (``pip install -e ".[tensorboard]"``); otherwise the log says so once.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import tempfile
from typing import Any

import numpy as np
import tqdm


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values: mapping keys as strings, tuples as lists, NumPy/JAX arrays
    and scalars as (nested) lists and numbers, non-finite floats as the strings ``"nan"``,
    ``"inf"``, ``"-inf"`` (strict JSON has no NaN), anything else unknown as ``str(obj)``."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (bool, int, str)) or obj is None:
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, np.generic) or hasattr(obj, "__array__"):  # NumPy and JAX values
        return jsonable(np.asarray(obj).tolist())
    return str(obj)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write :func:`jsonable` ``(obj)`` as indented JSON with sorted keys, atomically: a temp file
    in the same folder, flushed to disk, then renamed over ``path``, so a reader (or a run
    killed mid-write) never sees half a file. Creates the parent folder if needed."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")
    # os.open, not mkstemp: the file gets the usual umask permissions, not mkstemp's 0600
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(jsonable(obj), f, indent=2, sort_keys=True, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class CorruptFileError(ValueError):
    """A workdir file that does not parse (the message names it and says what to do)."""


def read_json(path: str | os.PathLike) -> Any:
    """The JSON in ``path``; a file that does not parse raises :class:`CorruptFileError`."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptFileError(
            f"{str(path)!r} is corrupt: not valid JSON ({err}). It records the run: restore it "
            "from a backup, or move the whole workdir away to start afresh"
        ) from None


def read_metrics(workdir: str | os.PathLike, kind: str | None = None) -> list[dict]:
    """All records of ``workdir/metrics.jsonl`` (of one ``kind`` if given), in order."""
    path = pathlib.Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as err:
        raise CorruptFileError(
            f"{str(path)!r} is corrupt: not UTF-8 text ({err}); move the file away to start the "
            "run's log afresh"
        ) from None
    records = []
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("step"), int):
                raise json.JSONDecodeError("not a record with an int step", line, 0)
            records.append(record)
        except json.JSONDecodeError as err:
            if i < len(lines) - 1:
                raise CorruptFileError(
                    f"{str(path)!r} is corrupt: line {i + 1} is not a valid record ({err}). "
                    "Delete that line, or move the file away to start the run's log afresh"
                ) from None
            # the last line of a run killed while writing it: drop the torn record
    return [r for r in records if kind is None or r.get("kind") == kind]


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def differences(old: dict, new: dict, ignore=()) -> list[str]:
    """``"key: old -> new"`` for every dotted key whose value differs (``ignore``: keys to skip)."""
    a, b = _flatten(old), _flatten(new)
    keys = sorted(k for k in set(a) | set(b) if k not in ignore and a.get(k) != b.get(k))
    return [f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}" for k in keys]


def scalars(values: dict[str, Any]) -> dict[str, Any]:
    """Host values -> JSON: scalars as floats; ``[S]`` arrays as their mean + ``_per_seed``."""
    out = {}
    for k, v in values.items():
        a = np.asarray(v)
        if a.ndim == 0:
            out[k] = a.item() if a.dtype.kind in "iub" else float(a)
        else:
            out[k] = float(a.mean())
            out[f"{k}_per_seed"] = [float(x) for x in a.reshape(-1)]
    return out


class Writer:
    """Appends records to ``metrics.jsonl`` (and TensorBoard), shows a progress bar, logs lines.

    Only the writing process (``active=True``: process 0 of a multi-host run) touches files.
    """

    def __init__(self, workdir, *, total_steps, initial_step, progress, tensorboard, active=True):
        self.workdir = pathlib.Path(workdir)
        self.active = active
        self.bar = tqdm.tqdm(
            total=total_steps,
            initial=initial_step,
            disable=not (progress and active),
            unit="step",
            dynamic_ncols=True,
        )
        self.tb = None
        self.last: dict[str, dict] = {}  # kind -> its latest record: the final metrics (HParams)
        if tensorboard and active:
            try:
                import tensorboardX
            except ImportError:
                self.log("TensorBoard: tensorboardX is not installed; no event files written")
            else:
                self.tb = tensorboardX.SummaryWriter(str(self.workdir / "tb"))

    def log(self, line: str) -> None:
        if self.active:
            tqdm.tqdm.write(line)

    def truncate_after(self, step: int) -> None:
        """Drop records beyond ``step`` (a resumed run rewrites what the lost steps logged)."""
        path = self.workdir / "metrics.jsonl"
        if not self.active or not path.exists():
            return
        keep = [r for r in read_metrics(self.workdir) if r.get("step", 0) <= step]
        body = "".join(json.dumps(r) + "\n" for r in keep)
        fd, tmp = tempfile.mkstemp(dir=self.workdir, prefix=".metrics.")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(body)
            os.replace(tmp, path)
        except BaseException:  # disk full: leave no temporary file behind
            pathlib.Path(tmp).unlink(missing_ok=True)
            raise

    def write(self, step: int, kind: str, values: dict[str, Any]) -> dict[str, Any]:
        record = {"step": int(step), "kind": kind, **scalars(values)}
        if self.active:
            with open(self.workdir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            if self.tb is not None:
                self.last[kind] = record
                for k, v in record.items():
                    if isinstance(v, float) and math.isfinite(v):
                        self.tb.add_scalar(f"{kind}/{k}", v, step)
        return record

    def log_hparams(self) -> None:
        """TensorBoard HParams: the run's config against its final metrics (a sweep's dashboard).

        Hyperparameters: every ``config.json`` key, dotted (lists, dicts and None as JSON text);
        metrics: the last eval record's finite values and the last train loss, tagged
        ``hparam/NAME`` (apart from the ``eval/NAME`` scalars). Written into ``tb/hparams`` when
        the writer closes; a resumed run writes them again, with its own final values.
        """
        from rnnlab.compare import flat_config

        path = self.workdir / "config.json"
        if not path.is_file():
            return
        hparams = {
            k: v if isinstance(v, (bool, int, float, str)) else json.dumps(v)
            for k, v in flat_config(read_json(path)).items()
        }
        final = {
            f"hparam/{k}": v
            for k, v in self.last.get("eval", {}).items()
            if k != "step" and isinstance(v, float) and math.isfinite(v)
        }
        loss = self.last.get("train", {}).get("loss")
        if isinstance(loss, float) and math.isfinite(loss):
            final["hparam/train_loss"] = loss
        if final:
            step = max(r["step"] for r in self.last.values())
            self.tb.add_hparams(hparams, final, name="hparams", global_step=step)

    def progress(self, step: int, **postfix) -> None:
        self.bar.n = step
        self.bar.set_postfix(postfix, refresh=True)

    def close(self) -> None:
        self.bar.close()
        if self.tb is not None:
            self.log_hparams()
            self.tb.close()
