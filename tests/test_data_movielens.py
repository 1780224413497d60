"""MovieLens-100K loader: the real files when present, and small made-up copies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fmadv.data import load_movielens_100k, movielens_items
from fmadv.data.movielens import GENRES
from fmadv.errors import ConfigError, DataError

ALL_SIDE = ("genre", "gender", "age", "occupation")


@pytest.fixture(scope="module")
def ml_dir(dataset_dir) -> Path:
    return dataset_dir("movielens-100k")


def tiny_ml(tmp_path: Path, ratings: str | None = None) -> Path:
    """A 3-user, 4-item copy in the ml-100k layout."""
    (tmp_path / "u.user").write_text(
        "1|24|M|technician|85711\n2|53|F|other|94043\n3|17|M|student|32067\n"
    )
    flags = [
        "|".join("1" if g in set_ else "0" for g in GENRES)
        for set_ in ({"Comedy"}, {"Action", "Drama"}, {"unknown"}, set())
    ]
    items = [f"{i + 1}|Movie {i + 1} (1995)|01-Jan-1995||http://x|{f}" for i, f in enumerate(flags)]
    (tmp_path / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))
    if ratings is None:
        rows = []
        for u in (1, 2, 3):
            for n, i in enumerate((1, 2, 3, 4)):
                rows.append(f"{u}\t{i}\t{(u + i) % 5 + 1}\t{1000 * u + 10 * n}")
        ratings = "\n".join(rows) + "\n"
    (tmp_path / "u.data").write_text(ratings)
    return tmp_path


def test_random_split_real(ml_dir: Path) -> None:
    s = load_movielens_100k(ml_dir, side_features=ALL_SIDE, seed=3)
    assert (s.train.n_rows, s.valid.n_rows, s.test.n_rows) == (72000, 8000, 20000)
    fmap = s.train.feature_map
    assert fmap.field_names == ["user", "item", *ALL_SIDE]
    assert fmap.field("user").size == 943 and fmap.field("item").size == 1682
    assert fmap.field("genre").size == 19 and fmap.field("age").size == 7
    assert fmap.field("occupation").size == 21 and fmap.field("gender").size == 2
    assert s.valid.feature_map is fmap and s.test.feature_map is fmap
    # Every rating appears in exactly one split.
    keys = np.concatenate([d.user_ids * 10000 + d.item_ids for _, d in s])
    assert keys.size == 100000 and np.unique(keys).size == 100000
    for _, d in s:
        assert d.is_binary and d.X.has_canonical_format
        np.testing.assert_array_equal(d.y > 0, d.ratings >= 4)
        # user, item, gender, age, occupation, and at least one genre.
        assert d.X.getnnz(axis=1).min() >= 6
        first = d.X[0].indices
        assert fmap.feature_name(first[0]) == f"user={d.user_ids[0]}"
        assert fmap.feature_name(first[1]) == f"item={d.item_ids[0]}"
    total_pos = sum(int((d.y > 0).sum()) for _, d in s)
    assert total_pos == 55375  # ratings of 4 or 5 in u.data
    same = load_movielens_100k(ml_dir, side_features=ALL_SIDE, seed=3)
    np.testing.assert_array_equal(same.test.user_ids, s.test.user_ids)
    other = load_movielens_100k(ml_dir, seed=4)
    assert not np.array_equal(other.test.user_ids, s.test.user_ids)


def test_threshold_changes_labels(ml_dir: Path) -> None:
    s = load_movielens_100k(ml_dir, threshold=5, valid_size=0)
    assert s.valid is None
    share = np.mean(np.concatenate([s.train.y, s.test.y]) > 0)
    assert share == pytest.approx(21201 / 100000)
    assert s.train.n_features == 943 + 1682


def test_official_split_u1(ml_dir: Path) -> None:
    s = load_movielens_100k(ml_dir, split="u1", valid_size=0.1, seed=0)
    assert s.train.n_rows + s.valid.n_rows == 80000
    assert s.valid.n_rows == 8000
    assert s.test.n_rows == 20000
    none = load_movielens_100k(ml_dir, split="u1", valid_size=0)
    assert none.valid is None and none.train.n_rows == 80000
    ua = load_movielens_100k(ml_dir, split="ua", valid_size=0)
    assert ua.test.n_rows == 9430
    assert np.all(np.bincount(ua.test.user_ids)[1:] == 10)


def test_temporal_split_real(ml_dir: Path) -> None:
    s = load_movielens_100k(ml_dir, split="temporal")
    assert s.train.n_rows + s.valid.n_rows + s.test.n_rows == 100000
    # Timestamps are not kept on the Dataset; rebuild them from u.data by (user, item).
    table = np.loadtxt(ml_dir / "u.data", dtype=np.int64)
    when = dict(zip(zip(table[:, 0], table[:, 1], strict=True), table[:, 3], strict=True))

    def times(d):
        return np.array([when[k] for k in zip(d.user_ids, d.item_ids, strict=True)])

    t_train, t_valid, t_test = times(s.train), times(s.valid), times(s.test)
    for u in np.unique(s.test.user_ids):
        tr = t_train[s.train.user_ids == u]
        va = t_valid[s.valid.user_ids == u]
        te = t_test[s.test.user_ids == u]
        assert tr.size > 0 and te.size > 0
        assert tr.max() <= te.min()
        if va.size:
            assert tr.max() <= va.min() and va.max() <= te.min()
    assert np.unique(s.test.user_ids).size == 943


def test_movielens_items(ml_dir: Path) -> None:
    items = movielens_items(ml_dir)
    assert len(items) == 1682 and list(items.columns) == ["item_id", "title", "genres"]
    assert items.loc[0, "title"] == "Toy Story (1995)"
    assert items.loc[0, "genres"] == "Animation|Children's|Comedy"
    assert items["title"].str.contains("Misérables").any()  # latin-1 decoded


def test_tiny_copy_features_and_age_buckets(tmp_path: Path) -> None:
    s = load_movielens_100k(
        tiny_ml(tmp_path), side_features="age,genre", test_size=0.25, valid_size=0
    )
    fmap = s.train.feature_map
    assert fmap.field_names == ["user", "item", "age", "genre"]
    rows = {
        (u, i): s.train.X[n].indices
        for n, (u, i) in enumerate(zip(s.train.user_ids, s.train.item_ids, strict=True))
    }
    rows.update(
        {
            (u, i): s.test.X[n].indices
            for n, (u, i) in enumerate(zip(s.test.user_ids, s.test.item_ids, strict=True))
        }
    )
    names = {k: {fmap.feature_name(j) for j in v} for k, v in rows.items()}
    assert names[(3, 2)] == {"user=3", "item=2", "age=<18", "genre=Action", "genre=Drama"}
    assert names[(2, 4)] == {"user=2", "item=4", "age=50-55"}
    assert names[(1, 1)] == {"user=1", "item=1", "age=18-24", "genre=Comedy"}


def test_tiny_copy_temporal_each_user(tmp_path: Path) -> None:
    s = load_movielens_100k(tiny_ml(tmp_path), split="temporal", test_size=0.25, valid_size=0.34)
    # 4 ratings per user: the latest one to test, the one before it to valid.
    test = sorted(zip(s.test.user_ids.tolist(), s.test.item_ids.tolist(), strict=True))
    valid = sorted(zip(s.valid.user_ids.tolist(), s.valid.item_ids.tolist(), strict=True))
    assert test == [(1, 4), (2, 4), (3, 4)]
    assert valid == [(1, 3), (2, 3), (3, 3)]


@pytest.mark.parametrize(
    ("ratings", "line", "fragment"),
    [
        ("1\t1\t5\t10\n1\t2\t5\n", 2, "expected 4 tab-separated fields"),
        ("1\t1\t5\t10\n1\tx\t5\t10\n", 2, "'x' is not an integer"),
        ("1\t1\t5\t10\n1\t2\t9\t10\n", 2, "rating 9 is outside 1..5"),
        ("1\t1\t5\t10\n1\t2\t5\t10\n7\t2\t5\t10\n", 3, "user id 7 is not in u.user"),
        ("1\t1\t5\t10\n1\t99\t5\t10\n", 2, "item id 99 is not in u.item"),
    ],
)
def test_malformed_ratings(tmp_path: Path, ratings: str, line: int, fragment: str) -> None:
    folder = tiny_ml(tmp_path, ratings)
    with pytest.raises(DataError) as info:
        load_movielens_100k(folder)
    assert info.value.line == line and info.value.path == str(folder / "u.data")
    assert fragment in str(info.value)


def test_threshold_that_leaves_one_class_names_the_file(tmp_path: Path) -> None:
    folder = tiny_ml(tmp_path)
    with pytest.raises(DataError) as info:
        load_movielens_100k(folder, threshold=9)
    assert info.value.path == str(folder / "u.data")
    assert str(info.value).startswith(
        f"{folder / 'u.data'}: threshold 9 makes every one of the 12 rows -1: the values "
        "of label column 'rating' range 1..5"
    )
    for name in ("u1.base", "u1.test"):
        (folder / name).write_text("1\t1\t5\t10\n2\t2\t2\t20\n")
    with pytest.raises(DataError, match=r"u1\.base: threshold 1 makes every one of the 2 rows \+1"):
        load_movielens_100k(folder, split="u1", threshold=1, valid_size=0)
    assert load_movielens_100k(folder, split="u1", threshold=5, valid_size=0).test.n_rows == 2


def test_malformed_user_and_item_files(tmp_path: Path) -> None:
    folder = tiny_ml(tmp_path)
    (folder / "u.user").write_text("1|24|M|technician|85711\n2|53|X|other|94043\n")
    with pytest.raises(DataError, match=r"u\.user:2: gender 'X'"):
        load_movielens_100k(folder)
    tiny_ml(tmp_path)
    (folder / "u.item").write_text("1|Movie|01-Jan-1995||http://x|0|1\n")
    with pytest.raises(DataError, match=r"u\.item:1: expected 24 '\|'-separated fields, found 7"):
        load_movielens_100k(folder)


def test_missing_file_and_bad_options(tmp_path: Path) -> None:
    folder = tiny_ml(tmp_path)
    (folder / "u.data").unlink()
    with pytest.raises(DataError, match=r"u\.data: file not found"):
        load_movielens_100k(folder)
    with pytest.raises(DataError, match=r"u1\.base: file not found"):
        load_movielens_100k(folder, split="u1")
    with pytest.raises(ConfigError, match="unknown MovieLens split 'u9'"):
        load_movielens_100k(folder, split="u9")
    with pytest.raises(ConfigError, match="unknown MovieLens side feature 'zip'"):
        load_movielens_100k(folder, side_features=["zip"])
    with pytest.raises(ConfigError, match="test_size must be in"):
        load_movielens_100k(tiny_ml(tmp_path), test_size=1.5)
