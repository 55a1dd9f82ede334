"""Corpora: the embedded stdlib corpus, checksum-verified cached downloads, file errors.

No test touches the network: downloads come from local ``file://`` URLs, and the offline case
points at a URL that cannot resolve without sending anything out (a closed local port).
"""

import hashlib
import socket

import pytest

from rnnlab.data import corpora


def test_default_corpus_is_the_stdlib_in_sorted_order():
    files = corpora.default_files()
    names = [p.name for p in files]
    assert names == sorted(names) and "abc.py" in names
    assert not any(n.startswith("_") for n in names)
    text = corpora.load(None)
    assert text == corpora.load("") == corpora.load("stdlib")
    assert len(text) <= corpora.DEFAULT_MAX_CHARS
    assert len(text) > corpora.DEFAULT_MAX_CHARS // 2
    assert text.startswith("# ===== abc.py =====\n")
    assert "def " in text and "\r" not in text


def test_default_corpus_cap_is_respected():
    small = corpora.default_corpus(max_chars=20_000)
    assert 0 < len(small) <= 20_000
    assert corpora.default_corpus().startswith(small)


@pytest.fixture
def fake_corpus(tmp_path, monkeypatch):
    """Register a corpus whose canonical URL is a local file:// URL; cache in tmp."""
    src = tmp_path / "src.txt"
    src.write_text("To be, or not to be\n")
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    monkeypatch.setitem(corpora.CORPORA, "fake", (src.as_uri(), digest, "fake.txt"))
    monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path / "cache"))
    return src


def test_fetch_verifies_and_caches(fake_corpus, tmp_path):
    path = corpora.fetch("fake")
    assert path == tmp_path / "cache" / "fake.txt"
    assert path.read_text() == "To be, or not to be\n"
    assert corpora.load("fake") == "To be, or not to be\n"
    fake_corpus.unlink()  # the source is gone: the cached copy is used
    assert corpora.fetch("fake") == path
    assert [p.name for p in path.parent.iterdir()] == ["fake.txt"]  # no temp files left


def test_fetch_rejects_a_wrong_checksum(fake_corpus, tmp_path):
    fake_corpus.write_text("something else\n")
    with pytest.raises(ValueError, match="sha256"):
        corpora.fetch("fake")
    assert not (tmp_path / "cache" / "fake.txt").exists()


def test_fetch_replaces_a_corrupt_cached_file(fake_corpus, tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "fake.txt").write_text("truncated")
    assert corpora.fetch("fake").read_text() == "To be, or not to be\n"


def test_fetch_offline_error(fake_corpus, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)  # straight to the closed port, no proxy
    with socket.socket() as s:  # a local port nobody listens on: the connection is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RuntimeError, match="offline") as err:
        corpora.fetch("fake", url=f"http://127.0.0.1:{port}/input.txt", timeout=2)
    assert "--data PATH" in str(err.value)


def test_fetch_unknown_name():
    with pytest.raises(KeyError, match="tinyshakespeare"):
        corpora.fetch("tinyshakespear")


def test_tinyshakespeare_is_karpathys_file():
    url, digest, _ = corpora.CORPORA["tinyshakespeare"]
    assert url.startswith("https://raw.githubusercontent.com/karpathy/char-rnn/")
    assert digest == "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        corpora.load(tmp_path / "nope.txt")
    with pytest.raises(ValueError, match="directory"):
        corpora.load(tmp_path)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        corpora.load(empty)
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(ValueError, match="NUL byte at offset 8"):
        corpora.load(binary)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\u00e9 au lait".encode("latin-1"))
    with pytest.raises(ValueError, match=r"not UTF-8.*offset 3"):
        corpora.load(latin1)


def test_file_reads_utf8_and_normalizes_newlines(tmp_path):
    f = tmp_path / "t.txt"
    f.write_bytes("a\r\nb \u00e9\n".encode())
    assert corpora.load(str(f)) == "a\nb \u00e9\n"
