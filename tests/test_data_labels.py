"""Binary labels: one set of spellings for every reader, and errors that name the row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fmadv.data.labels import LabelCounts, binary_labels, label_signs
from fmadv.errors import ConfigError, DataError


@pytest.mark.parametrize(
    "values",
    [
        np.array([1, 0, -1, 1]),
        np.array([1.0, 0.0, -1.0, 1.0], dtype=np.float32),
        np.array([True, False, False, True]),
        np.array(["1", "0", "-1", "+1"], dtype=object),
        np.array(["1.0", "False", "-1.0", "True"], dtype=object),
        np.array([b"+1", b"0.0", b"-1", b"1"]),
    ],
)
def test_spellings_of_binary_labels(values) -> None:
    y = binary_labels(values)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [1, -1, -1, 1])
    np.testing.assert_array_equal(label_signs(values), y)


def test_label_signs_marks_everything_else_nan() -> None:
    signs = label_signs(np.array(["1", "2", "yes", None, "", "0:1", "-1"], dtype=object))
    np.testing.assert_array_equal(np.isnan(signs), [False, True, True, True, True, True, False])
    assert np.isnan(label_signs(np.array([0.5, np.nan, 2.0]))).all()


def test_threshold_and_positive() -> None:
    np.testing.assert_array_equal(
        binary_labels(np.array([3.99, 4.0, 5.0]), threshold=4), [-1, 1, 1]
    )
    np.testing.assert_array_equal(binary_labels([1, 5, 4, 2], positive=[4, 5]), [-1, 1, 1, -1])
    # Compared as category strings: 4 matches 4.0 and "4".
    np.testing.assert_array_equal(
        binary_labels(np.array(["4", "x", "4.5"], dtype=object), positive=4.0), [1, -1, -1]
    )
    with pytest.raises(ConfigError, match="not both"):
        binary_labels([1], threshold=1, positive=1)


def test_errors_name_column_row_and_file() -> None:
    with pytest.raises(DataError, match=r"^labels must be -1/\+1 or 0/1; row 2 has '2'$"):
        binary_labels(np.array([1.0, 2.0]))
    with pytest.raises(DataError) as info:
        binary_labels(pd.Series(["1", "buy"]).to_numpy(), column="kind", path="log.csv")
    msg = str(info.value)
    assert msg.startswith(
        "log.csv: label column 'kind' has 'buy' in row 2 (line 3); expected -1/+1 or 0/1"
    )
    assert "threshold=" in msg and info.value.path == "log.csv"
    # Rows of a chunk are numbered in the file.
    with pytest.raises(DataError, match="'y' has a missing value in row 12"):
        binary_labels(np.array([1.0, np.nan]), column="y", row=lambda i: 11 + i)
    with pytest.raises(DataError, match="'r' has a missing value in row 1"):
        binary_labels(np.array([np.inf]), threshold=1.0, column="r")
    with pytest.raises(DataError, match="'p' has a missing value in row 2"):
        binary_labels(np.array(["a", None], dtype=object), positive="a", column="p")
    with pytest.raises(DataError, match="must be numeric to use threshold"):
        binary_labels(np.array(["a"], dtype=object), threshold=1.0, column="r")


RATINGS = np.tile(np.arange(1, 6), 16_000)  # 80,000 ratings of 1..5


@pytest.mark.parametrize(
    ("threshold", "sign"),
    [(9, "-1"), (1, "+1"), (0.5, "+1"), (5.5, "-1")],
)
def test_a_threshold_that_leaves_one_class_is_refused(threshold: float, sign: str) -> None:
    with pytest.raises(DataError) as info:
        binary_labels(RATINGS, threshold=threshold, column="rating", path="u1.base")
    msg = str(info.value)
    assert msg.startswith(
        f"u1.base: threshold {threshold:g} makes every one of the 80,000 rows {sign}: "
        "the values of label column 'rating' range 1..5; a threshold above 1 and at most 5"
    )
    assert "threshold=" in msg and "--threshold" in msg and info.value.path == "u1.base"
    np.testing.assert_array_equal(binary_labels(RATINGS[:5], threshold=5), [-1, -1, -1, -1, 1])


def test_a_constant_column_has_no_threshold() -> None:
    with pytest.raises(DataError, match="are all 4, so no threshold gives both classes"):
        binary_labels(np.array([4, 4, 4]), threshold=3)


def test_positive_values_that_leave_one_class_are_refused() -> None:
    kinds = np.array(["buy", "view", "view"], dtype=object)
    with pytest.raises(DataError) as info:
        binary_labels(kinds, positive="yes", column="kind")
    msg = str(info.value)
    assert msg.startswith("positive='yes' makes every one of the 3 rows -1: none of the values")
    assert "'buy', 'view'" in msg
    with pytest.raises(DataError, match=r"every one of the 3 rows \+1: all of the values"):
        binary_labels(kinds, positive=["buy", "view"], column="kind")


def test_chunks_are_checked_as_a_whole() -> None:
    # A log sorted by rating: its first chunk alone is all -1, which is no error.
    first, second = np.array([1, 2, 3]), np.array([4, 5])
    counts = LabelCounts()
    for chunk in (first, second):
        y = binary_labels(chunk, threshold=4, check_classes=False)
        counts.add(chunk, y, 4)
    counts.check(threshold=4, positive=None, column="r", path="log.csv")
    assert (counts.rows, counts.positives, counts.low, counts.high) == (5, 2, 1, 5)
    only_first = LabelCounts()
    only_first.add(first, binary_labels(first, threshold=4, check_classes=False), 4)
    with pytest.raises(DataError, match=r"^log\.csv: threshold 4 makes every one of the 3 rows"):
        only_first.check(threshold=4, positive=None, column="r", path="log.csv")


def test_plain_labels_of_one_class_are_accepted() -> None:
    # Only a mapping the user chose can be wrong; a file of positives is a file.
    np.testing.assert_array_equal(binary_labels(np.array([1, 1])), [1, 1])
