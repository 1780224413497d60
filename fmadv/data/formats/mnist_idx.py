"""``mnist-idx``: MNIST as its four gzip-compressed IDX files."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

from fmadv.data.cache import require_files
from fmadv.data.cards import DatasetCard
from fmadv.data.format import IMAGES, DatasetFormat, keyword_defaults, register_format
from fmadv.data.images import MNIST_FILES, ImageSplits, load_mnist

_FILES = [f"{stem}.gz" for stem in MNIST_FILES.values()]


@register_format
class MnistIdx(DatasetFormat):
    """Options: ``valid_size`` and ``seed`` of :func:`~fmadv.data.images.load_mnist`."""

    name = "mnist-idx"
    kind = IMAGES
    options = keyword_defaults(load_mnist)

    def load(self, card: DatasetCard, folder: Path, **options: Any) -> ImageSplits:
        require_files(card, folder, _FILES)
        return load_mnist(folder, **options)

    def count_rows(self, card: DatasetCard, folder: Path, present: set[str]) -> dict[str, int]:
        rows = {}
        for name in _FILES:
            if "labels" in name and name in present:
                # An IDX header is the magic number, then one big-endian count per axis.
                with gzip.open(folder / name) as f:
                    header = f.read(8)
                rows[name] = int.from_bytes(header[4:8], "big")
        return rows

    def n_features(self, card: DatasetCard, folder: Path, present: set[str]) -> int:
        return 28 * 28
