"""``movielens-100k``: the GroupLens ``ml-100k`` files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fmadv.data._io import count_lines
from fmadv.data.cache import require_files
from fmadv.data.cards import DatasetCard
from fmadv.data.dataset import Splits
from fmadv.data.format import ROWS, DatasetFormat, keyword_defaults, register_format
from fmadv.data.movielens import OFFICIAL_SPLITS, SPLITS, load_movielens_100k, movielens_items
from fmadv.errors import ConfigError


@register_format
class MovieLens100K(DatasetFormat):
    """Options: the keyword arguments of :func:`~fmadv.data.movielens.load_movielens_100k`
    (``split``, ``side_features``, ``threshold``, ``seed``, ``test_size``, ``valid_size``)."""

    name = "movielens-100k"
    kind = ROWS
    options = keyword_defaults(load_movielens_100k)

    def load(self, card: DatasetCard, folder: Path, **options: Any) -> Splits:
        # The split decides which rating files are read, so check it before the files.
        split = options.get("split", self.options["split"])
        if split not in SPLITS:
            raise ConfigError(f"unknown MovieLens split {split!r}; choose from {', '.join(SPLITS)}")
        if split in OFFICIAL_SPLITS:
            ratings = [f"{split}.base", f"{split}.test"]
        else:
            ratings = ["u.data"]
        require_files(card, folder, ["u.user", "u.item", *ratings])
        return load_movielens_100k(folder, **options)

    def count_rows(self, card: DatasetCard, folder: Path, present: set[str]) -> dict[str, int]:
        return {"u.data": count_lines(folder / "u.data")} if "u.data" in present else {}

    def n_features(self, card: DatasetCard, folder: Path, present: set[str]) -> int | None:
        # One-hot users and items (the side features are options of the load).
        if {"u.user", "u.item"} <= present:
            return count_lines(folder / "u.user") + count_lines(folder / "u.item")
        return card.n_features

    def item_titles(self, card: DatasetCard, folder: Path) -> dict[int, str]:
        require_files(card, folder, ["u.item"])
        items = movielens_items(folder)
        return dict(zip(items["item_id"].tolist(), items["title"].tolist(), strict=True))
