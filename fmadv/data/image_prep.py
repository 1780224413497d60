"""Image datasets as float tensors ready for training and attacks.

:func:`prepare_images` turns uint8 :class:`~fmadv.data.images.ImageSplits` into float32
tensors: pixels divided by ``scale`` (the "Harnessing adversarial examples" report
divides by 255, Huang et al. by 256), optionally minus the mean training image. It
also returns the box that valid pixels occupy after that transform, so an attack can
clip its perturbed images to real images: ``[0, 255 / scale] - mean``.

:func:`load_image_dataset` does the same for a registered dataset (``mnist``,
``cifar10``), with the validation hold-out given as a count (the literature's 55,000 /
5,000 MNIST split) or as a fraction.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fmadv.data.images import ImageData, ImageSplits
from fmadv.data.registry import load_images
from fmadv.data.splits import carve, check_fraction
from fmadv.errors import ConfigError, DataError

__all__ = ["SCALES", "PreparedImages", "batches", "load_image_dataset", "prepare_images"]

#: Accepted pixel divisors: 255 maps pixels onto [0, 1], 256 onto [0, 255/256].
SCALES = (255, 256)


@dataclass(repr=False)
class PreparedImages:
    """Float image splits and the box their valid pixels occupy.

    Parameters
    ----------
    train_x, valid_x, test_x : torch.Tensor
        float32 images of shape (N, C, H, W); ``valid_x`` is None without a hold-out.
    train_y, valid_y, test_y : torch.Tensor
        int64 class indices of shape (N,) (the dtype that cross-entropy takes).
    low, high : torch.Tensor
        float32 tensors of shape (C, H, W), broadcastable to a batch: the valid box
        after the transform, ``-mean`` and ``255 / scale - mean`` (0 and 255 / scale
        without mean subtraction).
    scale : int
        The pixel divisor, 255 or 256.
    mean : torch.Tensor or None
        The subtracted mean training image, shape (C, H, W), or None.
    n_classes : int
        Number of classes.
    shape : tuple of int
        (C, H, W) of one image.
    classes : tuple of str
        Class names.
    name : str
        Dataset name.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    valid_x: torch.Tensor | None
    valid_y: torch.Tensor | None
    test_x: torch.Tensor
    test_y: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    scale: int
    mean: torch.Tensor | None
    n_classes: int
    shape: tuple[int, int, int]
    classes: tuple[str, ...] = ()
    name: str = ""

    def subset_train(self, rows: int, seed: int = 0) -> PreparedImages:
        """The same data with a seeded subset of ``rows`` training images (the mean image
        and the box stay those of the full training set)."""
        if not 1 <= rows:
            raise ConfigError(f"train rows must be >= 1, got {rows}")
        if rows >= len(self.train_x):
            return self
        keep = torch.from_numpy(np.random.default_rng(seed).permutation(len(self.train_x))[:rows])
        return dataclasses.replace(self, train_x=self.train_x[keep], train_y=self.train_y[keep])

    @property
    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(low, high)``, in the form :meth:`fmadv.attacks.base.Attack.perturb` takes."""
        return self.low, self.high

    def __repr__(self) -> str:
        n_valid = 0 if self.valid_x is None else len(self.valid_x)
        return (
            f"PreparedImages(name={self.name!r}, train={len(self.train_x)}, valid={n_valid}, "
            f"test={len(self.test_x)}, shape={self.shape}, scale={self.scale}, "
            f"subtract_mean={self.mean is not None})"
        )


def _check_scale(scale: int) -> int:
    if isinstance(scale, bool) or scale not in SCALES:
        raise ConfigError(f"scale must be 255 or 256, got {scale!r}")
    return int(scale)


def _to_tensors(part: ImageData, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    # Convert in torch so the float copy is made once (numpy's astype then from_numpy
    # would be the same, but dividing in place avoids a second full-size array).
    x = torch.from_numpy(part.images).to(torch.float32).div_(scale)
    return x, torch.from_numpy(part.labels).to(torch.int64)


def prepare_images(
    splits: ImageSplits, scale: int = 255, subtract_mean: bool = False
) -> PreparedImages:
    """Scale uint8 image splits to float32 tensors, optionally centred on the training mean.

    Parameters
    ----------
    splits : ImageSplits
        uint8 train / valid / test images of one shape.
    scale : int
        Pixel divisor: 255 (pixels in [0, 1]) or 256 (pixels in [0, 255/256], as in
        Huang et al.).
    subtract_mean : bool
        Subtract the per-pixel mean of the training images (after scaling) from every
        split. The mean is taken on the training split only, so the validation and
        test images do not leak into the preprocessing.

    Returns
    -------
    PreparedImages

    Raises
    ------
    ConfigError
        A scale other than 255 or 256.
    DataError
        Splits whose image shapes or class lists differ.
    """
    scale = _check_scale(scale)
    parts = [p for p in (splits.train, splits.valid, splits.test) if p is not None]
    shape = tuple(int(d) for d in splits.train.images.shape[1:])
    for part in parts:
        if tuple(part.images.shape[1:]) != shape:
            raise DataError(
                f"image shapes differ between splits: {shape} and {tuple(part.images.shape[1:])}"
            )
        if part.classes != splits.train.classes:
            raise DataError("class lists differ between splits")
    train_x, train_y = _to_tensors(splits.train, scale)
    test_x, test_y = _to_tensors(splits.test, scale)
    valid_x = valid_y = None
    if splits.valid is not None:
        valid_x, valid_y = _to_tensors(splits.valid, scale)
    low = torch.zeros(shape, dtype=torch.float32)
    high = torch.full(shape, 255.0 / scale, dtype=torch.float32)
    mean = None
    if subtract_mean:
        # Accumulate in float64 from the exact uint8 values: a float32 running sum over
        # 60,000 images would lose digits the centred training mean should keep near 0.
        mean = torch.from_numpy(
            (splits.train.images.mean(axis=0, dtype=np.float64) / scale).astype(np.float32)
        )
        for x in (train_x, valid_x, test_x):
            if x is not None:
                x.sub_(mean)
        low, high = low - mean, high - mean
    return PreparedImages(
        train_x=train_x,
        train_y=train_y,
        valid_x=valid_x,
        valid_y=valid_y,
        test_x=test_x,
        test_y=test_y,
        low=low,
        high=high,
        scale=scale,
        mean=mean,
        n_classes=len(splits.train.classes),
        shape=shape,  # type: ignore[arg-type]
        classes=splits.train.classes,
        name=splits.train.name,
    )


def _parse_valid_size(valid_size: float | int) -> tuple[str, float | int]:
    """``("count", k)`` for a whole number >= 1, else ``("fraction", f)`` with f in [0, 1)."""
    if isinstance(valid_size, bool) or not isinstance(valid_size, numbers.Real):
        raise ConfigError(f"valid_size must be a count or a fraction, got {valid_size!r}")
    if valid_size >= 1:
        if float(valid_size) != int(valid_size):
            raise ConfigError(
                f"valid_size must be a whole count (>= 1) or a fraction in [0, 1), got {valid_size}"
            )
        return "count", int(valid_size)
    return "fraction", check_fraction("valid_size", float(valid_size), allow_zero=True)


def load_image_dataset(
    name: str,
    data_dir: str | Path | None = None,
    valid_size: float | int = 5000,
    seed: int = 0,
    scale: int = 255,
    subtract_mean: bool = False,
) -> PreparedImages:
    """Load a registered image dataset as prepared float tensors.

    Parameters
    ----------
    name : str
        ``"mnist"`` or ``"cifar10"`` (any image card of the registry).
    data_dir : str or Path, optional
        Data directory, resolved as in :func:`fmadv.data.cache.resolve_data_dir`;
        the files are checked against the dataset card.
    valid_size : int or float
        Training images held out for validation: a count (the default 5000 gives
        MNIST's usual 55,000 / 5,000 split; CIFAR-10 is usually given 10,000 / 45,000 at
        ``valid_size=10000``), or a fraction in [0, 1); 0 holds nothing out. A count k
        draws the same rows as the fraction k / N_train would through
        :func:`~fmadv.data.registry.load_images`.
    seed : int
        Seed of the hold-out.
    scale, subtract_mean
        See :func:`prepare_images`.

    Returns
    -------
    PreparedImages

    Raises
    ------
    ConfigError
        Unknown or non-image dataset, bad ``valid_size`` or ``scale``.
    DataError
        Missing or malformed files (the message says how to fetch them).
    ChecksumError
        Files that differ from the dataset card.
    """
    kind, amount = _parse_valid_size(valid_size)
    scale = _check_scale(scale)
    splits = load_images(name, data_dir)
    n_train = splits.train.n_rows
    if kind == "count":
        if amount >= n_train:
            raise ConfigError(
                f"valid_size={amount} would hold out all {n_train} training images of {name}"
            )
        fraction = amount / n_train
    else:
        fraction = float(amount)
    # The same seeded carve that load_images applies to a fraction, so both ways of
    # asking for a hold-out agree.
    rest, taken = carve(np.arange(n_train), fraction, seed)
    if taken is not None:
        splits = ImageSplits(splits.train.subset(rest), splits.train.subset(taken), splits.test)
    return prepare_images(splits, scale=scale, subtract_mean=subtract_mean)


def batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    rng: np.random.Generator | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches ``(x[rows], y[rows])``; the last one may be smaller.

    Parameters
    ----------
    x, y : torch.Tensor
        Inputs and labels, batch first, of equal length.
    batch_size : int
        Rows per batch.
    rng : numpy.random.Generator, optional
        Shuffles the rows when given (a fresh order on every call); None keeps their order.

    Raises
    ------
    ConfigError
        ``batch_size`` below 1.
    ValueError
        ``x`` and ``y`` of different lengths.
    """
    if isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size!r}")
    n = len(x)
    if len(y) != n:
        raise ValueError(f"{len(y)} labels for {n} inputs")
    if rng is None:
        for start in range(0, n, batch_size):
            yield x[start : start + batch_size], y[start : start + batch_size]
        return
    order = torch.from_numpy(rng.permutation(n)).to(x.device)
    for start in range(0, n, batch_size):
        rows = order[start : start + batch_size]
        yield x[rows], y[rows]
