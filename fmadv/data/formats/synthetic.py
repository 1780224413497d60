"""``synthetic``: the planted-FM dataset, drawn in memory (no files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fmadv.data.cards import DatasetCard
from fmadv.data.dataset import Splits
from fmadv.data.format import ROWS, DatasetFormat, keyword_defaults, register_format
from fmadv.data.synthetic import make_synthetic


@register_format
class Synthetic(DatasetFormat):
    """Options: the arguments of :func:`~fmadv.data.synthetic.make_synthetic`."""

    name = "synthetic"
    kind = ROWS
    options = keyword_defaults(make_synthetic)
    generated = True

    def load(self, card: DatasetCard, folder: Path, **options: Any) -> Splits:
        return make_synthetic(**options)

    def count_rows(self, card: DatasetCard, folder: Path, present: set[str]) -> dict[str, int]:
        return {"generated": self.options["n_rows"]}

    def n_features(self, card: DatasetCard, folder: Path, present: set[str]) -> int:
        # One-hot users and items, plus a segment per user and a category per item.
        o = self.options
        return o["n_users"] + o["n_items"] + 2 * o["n_side"]
