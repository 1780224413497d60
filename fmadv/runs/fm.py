"""What the FM commands do: train into a run folder, evaluate, predict, attack.

Each function is one command's work, from Python with the same defaults; the CLI
parses, calls one of these and prints what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from fmadv.checks import integer
from fmadv.data import read_libfm
from fmadv.errors import ConfigError
from fmadv.estimators.fm import FMClassifier, FMEstimator
from fmadv.evaluation.edits import edit_curve, edit_threat
from fmadv.evaluation.robustness import check_strength, flip_curve, strongest_scores
from fmadv.io import atomic_write, model_file
from fmadv.losses import get_loss
from fmadv.metrics.classification import classification_report
from fmadv.metrics.robustness import robustness_report
from fmadv.plots import plot_edit_curves, plot_flip_curves
from fmadv.runs.data import (
    DataSpec,
    StreamedRows,
    TrainingRows,
    labelled_rows,
    load_training_rows,
    stream_training_rows,
)
from fmadv.runs.folder import RunFolder, is_main_process, write_json
from fmadv.runs.progress import epoch_progress
from fmadv.threat import DEFAULT_EPS, check_linf_eps


def train_fm(
    estimator: FMEstimator,
    data: DataSpec,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
) -> dict | None:
    """Train ``estimator`` on ``data`` and write the run folder ``out``.

    A folder that holds a run is not trained into again unless ``resume`` continues that
    run from its checkpoint (with the settings it was started with; more epochs, another
    patience or device are fine) or ``overwrite`` replaces it.

    Returns the run's summary (also written to ``summary.json``); None in the processes
    of a ``torchrun`` group other than the first, which write nothing. A Ctrl-C raises
    :class:`~fmadv.runs.folder.RunInterrupted`.
    """
    estimator.validate()  # option errors before any data is read
    folder = RunFolder(Path(out))
    settings = {**estimator.get_params(), "data": data.record()}
    folder.check_start(settings, resume=resume, overwrite=overwrite)
    # The folder is made only once the data has loaded: bad input leaves nothing behind.
    rows = load_training_rows(data) if data.log is None else stream_training_rows(data)
    folder.start(settings, overwrite=overwrite)
    with folder.training():
        if isinstance(rows, StreamedRows):
            return _fit_stream(estimator, rows, folder, resume, quiet)
        return _fit_rows(estimator, rows, folder, resume, quiet)


def _fit_rows(
    estimator: FMEstimator, rows: TrainingRows, folder: RunFolder, resume: bool, quiet: bool
) -> dict | None:
    main = is_main_process()
    splits = rows.splits
    with epoch_progress(quiet or not main, estimator.epochs, splits.train.n_rows) as progress:
        estimator.fit_splits(
            splits, log_path=folder.metrics, checkpoint=folder.checkpoint, resume=resume,
            **progress.callbacks(),
        )  # fmt: skip
    if not main:
        return None
    results = estimator.report(splits)
    return _finish(estimator, folder, splits.train.feature_map, rows.record, results,
                   best_epoch=estimator.history_.best_epoch)  # fmt: skip


def _fit_stream(
    estimator: FMClassifier, rows: StreamedRows, folder: RunFolder, resume: bool, quiet: bool
) -> dict | None:
    main = is_main_process()
    with epoch_progress(quiet or not main, estimator.epochs, rows.train.n_rows) as progress:
        estimator.fit_stream(
            rows.train, eval_set=rows.eval_set, log_path=folder.metrics,
            checkpoint=folder.checkpoint, resume=resume, **progress.callbacks(),
        )  # fmt: skip
    if not main:
        return None
    results = {}
    if rows.eval_set is not None:
        X, y = rows.eval_set
        results["valid"] = classification_report(y, estimator.decision_function(X))
    return _finish(estimator, folder, rows.feature_map, rows.record, results,
                   rows=rows.train.n_rows)  # fmt: skip


def _finish(estimator, folder: RunFolder, feature_map, record, results, **facts) -> dict:
    estimator.save(
        folder.model, feature_map=feature_map, extra={"data": record, "results": results}
    )
    summary = {
        "model": estimator.describe(),
        "data": record,
        "params": estimator.get_params(),
        **facts,
        "results": results,
        "files": {"model": str(folder.model), "metrics": str(folder.metrics)},
    }
    folder.write_summary(summary)
    return summary


def evaluate_fm(
    model_path: str | Path,
    input_file: Path | None = None,
    dataset: str | None = None,
    data_dir: Path | None = None,
    device: str = "cpu",
) -> dict[str, dict[str, float]]:
    """Accuracy, AUC, hinge and log loss of a saved model on a libFM file, or on the test
    split of a dataset (by default the model's own)."""
    model = FMEstimator.load(model_path, device=device)
    name, rows = labelled_rows(model, input_file, dataset, data_dir)
    return {name: classification_report(rows.y, model.decision_function(rows.X))}


def predict_fm(model_path: str | Path, input_file: Path, device: str = "cpu") -> pd.DataFrame:
    """Scores and labels of the rows of a libFM file, or of a CSV whose columns are the
    model's feature fields (encoded with the feature map saved in the model)."""
    model = FMEstimator.load(model_path, device=device)
    if input_file.suffix.lower() == ".csv":
        if model.feature_map_ is None:
            raise ConfigError(f"{model_path} has no feature map; give a libFM file instead")
        try:
            frame = pd.read_csv(input_file, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
            raise ConfigError(f"{input_file}: not a readable CSV ({err})") from None
        X = model.feature_map_.encode(frame, path=input_file)
    else:
        X = read_libfm(
            input_file, n_features=model.n_features_in_, allow_real_valued=model.allow_real_valued
        ).X
    scores = model.decision_function(X)
    return pd.DataFrame({"score": scores, "label": np.where(scores > 0, 1, -1)})


@dataclass
class RobustnessResult:
    """The summary at one budget, the flip-rate curve, and the files written."""

    report: dict
    curve: list[dict]
    files: list[Path]


def robustness_fm(
    model_path: str | Path,
    eps: float = DEFAULT_EPS,
    eps_grid: tuple[float, ...] = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1),
    attack: str | None = None,
    support: str | None = None,
    strength: str = "strong",
    input_file: Path | None = None,
    dataset: str | None = None,
    data_dir: Path | None = None,
    out: Path | None = None,
    device: str = "cpu",
) -> RobustnessResult:
    """Flip rate, adversarial error and margins of a saved model under attack at ``eps``,
    and the same against each budget of ``eps_grid`` (``robustness.json``,
    ``flip_curve.csv``, ``flip_curve.png`` in ``out``, by default ``robustness/`` beside
    the model).

    ``strength`` (:func:`~fmadv.evaluation.robustness.strongest_scores`): ``"strong"``
    takes per row the worst of the exact line search along the attack's step and of
    PGD in the same ball; ``"line"`` the line search alone; ``"single"`` the single step
    (the FM blog's figure, which can overshoot). The summary also gives the single
    step's flip rate and error beside the chosen strength's. The attack and support
    default to those the model was trained with.
    """
    model_path = model_file(model_path)
    grid = [check_linf_eps(float(e)) for e in eps_grid]
    check_linf_eps(eps)
    check_strength(strength)  # before any data is read
    model = FMEstimator.load(model_path, device=device)
    config = model.adversarial_config()
    # A model trained against edits is attacked in the box by FGSM unless told otherwise.
    trained_with = "fgsm" if config.edits else config.attack
    config = replace(config, attack=attack or trained_with, support=support or config.support)
    name, rows = labelled_rows(model, input_file, dataset, data_dir)
    loss_fn = get_loss(model.loss)

    def make(step: float):
        return config.make_attack(check_linf_eps(step))

    # The summary's budget is usually a point of the curve: attack once for both.
    budgets = sorted(set(grid) | {eps})
    curve = flip_curve(model.model_, rows.X, rows.y, make, budgets, loss_fn, strength)
    summary = dict(next(point for point in curve if point["eps"] == eps))
    curve = [point for point in curve if point["eps"] in grid]
    clean, single = strongest_scores(model.model_, rows.X, rows.y, make, eps, loss_fn, "single")
    single_step = robustness_report(rows.y, clean, single)
    summary["single_step_flip_rate"] = single_step["flip_rate"]
    summary["single_step_adversarial_error"] = single_step["adversarial_error"]
    report = {
        "model": str(model_path),
        "rows": name,
        "attack": config.attack,
        "support": config.support,
        "strength": strength,
        **summary,
    }
    label = f"{model_path.parent.name} ({config.attack}, {config.support}, {strength})"
    title = f"{name}: flip rate against eps ({strength} attack)"
    return _write_robustness(
        out or model_path.parent / "robustness", "flip_curve", report, curve,
        lambda path: plot_flip_curves({label: curve}, path, title=title),
    )  # fmt: skip


def edit_robustness_fm(
    model_path: str | Path,
    fields: tuple[str, ...],
    budget: int = 1,
    budgets: tuple[int, ...] = (0, 1, 2, 3, 4, 5),
    input_file: Path | None = None,
    dataset: str | None = None,
    data_dir: Path | None = None,
    out: Path | None = None,
    device: str = "cpu",
) -> RobustnessResult:
    """A saved model under edits of whole features of ``fields`` (one-hot fields change
    value, multi-valued ones toggle features): the greedy attack's flip rate and the
    certified share at ``budget`` edits per row, and both against each of ``budgets``
    (``robustness.json``, ``edit_curve.csv``, ``edit_curve.png`` in ``out``, by default
    ``robustness/`` beside the model)."""
    model_path = model_file(model_path)
    model = FMEstimator.load(model_path, device=device)
    feature_map = getattr(model, "feature_map_", None)
    if feature_map is None:
        raise ConfigError(
            "edits name fields, and this model has no feature map: train it on a "
            "registered dataset (--dataset) to attack it with --attack flips"
        )
    threat = edit_threat(feature_map, fields, budget)
    grid = sorted({integer("budget", b) for b in budgets} | {integer("budget", budget)})
    name, rows = labelled_rows(model, input_file, dataset, data_dir)
    curve = edit_curve(model.model_, rows.X, rows.y, threat, grid)
    summary = next(point for point in curve if point["budget"] == budget)
    curve = [point for point in curve if point["budget"] in budgets]
    report = {"model": str(model_path), "rows": name, "attack": "flips",
              "fields": list(fields), **summary}  # fmt: skip
    title = f"{name}: edits of {', '.join(fields)}"
    return _write_robustness(
        out or model_path.parent / "robustness", "edit_curve", report, curve,
        lambda path: plot_edit_curves({model_path.parent.name: curve}, path, title=title),
    )  # fmt: skip


def _write_robustness(out: Path, stem: str, report: dict, curve: list, plot) -> RobustnessResult:
    """``robustness.json``, ``<stem>.csv`` and ``<stem>.png`` (drawn by ``plot``)."""
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "robustness.json", out / f"{stem}.csv", out / f"{stem}.png"]
    write_json(files[0], report)
    atomic_write(files[1], lambda t: pd.DataFrame(curve).to_csv(t, index=False))
    plot(files[2])
    return RobustnessResult(report, curve, files)
