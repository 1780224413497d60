"""Dataset cards: declarative TOML files in ``datasets/`` that say where a dataset
comes from, how to check it and how to read it.

Adding a dataset means adding a card; no code changes unless it brings a new format
(then one module in :mod:`fmadv.data.formats`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import fmadv
from fmadv.data._io import parse_checksum
from fmadv.data.format import format_names, get_format
from fmadv.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 needs the tomli backport
    import tomli as tomllib


@dataclass(frozen=True)
class DatasetCard:
    """One dataset card.

    Parameters
    ----------
    name : str
        Registry name, equal to the card's file stem (``datasets/<name>.toml``).
    description : str
        One-line description.
    format : str
        A registered format (:func:`~fmadv.data.format.format_names`); picks the loader.
    directory : str
        Sub-folder of the data directory that holds the files (default: ``name``).
    url : str, optional
        Address of an archive (``.zip``, ``.tar.gz``, ``.tgz``, ``.tar``) holding the
        files, or of a single file stored as it is.
    base_url : str, optional
        Address prefix from which each listed file is downloaded on its own.
    archive_root : str, optional
        Folder inside the archive that holds the files (e.g. ``"ml-100k"``).
    archive_sha256, archive_md5 : str, optional
        Checksums of the archive, checked before extraction when given.
    files : dict of str to str
        File name to checksum: a bare SHA-256 hex digest, ``"md5:<hex>"``,
        ``"git-blob:<sha1>"`` (what ``git hash-object`` prints) or ``""`` when no
        checksum is recorded.
    size_bytes : int, optional
        Total size of the listed files once in place (informational).
    license, citation, homepage, notes : str
        Terms of use, how to cite, where to read more, and remarks.
    n_features : int, optional
        Width of the feature space (libFM datasets).
    fields : tuple of (str, int)
        Field names and sizes that tile the feature space, in order (libFM datasets).
    source : Path, optional
        The TOML file the card was read from.
    """

    name: str
    description: str
    format: str
    directory: str = ""
    url: str | None = None
    base_url: str | None = None
    archive_root: str | None = None
    archive_sha256: str | None = None
    archive_md5: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    size_bytes: int | None = None
    license: str = ""
    citation: str = ""
    homepage: str = ""
    notes: str = ""
    n_features: int | None = None
    fields: tuple[tuple[str, int], ...] = ()
    source: Path | None = field(default=None, compare=False)

    @property
    def folder(self) -> str:
        """Sub-folder of the data directory for this dataset."""
        return self.directory or self.name

    @property
    def needs_files(self) -> bool:
        """False for generated datasets."""
        return not get_format(self.format).generated

    def to_dict(self) -> dict[str, Any]:
        """Plain-data view of the card (for ``fmadv data info``)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["files"] = dict(self.files)
        out["fields"] = [list(f) for f in self.fields]
        out["source"] = None if self.source is None else str(self.source)
        return out


_STR_KEYS = {
    "name", "description", "format", "directory", "url", "base_url", "archive_root",
    "archive_sha256", "archive_md5", "license", "citation", "homepage", "notes",
}  # fmt: skip
_REQUIRED = ("name", "description", "format")


def load_card(path: str | Path) -> DatasetCard:
    """Read and validate one card.

    Raises
    ------
    ConfigError
        Unreadable TOML, a missing or unknown key, a wrong type, an unknown format,
        a malformed checksum, or a ``name`` that differs from the file stem.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: dataset card not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read dataset card: {exc}") from exc

    def fail(message: str) -> ConfigError:
        return ConfigError(f"{path}: {message}")

    known = {f.name for f in fields(DatasetCard)} - {"source"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise fail(f"unknown key(s) {unknown}; known keys: {', '.join(sorted(known))}")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise fail(f"missing required key(s) {missing}")
    for key in _STR_KEYS & set(raw):
        if not isinstance(raw[key], str):
            raise fail(f"{key} must be a string, got {type(raw[key]).__name__}")
    if raw["name"] != path.stem:
        raise fail(f"name {raw['name']!r} must equal the file name stem {path.stem!r}")
    known_formats = format_names()
    if raw["format"] not in known_formats:
        raise fail(f"unknown format {raw['format']!r}; known formats: {', '.join(known_formats)}")
    if raw.get("url") and raw.get("base_url"):
        raise fail("give url (an archive or single file) or base_url (one file each), not both")
    if raw.get("base_url") and not raw["base_url"].endswith("/"):
        raise fail("base_url must end with '/'")

    files = raw.get("files", {})
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise fail("files must be a table of file name = checksum strings")
    for name, spec in files.items():
        _check_spec(fail, f"checksum of {name!r}", spec)
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise fail(f"file name {name!r} must be a relative path inside the dataset folder")
    for key, algorithm in (("archive_sha256", "sha256"), ("archive_md5", "md5")):
        if key in raw:
            _check_spec(fail, key, f"{algorithm}:{raw[key]}")

    for key in ("size_bytes", "n_features"):
        if key in raw and (not isinstance(raw[key], int) or raw[key] < 0):
            raise fail(f"{key} must be a non-negative integer")
    layout = raw.get("fields", [])
    try:
        layout = tuple((str(f["name"]), int(f["size"])) for f in layout)
    except (KeyError, TypeError, ValueError):
        raise fail("fields must be an array of tables with name and size") from None
    if layout and raw.get("n_features") is not None:
        total = sum(size for _, size in layout)
        if total != raw["n_features"]:
            raise fail(f"field sizes add up to {total}, but n_features is {raw['n_features']}")

    values = {k: v for k, v in raw.items() if k not in ("files", "fields")}
    return DatasetCard(**values, files=dict(files), fields=layout, source=path)


def _check_spec(fail: Any, what: str, spec: str) -> None:
    try:
        parse_checksum(spec)
    except ValueError as exc:
        raise fail(f"{what}: {exc}") from None


def cards_dir() -> Path:
    """Folder of the bundled cards.

    Wheels carry ``datasets/`` as ``fmadv/_datasets``; an editable install or a
    checkout reads the repository's ``datasets/`` next to the package.
    """
    package = Path(fmadv.__file__).parent
    bundled = package / "_datasets"
    return bundled if bundled.is_dir() else package.parent / "datasets"


def list_cards() -> list[DatasetCard]:
    """All bundled cards, sorted by name."""
    folder = cards_dir()
    if not folder.is_dir():
        raise ConfigError(f"dataset cards folder not found: {folder}")
    return [load_card(p) for p in sorted(folder.glob("*.toml"))]


def get_card(name: str | DatasetCard) -> DatasetCard:
    """The card called ``name`` (a card passes through unchanged).

    Raises
    ------
    ConfigError
        No such card; the message lists the known names.
    """
    if isinstance(name, DatasetCard):
        return name
    path = cards_dir() / f"{name}.toml"
    if path.is_file() and "/" not in name and "\\" not in name:
        return load_card(path)
    known = ", ".join(c.name for c in list_cards())
    raise ConfigError(f"unknown dataset {name!r}; known datasets: {known}")
