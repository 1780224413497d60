"""MovieLens-100K (GroupLens ml-100k) as sparse binary FM rows.

Each rating becomes one row: one-hot user, one-hot item and optional side features,
labelled +1 when the rating reaches a threshold. The feature map is built from every
user in ``u.user`` and every item in ``u.item``, not only from the training rows, so
all splits share one index space and a model can score any user-item pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from fmadv.data._io import read_bytes
from fmadv.data.dataset import Dataset, Splits
from fmadv.data.features import FeatureMap
from fmadv.data.labels import binary_labels
from fmadv.data.splits import carve, check_fraction, random_split, split_dataset
from fmadv.errors import ConfigError, DataError

NAME = "movielens-100k"

#: The 19 genres of ``u.genre``, in the order of the genre flags in ``u.item``.
GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

#: Age buckets (the MovieLens-1M scheme): (lowest age, label).
AGE_BUCKETS = (
    (0, "<18"), (18, "18-24"), (25, "25-34"), (35, "35-44"), (45, "45-49"), (50, "50-55"),
    (56, "56+"),
)  # fmt: skip

SIDE_FEATURES = ("genre", "gender", "age", "occupation")
OFFICIAL_SPLITS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")
SPLITS = ("random", "temporal", *OFFICIAL_SPLITS)

_RATINGS_WHAT = "tab-separated 'user_id item_id rating timestamp' lines"


def _lines(path: Path, encoding: str, what: str) -> list[str]:
    text = read_bytes(path, what).decode(encoding)
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(f"empty file (expected {what})", path)
    return [line.rstrip("\r") for line in lines]


def _int(value: str, path: Path, line: int, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DataError(f"{what} {value!r} is not an integer", path, line) from None


def read_users(directory: str | Path) -> pd.DataFrame:
    """``u.user`` as a frame: user_id, age, gender, occupation, zip_code (sorted by id)."""
    path = Path(directory) / "u.user"
    what = "'user_id|age|gender|occupation|zip_code' lines"
    rows = []
    for n, line in enumerate(_lines(path, "latin-1", what), start=1):
        parts = line.split("|")
        if len(parts) != 5:
            raise DataError(f"expected 5 '|'-separated fields, found {len(parts)}", path, n)
        uid = _int(parts[0], path, n, "user id")
        age = _int(parts[1], path, n, "age")
        if parts[2] not in ("M", "F"):
            raise DataError(f"gender {parts[2]!r} (expected M or F)", path, n)
        rows.append((uid, age, parts[2], parts[3], parts[4]))
    frame = pd.DataFrame(rows, columns=["user_id", "age", "gender", "occupation", "zip_code"])
    _check_unique(frame["user_id"].to_numpy(), path, "user id")
    return frame.sort_values("user_id", ignore_index=True)


def read_items(directory: str | Path) -> pd.DataFrame:
    """``u.item`` as a frame: item_id, title, release_date, genres (list of str)."""
    path = Path(directory) / "u.item"
    what = "'movie_id|title|release_date|video_release_date|IMDb_URL|' + 19 genre flags"
    rows = []
    for n, line in enumerate(_lines(path, "latin-1", what), start=1):
        parts = line.split("|")
        if len(parts) != 5 + len(GENRES):
            raise DataError(
                f"expected {5 + len(GENRES)} '|'-separated fields, found {len(parts)}", path, n
            )
        iid = _int(parts[0], path, n, "movie id")
        flags = parts[5:]
        if any(f not in ("0", "1") for f in flags):
            raise DataError("genre flags must be 0 or 1", path, n)
        genres = [g for g, f in zip(GENRES, flags, strict=True) if f == "1"]
        rows.append((iid, parts[1], parts[2], genres))
    frame = pd.DataFrame(rows, columns=["item_id", "title", "release_date", "genres"])
    _check_unique(frame["item_id"].to_numpy(), path, "movie id")
    return frame.sort_values("item_id", ignore_index=True)


def _check_unique(ids: np.ndarray, path: Path, what: str) -> None:
    uniq, first, counts = np.unique(ids, return_index=True, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1][0]
        line = int(np.flatnonzero(ids == dup)[1]) + 1
        raise DataError(f"{what} {dup} appears twice", path, line)


def movielens_items(directory: str | Path) -> pd.DataFrame:
    """Item titles and genres of MovieLens-100K.

    Parameters
    ----------
    directory : str or Path
        Folder holding ``u.item``.

    Returns
    -------
    pandas.DataFrame
        Columns ``item_id`` (int64), ``title`` (str), ``genres`` (str, ``"|"``-joined,
        e.g. ``"Animation|Children's|Comedy"``), one row per item, sorted by id.
    """
    items = read_items(directory)
    return pd.DataFrame(
        {
            "item_id": items["item_id"].astype(np.int64),
            "title": items["title"],
            "genres": ["|".join(g) for g in items["genres"]],
        }
    )


def read_ratings(path: str | Path) -> np.ndarray:
    """A ratings file (``u.data``, ``u1.base``, ...) as an int64 array of shape (n, 4).

    Columns: user_id, item_id, rating, timestamp. Errors name the file and line.
    """
    path = Path(path)
    data = read_bytes(path, _RATINGS_WHAT)
    lines = data.split(b"\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(f"empty file (expected {_RATINGS_WHAT})", path)
    fields = [line.split(b"\t") for line in lines]
    widths = np.fromiter(map(len, fields), dtype=np.int64, count=len(fields))
    bad = np.flatnonzero(widths != 4)
    if bad.size:
        n = int(bad[0])
        raise DataError(
            f"expected 4 tab-separated fields (user_id item_id rating timestamp), "
            f"found {widths[n]}",
            path,
            n + 1,
        )
    try:
        table = np.array(fields).astype(np.int64)
    except ValueError:
        # Locate the first offending line only once the fast conversion has failed.
        for n, parts in enumerate(fields, start=1):
            for p in parts:
                try:
                    int(p)
                except ValueError:
                    raise DataError(
                        f"field {p.decode('latin-1')!r} is not an integer "
                        "(expected user_id item_id rating timestamp)",
                        path,
                        n,
                    ) from None
        raise
    bad = np.flatnonzero((table[:, 2] < 1) | (table[:, 2] > 5))
    if bad.size:
        raise DataError(f"rating {table[bad[0], 2]} is outside 1..5", path, int(bad[0]) + 1)
    return table


def _age_bucket(ages: np.ndarray) -> np.ndarray:
    lows = np.array([low for low, _ in AGE_BUCKETS])
    labels = np.array([label for _, label in AGE_BUCKETS], dtype=object)
    return labels[np.searchsorted(lows, ages, side="right") - 1]


def movielens_feature_map(
    users: pd.DataFrame, items: pd.DataFrame, side_features: Sequence[str] = ()
) -> FeatureMap:
    """Feature map over every user and item: fields user, item, then the side features."""
    categories: dict[str, list] = {
        "user": users["user_id"].tolist(),
        "item": items["item_id"].tolist(),
    }
    for name in side_features:
        if name == "genre":
            categories[name] = list(GENRES)
        elif name == "gender":
            categories[name] = ["F", "M"]
        elif name == "age":
            categories[name] = [label for _, label in AGE_BUCKETS]
        elif name == "occupation":
            categories[name] = sorted(set(users["occupation"]))
    multi = {"genre": "|"} if "genre" in categories else None
    return FeatureMap.from_categories(categories, multi)


def _check_side_features(side_features: Sequence[str]) -> list[str]:
    if isinstance(side_features, str):
        side_features = [s for s in side_features.split(",") if s]
    out: list[str] = []
    for name in side_features:
        if name not in SIDE_FEATURES:
            raise ConfigError(
                f"unknown MovieLens side feature {name!r}; choose from {', '.join(SIDE_FEATURES)}"
            )
        if name not in out:
            out.append(name)
    return out


def _check_ids(table: np.ndarray, users: np.ndarray, items: np.ndarray, path: Path) -> None:
    checks = ((0, users, "user id", "u.user"), (1, items, "item id", "u.item"))
    for col, known, what, source in checks:
        bad = np.flatnonzero(~np.isin(table[:, col], known))
        if bad.size:
            raise DataError(
                f"{what} {table[bad[0], col]} is not in {source}", path, int(bad[0]) + 1
            )


def load_movielens_100k(
    directory: str | Path,
    *,
    side_features: Sequence[str] = (),
    threshold: float = 4.0,
    split: str = "random",
    seed: int = 0,
    test_size: float = 0.2,
    valid_size: float = 0.1,
) -> Splits:
    """Load MovieLens-100K as binary-labelled FM rows.

    Parameters
    ----------
    directory : str or Path
        Folder with the extracted ``ml-100k`` files (``u.data``, ``u.user``, ``u.item``
        and, for the official splits, ``u1.base`` ... ``ub.test``).
    side_features : sequence of str
        Any of ``"genre"`` (multi-hot, 19 genres), ``"gender"``, ``"age"`` (buckets
        <18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+) and ``"occupation"``; also
        accepted as one comma-separated string.
    threshold : float
        A rating >= threshold is labelled +1, any other rating -1. A threshold that
        labels every rating of a file alike (e.g. 9) is a :class:`DataError`.
    split : str
        ``"random"``: seeded shuffle, ``test_size`` of the ratings for test, then
        ``valid_size`` of the rest for validation. ``"temporal"``: per user, the
        latest ``test_size`` of their ratings (by timestamp) go to test and the latest
        ``valid_size`` of the remainder to validation. ``"u1"`` ... ``"u5"``, ``"ua"``,
        ``"ub"``: the official base/test files, with ``valid_size`` of base carved out
        by ``seed`` for validation.
    seed : int
        Seed of the random choices.
    test_size, valid_size : float
        Fractions; ``valid_size=0`` gives ``valid=None``. ``test_size`` is unused by
        the official splits.

    Returns
    -------
    Splits
        Datasets named ``"movielens-100k"`` with ``user_ids``, ``item_ids`` and
        ``ratings`` filled and one shared feature map (fields ``user``, ``item``, then
        the side features in the order given).
    """
    directory = Path(directory)
    side = _check_side_features(side_features)
    if split not in SPLITS:
        raise ConfigError(f"unknown MovieLens split {split!r}; choose from {', '.join(SPLITS)}")
    valid_size = check_fraction("valid_size", valid_size, allow_zero=True)
    if split not in OFFICIAL_SPLITS:
        test_size = check_fraction("test_size", test_size, allow_zero=False)
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise ConfigError(f"threshold must be a number, got {threshold!r}") from None

    users = read_users(directory)
    items = read_items(directory)
    user_ids = users["user_id"].to_numpy(np.int64)
    item_ids = items["item_id"].to_numpy(np.int64)

    if split in OFFICIAL_SPLITS:
        parts = [
            _read_labelled(directory / f"{split}.{suffix}", user_ids, item_ids, threshold)
            for suffix in ("base", "test")
        ]
        table = np.concatenate([rated for rated, _ in parts])
        y = np.concatenate([labels for _, labels in parts])
        n_base = parts[0][0].shape[0]
    else:
        table, y = _read_labelled(directory / "u.data", user_ids, item_ids, threshold)

    fmap = movielens_feature_map(users, items, side)
    data = _encode(table, y, users, items, fmap, side)

    if split in OFFICIAL_SPLITS:
        train, valid = carve(np.arange(n_base), valid_size, seed)
        test = np.arange(n_base, table.shape[0])
    elif split == "random":
        train, valid, test = random_split(table.shape[0], test_size, valid_size, seed)
    else:
        train, valid, test = temporal_split(table[:, 0], table[:, 3], test_size, valid_size)
    return split_dataset(data, train, valid, test)


def _read_labelled(
    path: Path, user_ids: np.ndarray, item_ids: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """A ratings file and its labels; a threshold that leaves one class names the file."""
    table = read_ratings(path)
    _check_ids(table, user_ids, item_ids, path)
    return table, binary_labels(table[:, 2], threshold=threshold, column="rating", path=path)


def _encode(
    table: np.ndarray,
    y: np.ndarray,
    users: pd.DataFrame,
    items: pd.DataFrame,
    fmap: FeatureMap,
    side: list[str],
) -> Dataset:
    # Encode the user and item tables once, then build each rating row as the sum of
    # its user row and its item row (their columns never overlap).
    user_frame = pd.DataFrame({"user": users["user_id"]})
    user_fields = ["user"]
    if "gender" in side:
        user_frame["gender"] = users["gender"]
        user_fields.append("gender")
    if "age" in side:
        user_frame["age"] = _age_bucket(users["age"].to_numpy())
        user_fields.append("age")
    if "occupation" in side:
        user_frame["occupation"] = users["occupation"]
        user_fields.append("occupation")
    item_frame = pd.DataFrame({"item": items["item_id"]})
    item_fields = ["item"]
    if "genre" in side:
        item_frame["genre"] = items["genres"]
        item_fields.append("genre")
    U = fmap.encode(user_frame, fields=user_fields)
    V = fmap.encode(item_frame, fields=item_fields)
    u_row = np.searchsorted(users["user_id"].to_numpy(), table[:, 0])
    i_row = np.searchsorted(items["item_id"].to_numpy(), table[:, 1])
    X = sp.csr_matrix(U[u_row] + V[i_row], dtype=np.float32)
    X.sort_indices()
    ratings = table[:, 2].astype(np.float32)
    return Dataset(
        X=X,
        y=y,
        feature_map=fmap,
        name=NAME,
        user_ids=table[:, 0],
        item_ids=table[:, 1],
        ratings=ratings,
    )


def temporal_split(
    user_ids: np.ndarray, timestamps: np.ndarray, test_size: float, valid_size: float
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Per-user time split: each user's latest ratings go to test, the next latest to valid.

    A user keeps at least one training rating. Ties in time are broken by row order,
    so the split is deterministic.
    """
    n = len(user_ids)
    order = np.lexsort((np.arange(n), timestamps, user_ids))
    sorted_users = np.asarray(user_ids)[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    counts = np.diff(np.r_[starts, n])
    n_test = np.minimum(np.floor(test_size * counts + 0.5), counts - 1)
    rest = counts - n_test
    n_valid = np.minimum(np.floor(valid_size * rest + 0.5), rest - 1)
    rank = np.arange(n) - np.repeat(starts, counts)
    cnt = np.repeat(counts, counts)
    is_test = rank >= cnt - np.repeat(n_test, counts)
    is_valid = ~is_test & (rank >= np.repeat(rest - n_valid, counts))
    test = np.sort(order[is_test])
    valid = np.sort(order[is_valid]) if valid_size > 0 else None
    train = np.sort(order[~is_test & ~is_valid])
    return train, valid, test
