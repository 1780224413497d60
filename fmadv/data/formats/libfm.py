"""``libfm``: train / validation / test libFM text files (frappe and the like).

The card lists the files as ``<stem>.train.libfm``, ``<stem>.validation.libfm`` (or
``.valid.libfm``) and ``<stem>.test.libfm``; its ``fields`` name the blocks of the
feature space, and fields called ``user`` and ``item`` fill ``user_ids`` / ``item_ids``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from fmadv.data._io import count_lines
from fmadv.data.cache import require_files
from fmadv.data.cards import DatasetCard
from fmadv.data.dataset import Dataset, Splits
from fmadv.data.features import FeatureMap
from fmadv.data.format import ROWS, DatasetFormat, keyword_defaults, register_format
from fmadv.data.libfm import read_libfm
from fmadv.data.splits import carve, check_fraction
from fmadv.errors import ConfigError, DataError


def _roles(card: DatasetCard) -> dict[str, str]:
    """Split name (train, validation, test) to the card's file for it."""
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


def _feature_map(card: DatasetCard) -> FeatureMap | None:
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


def load_libfm_dataset(
    card: DatasetCard,
    folder: Path,
    *,
    train_from: str = "train",
    valid_size: float | None = None,
    seed: int = 0,
    allow_real_valued: bool = False,
) -> Splits:
    """Read a libFM card's files as splits sharing the card's width and feature map.

    Parameters
    ----------
    card : DatasetCard
        A card of format ``libfm``.
    folder : Path
        The dataset folder.
    train_from : {"train", "validation"}
        ``"train"`` reads the train, validation and test files; ``"validation"`` trains
        on the validation file and holds out ``valid_size`` of it (default 0.1), drawn
        by ``seed``, for validation (for copies without the large train file).
    valid_size : float, optional
        Only with ``train_from="validation"``.
    seed : int
        Seed of that hold-out.
    allow_real_valued : bool
        Accept feature values other than 0 and 1 (see :func:`~fmadv.data.libfm.read_libfm`).

    Without a width on the card, each file's width comes from its largest index, within
    the feature budget of :func:`~fmadv.data.libfm.read_libfm` (``$FMADV_MAX_FEATURES``).
    """
    roles = _roles(card)
    if train_from not in ("train", "validation"):
        raise ConfigError(f"train_from must be 'train' or 'validation', got {train_from!r}")
    if train_from == "train":
        if valid_size is not None:
            raise ConfigError(
                "valid_size applies only with train_from='validation' (CLI: --train-from "
                "validation); otherwise the validation file is the validation set"
            )
        if "train" not in roles or "validation" not in roles:
            raise ConfigError(f"{card.name}: the card lists no train and validation files")
        if not (folder / roles["train"]).is_file():
            raise DataError(
                f"{card.name}: missing {roles['train']} (the training split) in {folder}; "
                f"run `fmadv data fetch {card.name}` to download it, or train on the "
                "validation file instead (part of it is then held out for validation): "
                "train_from='validation' in Python, --train-from validation on the CLI"
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
    fmap = _feature_map(card)

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


@register_format
class LibFM(DatasetFormat):
    """Options: those of :func:`load_libfm_dataset` (``train_from``, ``valid_size``,
    ``seed``, ``allow_real_valued``)."""

    name = "libfm"
    kind = ROWS
    options = keyword_defaults(load_libfm_dataset)

    def load(self, card: DatasetCard, folder: Path, **options: Any) -> Splits:
        return load_libfm_dataset(card, folder, **options)

    def count_rows(self, card: DatasetCard, folder: Path, present: set[str]) -> dict[str, int]:
        return {
            n: count_lines(folder / n) for n in card.files if n.endswith(".libfm") and n in present
        }
