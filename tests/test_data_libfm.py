"""libFM reader and writer: round trips, the real frappe files, and every bad input."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from fmadv.data import Dataset, read_libfm, write_libfm
from fmadv.data.libfm import DEFAULT_MAX_FEATURES, MAX_FEATURES_ENV
from fmadv.errors import ConfigError, DataError


def write(tmp_path: Path, text: str | bytes, name: str = "rows.libfm") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def random_binary(rng: np.random.Generator, rows: int, cols: int) -> sp.csr_matrix:
    X = sp.random(rows, cols, density=0.1, format="csr", random_state=rng, dtype=np.float32)
    X.data[:] = 1.0
    return X


def test_round_trip_binary(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = random_binary(rng, 50, 30)
    y = np.where(rng.random(50) < 0.4, 1.0, -1.0).astype(np.float32)
    path = write_libfm(tmp_path / "a.libfm", Dataset(X, y))
    back = read_libfm(path, n_features=30)
    assert (back.X != X).nnz == 0
    np.testing.assert_array_equal(back.y, y)
    assert back.X.has_canonical_format and back.X.dtype == np.float32
    assert back.name == "a"


def test_round_trip_real_valued_and_one_based(tmp_path: Path) -> None:
    X = sp.csr_matrix(np.array([[0.1, 0, 2.5], [0, 1.0, 0], [0, 0, 0]], dtype=np.float32))
    y = np.array([1, 0, 1])  # 0/1 labels are written as -1/+1
    path = write_libfm(tmp_path / "r.svm", X, y, zero_based=False)
    assert path.read_text().splitlines() == ["1 1:0.100000001 3:2.5", "-1 2:1", "1"]
    back = read_libfm(path, allow_real_valued=True, zero_based=False, n_features=3)
    np.testing.assert_array_equal(back.X.toarray(), X.toarray())
    np.testing.assert_array_equal(back.y, [1, -1, 1])


def test_write_is_atomic_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.libfm"
    target.write_text("1 0:1\n")
    X = sp.csr_matrix(np.array([[np.nan]], dtype=np.float32))
    with pytest.raises(DataError, match="NaN or inf"):
        write_libfm(target, X, np.array([1.0]))
    assert target.read_text() == "1 0:1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.libfm"]


def test_write_rejects_bad_labels_and_double_labels(tmp_path: Path) -> None:
    X = sp.csr_matrix(np.eye(2, dtype=np.float32))
    with pytest.raises(DataError, match="labels must be"):
        write_libfm(tmp_path / "x", X, np.array([2.0, 1.0]))
    with pytest.raises(DataError, match="not both"):
        write_libfm(tmp_path / "x", Dataset(X, np.array([1.0, -1.0])), np.array([1.0, 1.0]))
    assert not (tmp_path / "x").exists()


def test_label_spellings_crlf_and_trailing_blank_lines(tmp_path: Path) -> None:
    text = "+1 0:1\r\n1.0 1:1\r\n-1.0 2:1\r\n0 0:1 3:1\r\n0.0 1:1\r\n-1\t4:1\r\n\r\n\n"
    data = read_libfm(write(tmp_path, text))
    np.testing.assert_array_equal(data.y, [1, 1, -1, -1, -1, -1])
    assert data.n_features == 5
    assert data.X[3].indices.tolist() == [0, 3]


def test_zero_values_dropped_and_indices_sorted(tmp_path: Path) -> None:
    data = read_libfm(write(tmp_path, "1 7:1 2:0 3:1\n"), n_features=10)
    assert data.X.indices.tolist() == [3, 7]
    assert data.n_features == 10
    assert data.is_binary


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("1 0:1\n1 2:1 abc\n", 2, "malformed token 'abc'"),
        ("1 0:1\n-1 x:1\n", 2, "index 'x' is not a non-negative integer"),
        ("1 0:1\n1 1:1\n-1 -3:1\n", 3, "negative feature index -3"),
        ("1 0:1\n1 1.5:1\n", 2, "not a non-negative integer"),
        ("1 2:one\n", 1, "value 'one' is not a number"),
        ("1 0:1\n2 1:1\n", 2, "bad label '2'"),
        ("1 0:1\nyes 1:1\n", 2, "bad label 'yes'"),
        ("1 0:1\n0:1 1:1\n", 2, "instead of a label"),
        ("1 0:1\n1 1:nan\n", 2, "must be finite"),
        ("1 0:1\n\n1 1:inf\n", 2, "blank line"),
        ("1 0:1\n1 1:1\n1 2:-inf\n", 3, "must be finite"),
        ("1 0:1 4:1 0:1\n", 1, "appears twice"),
        ("1 0:1\n1 3:1 # comment\n", 2, "malformed token '#'"),
    ],
)
def test_bad_input_names_file_and_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DataError) as info:
        read_libfm(path)
    assert info.value.line == line
    assert info.value.path == str(path)
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert fragment in str(info.value)


def test_first_error_wins_across_kinds(tmp_path: Path) -> None:
    # A real value on line 2 and a bad label on line 3: line 2 is reported.
    with pytest.raises(DataError) as info:
        read_libfm(write(tmp_path, "1 0:1\n1 1:0.5\nfoo 2:1\n"))
    assert info.value.line == 2 and "real-valued" in str(info.value)


def test_real_valued_rejected_then_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "1 0:1 1:0.5\n-1 2:3\n")
    with pytest.raises(DataError, match=r"allow_real_valued=True \(CLI: --allow-real-valued\)"):
        read_libfm(path)
    data = read_libfm(path, allow_real_valued=True)
    np.testing.assert_allclose(data.X.toarray(), [[1, 0.5, 0], [0, 0, 3]])
    assert not data.is_binary


def test_index_beyond_n_features(tmp_path: Path) -> None:
    path = write(tmp_path, "1 0:1\n1 2:1 5:1\n")
    with pytest.raises(DataError) as info:
        read_libfm(path, n_features=5)
    assert info.value.line == 2
    assert "feature index 5 is out of range for 5 features (expected 0..4)" in str(info.value)
    assert read_libfm(path, n_features=6).n_features == 6


def test_one_based_index_zero(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="index 0 in a 1-based file") as info:
        read_libfm(write(tmp_path, "1 1:1\n1 0:1\n"), zero_based=False)
    assert info.value.line == 2


def test_feature_space_beyond_the_budget_is_refused(tmp_path: Path) -> None:
    # One stray index would make the FM allocate terabytes of weights.
    path = write(tmp_path, "1 0:1\n-1 2:1 999999999999:1\n")
    with pytest.raises(DataError) as info:
        read_libfm(path)
    assert info.value.path == str(path) and info.value.line == 2
    msg = str(info.value)
    assert "feature index 999999999999 makes the feature space 1,000,000,000,000" in msg
    assert f"budget of {DEFAULT_MAX_FEATURES:,}" in msg
    assert "max_features=" in msg and "FMADV_MAX_FEATURES=1000000000000" in msg


def test_the_default_budget_refuses_a_stray_ten_million(tmp_path: Path) -> None:
    path = write(tmp_path, "1 0:1\n-1 2:1\n1 10000000:1\n")
    with pytest.raises(DataError, match="budget") as info:
        read_libfm(path)
    assert info.value.line == 3
    assert read_libfm(path, max_features=10_000_001).n_features == 10_000_001
    # A stated width is the caller's budget.
    assert read_libfm(path, n_features=10_000_001).n_features == 10_000_001


def test_the_budget_counts_the_width_of_one_based_files(tmp_path: Path) -> None:
    path = write(tmp_path, "1 1:1 8:1\n")
    assert read_libfm(path, zero_based=False, max_features=8).n_features == 8
    with pytest.raises(DataError, match="makes the feature space 9 features wide"):
        read_libfm(path, max_features=8)


def test_the_budget_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "1 0:1\n-1 20:1\n")
    monkeypatch.setenv(MAX_FEATURES_ENV, "20")
    with pytest.raises(DataError, match="beyond the budget of 20 "):
        read_libfm(path)
    assert read_libfm(path, max_features=21).n_features == 21  # the argument wins
    monkeypatch.setenv(MAX_FEATURES_ENV, "21")
    assert read_libfm(path).n_features == 21
    monkeypatch.setenv(MAX_FEATURES_ENV, "lots")
    with pytest.raises(ConfigError, match="FMADV_MAX_FEATURES must be an integer >= 1, got 'lots'"):
        read_libfm(path)
    with pytest.raises(ConfigError, match="max_features must be an integer >= 1"):
        read_libfm(path, max_features=0)


def test_an_index_beyond_64_bits_is_a_data_error(tmp_path: Path) -> None:
    path = write(tmp_path, "1 0:1\n1 123456789012345678901234567890:1\n")
    with pytest.raises(DataError, match="is too large") as info:
        read_libfm(path, n_features=10)
    assert info.value.line == 2
    with pytest.raises(DataError, match="is too large"):
        read_libfm(path, max_features=2**62)


@pytest.mark.parametrize("content", ["", "\n\n", "  \r\n"])
def test_empty_file(tmp_path: Path, content: str) -> None:
    with pytest.raises(DataError, match="empty file"):
        read_libfm(write(tmp_path, content))


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_libfm(tmp_path / "nope.libfm")
    with pytest.raises(DataError, match="is a folder"):
        read_libfm(tmp_path)


def test_gzip_and_huge_token_rejected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="gzip"):
        read_libfm(write(tmp_path, b"\x1f\x8b\x08\x00rest 1:1"))
    with pytest.raises(DataError, match="characters") as info:
        read_libfm(write(tmp_path, "1 0:1\n" + "1," * 200 + "\n"))
    assert info.value.line == 2


def test_input_file_untouched(tmp_path: Path) -> None:
    path = write(tmp_path, "1 0:1\r\n-1 1:1\r\n")
    before = (path.read_bytes(), os.stat(path).st_mtime_ns)
    read_libfm(path)
    assert (path.read_bytes(), os.stat(path).st_mtime_ns) == before


@pytest.mark.parametrize(
    ("split", "rows", "positives"),
    [("validation", 57722, 19063), ("test", 28860, 9536)],
)
def test_real_frappe_files(dataset_dir, split: str, rows: int, positives: int) -> None:
    path = dataset_dir("frappe", f"frappe.{split}.libfm") / f"frappe.{split}.libfm"
    start = time.perf_counter()
    data = read_libfm(path, n_features=5382)
    elapsed = time.perf_counter() - start
    assert data.n_rows == rows
    assert data.n_features == 5382
    assert np.all(np.diff(data.X.indptr) == 10)
    assert data.is_binary
    assert int((data.y > 0).sum()) == positives
    assert int((data.y < 0).sum()) == rows - positives
    assert data.X.indices.max() <= 5381
    assert elapsed < 1.0, f"reading {path.name} took {elapsed:.2f} s"


# The fast path (fmadv.data.libfm_fast) against the checking reader.

WELL_FORMED = [
    "1 0:1 3:1\n-1 2:1\n",
    "+1 10:1\n0 4:1 2:1\n1.0 7:1\n-1.0 1:1",  # label spellings, unsorted row, no final LF
    "1\t3:1  5:1\r\n-1 1:1\r\n\r\n\n",  # tabs, CRLF, trailing blank lines
    "1 0:1 1:0 2:1\n-1 3:1.0 4:0.0\n",  # zeros dropped, 1.0 is 1
    "1 000000005:1 2:1\n-1 8000000:1\n",  # indices of more than 8 digits
    "1\n-1 2:1\n",  # a row without features
]
MALFORMED = [
    "1 0:1\n\n1 1:1\n",
    "1 0:1 0:1\n",
    "1 0:1\n2 1:1\n",
    "1 0:1\n0:1 1:1\n",
    "1 x:1\n",
    "1 -3:1\n",
    "1 1.5:1\n",
    "1 :1\n",
    "1 3:\n",
    "1 3::1\n",
    "1 3:1:1\n",
    "1 3:nan\n",
    "1 3:0.5\n",
    "1 3:1e\n",
    "1 3:1 #\n",
    "1 3\x00:1\n",
    "1 3\x0e:1\n",
    "1 ３:1\n",
    "\n1 3:1\n",
    "  \n1 3:1\n",
]


def options(**kwargs):
    from fmadv.data.libfm import max_features_budget

    chosen = {"n_features": None, "allow_real_valued": False, "zero_based": True} | kwargs
    budget = max_features_budget() if chosen["n_features"] is None else None
    return (*chosen.values(), budget)


def read_fast(path: Path, **kwargs):
    from fmadv.data.libfm_fast import read_fast

    return read_fast(path.read_bytes(), *options(**kwargs))


def read_both(path: Path, **kwargs):
    from fmadv.data.libfm import _read_checked

    checked = _read_checked(path.read_bytes(), path, *options(**kwargs))
    return read_fast(path, **kwargs), checked


@pytest.mark.parametrize("text", WELL_FORMED)
def test_fast_path_reads_what_the_checking_reader_reads(tmp_path: Path, text: str) -> None:
    fast, checked = read_both(write(tmp_path, text))
    assert fast is not None
    assert (fast[0] != checked[0]).nnz == 0 and fast[0].shape == checked[0].shape
    assert fast[0].has_canonical_format and fast[0].dtype == np.float32
    np.testing.assert_array_equal(fast[1], checked[1])


@pytest.mark.parametrize("text", MALFORMED)
def test_fast_path_hands_every_bad_file_over(tmp_path: Path, text: str) -> None:
    assert read_fast(write(tmp_path, text)) is None


def test_fast_path_options_and_pieces(tmp_path: Path, monkeypatch) -> None:
    import fmadv.data.libfm_fast as fast_module

    rng = np.random.default_rng(3)
    X = random_binary(rng, 400, 60)
    y = np.where(rng.random(400) < 0.5, 1.0, -1.0).astype(np.float32)
    path = write_libfm(tmp_path / "a.libfm", Dataset(X, y), zero_based=False)
    monkeypatch.setattr(fast_module, "PIECE_BYTES", 64)  # many pieces of a few lines
    fast, checked = read_both(path, zero_based=False, n_features=60)
    assert (fast[0] != X).nnz == 0 and (checked[0] != X).nnz == 0
    np.testing.assert_array_equal(fast[1], y)
    # A blank line where a piece ends is still a blank line before the end.
    lines = path.read_text().splitlines(keepends=True)
    broken = write(tmp_path, "".join(lines[:200]) + "\n" + "".join(lines[200:]), "b.libfm")
    assert read_fast(broken, zero_based=False) is None
    assert read_fast(path, zero_based=True, n_features=60) is None  # index 60 out of range
    assert read_fast(path, zero_based=False, n_features=59) is None
