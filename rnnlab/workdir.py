"""A workdir belongs to one run, written by one process at a time.

* :func:`prepare_workdir` -- before any work: the folder is writable, it is not inside another
  run's workdir nor holds other runs' workdirs below it, and the files it already has
  (``config.json``, ``data.json``) describe this run (up to the keys allowed to change on
  resumption). Nothing is written when it refuses.
* :class:`WorkdirLock` -- an exclusive ``fcntl.flock`` on ``workdir/.lock`` held for the whole
  run. The file holds the holder's PID, host and start time, for the refusal message. The
  kernel releases a flock when its process dies (even by SIGKILL), so a lock file left by a dead
  run is simply taken over (with a warning naming it). Readers (``rnnlab sample``, ``viz``,
  ``show``) do not take it. The lock is advisory and local: on network file systems without
  ``flock`` support it protects only processes on one host.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import pathlib
import socket

from rnnlab import metrics as metrics_lib

RUN_FILES = ("config.json", "data.json")  # what makes a folder a training run's workdir
NESTED_DEPTH = 3  # how deep below a workdir to look for other runs (study: runs/LABEL/T50)


class WorkdirBusyError(ValueError):
    """Another live process holds the workdir's lock (the message names its PID and host)."""


def _is_run(path: pathlib.Path) -> bool:
    return (path / "config.json").is_file() and (path / "checkpoints").is_dir()


def prepare_workdir(workdir, expected: dict[str, tuple[dict, object]]) -> pathlib.Path:
    """Create/check ``workdir`` before any work; refuse a workdir that belongs to another run.

    ``expected``: file name -> (this run's JSON content, keys allowed to differ). Raises
    ValueError when the folder cannot be written, lies inside another run's workdir, holds
    other runs below it (an experiment's sub-runs), or when a file exists with other content
    (listing the differing keys). Nothing in the workdir is touched in any case.
    """
    path = pathlib.Path(workdir)
    for parent in path.absolute().parents:
        if _is_run(parent):
            raise ValueError(
                f"workdir {str(path)!r} lies inside the workdir of another run ({str(parent)!r} "
                "holds its config.json and checkpoints); choose a workdir outside it"
            )
    if path.is_dir() and not (path / "config.json").exists():
        pattern = "config.json"
        for _ in range(NESTED_DEPTH):
            pattern = "*/" + pattern
            nested = [p.parent for p in path.glob(pattern) if _is_run(p.parent)]
            if nested:
                raise ValueError(
                    f"workdir {str(path)!r} holds the workdirs of other runs (e.g. "
                    f"{str(nested[0])!r}, an experiment's sub-run); refusing to train a run "
                    "into it: choose another workdir"
                )
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"workdir {str(path)!r} is not writable: {err}") from None
    for name, (new, ignore) in expected.items():
        if (path / name).exists():
            diff = metrics_lib.differences(metrics_lib.read_json(path / name), new, ignore)
            if diff:
                raise ValueError(
                    f"workdir {str(path)!r} holds a run with a different {name}; refusing to "
                    f"resume or overwrite it. Differing keys:\n  " + "\n  ".join(diff)
                )
    return path


class WorkdirLock:
    """``with WorkdirLock(workdir, log=print):`` -- hold ``workdir/.lock`` exclusively.

    Raises :class:`WorkdirBusyError` at once (no waiting) when a live process holds it.
    """

    def __init__(self, workdir, *, log=print):
        self.path = pathlib.Path(workdir) / ".lock"
        self.log = log
        self.fd: int | None = None

    def acquire(self) -> WorkdirLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(os.pread(fd, 4096, 0))
            os.close(fd)
            raise WorkdirBusyError(
                f"workdir {str(self.path.parent)!r} is in use by another run ({holder}); "
                "wait for it to finish, stop it, or use another workdir"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        left = os.pread(fd, 4096, 0)
        if left.strip():  # the holder died without releasing: the kernel dropped its flock
            self.log(
                f"taking over the lock of workdir {self.path.parent} left by a run that is no "
                f"longer running ({_describe(left)})"
            )
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)  # an empty file: released cleanly, nothing to take over
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> WorkdirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _describe(raw: bytes) -> str:
    """``"PID 123 on host h, started t"`` from a lock file's text (whatever is readable)."""
    try:
        d = json.loads(raw.decode() or "{}")
        return f"PID {d['pid']} on host {d['host']}, started {d['started']}"
    except (ValueError, KeyError, TypeError):
        return f"lock file text {raw[:200]!r}"
