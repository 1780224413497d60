"""Dataset formats: how the files a card lists become datasets.

A card (``datasets/<name>.toml``) names its format; the format knows which files to
check, which options its loader takes and how to read them. Each format is one module
in :mod:`fmadv.data.formats` holding a :class:`DatasetFormat` subclass decorated with
:func:`register_format`; every module of that package is imported the first time the
registry is asked, so adding a format is adding that one module.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from fmadv.errors import ConfigError

if TYPE_CHECKING:
    from fmadv.data.cards import DatasetCard


@dataclass(frozen=True)
class DataKind:
    """What a dataset holds, which decides the function that loads it.

    Parameters
    ----------
    noun : str
        The kind as an adjective with its article, e.g. ``"an image"`` dataset.
    holds : str
        What its splits are made of, e.g. ``"images"``.
    loader : str
        The :mod:`fmadv.data` function that loads it.
    """

    noun: str
    holds: str
    loader: str


#: Sparse binary FM rows with +-1 labels, loaded by :func:`fmadv.data.load_dataset`.
ROWS = DataKind("an FM", "sparse FM rows", "load_dataset")
#: Labelled images, loaded by :func:`fmadv.data.load_images`.
IMAGES = DataKind("an image", "images", "load_images")


def keyword_defaults(func: Callable[..., Any]) -> Mapping[str, Any]:
    """The parameters of ``func`` that have a default, in order, mapped to it.

    Formats declare their options as the defaulted parameters of their reader, so the
    reader's signature stays the one place where an option and its default are written.
    """
    params = inspect.signature(func).parameters.values()
    return MappingProxyType(
        {
            p.name: p.default
            for p in params
            if p.default is not p.empty and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        }
    )


class DatasetFormat:
    """One way of storing a dataset; subclasses describe one format each.

    Attributes
    ----------
    name : str
        The ``format`` value of the cards that use it.
    kind : DataKind
        :data:`ROWS` or :data:`IMAGES`.
    options : mapping of str to object
        The keyword options :meth:`load` accepts, with their defaults.
    generated : bool
        True when the data is drawn in memory rather than read from files.
    """

    name: ClassVar[str]
    kind: ClassVar[DataKind]
    options: ClassVar[Mapping[str, Any]]
    generated: ClassVar[bool] = False

    def load(self, card: DatasetCard, folder: Path, **options: Any) -> Any:
        """Check the files the options need against the card, then read them.

        ``options`` hold only names from :attr:`options`; the registry has checked them.
        """
        raise NotImplementedError

    def count_rows(self, card: DatasetCard, folder: Path, present: set[str]) -> dict[str, int]:
        """Rows per data file, for the ``present`` (verified) files that are cheap to count."""
        return {}

    def n_features(self, card: DatasetCard, folder: Path, present: set[str]) -> int | None:
        """Width of a row (pixels of an image), or None when unknown without the files."""
        return card.n_features

    def item_titles(self, card: DatasetCard, folder: Path) -> dict[int, str] | None:
        """Item id to a readable title, for formats whose items have titles."""
        return None


_FORMATS: dict[str, DatasetFormat] = {}

F = TypeVar("F", bound=type[DatasetFormat])


def register_format(cls: F) -> F:
    """Class decorator: make a :class:`DatasetFormat` known under its ``name``."""
    if cls.name in _FORMATS:
        raise ValueError(f"dataset format {cls.name!r} is registered twice")
    _FORMATS[cls.name] = cls()
    return cls


@functools.cache
def _import_formats() -> None:
    from fmadv.data import formats

    for module in pkgutil.iter_modules(formats.__path__):
        importlib.import_module(f"{formats.__name__}.{module.name}")


def format_names() -> tuple[str, ...]:
    """Names of the registered formats, sorted."""
    _import_formats()
    return tuple(sorted(_FORMATS))


def get_format(name: str) -> DatasetFormat:
    """The registered format called ``name``.

    Raises
    ------
    ConfigError
        No such format; the message lists the known ones.
    """
    _import_formats()
    try:
        return _FORMATS[name]
    except KeyError:
        known = ", ".join(format_names())
        raise ConfigError(f"unknown format {name!r}; known formats: {known}") from None
