"""MNIST IDX and CIFAR-10 pickle readers (CIFAR-10 from generated batches only)."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from fmadv.data import load_cifar10, load_images, load_mnist, read_idx
from fmadv.data.images import CIFAR10_META, CIFAR10_TEST, CIFAR10_TRAIN, MNIST_FILES
from fmadv.errors import DataError


def idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def fake_mnist(folder: Path, n_train: int = 20, n_test: int = 5) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28)),
        "train_labels": rng.integers(0, 10, n_train),
        "test_images": rng.integers(0, 256, (n_test, 28, 28)),
        "test_labels": rng.integers(0, 10, n_test),
    }
    for key, stem in MNIST_FILES.items():
        (folder / f"{stem}.gz").write_bytes(gzip.compress(idx_bytes(arrays[key])))


def test_read_idx_plain_and_gzip(tmp_path: Path) -> None:
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.idx").write_bytes(idx_bytes(arr))
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(idx_bytes(arr)))
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx.gz"), arr)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (idx_bytes(np.zeros((2, 3), np.uint8))[:-1], "promises 6 data bytes"),
        (b"\x00\x01\x08\x01\x00\x00\x00\x01x", "bad magic"),
        (b"\x00\x00\x08\x03\x00", "truncated IDX header"),
        (b"\x1f\x8b\x08\x00garbage", "corrupt gzip"),
    ],
)
def test_read_idx_errors(tmp_path: Path, data: bytes, fragment: str) -> None:
    path = tmp_path / "bad.idx"
    path.write_bytes(data)
    with pytest.raises(DataError, match=fragment):
        read_idx(path)


def test_load_mnist_generated_with_valid(tmp_path: Path) -> None:
    fake_mnist(tmp_path)
    s = load_mnist(tmp_path, valid_size=0.25, seed=1)
    assert (s.train.n_rows, s.valid.n_rows, s.test.n_rows) == (15, 5, 5)
    assert s.train.images.shape[1:] == (1, 28, 28) and s.train.images.dtype == np.uint8
    x = s.test.float_images()
    assert x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    (tmp_path / f"{MNIST_FILES['test_labels']}.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros(4, np.uint8)))
    )
    with pytest.raises(DataError, match="N labels"):
        load_mnist(tmp_path)


def test_load_mnist_real(data_dir_with) -> None:
    shared_data_dir = data_dir_with("mnist")
    s = load_images("mnist", shared_data_dir)
    assert s.train.n_rows == 60000 and s.test.n_rows == 10000 and s.valid is None
    assert s.train.labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert np.bincount(s.test.labels).tolist()[:3] == [980, 1135, 1032]


def fake_cifar(folder: Path, per_batch: int = 4) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for name in (*CIFAR10_TRAIN, CIFAR10_TEST):
        batch = {
            b"data": rng.integers(0, 256, (per_batch, 3072)).astype(np.uint8),
            b"labels": rng.integers(0, 10, per_batch).tolist(),
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [f"class{i}".encode() for i in range(10)]}
    (folder / CIFAR10_META).write_bytes(pickle.dumps(meta, protocol=2))


def test_load_cifar10_generated(tmp_path: Path) -> None:
    fake_cifar(tmp_path)
    s = load_cifar10(tmp_path)
    assert s.train.n_rows == 20 and s.test.n_rows == 4
    assert s.train.images.shape[1:] == (3, 32, 32) and s.train.classes[3] == "class3"


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


def test_cifar_unpickler_refuses_code(tmp_path: Path) -> None:
    fake_cifar(tmp_path)
    (tmp_path / CIFAR10_TEST).write_bytes(pickle.dumps({b"data": _Evil()}))
    with pytest.raises(DataError, match="refusing to load"):
        load_cifar10(tmp_path)
