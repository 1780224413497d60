"""Where a run's rows come from, and which rows a saved model is evaluated on.

A run trains on a registered dataset, on libFM files, or on a log streamed from disk.
The model file records which (``metadata_["data"]``), so that evaluating, attacking or
recommending from it later finds the same dataset, options and split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from fmadv.data import Dataset, Splits, load_dataset, read_libfm, select_options
from fmadv.errors import ConfigError


@dataclass
class DataSpec:
    """The rows a training run reads.

    Parameters
    ----------
    dataset
        A registered dataset (see ``fmadv data list``), used when no files are given.
    data_dir
        Folder of local dataset copies (default: the download cache).
    settings
        Candidate loader options (``split``, ``side_features``, ``threshold``, ``seed``,
        ``train_from``...): those the dataset's format accepts are passed on, unset
        (None) ones are left out.
    train_file, valid_file, test_file
        libFM files to use instead of a dataset.
    log, valid_log, fields, label, threshold
        An interaction log (Parquet or CSV) streamed in chunks, its feature columns and
        label column, and an optional in-memory validation log.
    allow_real_valued
        Accept feature values other than 0 and 1.
    """

    dataset: str = "synthetic"
    data_dir: Path | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    train_file: Path | None = None
    valid_file: Path | None = None
    test_file: Path | None = None
    log: Path | None = None
    valid_log: Path | None = None
    fields: tuple[str, ...] = ()
    label: str | None = None
    threshold: float | None = None
    allow_real_valued: bool = False

    def record(self) -> dict[str, Any]:
        """Where the rows come from, as the model and the run folder record it; found
        without reading any data, so a run can compare it before it loads."""
        if self.log is not None:
            record = {"log": str(self.log), "fields": list(self.fields), "label": self.label,
                      "threshold": self.threshold}  # fmt: skip
            if self.valid_log is not None:
                record["valid_log"] = str(self.valid_log)
            return record
        if self.train_file is not None:
            files = {"train": self.train_file, "valid": self.valid_file, "test": self.test_file}
            return {"files": {name: str(path) for name, path in files.items() if path is not None}}
        settings = {"allow_real_valued": self.allow_real_valued or None, **self.settings}
        return {"dataset": self.dataset, "options": select_options(self.dataset, **settings)}


@dataclass
class TrainingRows:
    """In-memory splits and the record of where they came from (saved with the model)."""

    splits: Splits
    record: dict


def load_training_rows(spec: DataSpec) -> TrainingRows:
    """The train / valid / test rows of a dataset or of libFM files (valid and test
    are None where no file is given)."""
    record = spec.record()
    if spec.train_file is None:
        splits = load_dataset(spec.dataset, spec.data_dir, **record["options"])
        return TrainingRows(splits, record)
    train = read_libfm(spec.train_file, allow_real_valued=spec.allow_real_valued)
    valid, test = (
        read_libfm(path, n_features=train.n_features, allow_real_valued=spec.allow_real_valued)
        if path
        else None
        for path in (spec.valid_file, spec.test_file)
    )
    return TrainingRows(Splits(train, valid, test), record)


@dataclass
class StreamedRows:
    """Training rows streamed from a log chunk by chunk, the feature map of one pass over
    it, the validation rows (in memory), and the record of where they came from."""

    train: Any  # a fmadv.data.stream.StreamingLog
    feature_map: Any  # a fmadv.data.features.FeatureMap
    eval_set: tuple[sp.csr_matrix, np.ndarray] | None
    record: dict


def stream_training_rows(spec: DataSpec) -> StreamedRows:
    """The rows of ``spec.log``: one streaming pass for the feature map, then batches read
    chunk by chunk with bounded memory; the validation log is read into memory."""
    from fmadv.data.stream import StreamingLog, stream_feature_map

    if not spec.fields or spec.label is None:
        raise ConfigError("--log needs --fields (feature columns) and --label (the label column)")
    feature_map = stream_feature_map(spec.log, list(spec.fields))
    train = StreamingLog(spec.log, feature_map, spec.label, threshold=spec.threshold)
    eval_set = None
    if spec.valid_log is not None:
        valid = StreamingLog(spec.valid_log, feature_map, spec.label, threshold=spec.threshold)
        chunks = list(valid.chunks())
        eval_set = (sp.vstack([c.X for c in chunks]).tocsr(), np.concatenate([c.y for c in chunks]))
    return StreamedRows(train, feature_map, eval_set, spec.record())


def recorded_splits(model, data_dir: Path | None) -> tuple[str, dict, Splits]:
    """(dataset name, options, splits) a saved model was trained on."""
    recorded = model.metadata_.get("data", {})
    if "dataset" not in recorded:
        raise ConfigError(
            "this model was trained on libFM files; recommendation needs a registered dataset"
        )
    options = recorded.get("options", {})
    return recorded["dataset"], options, load_dataset(recorded["dataset"], data_dir, **options)


def labelled_rows(
    model, input_file: Path | None, dataset: str | None, data_dir: Path | None
) -> tuple[str, Dataset]:
    """(name, rows) to evaluate a saved model on: a libFM file, or a dataset's test split
    (by default the dataset, options and split the model was trained with)."""
    if input_file is not None:
        rows = read_libfm(
            input_file, n_features=model.n_features_in_, allow_real_valued=model.allow_real_valued
        )
        return input_file.name, rows
    recorded = model.metadata_.get("data", {})
    name = dataset or recorded.get("dataset")
    if name is None:
        raise ConfigError("this model was trained on files: pass --input FILE")
    options = recorded.get("options", {}) if name == recorded.get("dataset") else {}
    test = load_dataset(name, data_dir, **options).test
    if test.n_features != model.n_features_in_:
        raise ConfigError(
            f"{name} rows have {test.n_features} features, the model expects {model.n_features_in_}"
        )
    return "test", test
