"""``cifar10-python``: the pickled batches of ``cifar-10-batches-py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fmadv.data.cache import require_files
from fmadv.data.cards import DatasetCard
from fmadv.data.format import IMAGES, DatasetFormat, keyword_defaults, register_format
from fmadv.data.images import CIFAR10_META, CIFAR10_TEST, CIFAR10_TRAIN, ImageSplits, load_cifar10


@register_format
class Cifar10Python(DatasetFormat):
    """Options: ``valid_size`` and ``seed`` of :func:`~fmadv.data.images.load_cifar10`."""

    name = "cifar10-python"
    kind = IMAGES
    options = keyword_defaults(load_cifar10)

    def load(self, card: DatasetCard, folder: Path, **options: Any) -> ImageSplits:
        require_files(card, folder, [*CIFAR10_TRAIN, CIFAR10_TEST, CIFAR10_META])
        return load_cifar10(folder, **options)

    def n_features(self, card: DatasetCard, folder: Path, present: set[str]) -> int:
        return 3 * 32 * 32
