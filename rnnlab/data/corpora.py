"""Text corpora for the character language model: the embedded default, named downloads, files.

:func:`load` ``(spec)`` turns what the user typed after ``--data`` into one string:

* ``None`` / ``""`` / ``"stdlib"`` -- the **embedded default corpus**: the Python standard
  library's own source, read from the running interpreter (the Python analogue of Karpathy's
  Linux-source experiment; every machine that runs rnnlab has it, no network needed). The
  public top-level modules of the stdlib folder (``*.py`` whose name does not start with
  ``_``), sorted by file name, concatenated whole, each after a ``# ===== NAME.py =====`` line,
  stopping before the first file that would take the total past :data:`DEFAULT_MAX_CHARS`
  (2,000,000 characters; about 74 files, ``abc.py`` .. ``optparse.py`` on CPython 3.11).
  Deterministic across machines with the same Python version (the files ship with it); a
  different Python version gives a slightly different corpus.
* a name in :data:`CORPORA` (``"tinyshakespeare"``) -- :func:`fetch` downloads it once from its
  canonical URL, verifies its sha256 and caches it under ``$RNNLAB_CACHE`` (default
  ``~/.cache/rnnlab``); offline, it fails with a message that says how to proceed.
* anything else is a path to a UTF-8 text file; a missing, empty or binary/undecodable file
  gets an error that says what was found.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import sysconfig
import tempfile
import urllib.error
import urllib.request

DEFAULT_MAX_CHARS = 2_000_000
DEFAULT_NAMES = ("", "stdlib")

#: name -> (canonical URL, sha256 of the file, file name in the cache)
CORPORA = {
    "tinyshakespeare": (
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        "tinyshakespeare.txt",
    ),
}


def load(spec: str | os.PathLike | None = None) -> str:
    """The corpus named by ``spec`` (see the module docstring) as one string."""
    if spec is None or str(spec) in DEFAULT_NAMES:
        return default_corpus()
    if str(spec) in CORPORA:
        return read_text_file(fetch(str(spec)))
    return read_text_file(spec)


# ------------------------------------------------------------------------ embedded default


def default_files(max_chars: int = DEFAULT_MAX_CHARS) -> list[pathlib.Path]:
    """The stdlib source files the default corpus is made of, in order."""
    return [path for path, _ in _default_sections(max_chars)]


def default_corpus(max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """The Python standard library's source, concatenated (at most ``max_chars`` characters)."""
    return "".join(section for _, section in _default_sections(max_chars))


def _default_sections(max_chars: int) -> list[tuple[pathlib.Path, str]]:
    folder = pathlib.Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))
    chosen, total = [], 0
    for path in files:
        section = _section(path)
        if total + len(section) > max_chars:
            break
        chosen.append((path, section))
        total += len(section)
    if not chosen:
        raise RuntimeError(f"no Python source files found in the standard library at {folder}")
    return chosen


def _section(path: pathlib.Path) -> str:
    # The stdlib is UTF-8 (PEP 3120); universal newlines make the corpus "\n"-only everywhere.
    body = path.read_text(encoding="utf-8")
    return f"# ===== {path.name} =====\n{body.rstrip()}\n\n"


# ------------------------------------------------------------------------- named downloads


def cache_dir() -> pathlib.Path:
    """Where downloads live: ``$RNNLAB_CACHE``, else ``~/.cache/rnnlab``."""
    return pathlib.Path(os.environ.get("RNNLAB_CACHE") or "~/.cache/rnnlab").expanduser()


def sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def text_sha256(text: str) -> str:
    """sha256 of a corpus as :func:`load` returns it (UTF-8, "\n" newlines): what a run records
    in its ``data.json`` (``text_sha256``) so that readers can check they read the same text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fetch(name: str, *, url: str | None = None, timeout: float = 30.0) -> pathlib.Path:
    """Download corpus ``name`` once (checksum-verified, cached); return its local path.

    A cached file whose checksum matches is returned without touching the network; one that
    does not match is downloaded again. The download goes to a temporary file in the cache
    folder and is moved into place only after its sha256 checks out (atomic: a crash never
    leaves a half-written corpus). ``url`` overrides the canonical URL (mirrors, tests).

    Raises:
      KeyError: unknown name (lists the known ones).
      RuntimeError: the download failed (offline, HTTP error).
      ValueError: the downloaded bytes do not have the expected sha256.
    """
    if name not in CORPORA:
        raise KeyError(f"unknown corpus {name!r}; known corpora: {', '.join(sorted(CORPORA))}")
    canonical, expected, filename = CORPORA[name]
    url = url or canonical
    folder = cache_dir()
    target = folder / filename
    if target.is_file() and sha256(target) == expected:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read()
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise RuntimeError(
            f"could not download {name!r} from {url} ({reason}). Are you offline? "
            f"Download the file by hand and pass its path (--data PATH), or place it at "
            f"{target} (sha256 {expected})."
        ) from None
    got = hashlib.sha256(data).hexdigest()
    if got != expected:
        raise ValueError(
            f"downloaded {name!r} from {url} has sha256 {got}, expected {expected}; "
            "not cached (a proxy page or a changed file?)"
        )
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{filename}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return target


# ---------------------------------------------------------------------------------- files


def read_text_file(path: str | os.PathLike) -> str:
    """A UTF-8 text file as a string ("\\r\\n" becomes "\\n"), with clear errors.

    Raises:
      FileNotFoundError: no such file.
      ValueError: a directory, an empty file, or bytes that are not UTF-8 text (NUL bytes or an
        undecodable sequence; the message gives the offset and the bytes found there).
    """
    p = pathlib.Path(path).expanduser()
    if not p.exists():
        known = ", ".join(sorted(CORPORA))
        raise FileNotFoundError(
            f"text corpus {str(path)!r} does not exist (expected a UTF-8 text file, a corpus "
            f"name ({known}), or nothing for the embedded Python-stdlib corpus)"
        )
    if p.is_dir():
        raise ValueError(f"text corpus {str(path)!r} is a directory, expected a text file")
    from rnnlab.config import check_text_file  # devices, pipes, huge files: refused unread

    check_text_file(p, what="text corpus")
    data = p.read_bytes()
    if not data:
        raise ValueError(f"text corpus {str(path)!r} is empty (0 bytes)")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise ValueError(
            f"text corpus {str(path)!r} looks binary: NUL byte at offset {nul} "
            f"(bytes there: {data[max(0, nul - 8) : nul + 8]!r}); expected UTF-8 text"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"text corpus {str(path)!r} is not UTF-8 text: undecodable bytes "
            f"{data[err.start : err.end + 8]!r} at offset {err.start} ({err.reason}); "
            "convert it to UTF-8 first (e.g. iconv -t utf-8)"
        ) from None
    return text.replace("\r\n", "\n")
