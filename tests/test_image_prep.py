"""prepare_images, load_image_dataset and batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmadv.data.image_prep import batches, load_image_dataset, prepare_images
from fmadv.data.images import ImageData, ImageSplits
from fmadv.errors import ConfigError, DataError

CLASSES = ("a", "b", "c")


def tiny_part(n: int, seed: int, shape=(2, 3, 4)) -> ImageData:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    images[0] = 255  # make sure both ends of the pixel range occur
    images[1] = 0
    return ImageData(images, rng.integers(0, 3, size=n), CLASSES, "tiny")


def tiny_splits(with_valid: bool = True) -> ImageSplits:
    valid = tiny_part(4, 1) if with_valid else None
    return ImageSplits(tiny_part(12, 0), valid, tiny_part(6, 2))


@pytest.mark.parametrize("scale", [255, 256])
def test_scaling(scale):
    splits = tiny_splits()
    prep = prepare_images(splits, scale=scale)
    assert prep.train_x.dtype == torch.float32 and prep.train_y.dtype == torch.int64
    assert prep.train_x.shape == (12, 2, 3, 4)
    assert prep.shape == (2, 3, 4) and prep.n_classes == 3 and prep.scale == scale
    assert prep.mean is None
    expected = torch.from_numpy(splits.test.images.astype(np.float32)) / scale
    torch.testing.assert_close(prep.test_x, expected, rtol=0, atol=0)
    torch.testing.assert_close(prep.valid_y, torch.from_numpy(splits.valid.labels))
    assert prep.train_x.max().item() == 255 / scale
    assert prep.train_x.min().item() == 0
    torch.testing.assert_close(prep.low, torch.zeros(2, 3, 4))
    torch.testing.assert_close(prep.high, torch.full((2, 3, 4), 255 / scale))
    assert prep.bounds == (prep.low, prep.high)


def test_scale_256_is_below_one():
    # Huang et al.'s 1/256 keeps white pixels strictly below 1.
    prep = prepare_images(tiny_splits(), scale=256)
    assert prep.high.max().item() == pytest.approx(0.99609375)


@pytest.mark.parametrize("scale", [255, 256])
def test_mean_subtraction(scale):
    splits = tiny_splits()
    prep = prepare_images(splits, scale=scale, subtract_mean=True)
    expected_mean = splits.train.images.astype(np.float64).mean(0) / scale
    torch.testing.assert_close(prep.mean, torch.from_numpy(expected_mean).float())
    # Centred on the training split only: its mean is ~0, the others' is not forced.
    assert prep.train_x.mean(0).abs().max().item() < 1e-6
    torch.testing.assert_close(prep.low, -prep.mean)
    torch.testing.assert_close(prep.high, 255 / scale - prep.mean)
    # Every image, valid and test included, stays inside the box.
    for x in (prep.train_x, prep.valid_x, prep.test_x):
        assert torch.all(x >= prep.low - 1e-6) and torch.all(x <= prep.high + 1e-6)
    plain = prepare_images(splits, scale=scale)
    torch.testing.assert_close(prep.test_x + prep.mean, plain.test_x)


def test_without_validation_split():
    prep = prepare_images(tiny_splits(with_valid=False), subtract_mean=True)
    assert prep.valid_x is None and prep.valid_y is None
    assert "valid=0" in repr(prep)


@pytest.mark.parametrize("scale", [1, 128, 255.5, True, "255"])
def test_bad_scale(scale):
    with pytest.raises(ConfigError, match="scale"):
        prepare_images(tiny_splits(), scale=scale)


def test_mismatched_shapes():
    splits = ImageSplits(tiny_part(5, 0), None, tiny_part(5, 1, shape=(2, 4, 4)))
    with pytest.raises(DataError, match="shapes"):
        prepare_images(splits)


def test_batches_in_order_and_shuffled():
    x = torch.arange(10, dtype=torch.float32)[:, None]
    y = torch.arange(10)
    ordered = list(batches(x, y, 4, None))
    assert [len(b[1]) for b in ordered] == [4, 4, 2]
    assert torch.equal(torch.cat([b[1] for b in ordered]), y)
    shuffled = list(batches(x, y, 4, np.random.default_rng(0)))
    seen = torch.cat([b[1] for b in shuffled])
    assert sorted(seen.tolist()) == list(range(10)) and not torch.equal(seen, y)
    for xb, yb in shuffled:
        assert torch.equal(xb[:, 0].long(), yb)  # rows stay paired with their labels
    again = torch.cat([b[1] for b in batches(x, y, 4, np.random.default_rng(0))])
    assert torch.equal(again, seen)
    with pytest.raises(ConfigError):
        list(batches(x, y, 0, None))
    with pytest.raises(ValueError):
        list(batches(x, y[:5], 4, None))


@pytest.mark.parametrize("valid_size", [-1, 1.5, 2500.5, "5000", None, True])
def test_bad_valid_size_before_loading(valid_size, tmp_path):
    # Rejected before any file is read: tmp_path holds no data at all.
    with pytest.raises(ConfigError, match="valid_size"):
        load_image_dataset("mnist", tmp_path, valid_size=valid_size)


def test_missing_files_say_how_to_fetch(tmp_path):
    with pytest.raises(DataError, match="fetch"):
        load_image_dataset("mnist", tmp_path)


def test_not_an_image_dataset(tmp_path):
    with pytest.raises(ConfigError):
        load_image_dataset("synthetic", tmp_path)


@pytest.fixture(scope="module")
def mnist(data_dir_with):
    shared_data_dir = data_dir_with("mnist")
    return load_image_dataset("mnist", shared_data_dir, valid_size=5000, seed=0)


def test_mnist_split_sizes(mnist):
    assert len(mnist.train_x) == 55_000 and len(mnist.train_y) == 55_000
    assert len(mnist.valid_x) == 5_000 and len(mnist.valid_y) == 5_000
    assert len(mnist.test_x) == 10_000 and len(mnist.test_y) == 10_000
    assert mnist.shape == (1, 28, 28) and mnist.n_classes == 10
    assert mnist.train_x.shape == (55_000, 1, 28, 28)


def test_mnist_pixels_and_labels(mnist):
    for x in (mnist.train_x, mnist.valid_x, mnist.test_x):
        assert x.min().item() == 0.0 and x.max().item() == 1.0
    for y in (mnist.train_y, mnist.valid_y, mnist.test_y):
        counts = torch.bincount(y, minlength=10)
        assert len(counts) == 10
        # Every digit holds 9-11% of MNIST's images (5 is the rarest, about 9%); a
        # skewed hold-out would show here.
        share = counts.double() / len(y)
        assert share.min() > 0.08 and share.max() < 0.125


def test_mnist_count_equals_fraction(mnist, shared_data_dir):
    # A hold-out of 5000 is the fraction 5000/60000 of load_images, drawn by the same seed.
    again = load_image_dataset("mnist", shared_data_dir, valid_size=5000 / 60000, seed=0)
    assert torch.equal(again.valid_y, mnist.valid_y)
    assert torch.equal(again.valid_x, mnist.valid_x)
    with pytest.raises(ConfigError, match="valid_size"):
        load_image_dataset("mnist", shared_data_dir, valid_size=60_000)
