"""Binary labels: one set of spellings for every reader, and errors that name the row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fmadv.data.labels import binary_labels, label_signs
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
    with pytest.raises(DataError, match=r"^labels must be -1/\+1 or 0/1; row 1 has '2'$"):
        binary_labels(np.array([1.0, 2.0]))
    with pytest.raises(DataError) as info:
        binary_labels(pd.Series(["1", "buy"]).to_numpy(), column="kind", path="log.csv")
    msg = str(info.value)
    assert msg.startswith("log.csv: label column 'kind' has 'buy' in row 1; expected -1/+1 or 0/1")
    assert "threshold=" in msg and info.value.path == "log.csv"
    # Rows of a chunk are numbered in the file.
    with pytest.raises(DataError, match="'y' has a missing value in row 12"):
        binary_labels(np.array([1.0, np.nan]), column="y", row=lambda i: 11 + i)
    with pytest.raises(DataError, match="'r' has a missing value in row 0"):
        binary_labels(np.array([np.inf]), threshold=1.0, column="r")
    with pytest.raises(DataError, match="'p' has a missing value in row 1"):
        binary_labels(np.array(["a", None], dtype=object), positive="a", column="p")
    with pytest.raises(DataError, match="must be numeric to use threshold"):
        binary_labels(np.array(["a"], dtype=object), threshold=1.0, column="r")
