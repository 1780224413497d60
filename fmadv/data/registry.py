"""The dataset registry: cards in, loaded datasets out.

``load_dataset("movielens-100k", split="u1")`` finds the card, checks the local files
against it and dispatches to the reader of the card's format. The card and cache
functions are re-exported here so callers need one import.
"""

from __future__ import annotations

import gzip
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from fmadv.data._io import cached_digest, count_lines, parse_checksum
from fmadv.data.cache import (
    DATA_DIR_ENV,
    dataset_path,
    fetch,
    is_complete,
    resolve_data_dir,
    verify,
)
from fmadv.data.cards import (
    FORMATS,
    IMAGE_FORMATS,
    DatasetCard,
    cards_dir,
    get_card,
    list_cards,
    load_card,
)
from fmadv.data.dataset import Dataset, Splits
from fmadv.data.features import FeatureMap
from fmadv.data.images import (
    CIFAR10_META,
    CIFAR10_TEST,
    CIFAR10_TRAIN,
    MNIST_FILES,
    ImageSplits,
    load_cifar10,
    load_mnist,
)
from fmadv.data.libfm import read_libfm
from fmadv.data.movielens import OFFICIAL_SPLITS, load_movielens_100k
from fmadv.data.movielens import SPLITS as MOVIELENS_SPLITS
from fmadv.data.splits import carve, check_fraction
from fmadv.data.synthetic import make_synthetic
from fmadv.errors import ChecksumError, ConfigError, DataError

__all__ = [
    "DATA_DIR_ENV",
    "FORMATS",
    "DatasetCard",
    "cards_dir",
    "dataset_path",
    "fetch",
    "get_card",
    "info",
    "is_complete",
    "list_cards",
    "load_card",
    "load_dataset",
    "load_images",
    "require_files",
    "resolve_data_dir",
    "verify",
]


def _fetch_hint(card: DatasetCard) -> str:
    return (
        f"run `fmadv data fetch {card.name}`, or set {DATA_DIR_ENV} to a folder that "
        f"holds {card.folder}/"
    )


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
            f"{card.name}: missing {', '.join(missing)} in {folder}; {_fetch_hint(card)}"
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


def _accepted(func: Callable[..., Any], skip: int) -> list[str]:
    params = list(inspect.signature(func).parameters.values())[skip:]
    return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _check_options(card: DatasetCard, options: dict[str, Any], accepted: Sequence[str]) -> None:
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for dataset {card.name}; "
            f"accepted: {', '.join(accepted)}"
        )


def load_dataset(
    name: str | DatasetCard, data_dir: str | Path | None = None, **options: Any
) -> Splits:
    """Load a registered sparse (FM) dataset as train / valid / test splits.

    Parameters
    ----------
    name : str or DatasetCard
        Card name, e.g. ``"synthetic"``, ``"movielens-100k"``, ``"frappe"``.
    data_dir : str or Path, optional
        Data directory (see :func:`resolve_data_dir`); unused by ``synthetic``.
    **options
        Passed to the format's loader:

        - ``synthetic``: the arguments of :func:`~fmadv.data.synthetic.make_synthetic`.
        - ``movielens-100k``: the keyword arguments of
          :func:`~fmadv.data.movielens.load_movielens_100k` (``split``,
          ``side_features``, ``threshold``, ``seed``, ``test_size``, ``valid_size``).
        - ``libfm``: ``train_from`` (``"train"``, default, reads the card's train,
          validation and test files; ``"validation"`` trains on the validation file
          and holds out ``valid_size`` of it, default 0.1, by ``seed``), ``seed``,
          ``valid_size``, ``allow_real_valued``.

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
    card = get_card(name)
    if card.format in IMAGE_FORMATS:
        raise ConfigError(
            f"{card.name} holds images (format {card.format}); load it with fmadv.data.load_images"
        )
    if card.format == "synthetic":
        _check_options(card, options, _accepted(make_synthetic, 0))
        return make_synthetic(**options)
    folder = dataset_path(card, data_dir)
    if card.format == "movielens-100k":
        _check_options(card, options, _accepted(load_movielens_100k, 1))
        split = options.get("split", "random")
        if split not in MOVIELENS_SPLITS:
            raise ConfigError(
                f"unknown MovieLens split {split!r}; choose from {', '.join(MOVIELENS_SPLITS)}"
            )
        if split in OFFICIAL_SPLITS:
            needed = ["u.user", "u.item", f"{split}.base", f"{split}.test"]
        else:
            needed = ["u.user", "u.item", "u.data"]
        require_files(card, folder, needed)
        return load_movielens_100k(folder, **options)
    if card.format == "libfm":
        return _load_libfm(card, folder, **options)
    raise ConfigError(f"{card.name}: format {card.format!r} has no sparse loader")


def _libfm_roles(card: DatasetCard) -> dict[str, str]:
    roles: dict[str, str] = {}
    for fname in card.files:
        parts = fname.split(".")
        if len(parts) >= 3 and parts[-1] == "libfm":
            role = {"valid": "validation"}.get(parts[-2], parts[-2])
            if role in ("train", "validation", "test"):
                roles[role] = fname
    if "test" not in roles:
        raise ConfigError(f"{card.name}: the card lists no '*.test.libfm' file")
    return roles


def _libfm_feature_map(card: DatasetCard) -> FeatureMap | None:
    if not card.fields:
        return None
    return FeatureMap.from_categories({name: range(size) for name, size in card.fields})


def _field_ids(X: sp.csr_matrix, fmap: FeatureMap | None, field: str) -> np.ndarray | None:
    """Position inside ``field`` of each row's one active feature there, if every row has one."""
    if fmap is None or field not in fmap.field_names:
        return None
    sub = X[:, fmap.field_slice(field)].tocsr()
    if not np.all(np.diff(sub.indptr) == 1):
        return None
    return sub.indices.astype(np.int64)


def _load_libfm(
    card: DatasetCard,
    folder: Path,
    *,
    train_from: str = "train",
    valid_size: float | None = None,
    seed: int = 0,
    allow_real_valued: bool = False,
) -> Splits:
    roles = _libfm_roles(card)
    if train_from not in ("train", "validation"):
        raise ConfigError(f"train_from must be 'train' or 'validation', got {train_from!r}")
    if train_from == "train":
        if valid_size is not None:
            raise ConfigError(
                "valid_size applies only with train_from='validation' (otherwise the "
                "validation file is the validation set)"
            )
        if "train" not in roles or "validation" not in roles:
            raise ConfigError(f"{card.name}: the card lists no train and validation files")
        train_file = folder / roles["train"]
        if not train_file.is_file():
            raise DataError(
                f"{card.name}: missing {roles['train']} (the training split) in {folder}; "
                f"run `fmadv data fetch {card.name}` to download it, or pass "
                "train_from='validation' to train on the validation file instead "
                "(part of it is then held out for validation)"
            )
        needed = [roles["train"], roles["validation"], roles["test"]]
    else:
        if "validation" not in roles:
            raise ConfigError(f"{card.name}: the card lists no validation file")
        valid_size = check_fraction(
            "valid_size", 0.1 if valid_size is None else valid_size, allow_zero=True
        )
        needed = [roles["validation"], roles["test"]]
    require_files(card, folder, needed)
    parts = [
        read_libfm(folder / f, n_features=card.n_features, allow_real_valued=allow_real_valued)
        for f in needed
    ]
    # Without a card width, the files can disagree (the test file may not use the
    # largest index); widen them all to the largest.
    width = card.n_features or max(p.n_features for p in parts)
    fmap = _libfm_feature_map(card)

    def finish(d: Dataset) -> Dataset:
        X = d.X
        if X.shape[1] != width:
            X = sp.csr_matrix((X.data, X.indices, X.indptr), shape=(X.shape[0], width))
        return Dataset(
            X=X,
            y=d.y,
            feature_map=fmap,
            name=card.name,
            user_ids=_field_ids(X, fmap, "user"),
            item_ids=_field_ids(X, fmap, "item"),
        )

    parts = [finish(p) for p in parts]
    if train_from == "train":
        return Splits(train=parts[0], valid=parts[1], test=parts[2])
    rest, held = carve(np.arange(parts[0].n_rows), valid_size, seed)
    valid = None if held is None else parts[0].subset(held)
    return Splits(train=parts[0].subset(rest), valid=valid, test=parts[1])


def load_images(
    name: str | DatasetCard, data_dir: str | Path | None = None, **options: Any
) -> ImageSplits:
    """Load a registered image dataset (``mnist``, ``cifar10``).

    ``options`` are ``valid_size`` and ``seed`` (see :func:`~fmadv.data.images.load_mnist`).
    """
    card = get_card(name)
    folder = dataset_path(card, data_dir)
    if card.format == "mnist-idx":
        _check_options(card, options, _accepted(load_mnist, 1))
        require_files(card, folder, [f"{stem}.gz" for stem in MNIST_FILES.values()])
        return load_mnist(folder, **options)
    if card.format == "cifar10-python":
        _check_options(card, options, _accepted(load_cifar10, 1))
        require_files(card, folder, [*CIFAR10_TRAIN, CIFAR10_TEST, CIFAR10_META])
        return load_cifar10(folder, **options)
    raise ConfigError(
        f"{card.name} is not an image dataset (format {card.format}); use load_dataset"
    )


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
    out = card.to_dict()
    folder = dataset_path(card, data_dir)
    out["path"] = str(folder)
    statuses = verify(card, data_dir)
    out["files"] = statuses
    out["rows"] = {}
    if card.format == "synthetic":
        out["status"] = "generated"
        defaults = inspect.signature(make_synthetic).parameters
        out["rows"] = {"generated": defaults["n_rows"].default}
        out["n_features"] = (
            defaults["n_users"].default
            + defaults["n_items"].default
            + 2 * defaults["n_side"].default
        )
        return out
    values = set(statuses.values())
    if "mismatch" in values:
        out["status"] = "damaged"
    elif not statuses:
        out["status"] = "complete" if is_complete(card, data_dir) else "missing"
    elif values == {"ok"}:
        out["status"] = "complete"
    elif values == {"missing"}:
        out["status"] = "missing"
    else:
        out["status"] = "partial"
    present = {n for n, s in statuses.items() if s == "ok"}
    if card.format == "movielens-100k":
        if "u.data" in present:
            out["rows"] = {"u.data": count_lines(folder / "u.data")}
        if {"u.user", "u.item"} <= present:
            out["n_features"] = count_lines(folder / "u.user") + count_lines(folder / "u.item")
    elif card.format == "libfm":
        out["rows"] = {
            n: count_lines(folder / n) for n in statuses if n.endswith(".libfm") and n in present
        }
    elif card.format == "mnist-idx":
        for stem in MNIST_FILES.values():
            fname = f"{stem}.gz"
            if "labels" in stem and fname in present:
                with gzip.open(folder / fname) as f:
                    header = f.read(8)
                out["rows"][fname] = int.from_bytes(header[4:8], "big")
        out["n_features"] = 28 * 28
    elif card.format == "cifar10-python":
        out["n_features"] = 3 * 32 * 32
    return out
