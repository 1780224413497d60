"""The dataset registry: cards in, loaded datasets out.

``load_dataset("movielens-100k", split="u1")`` finds the card, checks the options
against the card's format (:mod:`fmadv.data.format`) and lets the format check the
local files and read them. Nothing here knows any format by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fmadv.data.cache import dataset_path, is_complete, verify
from fmadv.data.cards import DatasetCard, get_card, list_cards
from fmadv.data.dataset import Splits
from fmadv.data.format import IMAGES, ROWS, DataKind, DatasetFormat, get_format
from fmadv.data.images import ImageSplits
from fmadv.errors import ConfigError

__all__ = [
    "dataset_listing",
    "dataset_options",
    "info",
    "item_titles",
    "load_dataset",
    "load_images",
    "select_options",
]


def _format_of(card: DatasetCard, kind: DataKind) -> DatasetFormat:
    fmt = get_format(card.format)
    if fmt.kind != kind:
        raise ConfigError(
            f"{card.name} is not {kind.noun} dataset: it holds {fmt.kind.holds} (format "
            f"{card.format}); load it with fmadv.data.{fmt.kind.loader}"
        )
    return fmt


def _load(
    name: str | DatasetCard, data_dir: str | Path | None, kind: DataKind, options: dict[str, Any]
) -> Any:
    card = get_card(name)
    fmt = _format_of(card, kind)
    unknown = sorted(set(options) - set(fmt.options))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for dataset {card.name}; "
            f"accepted: {', '.join(fmt.options)}"
        )
    return fmt.load(card, dataset_path(card, data_dir), **options)


def load_dataset(
    name: str | DatasetCard, data_dir: str | Path | None = None, **options: Any
) -> Splits:
    """Load a registered sparse (FM) dataset as train / valid / test splits.

    Parameters
    ----------
    name : str or DatasetCard
        Card name, e.g. ``"synthetic"``, ``"movielens-100k"``, ``"frappe"``.
    data_dir : str or Path, optional
        Data directory (see :func:`~fmadv.data.cache.resolve_data_dir`); unused by
        generated datasets such as ``synthetic``.
    **options
        Passed to the format's loader; :func:`dataset_options` lists them with their
        defaults. The formats document theirs in :mod:`fmadv.data.formats`:

        - ``synthetic``: the arguments of :func:`~fmadv.data.synthetic.make_synthetic`.
        - ``movielens-100k``: the keyword arguments of
          :func:`~fmadv.data.movielens.load_movielens_100k` (``split``,
          ``side_features``, ``threshold``, ``seed``, ``test_size``, ``valid_size``).
        - ``libfm``: those of :func:`~fmadv.data.formats.libfm.load_libfm_dataset`
          (``train_from``, ``valid_size``, ``seed``, ``allow_real_valued``).

    Returns
    -------
    Splits

    Raises
    ------
    ConfigError
        Unknown dataset or option, or an image dataset (use :func:`load_images`).
    DataError
        A needed file is missing (the message says how to fetch it) or malformed.
    ChecksumError
        A local file does not match its card.
    """
    return _load(name, data_dir, ROWS, options)


def load_images(
    name: str | DatasetCard, data_dir: str | Path | None = None, **options: Any
) -> ImageSplits:
    """Load a registered image dataset (``mnist``, ``cifar10``).

    ``options`` are ``valid_size`` and ``seed`` (see :func:`~fmadv.data.images.load_mnist`).
    Errors as :func:`load_dataset`; a dataset of FM rows is a :class:`ConfigError`.
    """
    return _load(name, data_dir, IMAGES, options)


def dataset_options(name: str | DatasetCard) -> dict[str, Any]:
    """The options :func:`load_dataset` (or :func:`load_images`) accepts for a dataset.

    Returns
    -------
    dict
        Option name to its default, in the order of the format's reader.

    Raises
    ------
    ConfigError
        Unknown dataset.
    """
    return dict(get_format(get_card(name).format).options)


def select_options(name: str | DatasetCard, **settings: Any) -> dict[str, Any]:
    """The settings that apply to a dataset, to pass on to :func:`load_dataset`.

    A front end holds one value per setting for every dataset (a ``--split`` flag,
    a seed); this keeps those the dataset's format accepts and that are set.

    Parameters
    ----------
    name : str or DatasetCard
        The dataset.
    **settings
        Candidate options; None means "not set" and is left out.

    Returns
    -------
    dict
        The accepted, set options, in the order given.
    """
    accepted = dataset_options(name)
    return {k: v for k, v in settings.items() if k in accepted and v is not None}


def item_titles(
    name: str | DatasetCard, data_dir: str | Path | None = None
) -> dict[int, str] | None:
    """Item id to title, for datasets whose items have titles (MovieLens), else None.

    Raises
    ------
    DataError, ChecksumError
        The dataset has titles but the file that holds them is missing or damaged.
    """
    card = get_card(name)
    return get_format(card.format).item_titles(card, dataset_path(card, data_dir))


def _local_copy(card: DatasetCard, data_dir: str | Path | None) -> str:
    if get_format(card.format).generated:
        return "not needed"
    status = verify(card, data_dir)
    if not status:
        return "-"  # the card pins no files, so there is nothing to check
    n_ok = sum(s == "ok" for s in status.values())
    return "ok" if n_ok == len(status) else f"{n_ok}/{len(status)} files ok"


def dataset_listing(data_dir: str | Path | None = None) -> list[dict[str, str]]:
    """One row per registered dataset, for ``fmadv data list``.

    Returns
    -------
    list of dict
        Each row maps the column headings ``"name"``, ``"format"``, ``"local copy"``
        (``"ok"``, ``"<n>/<m> files ok"``, ``"not needed"`` for generated datasets, or
        ``"-"`` when the card pins no files) and ``"description"`` to text, sorted by
        name.
    """
    return [
        {
            "name": card.name,
            "format": card.format,
            "local copy": _local_copy(card, data_dir),
            "description": card.description,
        }
        for card in list_cards()
    ]


def info(card: DatasetCard | str, data_dir: str | Path | None = None) -> dict[str, Any]:
    """Card fields plus local state, for ``fmadv data info``.

    Returns
    -------
    dict
        The card's fields, and ``path`` (dataset folder), ``files`` (name to ``"ok"`` /
        ``"missing"`` / ``"mismatch"``), ``status`` (``"generated"``, ``"complete"``,
        ``"partial"``, ``"damaged"`` or ``"missing"``), ``rows`` (data file name to
        row count, for present files where counting is cheap) and ``n_features``
        (None when unknown).
    """
    card = get_card(card)
    fmt = get_format(card.format)
    folder = dataset_path(card, data_dir)
    statuses = verify(card, data_dir)
    values = set(statuses.values())
    if fmt.generated:
        status = "generated"
    elif "mismatch" in values:
        status = "damaged"
    elif not statuses:
        status = "complete" if is_complete(card, data_dir) else "missing"
    elif values == {"ok"}:
        status = "complete"
    elif values == {"missing"}:
        status = "missing"
    else:
        status = "partial"
    present = {n for n, s in statuses.items() if s == "ok"}
    return {
        **card.to_dict(),
        "path": str(folder),
        "files": statuses,
        "rows": fmt.count_rows(card, folder, present),
        "status": status,
        "n_features": fmt.n_features(card, folder, present),
    }
