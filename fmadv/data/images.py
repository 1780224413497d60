"""Image classification data: MNIST (IDX files) and CIFAR-10 (python pickles).

The same attack and training core that drives the FM also trains LeNet / MLP
classifiers on these, where the adversarial-training literature reports its numbers.
Images are kept as uint8 (N, C, H, W) to save memory (CIFAR-10 as float32 would take
600 MB); :meth:`ImageData.float_images` scales a batch to [0, 1], the attacks' box.
"""

from __future__ import annotations

import gzip
import io
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmadv.data._io import read_bytes
from fmadv.data.splits import carve, check_fraction
from fmadv.errors import DataError

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = "test_batch"
CIFAR10_META = "batches.meta"

_IDX_TYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(repr=False)
class ImageData:
    """Labelled images.

    Parameters
    ----------
    images : numpy.ndarray
        uint8 array of shape (N, C, H, W).
    labels : numpy.ndarray
        int64 class indices, shape (N,).
    classes : tuple of str
        Class names; ``labels`` index into it.
    name : str
        Dataset name.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    name: str = ""

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise DataError(
                f"images must be uint8 of shape (N, C, H, W), got {self.images.dtype} "
                f"{self.images.shape}"
            )
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.labels.shape != (self.images.shape[0],):
            raise DataError(f"{self.labels.shape[0]} labels for {self.images.shape[0]} images")
        bad = np.flatnonzero((self.labels < 0) | (self.labels >= len(self.classes)))
        if bad.size:
            raise DataError(
                f"label {self.labels[bad[0]]} of image {bad[0]} is outside "
                f"0..{len(self.classes) - 1}"
            )

    @property
    def n_rows(self) -> int:
        """Number of images."""
        return int(self.images.shape[0])

    def __len__(self) -> int:
        return self.n_rows

    def float_images(self, rows: np.ndarray | slice | None = None) -> np.ndarray:
        """float32 images scaled to [0, 1] (all, or the selected rows)."""
        batch = self.images if rows is None else self.images[rows]
        return batch.astype(np.float32) / 255.0

    def subset(self, rows: np.ndarray) -> ImageData:
        """The selected rows as a new ImageData."""
        return ImageData(self.images[rows], self.labels[rows], self.classes, self.name)

    def __repr__(self) -> str:
        return f"ImageData(name={self.name!r}, n_rows={self.n_rows}, shape={self.images.shape[1:]})"


@dataclass
class ImageSplits:
    """Train / validation / test images (``valid`` is None unless asked for)."""

    train: ImageData
    valid: ImageData | None
    test: ImageData


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip-compressed or not) into a numpy array of its declared shape.

    Raises
    ------
    DataError
        Missing file, corrupt gzip stream, unknown type code, or a size that does not
        match the header.
    """
    path = Path(path)
    data = read_bytes(path, "an IDX file")
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"corrupt gzip stream ({exc})", path) from exc
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_TYPES:
        raise DataError("not an IDX file (bad magic number)", path)
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError("truncated IDX header", path)
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(
            f"IDX header promises {expected} data bytes for shape {shape}, "
            f"found {len(data) - header}",
            path,
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _idx_path(directory: Path, stem: str) -> Path:
    gz = directory / f"{stem}.gz"
    return gz if gz.exists() or not (directory / stem).exists() else directory / stem


def _valid_split(
    train: ImageData, valid_size: float, seed: int
) -> tuple[ImageData, ImageData | None]:
    valid_size = check_fraction("valid_size", valid_size, allow_zero=True)
    rest, taken = carve(np.arange(train.n_rows), valid_size, seed)
    if taken is None:
        return train, None
    return train.subset(rest), train.subset(taken)


def load_mnist(directory: str | Path, *, valid_size: float = 0.0, seed: int = 0) -> ImageSplits:
    """Load MNIST from its four IDX files (``.gz`` or already decompressed).

    Parameters
    ----------
    directory : str or Path
        Folder with ``train-images-idx3-ubyte.gz`` and the other three files.
    valid_size : float
        Share of the 60000 training images held out for validation (seeded).
    seed : int
        Seed of that hold-out.

    Returns
    -------
    ImageSplits
        uint8 images of shape (N, 1, 28, 28), labels 0-9.
    """
    directory = Path(directory)
    arrays = {key: read_idx(_idx_path(directory, stem)) for key, stem in MNIST_FILES.items()}
    classes = tuple(str(i) for i in range(10))
    parts = {}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        where = _idx_path(directory, MNIST_FILES[f"{split}_images"])
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise DataError(
                f"expected images (N, 28, 28) and N labels, got {images.shape} and {labels.shape}",
                where,
            )
        parts[split] = ImageData(images[:, None].astype(np.uint8), labels, classes, "mnist")
    train, valid = _valid_split(parts["train"], valid_size, seed)
    return ImageSplits(train, valid, parts["test"])


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds numpy arrays and nothing else.

    The CIFAR-10 batches are pickles; refusing every other global means a tampered
    file cannot run code when it is loaded.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def _load_pickle(path: Path) -> dict:
    data = read_bytes(path, "a CIFAR-10 python batch")
    try:
        obj = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # any unpickling failure means a bad file
        raise DataError(f"not a CIFAR-10 python batch ({exc})", path) from exc
    if not isinstance(obj, dict):
        raise DataError("not a CIFAR-10 python batch (expected a dict)", path)
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _load_pickle(path)
    if "data" not in batch or "labels" not in batch:
        raise DataError("CIFAR-10 batch lacks 'data' or 'labels'", path)
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != labels.shape[0]:
        raise DataError(f"expected data (N, 3072) and N labels, got {data.shape}", path)
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(directory: str | Path, *, valid_size: float = 0.0, seed: int = 0) -> ImageSplits:
    """Load CIFAR-10 from the extracted ``cifar-10-batches-py`` folder.

    Parameters
    ----------
    directory : str or Path
        Folder with ``data_batch_1`` ... ``data_batch_5``, ``test_batch`` and
        ``batches.meta``.
    valid_size : float
        Share of the training images held out for validation (seeded).
    seed : int
        Seed of that hold-out.

    Returns
    -------
    ImageSplits
        uint8 images of shape (N, 3, 32, 32), labels 0-9, class names from the meta file.
    """
    directory = Path(directory)
    meta = _load_pickle(directory / CIFAR10_META)
    names = meta.get("label_names")
    if not isinstance(names, list) or not names:
        raise DataError("batches.meta lacks 'label_names'", directory / CIFAR10_META)
    classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    train_parts = [_cifar_batch(directory / f) for f in CIFAR10_TRAIN]
    train = ImageData(
        np.concatenate([p[0] for p in train_parts]),
        np.concatenate([p[1] for p in train_parts]),
        classes,
        "cifar10",
    )
    test = ImageData(*_cifar_batch(directory / CIFAR10_TEST), classes, "cifar10")
    train, valid = _valid_split(train, valid_size, seed)
    return ImageSplits(train, valid, test)
