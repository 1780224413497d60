"""File utilities shared by the readers and the download cache: reading, hashing and
counting. Input files are only ever read; writers go through
:func:`fmadv.io.atomic_write`, so nothing is ever half-written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fmadv.errors import DataError

CHUNK_BYTES = 1 << 20

# Hash algorithms a dataset card may name. "git-blob" is the SHA-1 that `git hash-object`
# prints; it lets a card pin a file that is published only inside a git repository.
HASH_ALGORITHMS = ("sha256", "md5", "git-blob")
_HEX_LENGTH = {"sha256": 64, "md5": 32, "git-blob": 40}


def read_bytes(path: str | Path, what: str) -> bytes:
    """Read a whole input file, turning the usual OS failures into :class:`DataError`.

    ``what`` says what was expected there, e.g. ``"a libFM text file"``.
    """
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"file not found (expected {what})", path) from None
    except IsADirectoryError:
        raise DataError(f"is a folder (expected {what})", path) from None
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror} (expected {what})", path) from exc


def parse_checksum(spec: str) -> tuple[str, str] | None:
    """Split a card checksum ``"[algorithm:]hex"`` into ``(algorithm, hex)``.

    A bare hex digest is SHA-256. An empty string means "not recorded" and gives None.
    Raises ValueError on anything else.
    """
    spec = spec.strip()
    if not spec:
        return None
    algorithm, sep, digest = spec.partition(":")
    if not sep:
        algorithm, digest = "sha256", spec
    algorithm = algorithm.lower()
    digest = digest.lower()
    if algorithm not in _HEX_LENGTH:
        known = ", ".join(HASH_ALGORITHMS)
        raise ValueError(f"unknown hash algorithm {algorithm!r} (known: {known})")
    if len(digest) != _HEX_LENGTH[algorithm] or any(c not in "0123456789abcdef" for c in digest):
        n = _HEX_LENGTH[algorithm]
        raise ValueError(f"{algorithm} digest must be {n} hex digits: {spec!r}")
    return algorithm, digest


def _new_hash(algorithm: str, size: int) -> Any:
    if algorithm == "git-blob":
        h = hashlib.sha1(usedforsecurity=False)
        h.update(b"blob %d\0" % size)
        return h
    return hashlib.new(algorithm)


def hash_file(
    path: str | Path,
    algorithms: tuple[str, ...] = ("sha256",),
    progress: Callable[[int], None] | None = None,
) -> dict[str, str]:
    """Hash a file in chunks with one or more algorithms in a single read."""
    path = Path(path)
    size = path.stat().st_size
    hashes = {a: _new_hash(a, size) for a in algorithms}
    done = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            for h in hashes.values():
                h.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done)
    return {a: h.hexdigest() for a, h in hashes.items()}


# In-process cache of file digests, keyed on what changes when a file is rewritten, so
# repeated loads of the same dataset do not re-hash megabytes each time.
_DIGEST_CACHE: dict[tuple[str, int, int, str], str] = {}


def cached_digest(path: str | Path, algorithm: str) -> str:
    """Digest of ``path``, reused while the file's size and mtime are unchanged."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size, algorithm)
    digest = _DIGEST_CACHE.get(key)
    if digest is None:
        digest = hash_file(path, (algorithm,))[algorithm]
        _DIGEST_CACHE[key] = digest
    return digest


def clear_digest_cache() -> None:
    """Forget every cached digest (tests use it to force a re-hash)."""
    _DIGEST_CACHE.clear()


def count_lines(path: str | Path) -> int:
    """Number of lines, counted in chunks without parsing (an unterminated last line counts)."""
    n = 0
    last = b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def row_place(row: int, path: str | Path | None = None) -> str:
    """How messages name data row ``row`` (counted from 1) of a table read from ``path``.

    ``"row 3"``; for a CSV file also its line, ``"row 3 (line 4)"``, since editors show
    lines and every CSV here has one header line before its rows.
    """
    if path is not None and Path(path).suffix.lower() == ".csv":
        return f"row {row} (line {row + 1})"
    return f"row {row}"
