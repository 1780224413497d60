"""Data layer: datasets as sparse binary rows, their readers, and the dataset registry.

- :class:`Dataset` / :class:`Splits`: a float32 CSR design matrix with +-1 labels.
- :class:`FeatureMap`: named fields in one shared feature index space.
- Readers: :func:`read_libfm` / :func:`write_libfm` (a file's implied width is capped by
  ``$FMADV_MAX_FEATURES``, :data:`MAX_FEATURES_ENV`), :func:`load_movielens_100k`,
  :func:`make_synthetic`, :func:`load_mnist`, :func:`load_cifar10`.
- Registry: cards in ``datasets/*.toml``, each naming a format of
  :mod:`fmadv.data.formats`; :func:`load_dataset`, :func:`load_images`, :func:`fetch`,
  :func:`verify`, :func:`info`, and for front ends :func:`dataset_options`,
  :func:`select_options`, :func:`item_titles`, :func:`dataset_listing`.
"""

from fmadv.data.cache import (
    DATA_DIR_ENV,
    dataset_path,
    fetch,
    is_complete,
    resolve_data_dir,
    verify,
)
from fmadv.data.cards import DatasetCard, get_card, list_cards, load_card
from fmadv.data.dataset import Dataset, Splits
from fmadv.data.features import FeatureMap, Field, frame_to_dataset
from fmadv.data.format import DatasetFormat, format_names, get_format, register_format
from fmadv.data.images import ImageData, ImageSplits, load_cifar10, load_mnist, read_idx
from fmadv.data.libfm import MAX_FEATURES_ENV, read_libfm, write_libfm
from fmadv.data.movielens import load_movielens_100k, movielens_items
from fmadv.data.registry import (
    dataset_listing,
    dataset_options,
    info,
    item_titles,
    load_dataset,
    load_images,
    select_options,
)
from fmadv.data.splits import random_split
from fmadv.data.synthetic import PlantedFM, make_synthetic, planted_fm

__all__ = [
    "DATA_DIR_ENV",
    "MAX_FEATURES_ENV",
    "Dataset",
    "DatasetCard",
    "DatasetFormat",
    "FeatureMap",
    "Field",
    "ImageData",
    "ImageSplits",
    "PlantedFM",
    "Splits",
    "dataset_listing",
    "dataset_options",
    "dataset_path",
    "fetch",
    "format_names",
    "frame_to_dataset",
    "get_card",
    "get_format",
    "info",
    "is_complete",
    "item_titles",
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
    "register_format",
    "resolve_data_dir",
    "select_options",
    "verify",
    "write_libfm",
]
