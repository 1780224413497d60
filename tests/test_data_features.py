"""FeatureMap: fitting on pandas and polars, encoding, unknown categories, JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import polars as pl
import pytest

from fmadv.data import Dataset, FeatureMap, Field, frame_to_dataset
from fmadv.errors import ConfigError, DataError

ROWS = {
    "user": [3, 1, 2, 10, 1],
    "item": ["b", "a", "c", "a", "b"],
    "genre": ["Action|Comedy", "Drama", "", "Comedy|Comedy", "Action"],
    "rating": [5, 3, 4, 1, 4],
}


def frames() -> tuple[pd.DataFrame, pl.DataFrame]:
    return pd.DataFrame(ROWS), pl.DataFrame(ROWS)


def test_fit_pandas_and_polars_agree() -> None:
    pdf, plf = frames()
    fields, multi = ["user", "item", "genre"], {"genre": "|"}
    a = FeatureMap.fit(pdf, fields, multi)
    b = FeatureMap.fit(plf, fields, multi)
    assert a == b
    # Numeric categories sort as numbers, not as text ("10" after "2").
    assert a.field("user").categories == ("1", "2", "3", "10")
    assert a.field("genre").categories == ("Action", "Comedy", "Drama")
    assert a.n_features == 4 + 3 + 3
    Xa, Xb = a.encode(pdf), b.encode(plf)
    assert (Xa != Xb).nnz == 0
    assert Xa.dtype == np.float32 and Xa.has_canonical_format
    row0 = [("user", 3), ("item", "b"), ("genre", "Action"), ("genre", "Comedy")]
    assert Xa[0].indices.tolist() == [a.index(f, v) for f, v in row0]
    # Repeated value in one cell counts once; empty cell activates nothing.
    row3 = [("user", 10), ("item", "a"), ("genre", "Comedy")]
    assert Xa[3].indices.tolist() == [a.index(f, v) for f, v in row3]
    assert Xa.getnnz(axis=1).tolist() == [4, 3, 2, 3, 3]
    assert set(Xa.data.tolist()) == {1.0}


def test_list_cells_match_joined_strings() -> None:
    joined = pd.DataFrame({"g": ["x|y", "y", None]})
    lists = pl.DataFrame({"g": [["x", "y"], ["y"], None]})
    a = FeatureMap.fit(joined, ["g"], {"g": "|"})
    b = FeatureMap.fit(lists, ["g"], {"g": "|"})
    assert a == b
    assert (a.encode(joined) != b.encode(lists)).nnz == 0


def test_missing_values_and_float_ints() -> None:
    # pandas turns an int column with a gap into floats; categories still read "1", "2".
    pdf = pd.DataFrame({"u": [1, None, 2]})
    plf = pl.DataFrame({"u": [1, None, 2]})
    a, b = FeatureMap.fit(pdf, ["u"]), FeatureMap.fit(plf, ["u"])
    assert a == b and a.field("u").categories == ("1", "2")
    assert a.encode(pdf).getnnz(axis=1).tolist() == [1, 0, 1]


def test_index_feature_name_field_slice() -> None:
    fmap = FeatureMap.fit(frames()[0], ["user", "item"])
    assert fmap.index("user", "10") == fmap.index("user", 10) == 3
    assert fmap.feature_name(3) == "user=10"
    assert fmap.feature_name(4) == "item=a"
    assert fmap.field_slice("item") == slice(4, 7)
    assert fmap.field_at(6).name == "item"
    with pytest.raises(ConfigError, match="unknown field 'nope'; fields are: user, item"):
        fmap.field_slice("nope")
    with pytest.raises(ConfigError, match="outside"):
        fmap.feature_name(7)
    with pytest.raises(DataError, match="unknown category '99' in field 'user'"):
        fmap.index("user", 99)


def test_unknown_category_error_and_ignore() -> None:
    pdf, _ = frames()
    fmap = FeatureMap.fit(pdf, ["user", "item", "genre"], {"genre": "|"})
    new = pd.DataFrame({"user": [1, 7], "item": ["a", "a"], "genre": ["Drama", "Horror|Drama"]})
    with pytest.raises(DataError) as info:
        fmap.encode(new)
    msg = str(info.value)
    assert msg.startswith("row 2: unknown category '7' of field 'user'; the model has never seen")
    assert "unknown='ignore'" in msg
    X = fmap.encode(new, unknown="ignore")
    assert X.getnnz(axis=1).tolist() == [3, 2]  # row 1 keeps item and Drama only
    with pytest.raises(ConfigError):
        fmap.encode(new, unknown="skip")


def test_unknown_category_names_file_row_and_line() -> None:
    fmap = FeatureMap.fit(pd.DataFrame({"item": ["a", "b"]}), ["item"])
    rows = pd.DataFrame({"item": ["a", "b", "zz"]})
    with pytest.raises(DataError) as info:
        fmap.encode(rows, path="rows.csv")
    assert str(info.value).startswith(
        "rows.csv: row 3 (line 4): unknown category 'zz' of field 'item'; the model has never "
        "seen it"
    )
    assert info.value.path == "rows.csv"
    with pytest.raises(DataError, match=r"^rows\.parquet: row 3: unknown category 'zz'"):
        fmap.encode(rows, path="rows.parquet")


@pytest.mark.parametrize(
    ("lib", "empty"),
    [("pandas", ""), ("pandas", None), ("pandas", np.nan), ("polars", ""), ("polars", None)],
)
def test_empty_cell_of_a_single_valued_field_is_an_error(lib: str, empty) -> None:
    # A CSV row with an empty cell would otherwise be scored from its other fields.
    fmap = FeatureMap.fit(frames()[0], ["user", "item", "genre"], {"genre": "|"})
    cells = {"user": [1, 2, 3], "item": ["a", "b", empty], "genre": ["Drama", "", None]}
    frame = pd.DataFrame(cells) if lib == "pandas" else pl.DataFrame(cells)
    with pytest.raises(DataError) as info:
        fmap.encode(frame, path="rows.csv")
    assert str(info.value).startswith(
        "rows.csv: row 3 (line 4): empty cell in column 'item'; the feature map was fitted "
        "with a value of 'item' in every row"
    )
    # Empty multi-valued cells ("no genre") stay allowed, as in training.
    X = fmap.encode(frame.head(2))
    assert X.getnnz(axis=1).tolist() == [3, 2]


def test_a_field_fitted_with_gaps_is_optional_and_remembers_it() -> None:
    fmap = FeatureMap.fit(pd.DataFrame({"u": [1, None], "i": ["a", "b"]}), ["u", "i"])
    assert fmap.field("u").optional and not fmap.field("i").optional
    back = FeatureMap.from_dict(json.loads(json.dumps(fmap.to_dict())))
    assert back == fmap and back.field("u").optional
    # Maps written before fields could be optional read as strict.
    old = fmap.to_dict()
    del old["fields"][0]["optional"]
    assert not FeatureMap.from_dict(old).field("u").optional
    built = FeatureMap.from_categories({"u": [1], "i": ["a"]}, optional=["u"])
    assert built.encode(pd.DataFrame({"u": [None], "i": ["a"]})).nnz == 1
    with pytest.raises(ConfigError, match="optional names fields that are not in the map"):
        FeatureMap.from_categories({"u": [1]}, optional=["x"])


def test_missing_column_is_named() -> None:
    fmap = FeatureMap.fit(frames()[0], ["user", "item"])
    with pytest.raises(DataError, match="missing column 'item'"):
        fmap.encode(pl.DataFrame({"user": [1]}))


def test_json_round_trip_and_equality() -> None:
    fmap = FeatureMap.fit(frames()[1], ["user", "item", "genre"], {"genre": "|"})
    back = FeatureMap.from_dict(json.loads(json.dumps(fmap.to_dict())))
    assert back == fmap
    assert back.field("genre").multi and back.field("genre").separator == "|"
    assert back.index("user", 10) == fmap.index("user", 10)
    other = FeatureMap.from_categories({"user": ["1", "2", "3", "10"]})
    assert other != fmap
    with pytest.raises(DataError, match="not a feature map"):
        FeatureMap.from_dict({"fields": []})
    broken = fmap.to_dict()
    broken["fields"][1]["offset"] = 99
    with pytest.raises(DataError, match="invalid feature map: field .item. starts at 99"):
        FeatureMap.from_dict(broken)


def test_field_validation() -> None:
    with pytest.raises(ConfigError, match="twice"):
        Field("f", ("a", "a"), 0, False)
    with pytest.raises(ConfigError, match="not in fields"):
        FeatureMap.fit(frames()[0], ["user"], multi={"genre": "|"})
    with pytest.raises(TypeError, match="pandas or polars"):
        FeatureMap.fit({"user": [1]}, ["user"])


@pytest.mark.parametrize("lib", ["pandas", "polars"])
def test_frame_to_dataset_threshold(lib: str) -> None:
    frame = pd.DataFrame(ROWS) if lib == "pandas" else pl.DataFrame(ROWS)
    data = frame_to_dataset(
        frame, "rating", ["user", "item"], threshold=4, user_col="user", name="toy"
    )
    assert isinstance(data, Dataset)
    np.testing.assert_array_equal(data.y, [1, -1, 1, -1, 1])
    np.testing.assert_array_equal(data.ratings, ROWS["rating"])
    np.testing.assert_array_equal(data.user_ids, ROWS["user"])
    assert data.item_ids is None
    assert data.feature_map.field_names == ["user", "item"]
    assert data.n_features == 7 and data.is_binary


def test_frame_to_dataset_label_mappings() -> None:
    frame = pd.DataFrame({"u": [1, 2, 3], "lab": [0, 1, 0], "kind": ["buy", "view", "buy"]})
    np.testing.assert_array_equal(frame_to_dataset(frame, "lab", ["u"]).y, [-1, 1, -1])
    data = frame_to_dataset(frame, "kind", ["u"], positive="buy")
    np.testing.assert_array_equal(data.y, [1, -1, 1])
    with pytest.raises(DataError, match="expected -1/\\+1 or 0/1"):
        frame_to_dataset(frame, "kind", ["u"])
    # A shared feature map keeps the index space of the training frame.
    fmap = FeatureMap.fit(frame, ["u"])
    test = frame_to_dataset(pd.DataFrame({"u": [3], "lab": [1]}), "lab", ["u"], feature_map=fmap)
    assert test.X.indices.tolist() == [fmap.index("u", 3)]
