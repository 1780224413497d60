"""Data layer: datasets as sparse binary rows, their readers, and the dataset registry.

- :class:`Dataset` / :class:`Splits`: a float32 CSR design matrix with +-1 labels.
- :class:`FeatureMap`: named fields in one shared feature index space.
- Readers: :func:`read_libfm` / :func:`write_libfm`, :func:`load_movielens_100k`,
  :func:`make_synthetic`, :func:`load_mnist`, :func:`load_cifar10`.
- Registry: cards in ``datasets/*.toml``, :func:`load_dataset`, :func:`fetch`,
  :func:`verify`, :func:`info`.
"""

from fmadv.data.cache import (
    DATA_DIR_ENV,
    dataset_path,
    fetch,
    is_complete,
    resolve_data_dir,
    verify,
)
from fmadv.data.cards import FORMATS, DatasetCard, get_card, list_cards, load_card
from fmadv.data.dataset import Dataset, Splits
from fmadv.data.features import FeatureMap, Field, frame_to_dataset
from fmadv.data.images import ImageData, ImageSplits, load_cifar10, load_mnist, read_idx
from fmadv.data.libfm import read_libfm, write_libfm
from fmadv.data.movielens import load_movielens_100k, movielens_items
from fmadv.data.registry import info, load_dataset, load_images
from fmadv.data.splits import random_split
from fmadv.data.synthetic import PlantedFM, make_synthetic, planted_fm

__all__ = [
    "DATA_DIR_ENV",
    "FORMATS",
    "Dataset",
    "DatasetCard",
    "FeatureMap",
    "Field",
    "ImageData",
    "ImageSplits",
    "PlantedFM",
    "Splits",
    "dataset_path",
    "fetch",
    "frame_to_dataset",
    "get_card",
    "info",
    "is_complete",
    "list_cards",
    "load_card",
    "load_cifar10",
    "load_dataset",
    "load_images",
    "load_mnist",
    "load_movielens_100k",
    "make_synthetic",
    "movielens_items",
    "planted_fm",
    "random_split",
    "read_idx",
    "read_libfm",
    "resolve_data_dir",
    "verify",
    "write_libfm",
]
