"""The local data cache: where dataset files live, checking them, and fetching them.

Fetching never leaves a partial dataset behind: everything is downloaded and
extracted into a temporary folder inside the dataset folder, every file is checked
against its card, and only then are the files moved into place. On any failure the
temporary folder (and any folder the fetch created) is removed.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

from fmadv.data._io import CHUNK_BYTES, cached_digest, hash_file, parse_checksum
from fmadv.data.cards import DatasetCard, get_card
from fmadv.errors import ChecksumError, ConfigError, DataError, FmadvError

#: Environment variable that overrides the default data directory.
DATA_DIR_ENV = "FMADV_DATA_DIR"

Downloader = Callable[[str, Path], None]
Progress = Callable[[str, int, "int | None"], None]


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory: ``data_dir`` if given, else ``$FMADV_DATA_DIR``, else
    ``$XDG_CACHE_HOME/fmadv``, else ``~/.cache/fmadv``. Empty values count as unset."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "fmadv"
    return Path.home() / ".cache" / "fmadv"


def dataset_path(card: DatasetCard | str, data_dir: str | Path | None = None) -> Path:
    """Folder of one dataset inside the data directory."""
    card = get_card(card)
    return resolve_data_dir(data_dir) / card.folder


def file_status(path: Path, spec: str) -> str:
    """``"ok"``, ``"missing"`` or ``"mismatch"`` for one file against its card checksum.

    A present file whose card records no checksum counts as ``"ok"``.
    """
    if not path.is_file():
        return "missing"
    parsed = parse_checksum(spec)
    if parsed is None:
        return "ok"
    algorithm, expected = parsed
    return "ok" if cached_digest(path, algorithm) == expected else "mismatch"


def verify(card: DatasetCard | str, data_dir: str | Path | None = None) -> dict[str, str]:
    """Check every file the card lists.

    Returns
    -------
    dict of str to str
        File name to ``"ok"``, ``"missing"`` or ``"mismatch"``, in card order. Digests
        are cached per file path, size and mtime for the life of the process.
    """
    card = get_card(card)
    folder = dataset_path(card, data_dir)
    return {name: file_status(folder / name, spec) for name, spec in card.files.items()}


def require_files(card: DatasetCard, folder: Path, names: Sequence[str]) -> None:
    """Check that the files a loader is about to read exist and match the card.

    Raises
    ------
    DataError
        A file is missing; the message says how to fetch it.
    ChecksumError
        A file differs from the card's checksum. Digests are cached per path, size
        and mtime, so repeated loads do not re-hash.
    """
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(
            f"{card.name}: missing {', '.join(missing)} in {folder}; run `fmadv data fetch "
            f"{card.name}`, or set {DATA_DIR_ENV} to a folder that holds {card.folder}/"
        )
    for name in names:
        parsed = parse_checksum(card.files.get(name, ""))
        if parsed is None:
            continue
        algorithm, expected = parsed
        got = cached_digest(folder / name, algorithm)
        if got != expected:
            raise ChecksumError(
                f"{folder / name}: {algorithm} is {got}, but the {card.name} card expects "
                f"{expected}; the file is damaged or edited: run `fmadv data fetch "
                f"{card.name}` to replace it"
            )


def is_complete(card: DatasetCard | str, data_dir: str | Path | None = None) -> bool:
    """True when nothing needs fetching."""
    card = get_card(card)
    if not card.needs_files:
        return True
    if not card.files:
        folder = dataset_path(card, data_dir)
        return folder.is_dir() and any(p for p in folder.iterdir() if not p.name.startswith("."))
    return all(s == "ok" for s in verify(card, data_dir).values())


def fetch(
    card: DatasetCard | str,
    data_dir: str | Path | None = None,
    downloader: Downloader | None = None,
    progress: Progress | None = None,
) -> Path:
    """Download, check and install a dataset's files into the data directory.

    Parameters
    ----------
    card : DatasetCard or str
        The dataset.
    data_dir : str or Path, optional
        Data directory (see :func:`resolve_data_dir`).
    downloader : callable, optional
        ``downloader(url, dest_path)`` that saves ``url`` to ``dest_path``. Default:
        :mod:`urllib` (``http(s)://`` and ``file://`` addresses).
    progress : callable, optional
        ``progress(url, bytes_done, bytes_total_or_None)`` called while the default
        downloader runs.

    Returns
    -------
    Path
        The dataset folder. When every listed file is already present and matches its
        checksum, nothing is downloaded.

    Raises
    ------
    ChecksumError
        The archive or a file does not match the card, or the archive is corrupt.
    FmadvError
        The download failed, or the archive lacks a listed file.
    """
    card = get_card(card)
    target = dataset_path(card, data_dir)
    if is_complete(card, data_dir):
        return target
    if not (card.url or card.base_url):
        raise ConfigError(
            f"{card.name}: the card has no download address; place the files in {target}"
        )
    status = verify(card, data_dir)
    wanted = [name for name, s in status.items() if s != "ok"]
    created = _make_dirs(target)
    tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=target))
    try:
        if card.url:
            staged = _fetch_archive(card, tmp, wanted, downloader, progress)
        else:
            staged = {}
            for name in wanted:
                dest = tmp / "files" / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                _download(card.base_url + name, dest, downloader, progress)
                staged[name] = dest
        for name, path in staged.items():
            _check_file(card, name, path)
        for name, path in staged.items():
            final = target / name
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only succeeds while empty: nothing of ours is left
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    return target


def _make_dirs(target: Path) -> list[Path]:
    """Create ``target`` and its missing parents; return those created, outermost first."""
    missing = []
    p = target
    while not p.exists():
        missing.append(p)
        p = p.parent
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FmadvError(f"cannot create the data folder {target}: {exc.strerror}") from exc
    return list(reversed(missing))


def _download(
    url: str, dest: Path, downloader: Downloader | None, progress: Progress | None
) -> None:
    try:
        if downloader is not None:
            downloader(url, dest)
        else:
            _urllib_download(url, dest, progress)
    except FmadvError:
        raise
    except (OSError, ValueError, urllib.error.URLError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise FmadvError(
            f"download failed: {url}: {reason} (check the network, or place the files "
            "in the data folder yourself)"
        ) from exc
    if not dest.is_file():
        raise FmadvError(f"download failed: {url}: nothing was saved")


def _urllib_download(url: str, dest: Path, progress: Progress | None) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "fmadv"})
    with urllib.request.urlopen(request, timeout=60) as response, open(dest, "wb") as out:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        done = 0
        while chunk := response.read(CHUNK_BYTES):
            out.write(chunk)
            done += len(chunk)
            if progress is not None:
                progress(url, done, total)
        if total is not None and done != total:
            raise FmadvError(f"download failed: {url}: got {done} of {total} bytes")


def _archive_kind(url: str) -> str:
    name = PurePosixPath(url.split("?", 1)[0]).name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")):
        return "tar"
    return "file"


def _fetch_archive(
    card: DatasetCard,
    tmp: Path,
    wanted: list[str],
    downloader: Downloader | None,
    progress: Progress | None,
) -> dict[str, Path]:
    assert card.url is not None
    archive = tmp / (PurePosixPath(card.url.split("?", 1)[0]).name or "download")
    _download(card.url, archive, downloader, progress)
    expected = {"sha256": card.archive_sha256, "md5": card.archive_md5}
    expected = {k: v.lower() for k, v in expected.items() if v}
    if expected:
        got = hash_file(archive, tuple(expected))
        for algorithm, digest in expected.items():
            if got[algorithm] != digest:
                raise ChecksumError(
                    f"{card.url}: archive {algorithm} is {got[algorithm]}, expected {digest} "
                    f"(the download is corrupt or changed upstream); nothing was installed"
                )
    kind = _archive_kind(card.url)
    if kind == "file":
        # A single file stored as it is (e.g. a .gz the loader reads directly).
        name = wanted[0] if len(card.files) == 1 else archive.name
        return {name: archive}
    out = tmp / "extracted"
    try:
        only = set(wanted) if card.files else None
        staged = _extract(archive, kind, out, card.archive_root, only)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise ChecksumError(f"{card.url}: archive is corrupt or truncated ({exc})") from exc
    lacking = [name for name in wanted if name not in staged]
    if lacking:
        root = f" under {card.archive_root}/" if card.archive_root else ""
        raise FmadvError(f"{card.url}: archive lacks {', '.join(lacking)}{root}")
    return staged


def _member_path(name: str, root: str | None) -> str | None:
    """Path of an archive member relative to ``root``, or None to skip it.

    Members outside ``root``, absolute paths and ``..`` components are skipped, so an
    archive can never write outside the extraction folder.
    """
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if root:
        root_parts = PurePosixPath(root).parts
        if parts[: len(root_parts)] != root_parts:
            return None
        parts = parts[len(root_parts) :]
    if not parts or parts[0] == "/" or ".." in parts:
        return None
    return "/".join(parts)


def _extract(
    archive: Path, kind: str, out: Path, root: str | None, wanted: set[str] | None
) -> dict[str, Path]:
    """Extract the wanted regular files (all under ``root`` when ``wanted`` is None)."""
    staged: dict[str, Path] = {}

    def keep(name: str) -> str | None:
        rel = _member_path(name, root)
        if rel is None or (wanted is not None and rel not in wanted):
            return None
        return rel

    def write(rel: str, stream) -> None:  # type: ignore[no-untyped-def]
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "wb") as f:
            shutil.copyfileobj(stream, f, CHUNK_BYTES)
        staged[rel] = dest

    if kind == "zip":
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                rel = None if info.is_dir() else keep(info.filename)
                if rel is not None:
                    with zf.open(info) as stream:
                        write(rel, stream)
    else:
        with tarfile.open(archive, "r:*") as tf:
            for member in tf:
                rel = keep(member.name) if member.isfile() else None
                if rel is not None:
                    stream = tf.extractfile(member)
                    assert stream is not None
                    with stream:
                        write(rel, stream)
    return staged


def _check_file(card: DatasetCard, name: str, path: Path) -> None:
    spec = card.files.get(name, "")
    parsed = parse_checksum(spec)
    if parsed is None:
        return
    algorithm, expected = parsed
    got = hash_file(path, (algorithm,))[algorithm]
    if got != expected:
        raise ChecksumError(
            f"{card.name}: {name} has {algorithm} {got}, expected {expected} "
            "(the download is corrupt or changed upstream); nothing was installed"
        )
