"""Streaming logs: feature map pass, chunked CSR batches, shuffle buffer, errors, training."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
import torch

from fmadv.data.features import FeatureMap, frame_to_dataset
from fmadv.data.stream import StreamingLog, scan_log, stream_feature_map
from fmadv.data.synthetic import write_synthetic_log
from fmadv.errors import ConfigError, DataError
from fmadv.evaluation.predict import predict_scores
from fmadv.metrics.classification import auc
from fmadv.models.fm import FactorizationMachine
from fmadv.training.fm import FMPenalty, iterate_batches
from fmadv.training.loop import TrainConfig, fit_loop

FIELDS = ["user", "item", "segment", "category"]


pytestmark = pytest.mark.usefixtures("one_thread")


def messy_frame() -> pl.DataFrame:
    """Every kind of cell the feature map treats specially: gaps, empty strings, floats
    that are integers, repeated and empty pieces of a multi-valued cell."""
    return pl.DataFrame(
        {
            "user": [3, 1, None, 10, 1, 2, 3, 10],
            "item": ["b", "a", "c", "", "b", None, "a", "c"],
            "genres": ["Action|Comedy", "Drama", "", "Comedy|Comedy", None, "A||B", "Drama", "B"],
            "score": [1.0, 2.5, 2.0, None, 1.0, 3.0, 2.5, 2.0],
            "rating": [5, 3, 4, 1, 4, 2, 5, 3],
        }
    )


MESSY_FIELDS = ["user", "item", "genres", "score"]
MESSY_MULTI = {"genres": "|"}


def write_both(frame: pl.DataFrame, folder: Path, name: str = "log") -> tuple[Path, Path]:
    parquet, csv = folder / f"{name}.parquet", folder / f"{name}.csv"
    # Small row groups, so that row-group boundaries fall inside the log.
    frame.write_parquet(parquet, row_group_size=3)
    frame.write_csv(csv)
    return parquet, csv


def collect(batches) -> tuple[sp.csr_matrix, np.ndarray]:
    parts = list(batches)
    return sp.vstack([x for x, _ in parts], format="csr"), np.concatenate([y for _, y in parts])


def same_rows(a: sp.csr_matrix, b: sp.csr_matrix) -> bool:
    return a.shape == b.shape and (a != b).nnz == 0


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("stream") / "planted.parquet"
    return write_synthetic_log(path, 6_000, n_users=150, n_items=80, seed=3, chunk_rows=1_000)


@pytest.fixture(scope="module")
def row_id_log(tmp_path_factory) -> tuple[Path, FeatureMap]:
    """A log whose ``rid`` field names each row, to see where every row went."""
    folder = tmp_path_factory.mktemp("rid")
    n = 2_500
    frame = pl.DataFrame(
        {"rid": np.arange(n), "user": np.arange(n) % 7, "label": np.where(np.arange(n) % 3, 1, 0)}
    )
    path = folder / "rid.parquet"
    frame.write_parquet(path, row_group_size=400)
    return path, stream_feature_map(path, ["rid", "user"])


def row_ids(X: sp.csr_matrix) -> np.ndarray:
    # Field "rid" comes first, so each row's first active column is its row id.
    return X.indices[X.indptr[:-1]]


# -- the feature map pass ------------------------------------------------------------


def test_stream_feature_map_equals_fit(tmp_path: Path) -> None:
    frame = messy_frame()
    for path in write_both(frame, tmp_path):
        fmap = stream_feature_map(path, MESSY_FIELDS, MESSY_MULTI)
        assert fmap == FeatureMap.fit(scan_log(path).collect(), MESSY_FIELDS, MESSY_MULTI)
        assert fmap == FeatureMap.fit(frame, MESSY_FIELDS, MESSY_MULTI)
    assert fmap.field("genres").categories == ("A", "Action", "B", "Comedy", "Drama")
    assert fmap.field("user").categories == ("1", "2", "3", "10")
    # The log has gaps in these single-valued fields, so rows may leave them empty.
    assert fmap.field("user").optional and fmap.field("item").optional


def test_stream_feature_map_list_column(tmp_path: Path) -> None:
    lists = pl.DataFrame(
        {"g": [["x", "y"], ["y", "y"], None, [], ["z", None]], "label": [1, 0, 1, 0, 1]}
    )
    path = tmp_path / "lists.parquet"
    lists.write_parquet(path)
    fmap = stream_feature_map(path, ["g"], {"g": "|"})
    assert fmap == FeatureMap.fit(lists, ["g"], {"g": "|"})
    assert fmap.field("g").categories == ("x", "y", "z")
    X, _ = collect(StreamingLog(path, fmap, "label", chunk_rows=2).batches(5))
    assert same_rows(X, fmap.encode(lists))


def test_stream_feature_map_synthetic(planted: Path) -> None:
    assert stream_feature_map(planted, FIELDS) == FeatureMap.fit(pl.read_parquet(planted), FIELDS)


# -- encoding and labels -------------------------------------------------------------


@pytest.mark.parametrize("chunk_rows", [1, 3, 5, 1_000])
def test_chunks_encode_like_frame_to_dataset(tmp_path: Path, chunk_rows: int) -> None:
    frame = messy_frame()
    fmap = FeatureMap.fit(frame, MESSY_FIELDS, MESSY_MULTI)
    expected = frame_to_dataset(
        frame, "rating", MESSY_FIELDS, feature_map=fmap, threshold=4, user_col="rating"
    )
    for path in write_both(frame, tmp_path):
        log = StreamingLog(
            path, fmap, "rating", threshold=4, chunk_rows=chunk_rows, user_column="rating"
        )
        chunks = list(log.chunks())
        assert [c.start for c in chunks] == np.cumsum([0] + [len(c) for c in chunks[:-1]]).tolist()
        X = sp.vstack([c.X for c in chunks], format="csr")
        assert same_rows(X, expected.X)
        assert X.dtype == np.float32 and X.has_canonical_format
        assert np.array_equal(np.concatenate([c.y for c in chunks]), expected.y)
        assert np.array_equal(np.concatenate([c.ratings for c in chunks]), expected.ratings)
        assert np.array_equal(np.concatenate([c.user_ids for c in chunks]), expected.user_ids)


def test_threshold_semantics(tmp_path: Path) -> None:
    frame = pl.DataFrame({"u": [1, 2, 3, 4, 5], "r": [3.99, 4.0, 4.5, 1.0, 5.0]})
    path = tmp_path / "r.parquet"
    frame.write_parquet(path)
    fmap = stream_feature_map(path, ["u"])
    _, y = collect(StreamingLog(path, fmap, "r", threshold=4).batches(2))
    # label >= threshold is positive, as in frame_to_dataset.
    assert y.tolist() == [-1.0, 1.0, 1.0, -1.0, 1.0] and y.dtype == np.float32
    assert np.array_equal(y, frame_to_dataset(frame, "r", ["u"], threshold=4).y)


@pytest.mark.parametrize(
    ("labels", "kwargs"),
    [
        ([0, 1, 1, 0], {}),
        ([-1, 1, 1, -1], {}),
        ([False, True, True, False], {}),
        (["no", "yes", "yes", "maybe"], {"positive": "yes"}),
        ([1, 5, 4, 2], {"positive": [4, 5]}),
    ],
)
def test_label_semantics_match_frame_to_dataset(tmp_path: Path, labels, kwargs) -> None:
    frame = pl.DataFrame({"u": [1, 2, 3, 4], "y": labels})
    for path in write_both(frame, tmp_path):
        fmap = stream_feature_map(path, ["u"])
        _, y = collect(StreamingLog(path, fmap, "y", **kwargs).batches(3))
        assert np.array_equal(y, frame_to_dataset(frame, "y", ["u"], **kwargs).y)


def test_bad_labels_name_the_row(tmp_path: Path) -> None:
    path = tmp_path / "y.parquet"
    pl.DataFrame({"u": [1, 2, 3, 4], "y": [1, 0, 7, 1], "r": [1.0, 2.0, 3.0, None]}).write_parquet(
        path, row_group_size=2
    )
    fmap = stream_feature_map(path, ["u"])
    with pytest.raises(DataError, match=r"y\.parquet.*'y' has '7' in row 3"):
        list(StreamingLog(path, fmap, "y", chunk_rows=2).batches(4))
    with pytest.raises(DataError, match=r"'r' has a missing value in row 4"):
        list(StreamingLog(path, fmap, "r", threshold=2, chunk_rows=2).batches(4))


# -- batches -------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_rows", [64, 400, 999, 10_000])
def test_file_order_batches_do_not_depend_on_chunks(planted: Path, chunk_rows: int) -> None:
    frame = pl.read_parquet(planted)
    fmap = FeatureMap.fit(frame, FIELDS)
    data = frame_to_dataset(frame, "rating", FIELDS, feature_map=fmap, threshold=4)
    log = StreamingLog(planted, fmap, "rating", threshold=4, chunk_rows=chunk_rows)
    assert log.n_rows == 6_000
    batches = list(log.batches(512))
    # The batches iterate_batches makes over the whole log, in file order.
    assert [len(y) for _, y in batches] == [512] * 11 + [6_000 - 11 * 512]
    for (X, y), start in zip(batches, range(0, 6_000, 512), strict=True):
        assert same_rows(X, data.X[start : start + 512])
        assert np.array_equal(y, data.y[start : start + 512])


def test_csv_and_parquet_give_the_same_rows(planted: Path, tmp_path: Path) -> None:
    csv = tmp_path / "planted.csv"
    pl.read_parquet(planted).write_csv(csv)
    fmap = stream_feature_map(csv, FIELDS)
    assert fmap == stream_feature_map(planted, FIELDS)
    a = StreamingLog(planted, fmap, "rating", threshold=4, chunk_rows=700)
    b = StreamingLog(csv, fmap, "rating", threshold=4, chunk_rows=1_300)
    assert a.n_rows == b.n_rows == 6_000
    Xa, ya = collect(a.batches(1_000))
    Xb, yb = collect(b.batches(1_000))
    assert same_rows(Xa, Xb) and np.array_equal(ya, yb)


@pytest.mark.parametrize("shuffle_chunks", [1, 3])
def test_shuffled_epoch_covers_every_row_once(row_id_log, shuffle_chunks: int) -> None:
    path, fmap = row_id_log
    log = StreamingLog(path, fmap, "label", chunk_rows=300, shuffle_chunks=shuffle_chunks)
    labels = np.where(np.arange(2_500) % 3, 1.0, -1.0)
    epochs = []
    for _ in range(2):
        X, y = collect(log.batches(256, np.random.default_rng(7)))
        ids = row_ids(X)
        assert np.array_equal(np.sort(ids), np.arange(2_500))  # each row exactly once
        assert np.array_equal(y, labels[ids])  # labels travel with their rows
        epochs.append(ids)
    assert np.array_equal(epochs[0], epochs[1])  # same seed, same order
    assert not np.array_equal(epochs[0], np.arange(2_500))  # and it is shuffled
    other = row_ids(collect(log.batches(256, np.random.default_rng(8)))[0])
    assert not np.array_equal(other, epochs[0])
    # Full batches except the last one, whatever the chunking.
    sizes = [len(y) for _, y in log.batches(256, np.random.default_rng(7))]
    assert sizes == [256] * 9 + [2_500 - 9 * 256]


def test_shuffle_buffer_is_local(row_id_log) -> None:
    # One chunk per buffer, chunks as long as the row groups (400 rows; the last one
    # has 100): a batch mixes rows of at most two row groups, visited in random order.
    path, fmap = row_id_log
    log = StreamingLog(path, fmap, "label", chunk_rows=400, shuffle_chunks=1)
    ids = [row_ids(X) for X, _ in log.batches(400, np.random.default_rng(0))]
    assert all(len(set((b // 400).tolist())) <= 2 for b in ids)
    visits = list(dict.fromkeys((np.concatenate(ids) // 400).tolist()))
    assert sorted(visits) == list(range(7)) and visits != sorted(visits)


def test_chunk_size_does_not_change_the_rows_of_a_shuffled_epoch(row_id_log) -> None:
    path, fmap = row_id_log
    for chunk_rows in (100, 333, 5_000):
        log = StreamingLog(path, fmap, "label", chunk_rows=chunk_rows)
        ids = row_ids(collect(log.batches(100, np.random.default_rng(1)))[0])
        assert np.array_equal(np.sort(ids), np.arange(2_500))


# -- bad input -----------------------------------------------------------------------


def test_bad_inputs(tmp_path: Path, planted: Path) -> None:
    fmap = stream_feature_map(planted, FIELDS)
    with pytest.raises(DataError, match=r"nope\.parquet: no such file"):
        stream_feature_map(tmp_path / "nope.parquet", FIELDS)
    with pytest.raises(DataError, match=r"nope\.csv: no such file"):
        StreamingLog(tmp_path / "nope.csv", fmap, "rating")
    (tmp_path / "log.json").write_text("{}")
    with pytest.raises(DataError, match=r"log\.json: unsupported log format '\.json'"):
        scan_log(tmp_path / "log.json")
    with pytest.raises(DataError, match=r"planted\.parquet: missing column 'age'"):
        stream_feature_map(planted, ["user", "age"])
    with pytest.raises(DataError, match=r"missing column 'stars'"):
        StreamingLog(planted, fmap, "stars", threshold=4)
    with pytest.raises(ConfigError, match="threshold or positive"):
        StreamingLog(planted, fmap, "rating", threshold=4, positive=5)
    with pytest.raises(ConfigError, match="chunk_rows"):
        StreamingLog(planted, fmap, "rating", threshold=4, chunk_rows=0)
    with pytest.raises(ConfigError, match="batch_size"):
        next(StreamingLog(planted, fmap, "rating", threshold=4).batches(0))


def test_unknown_category_names_field_value_and_row(tmp_path: Path) -> None:
    path = tmp_path / "new.parquet"
    frame = pl.DataFrame({"user": [1, 2, 3, 9], "item": ["a", "zz", "b", "a"], "y": [1, 0, 1, 0]})
    frame.write_parquet(path, row_group_size=2)
    fmap = FeatureMap.from_categories({"user": [1, 2, 3], "item": ["a", "b"]})
    message = r"new\.parquet: row 2: unknown category 'zz' of field 'item'"
    with pytest.raises(DataError, match=message):
        list(StreamingLog(path, fmap, "y", chunk_rows=2).batches(4))
    # Rows are counted in the file, not in the chunk (row 4 is the second chunk's first).
    fmap = FeatureMap.from_categories({"user": [1, 2, 3], "item": ["a", "b", "zz"]})
    message = r"row 4: unknown category '9' of field 'user'"
    with pytest.raises(DataError, match=message):
        list(StreamingLog(path, fmap, "y", chunk_rows=3).batches(4))
    for seed in range(4):  # row groups visited in a random order: still the file's row
        with pytest.raises(DataError, match=message):
            list(
                StreamingLog(path, fmap, "y", chunk_rows=3).batches(4, np.random.default_rng(seed))
            )
    X, _ = collect(StreamingLog(path, fmap, "y", unknown="ignore").batches(4))
    assert X.getnnz(axis=1).tolist() == [2, 2, 2, 1]


def test_csv_rows_are_named_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "new.csv"
    pl.DataFrame({"item": ["a", "zz"], "y": [1, 0]}).write_csv(path)
    fmap = FeatureMap.from_categories({"item": ["a", "b"]})
    with pytest.raises(DataError, match=r"new\.csv: row 2 \(line 3\): unknown category 'zz'"):
        list(StreamingLog(path, fmap, "y").batches(2))


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_empty_cell_of_a_field_fitted_without_gaps(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"gaps{suffix}"
    frame = pl.DataFrame({"user": [1, 2, None, 1], "g": ["x", None, "", "x|y"], "y": [1, 0, 1, 0]})
    if suffix == ".parquet":
        frame.write_parquet(path)
    else:
        frame.write_csv(path)
    strict = FeatureMap.from_categories({"user": [1, 2], "g": ["x", "y"]}, multi={"g": "|"})
    place = "row 3 (line 4)" if suffix == ".csv" else "row 3"
    with pytest.raises(DataError, match=rf"gaps\{suffix}: {re.escape(place)}: empty cell in "):
        list(StreamingLog(path, strict, "y", chunk_rows=2).batches(4))
    # Fitted on the log itself, the gap is part of the field, as in FeatureMap.encode.
    fitted = stream_feature_map(path, ["user", "g"], {"g": "|"})
    X, _ = collect(StreamingLog(path, fitted, "y", chunk_rows=2).batches(4))
    assert same_rows(X, fitted.encode(scan_log(path).collect()))


def test_one_class_threshold_is_refused_when_the_log_opens(tmp_path: Path) -> None:
    # Sorted by rating, so the first chunks alone are all -1: only the whole log counts.
    frame = pl.DataFrame({"u": [1, 2, 3, 4, 5], "r": [1, 2, 3, 4, 5]})
    for path in write_both(frame, tmp_path):
        fmap = stream_feature_map(path, ["u"])
        with pytest.raises(DataError) as info:
            StreamingLog(path, fmap, "r", threshold=9, chunk_rows=2)
        assert str(info.value).startswith(
            f"{path}: threshold 9 makes every one of the 5 rows -1: the values of label "
            "column 'r' range 1..5"
        )
        assert "--threshold" in str(info.value)
        log = StreamingLog(path, fmap, "r", threshold=4, chunk_rows=2)
        assert log.n_rows == 5
        assert collect(log.batches(5))[1].tolist() == [-1, -1, -1, 1, 1]
        with pytest.raises(DataError, match="positive=7 makes every one of the 5 rows -1"):
            StreamingLog(path, fmap, "r", positive=7)


def test_integer_ids_against_text_categories(tmp_path: Path) -> None:
    # "02" is not how the integer 2 is written: FeatureMap.encode does not match them, and
    # neither may the integer shortcut of the stream.
    path = tmp_path / "ids.parquet"
    frame = pl.DataFrame({"user": [1, 2, 3, 7], "y": [1, 0, 1, 0]})
    frame.write_parquet(path)
    fmap = FeatureMap.from_categories({"user": ["1", "02", "3", "x"]})
    with pytest.raises(DataError, match=r"row 2: unknown category '2' of field 'user'"):
        list(StreamingLog(path, fmap, "y").batches(4))
    X, _ = collect(StreamingLog(path, fmap, "y", unknown="ignore").batches(4))
    assert same_rows(X, fmap.encode(frame, unknown="ignore"))
    canonical = FeatureMap.from_categories({"user": [3, 1, 7, 2]})  # unsorted on purpose
    X, _ = collect(StreamingLog(path, canonical, "y").batches(4))
    assert same_rows(X, canonical.encode(frame))


def test_empty_logs(tmp_path: Path) -> None:
    frame = pl.DataFrame({"user": [1], "rating": [4]}).clear()
    parquet, csv = write_both(frame, tmp_path, "empty")
    fmap = FeatureMap.from_categories({"user": [1]})
    for path in (parquet, csv):
        with pytest.raises(DataError, match=rf"{path.name}: empty log"):
            stream_feature_map(path, ["user"])
        with pytest.raises(DataError, match=rf"{path.name}: empty log"):
            StreamingLog(path, fmap, "rating", threshold=4)
    blank = tmp_path / "blank.csv"
    blank.write_text("")
    with pytest.raises(DataError, match=r"blank\.csv"):
        stream_feature_map(blank, ["user"])


# -- training ------------------------------------------------------------------------


def test_fit_loop_on_a_streamed_log(planted: Path, tmp_path: Path) -> None:
    frame = pl.read_parquet(planted)
    train_path = tmp_path / "train.parquet"
    frame.head(4_500).write_parquet(train_path, row_group_size=1_000)
    fmap = stream_feature_map(train_path, FIELDS)
    valid = frame_to_dataset(
        frame.tail(1_500), "rating", FIELDS, feature_map=fmap, threshold=4, unknown="ignore"
    )
    config = TrainConfig(epochs=4, batch_size=256, lr=0.03, device="cpu", seed=0)

    penalty = FMPenalty()

    def train(batches) -> FactorizationMachine:
        model = FactorizationMachine(fmap.n_features, 4, 0.01, torch.Generator().manual_seed(0))
        fit_loop(model, batches, 4_500, None, config, penalty=penalty)
        return model

    log = StreamingLog(train_path, fmap, "rating", threshold=4, chunk_rows=700)
    shuffled = train(log.batch_source(config.batch_size))
    assert auc(valid.y, predict_scores(shuffled, valid.X)) > 0.75

    # In file order, the streamed batches are the in-memory ones: the same model.
    data = frame_to_dataset(frame.head(4_500), "rating", FIELDS, feature_map=fmap, threshold=4)
    streamed = train(log.batch_source(config.batch_size, shuffle=False))
    in_memory = train(lambda rng, device: iterate_batches(data.X, data.y, 256, device))
    for a, b in zip(streamed.parameters(), in_memory.parameters(), strict=True):
        torch.testing.assert_close(a, b)
