"""The ``fmadv`` command line: one typer app, a sub-app per command group."""

from __future__ import annotations

import enum
import functools
import json
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fmadv.attacks import ATTACKS, SUPPORTS
from fmadv.data.cards import list_cards
from fmadv.errors import ConfigError, FmadvError
from fmadv.io import atomic_write
from fmadv.losses import LOSSES
from fmadv.models.fm_attack import FM_ATTACKS, PRECISIONS
from fmadv.training.loop import MONITORS, OPTIMIZERS, TrainConfig
from fmadv.training.regularizers import NOISE_ROWS

app = typer.Typer(
    help="Robust factorization-machine recommenders.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
data_app = typer.Typer(help="List, fetch, verify and describe datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
image_app = typer.Typer(
    help="LeNet and MLP image classifiers through the same attacks and training core.",
    no_args_is_help=True,
)
app.add_typer(image_app, name="image")

console = Console()

Loss = enum.Enum("Loss", {name: name for name in LOSSES}, type=str)
Optimizer = enum.Enum("Optimizer", {name: name for name in OPTIMIZERS}, type=str)
Monitor = enum.Enum("Monitor", {name: name for name in MONITORS}, type=str)
AttackName = enum.Enum("AttackName", {name: name for name in FM_ATTACKS}, type=str)
ImageAttack = enum.Enum("ImageAttack", {name: name for name in ATTACKS if name != "apr"}, type=str)
Support = enum.Enum("Support", {name: name for name in SUPPORTS}, type=str)
NoiseRows = enum.Enum("NoiseRows", {name: name for name in NOISE_ROWS}, type=str)
Precision = enum.Enum("Precision", {name: name for name in PRECISIONS}, type=str)
DatasetName = enum.Enum("DatasetName", {card.name: card.name for card in list_cards()}, type=str)


def user_errors(command):
    """Report errors the user can fix as one line on stderr and exit with code 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (FmadvError, OSError) as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None

    return wrapper


DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="FMADV_DATA_DIR",
        help="Folder holding dataset copies (one subfolder per dataset); "
        "default: the download cache ~/.cache/fmadv.",
    ),
]
Device = Annotated[str, typer.Option(help="auto (CUDA when available), cpu or cuda.")]


def _dataset_options(
    fmt: str,
    seed: int,
    split: str | None,
    side_features: str,
    threshold: float | None,
    train_from: str | None = None,
) -> dict:
    """The loader options that apply to a dataset format, from the CLI flags."""
    if fmt == "synthetic":
        return {"seed": seed}
    if fmt == "movielens-100k":
        options = {"seed": seed, "side_features": [s for s in side_features.split(",") if s]}
        if split:
            options["split"] = split
        if threshold is not None:
            options["threshold"] = threshold
        return options
    if fmt == "libfm":
        return {"seed": seed, **({"train_from": train_from} if train_from else {})}
    raise ConfigError(f"datasets of format {fmt!r} are not FM datasets")


def load_rows(
    dataset: str,
    data_dir: Path | None,
    seed: int,
    split: str | None = None,
    side_features: str = "",
    threshold: float | None = None,
    allow_real_valued: bool = False,
    train_from: str | None = None,
):
    """Load a registered dataset's splits; returns (splits, options used)."""
    from fmadv.data import get_card, load_dataset

    card = get_card(dataset)
    options = _dataset_options(card.format, seed, split, side_features, threshold, train_from)
    if card.format == "libfm":
        options["allow_real_valued"] = allow_real_valued
    return load_dataset(dataset, data_dir, **options), options


def _libfm(path: Path, n_features: int | None, allow_real_valued: bool):
    from fmadv.data import read_libfm

    return read_libfm(path, n_features=n_features, allow_real_valued=allow_real_valued)


def metrics_table(
    title: str, rows: dict[str, dict[str, float]], caption: str | None = None
) -> Table:
    """A rich table: one row per split, one column per metric."""
    table = Table(title=title, caption=caption)
    table.add_column("split")
    metrics = list(next(iter(rows.values())))
    for name in metrics:
        table.add_column(name, justify="right")
    for split_name, values in rows.items():
        table.add_row(split_name, *(f"{values[m]:.4f}" for m in metrics))
    return table


@app.command()
@user_errors
def train(
    dataset: Annotated[
        DatasetName, typer.Option(help="Registered dataset (see `fmadv data list`).")
    ] = DatasetName.synthetic,
    train_file: Annotated[
        Path | None,
        typer.Option("--train", help="libFM file to train on instead of --dataset."),
    ] = None,
    valid_file: Annotated[
        Path | None, typer.Option("--valid", help="libFM validation file (with --train).")
    ] = None,
    test_file: Annotated[
        Path | None, typer.Option("--test", help="libFM test file (with --train).")
    ] = None,
    log: Annotated[
        Path | None,
        typer.Option(
            "--log",
            help="Parquet or CSV interaction log to stream (need not fit in memory); "
            "with --fields and --label.",
        ),
    ] = None,
    valid_log: Annotated[
        Path | None, typer.Option(help="Log of validation rows (read into memory), with --log.")
    ] = None,
    log_fields: Annotated[
        str,
        typer.Option("--fields", help="--log: comma-separated feature columns (one field each)."),
    ] = "",
    label: Annotated[
        str | None,
        typer.Option(help="--log: label column (-1/+1, 0/1, or rated with --threshold)."),
    ] = None,
    data_dir: DataDir = None,
    split: Annotated[
        str | None,
        typer.Option(help="MovieLens split: random, temporal, or an official fold u1..u5, ua, ub."),
    ] = None,
    side_features: Annotated[
        str,
        typer.Option(
            help="MovieLens side features, comma separated: genre, gender, age, occupation."
        ),
    ] = "",
    threshold: Annotated[
        float | None, typer.Option(help="MovieLens: ratings >= threshold are +1 (default 4).")
    ] = None,
    train_from: Annotated[
        str | None,
        typer.Option(
            help="libFM datasets (frappe): the split file to train on, train or validation "
            "(a partial copy without the train file trains on validation)."
        ),
    ] = None,
    k: Annotated[int, typer.Option(help="Latent factors per feature.")] = 16,
    loss: Annotated[Loss, typer.Option(help="Training loss.")] = Loss.hinge,
    optimizer: Annotated[Optimizer, typer.Option(help="Optimizer.")] = Optimizer.adam,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 0.01,
    epochs: Annotated[int, typer.Option(help="Maximum number of epochs.")] = 20,
    batch_size: Annotated[int, typer.Option(help="Rows per mini-batch.")] = 4096,
    reg_bias: Annotated[float, typer.Option(help="L2 on the global bias.")] = 0.0,
    reg_linear: Annotated[float, typer.Option(help="L2 on active linear weights.")] = 1e-5,
    reg_factors: Annotated[float, typer.Option(help="L2 on active factor rows.")] = 1e-5,
    patience: Annotated[
        int, typer.Option(help="Stop after this many epochs without gain; 0 never stops early.")
    ] = 3,
    monitor: Annotated[
        Monitor, typer.Option(help="Validation metric for early stopping.")
    ] = Monitor.auc,
    seed: Annotated[int, typer.Option(help="Seed of data split, initialisation, batches.")] = 0,
    beta: Annotated[
        float,
        typer.Option(help="Adversarial training: loss(x) + beta * loss(x_adv); 0 = plain FM."),
    ] = 0.0,
    alpha: Annotated[
        float, typer.Option(help="Attack step in the unit box (FGSM: L-inf radius).")
    ] = 0.003,
    attack: Annotated[AttackName, typer.Option(help="Attack that makes x_adv.")] = AttackName.fgsm,
    support: Annotated[
        Support, typer.Option(help="Features the attack may move: all, or only the active ones.")
    ] = Support.all,
    adversarial_only: Annotated[
        bool, typer.Option(help="Train on loss(x_adv) alone (learning with an adversary).")
    ] = False,
    grad_noise: Annotated[
        float, typer.Option(help="Gradient noise variance eta at step 0; 0 = none.")
    ] = 0.0,
    grad_noise_gamma: Annotated[
        float, typer.Option(help="Noise variance decays as eta / (1 + t)^gamma.")
    ] = 0.55,
    grad_noise_rows: Annotated[
        NoiseRows, typer.Option(help="Noise on the rows the batch touched, or on all rows.")
    ] = NoiseRows.touched,
    attack_precision: Annotated[
        Precision,
        typer.Option(help="Type of the attack's mask product (bfloat16: GPU tensor cores)."),
    ] = Precision.float32,
    device: Device = "auto",
    allow_real_valued: Annotated[
        bool, typer.Option(help="Accept feature values other than 0/1.")
    ] = False,
    out: Annotated[
        Path, typer.Option(help="Run folder: model.safetensors, metrics.jsonl, summary.json.")
    ] = Path("runs/fm"),
    resume: Annotated[
        bool,
        typer.Option(
            help="Continue from the run folder's checkpoint.safetensors, if there is one."
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar or tables.")] = False,
) -> None:
    """Train a factorization machine and save it with its feature map and metrics.

    Runs on several processes under ``torchrun --nproc_per_node=N -m fmadv train ...``:
    each process takes its shard of every batch, and the first one writes the files."""
    from fmadv.models.classifier import FMClassifier

    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer.value,
        loss=loss.value,
        reg_bias=reg_bias,
        reg_linear=reg_linear,
        reg_factors=reg_factors,
        patience=patience,
        monitor=monitor.value,
        seed=seed,
        device=device,
    )
    config.validate()
    fields = {name: getattr(config, name) for name in vars(config) if name != "seed"}
    model = FMClassifier(
        k=k,
        allow_real_valued=allow_real_valued,
        beta=beta,
        alpha=alpha,
        attack=attack.value,
        support=support.value,
        adversarial_only=adversarial_only,
        grad_noise=grad_noise,
        grad_noise_gamma=grad_noise_gamma,
        grad_noise_rows=grad_noise_rows.value,
        attack_precision=attack_precision.value,
        random_state=seed,
        **fields,
    )
    model.objective(), model.hooks()  # option errors before any data is read
    if log is not None:
        _train_streaming(model, log, valid_log, log_fields, label, threshold, out, quiet, resume)
        return
    if train_file is not None:
        train_set = _libfm(train_file, None, allow_real_valued)
        n = train_set.n_features
        valid_set = _libfm(valid_file, n, allow_real_valued) if valid_file else None
        test_set = _libfm(test_file, n, allow_real_valued) if test_file else None
        data_info = {"files": {"train": str(train_file)}}
    else:
        splits, options = load_rows(
            dataset.value,
            data_dir,
            seed,
            split,
            side_features,
            threshold,
            allow_real_valued,
            train_from,
        )
        train_set, valid_set, test_set = splits.train, splits.valid, splits.test
        data_info = {"dataset": dataset.value, "options": options}

    eval_set = (valid_set.X, valid_set.y) if valid_set is not None else None
    main_process = _is_main_process()
    quiet = quiet or not main_process
    out.mkdir(parents=True, exist_ok=True)
    with _progress(quiet) as progress:
        task = progress.add_task(f"epoch 1/{epochs}", total=train_set.n_rows)

        def on_step(done: int, total: int) -> None:
            progress.update(task, completed=done)

        def on_epoch(record: dict) -> None:
            if not quiet:
                progress.console.print(_epoch_line(record))
            if record["epoch"] < epochs:
                progress.update(
                    task, completed=0, description=f"epoch {record['epoch'] + 1}/{epochs}"
                )

        model.fit(
            train_set.X,
            train_set.y,
            eval_set=eval_set,
            log_path=out / "metrics.jsonl",
            on_step=on_step,
            on_epoch=on_epoch,
            checkpoint=out / "checkpoint.safetensors",
            resume=resume,
        )
    if not main_process:
        return
    results = _evaluate_splits(model, {"train": train_set, "valid": valid_set, "test": test_set})
    model.save(
        out / "model.safetensors",
        feature_map=train_set.feature_map,
        extra={"data": data_info, "results": results},
    )
    summary = {
        "model": model.describe(),
        "data": data_info,
        "params": model.get_params(),
        "best_epoch": model.history_.best_epoch,
        "results": results,
    }
    text = json.dumps(summary, indent=2) + "\n"
    atomic_write(out / "summary.json", lambda temp: Path(temp).write_text(text))
    if not quiet:
        source = data_info.get("dataset", "libFM files")
        console.print(metrics_table(f"FM k={k} on {source}", results, caption=model.describe()))
        console.print(f"saved {out / 'model.safetensors'}")


def _train_streaming(
    model, log: Path, valid_log, fields: str, label, threshold, out, quiet, resume
):
    """``fmadv train --log``: one streaming pass for the feature map, then training on
    chunk-by-chunk batches with bounded memory."""
    import scipy.sparse as sp

    from fmadv.data.stream import StreamingLog, stream_feature_map

    names = [f.strip() for f in fields.split(",") if f.strip()]
    if not names or label is None:
        raise ConfigError("--log needs --fields (feature columns) and --label (the label column)")
    feature_map = stream_feature_map(log, names)
    train = StreamingLog(log, feature_map, label, threshold=threshold)
    eval_set = None
    if valid_log is not None:
        chunks = list(StreamingLog(valid_log, feature_map, label, threshold=threshold).chunks())
        eval_set = (sp.vstack([c.X for c in chunks]).tocsr(), np.concatenate([c.y for c in chunks]))
    main_process = _is_main_process()
    quiet = quiet or not main_process
    out.mkdir(parents=True, exist_ok=True)
    with _progress(quiet) as progress:
        task = progress.add_task("training", total=train.n_rows)
        model.fit_stream(
            train, eval_set=eval_set, log_path=out / "metrics.jsonl",
            on_step=lambda done, total: progress.update(task, completed=done),
            on_epoch=lambda r: None if quiet else progress.console.print(_epoch_line(r)),
            checkpoint=out / "checkpoint.safetensors", resume=resume,
        )  # fmt: skip
    if not main_process:
        return
    data_info = {"log": str(log), "fields": names, "label": label, "threshold": threshold}
    results = {}
    if eval_set is not None:
        from fmadv.metrics.classification import classification_report

        results["valid"] = classification_report(eval_set[1], model.decision_function(eval_set[0]))
    model.save(
        out / "model.safetensors",
        feature_map=feature_map,
        extra={"data": data_info, "results": results},
    )
    summary = {
        "model": model.describe(),
        "data": data_info,
        "rows": train.n_rows,
        "results": results,
    }
    text = json.dumps(summary, indent=2) + "\n"
    atomic_write(out / "summary.json", lambda temp: Path(temp).write_text(text))
    if not quiet:
        console.print(
            f"trained on {train.n_rows:,} streamed rows; saved {out / 'model.safetensors'}"
        )


def _is_main_process() -> bool:
    """False in the processes of a ``torchrun`` group other than the first."""
    import os

    return int(os.environ.get("RANK", "0")) == 0


def _epoch_line(record: dict) -> str:
    """One short line per epoch: the training loss and the validation metrics."""
    parts = [f"epoch {record['epoch']:>3}", f"loss {record['train_loss']:.4f}"]
    for name in ("auc", "accuracy", "hinge"):
        if f"valid_{name}" in record:
            parts.append(f"valid {name} {record[f'valid_{name}']:.4f}")
    parts.append(f"{record['seconds']:.1f}s")
    return "  ".join(parts)


def _evaluate_splits(model, datasets: dict) -> dict[str, dict[str, float]]:
    from fmadv.metrics.classification import classification_report

    return {
        name: classification_report(ds.y, model.decision_function(ds.X))
        for name, ds in datasets.items()
        if ds is not None
    }


def _labelled_rows(model, input_file: Path | None, dataset, data_dir: Path | None):
    """{name: Dataset} to evaluate a saved model on: a libFM file, or a dataset's test split
    (by default the dataset and options the model was trained with)."""
    if input_file is not None:
        return {input_file.name: _libfm(input_file, model.n_features_in_, model.allow_real_valued)}
    recorded = model.metadata_.get("data", {})
    name = dataset.value if dataset is not None else recorded.get("dataset")
    if name is None:
        raise ConfigError("this model was trained on files: pass --input FILE")
    options = recorded.get("options", {}) if name == recorded.get("dataset") else {}
    from fmadv.data import load_dataset

    test = load_dataset(name, data_dir, **options).test
    if test.n_features != model.n_features_in_:
        raise ConfigError(
            f"{name} rows have {test.n_features} features, the model expects {model.n_features_in_}"
        )
    return {"test": test}


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} rows"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    )


@app.command()
@user_errors
def evaluate(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help="A model.safetensors file.")],
    input_file: Annotated[
        Path | None, typer.Option("--input", help="Labelled libFM file to evaluate on.")
    ] = None,
    dataset: Annotated[
        DatasetName | None,
        typer.Option(help="Dataset to evaluate on (its test split); default: the model's own."),
    ] = None,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    device: Device = "cpu",
) -> None:
    """Accuracy, AUC, hinge and log loss of a saved model on labelled rows."""
    from fmadv.models.classifier import FMClassifier

    model = FMClassifier.load(model_path, device=device)
    results = _evaluate_splits(model, _labelled_rows(model, input_file, dataset, data_dir))
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    else:
        console.print(metrics_table(str(model_path), results))


@app.command()
@user_errors
def predict(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help="A model.safetensors file.")],
    input_file: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT",
            help="libFM file, or CSV whose columns are the model's feature fields "
            "(e.g. user,item; multi-valued fields joined with '|').",
        ),
    ],
    output: Annotated[
        Path | None, typer.Option(help="CSV to write (score, label); default: standard output.")
    ] = None,
    device: Device = "cpu",
) -> None:
    """Score rows with a saved model."""
    import pandas as pd

    from fmadv.models.classifier import FMClassifier

    model = FMClassifier.load(model_path, device=device)
    if input_file.suffix.lower() == ".csv":
        if model.feature_map_ is None:
            raise ConfigError(f"{model_path} has no feature map; give a libFM file instead")
        try:
            frame = pd.read_csv(input_file, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
            raise ConfigError(f"{input_file}: not a readable CSV ({err})") from None
        X = model.feature_map_.encode(frame)
    else:
        X = _libfm(input_file, model.n_features_in_, model.allow_real_valued).X
    scores = model.decision_function(X)
    result = pd.DataFrame({"score": scores, "label": np.where(scores > 0, 1, -1)})
    if output is None:
        result.to_csv(sys.stdout, index=False)
    else:
        atomic_write(output, lambda temp: result.to_csv(temp, index=False))


@app.command()
@user_errors
def robustness(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help="A model.safetensors file.")],
    alpha: Annotated[float, typer.Option(help="Attack step for the summary table.")] = 0.003,
    alphas: Annotated[
        str, typer.Option(help="Comma-separated steps for the flip-rate curve.")
    ] = "0,0.001,0.003,0.01,0.03,0.1",
    attack: Annotated[
        AttackName | None, typer.Option(help="Attack; default: the one the model trained with.")
    ] = None,
    support: Annotated[
        Support | None, typer.Option(help="Features the attack may move; default: the model's.")
    ] = None,
    input_file: Annotated[
        Path | None, typer.Option("--input", help="Labelled libFM file to attack.")
    ] = None,
    dataset: Annotated[
        DatasetName | None,
        typer.Option(help="Dataset whose test split to attack; default: the model's."),
    ] = None,
    data_dir: DataDir = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for robustness.json, flip_curve.csv and flip_curve.png."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    device: Device = "cpu",
) -> None:
    """Flip rate, adversarial error and margins of a saved model under attack, and the
    flip rate as a function of alpha (CSV and PNG).

    The line-search figures take, per row, the worst of the steps alpha * i / 8 along the
    attack's direction: on an FM a full step can overshoot and land on the safe side."""
    import pandas as pd

    from fmadv.attacks.base import check_step
    from fmadv.losses import get_loss
    from fmadv.metrics.robustness import flip_curve, line_search_scores, robustness_report
    from fmadv.models.classifier import FMClassifier
    from fmadv.plots import plot_flip_curves

    try:
        steps = [check_step(float(a)) for a in alphas.split(",") if a.strip()]
    except ValueError:
        raise ConfigError(f"--alphas must be comma-separated numbers, got {alphas!r}") from None
    check_step(alpha)
    model = FMClassifier.load(model_path, device=device)
    if attack is not None:
        model.attack = attack.value
    support_name = support.value if support is not None else model.support
    ((name, rows),) = _labelled_rows(model, input_file, dataset, data_dir).items()
    loss_fn = get_loss(model.train_config().loss)

    def make(step: float):
        return model.make_attack(step, support_name)

    # The summary's alpha is usually a point of the curve: attack once for both.
    curve = flip_curve(model.model_, rows.X, rows.y, make, sorted(set(steps) | {alpha}), loss_fn)
    summary = dict(next(point for point in curve if point["alpha"] == alpha))
    curve = [point for point in curve if point["alpha"] in steps]
    clean, worst = line_search_scores(model.model_, rows.X, rows.y, make, alpha, loss_fn)
    line_search = robustness_report(rows.y, clean, worst)
    summary["line_search_flip_rate"] = line_search["flip_rate"]
    summary["line_search_adversarial_error"] = line_search["adversarial_error"]
    report = {
        "model": str(model_path),
        "rows": name,
        "attack": model.attack,
        "support": support_name,
        **summary,
    }
    out = out or model_path.parent / "robustness"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(
        out / "robustness.json", lambda t: Path(t).write_text(json.dumps(report, indent=2))
    )
    atomic_write(out / "flip_curve.csv", lambda t: pd.DataFrame(curve).to_csv(t, index=False))
    label = f"{model_path.parent.name} ({model.attack}, {support_name})"
    plot_flip_curves(
        {label: curve}, out / "flip_curve.png", title=f"{name}: flip rate against alpha"
    )
    if as_json:
        typer.echo(json.dumps({**report, "curve": curve}, indent=2))
        return
    table = Table(title=f"{model_path} under {model.attack} ({support_name}), alpha={alpha}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        table.add_row(key, f"{value:.4f}")
    console.print(table)
    console.print(f"curve: {out / 'flip_curve.csv'}, plot: {out / 'flip_curve.png'}")


COMPARE_MODEL_COLUMNS = ("model", "ndcg", "recall", "hit_rate", "auc", "coverage", "novelty",
                         "own_preference", "stability")  # fmt: skip
COMPARE_PAIR_COLUMNS = ("a", "b", "overlap", "rbo", "kendall_tau", "share_b_lower_own",
                        "only_a_hit_rate", "only_b_hit_rate")  # fmt: skip


def _frame_table(frame, title: str, columns) -> Table:
    """A rich table of the DataFrame columns named (or prefixed) in ``columns``."""
    from pandas.api.types import is_numeric_dtype

    shown = [c for c in frame.columns if any(c == w or c.startswith(w + " ") for w in columns)]
    table = Table(title=title)
    for column in shown:
        table.add_column(column, justify="right" if is_numeric_dtype(frame[column]) else "left")
    for _, row in frame.iterrows():
        table.add_row(
            *(f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in shown)
        )
    return table


def _training_data(model, data_dir: Path | None):
    """(dataset name, options, splits) a saved model was trained on."""
    from fmadv.data import load_dataset

    recorded = model.metadata_.get("data", {})
    if "dataset" not in recorded:
        raise ConfigError("this model was trained on libFM files; recommendation needs a dataset")
    splits = load_dataset(recorded["dataset"], data_dir, **recorded.get("options", {}))
    return recorded["dataset"], recorded.get("options", {}), splits


def _item_titles(dataset: str, data_dir: Path | None):
    """Item id -> title, for datasets that have titles (MovieLens)."""
    if dataset != "movielens-100k":
        return None
    from fmadv.data import dataset_path, get_card, movielens_items

    items = movielens_items(dataset_path(get_card(dataset), data_dir))
    return dict(zip(items["item_id"], items["title"], strict=True))


@app.command()
@user_errors
def recommend(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help="A model.safetensors file.")],
    users: Annotated[
        str, typer.Option(help="Comma-separated raw user ids; default: every user.")
    ] = "",
    k: Annotated[int, typer.Option("-k", "--k", help="List length.")] = 10,
    include_seen: Annotated[
        bool, typer.Option(help="Allow items the user already has in the training data.")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(help="Write the lists to .csv, .parquet or .json; default: print them."),
    ] = None,
    data_dir: DataDir = None,
    device: Device = "cpu",
) -> None:
    """Top-k items for users, from a saved FM (the dataset it was trained on gives the
    catalogue, what each user has seen, and item titles when there are some)."""
    import pandas as pd

    from fmadv.models.classifier import FMClassifier
    from fmadv.recommend import Interactions
    from fmadv.recommend.fm import FMRecommender

    suffix = output.suffix.lower() if output is not None else ""
    if output is not None and suffix not in (".csv", ".parquet", ".json"):
        raise ConfigError(f"--output must end in .csv, .parquet or .json, got {output.name}")
    model = FMClassifier.load(model_path, device=device)
    dataset, _, splits = _training_data(model, data_dir)
    interactions = Interactions.from_splits(splits)
    recommender = FMRecommender(model, model_path.parent.name).fit(interactions)
    try:
        raw_users = [int(u) for u in users.split(",") if u.strip()] or list(interactions.users)
    except ValueError:
        raise ConfigError(f"--users must be comma-separated integer ids, got {users!r}") from None
    index = interactions.user_index(raw_users)
    ids, scores = recommender.recommend(index, k=k, filter_seen=not include_seen)
    ranks = np.tile(np.arange(1, k + 1), len(index))
    valid = ids.ravel() >= 0
    table = pd.DataFrame(
        {
            "user_id": np.repeat(raw_users, k)[valid],
            "rank": ranks[valid],
            "item_id": interactions.items[ids.ravel()[valid]],
            "score": scores.ravel()[valid],
        }
    )
    titles = _item_titles(dataset, data_dir)
    if titles is not None:
        table["title"] = table["item_id"].map(titles)
    if output is None:
        shown = table[table["user_id"].isin(raw_users[:20])]
        rich_table = Table(title=f"top-{k} from {model_path}")
        for column in shown.columns:
            rich_table.add_column(column, justify="left" if column == "title" else "right")
        for row in shown.itertuples(index=False):
            rich_table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
        console.print(rich_table)
        if len(raw_users) > 20:
            console.print(f"(first 20 of {len(raw_users)} users; --output writes them all)")
        return
    writers = {
        ".csv": lambda t: table.to_csv(t, index=False),
        ".parquet": lambda t: table.to_parquet(t, index=False),
        ".json": lambda t: table.to_json(t, orient="records", indent=1),
    }
    atomic_write(output, writers[suffix])
    console.print(f"{len(table)} recommendations for {len(raw_users)} users: {output}")


@app.command("compare-topk")
@user_errors
def compare_topk_command(
    models: Annotated[
        list[str],
        typer.Argument(
            metavar="MODELS...",
            help="Model files (.safetensors) and baselines: popularity, random, als, bpr, itemknn.",
        ),
    ],
    k: Annotated[int, typer.Option("-k", "--k", help="List length.")] = 10,
    out: Annotated[
        Path, typer.Option(help="Folder for report.md, CSV, JSON and PNG plots.")
    ] = Path("runs/compare-topk"),
    judge: Annotated[
        str | None,
        typer.Option(help="Model whose predicted preference scores every list; default: first FM."),
    ] = None,
    alphas: Annotated[
        str,
        typer.Option(help="FGSM steps for the stability of the FMs' lists (comma-separated)."),
    ] = "0.0003,0.003",
    support: Annotated[
        Support, typer.Option(help="Features the stability attack moves.")
    ] = Support.all,
    stability_users: Annotated[
        int, typer.Option(help="Users whose lists are attacked for the stability figure.")
    ] = 200,
    factors: Annotated[int, typer.Option(help="Latent factors of the ALS and BPR baselines.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the random and learned baselines.")] = 0,
    data_dir: DataDir = None,
) -> None:
    """Compare the top-k lists of FMs and baselines: ranking metrics, overlap, preference
    scores, what each model alone suggests, and stability under attack."""
    from fmadv.attacks import make_attack
    from fmadv.attacks.base import check_step
    from fmadv.models.classifier import FMClassifier
    from fmadv.recommend import Interactions
    from fmadv.recommend.baselines import BASELINES, make_baseline
    from fmadv.recommend.compare import compare_topk, write_report
    from fmadv.recommend.fm import FMRecommender

    try:
        steps = [check_step(float(a)) for a in alphas.split(",") if a.strip()]
    except ValueError:
        raise ConfigError(f"--alphas must be comma-separated numbers, got {alphas!r}") from None
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    loaded, baselines = {}, []
    for entry in models:
        if entry in BASELINES:
            baselines.append(entry)
            continue
        path = Path(entry)
        if not path.is_file():
            raise ConfigError(
                f"{entry}: neither a model file nor a baseline ({', '.join(BASELINES)})"
            )
        name = path.parent.name if path.name == "model.safetensors" else path.stem
        while name in loaded:
            name += "'"
        loaded[name] = (path, FMClassifier.load(path))
    if not loaded:
        raise ConfigError("give at least one FM model file: it defines the dataset and split")
    records = {name: m.metadata_.get("data") for name, (_, m) in loaded.items()}
    first_name, (first_path, first_model) = next(iter(loaded.items()))
    for name, record in records.items():
        if record != records[first_name]:
            raise ConfigError(
                f"{name} and {first_name} were trained on different data or splits: "
                f"{record} != {records[first_name]}"
            )
    dataset, _, splits = _training_data(first_model, data_dir)
    interactions = Interactions.from_splits(splits)
    recommenders = {
        name: FMRecommender(m, name).fit(interactions) for name, (_, m) in loaded.items()
    }
    for name in baselines:
        options = {"random_state": seed} if name in ("random", "als", "bpr") else {}
        if name in ("als", "bpr"):
            options["factors"] = factors
        recommenders[name] = make_baseline(name, **options).fit(interactions)
    attacks = {f"fgsm {support.value} {a:g}": make_attack("fgsm", a, support.value) for a in steps}
    comparison = compare_topk(
        recommenders, interactions, splits.test, k=k, judge=judge, attacks=attacks,
        stability_users=stability_users,
    )  # fmt: skip
    written = write_report(comparison, out, title=f"Top-{k} comparison on {dataset}")
    title = f"top-{k} on {dataset}: {len(comparison.users)} users"
    console.print(_frame_table(comparison.models.reset_index(), title, COMPARE_MODEL_COLUMNS))
    console.print(_frame_table(comparison.pairs, "pairs", COMPARE_PAIR_COLUMNS))
    console.print("written: " + ", ".join(str(p) for p in written))


@data_app.command("list")
@user_errors
def data_list(data_dir: DataDir = None) -> None:
    """Registered datasets and whether a verified local copy exists."""
    from fmadv.data import list_cards, resolve_data_dir, verify

    root = resolve_data_dir(data_dir)
    table = Table(title=f"datasets (data dir: {root})")
    for column in ("name", "format", "local copy", "description"):
        table.add_column(column)
    for card in list_cards():
        status = verify(card, root) if card.files else {}
        if not status:
            local = "not needed" if card.format == "synthetic" else "-"
        elif all(s == "ok" for s in status.values()):
            local = "ok"
        else:
            local = f"{sum(s == 'ok' for s in status.values())}/{len(status)} files ok"
        table.add_row(card.name, card.format, local, card.description)
    console.print(table)


@data_app.command("fetch")
@user_errors
def data_fetch(
    name: Annotated[DatasetName, typer.Argument(help="Dataset name.")], data_dir: DataDir = None
) -> None:
    """Download a dataset into the data dir, verifying every checksum."""
    from fmadv.data import fetch, get_card, resolve_data_dir

    card = get_card(name.value)
    root = resolve_data_dir(data_dir)
    fetch(card, root)
    console.print(f"{card.name}: verified copy in {root / card.directory}")


@data_app.command("verify")
@user_errors
def data_verify(
    name: Annotated[DatasetName, typer.Argument(help="Dataset name.")], data_dir: DataDir = None
) -> None:
    """Check the local copy of a dataset against its card's checksums (exit 1 if not ok)."""
    from fmadv.data import get_card, resolve_data_dir, verify

    card = get_card(name.value)
    status = verify(card, resolve_data_dir(data_dir))
    for file_name, state in status.items():
        typer.echo(f"{state:8s} {file_name}")
    if any(state != "ok" for state in status.values()):
        raise typer.Exit(1)


@data_app.command("info")
@user_errors
def data_info(
    name: Annotated[DatasetName, typer.Argument(help="Dataset name.")], data_dir: DataDir = None
) -> None:
    """A dataset's card (source, license, citation) and the state of its local copy."""
    from fmadv.data import get_card, info, resolve_data_dir

    details = info(get_card(name.value), resolve_data_dir(data_dir))
    typer.echo(json.dumps(details, indent=2, default=str))


ImageModelName = enum.Enum("ImageModelName", {"lenet": "lenet", "mlp": "mlp"}, type=str)
ImageDataset = enum.Enum("ImageDataset", {"mnist": "mnist", "cifar10": "cifar10"}, type=str)


def _image_method_enum():
    from fmadv.training.image import METHODS

    return enum.Enum("ImageMethod", {m.replace("-", "_"): m for m in METHODS}, type=str)


ImageMethod = _image_method_enum()


@image_app.command("train")
@user_errors
def image_train(
    model: Annotated[ImageModelName, typer.Option(help="Network.")] = ImageModelName.mlp,
    dataset: Annotated[ImageDataset, typer.Option(help="Image dataset.")] = ImageDataset.mnist,
    method: Annotated[
        ImageMethod,
        typer.Option(
            help="Training method: normal, dropout, goodfellow, lwa, lwa-rep, augment, vat."
        ),
    ] = ImageMethod.normal,
    epochs: Annotated[int, typer.Option(help="Maximum number of epochs.")] = 10,
    batch_size: Annotated[int, typer.Option(help="Images per mini-batch.")] = 100,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 0.01,
    optimizer: Annotated[Optimizer, typer.Option(help="Optimizer.")] = Optimizer.sgd,
    momentum: Annotated[float, typer.Option(help="SGD momentum.")] = 0.9,
    attack: Annotated[
        ImageAttack, typer.Option(help="Attack of the adversarial methods.")
    ] = ImageAttack.l2,
    norm: Annotated[
        float,
        typer.Option(
            help="L2 budget of the training attack (sign attacks: norm / sqrt(pixels) per pixel)."
        ),
    ] = 1.5,
    goodfellow_weight: Annotated[
        float, typer.Option(help="goodfellow: weight a of the clean loss.")
    ] = 0.5,
    dropout: Annotated[float, typer.Option(help="dropout: rate in the MLP's hidden layers.")] = 0.5,
    split: Annotated[
        int | None, typer.Option(help="lwa-rep: block after which the representation is attacked.")
    ] = None,
    rep_norm: Annotated[
        float, typer.Option(help="lwa-rep: L2 budget in the representation.")
    ] = 1.0,
    vat_eps: Annotated[float, typer.Option(help="vat: norm of the virtual perturbation.")] = 2.0,
    labeled: Annotated[
        int | None, typer.Option(help="vat: keep only this many training labels (semi-supervised).")
    ] = None,
    scale: Annotated[int, typer.Option(help="Divide pixels by 255 or 256.")] = 255,
    subtract_mean: Annotated[bool, typer.Option(help="Subtract the mean training image.")] = False,
    valid_size: Annotated[
        int, typer.Option(help="Training images held out for validation.")
    ] = 5000,
    train_rows: Annotated[
        int | None, typer.Option(help="Train on a seeded subset of this many images.")
    ] = None,
    patience: Annotated[
        int, typer.Option(help="Early stopping on validation accuracy; 0: off.")
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed of split, initialisation, batches, attacks.")] = 0,
    device: Device = "auto",
    data_dir: DataDir = None,
    out: Annotated[Path, typer.Option(help="Run folder: model.safetensors, metrics.jsonl.")] = Path(
        "runs/image"
    ),
    resume: Annotated[
        bool, typer.Option(help="Continue from the run folder's checkpoint, if there is one.")
    ] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Train a LeNet or MLP with one of the adversarial training methods."""
    from fmadv.data.image_prep import load_image_dataset
    from fmadv.training.image import ImageTrainConfig, train_image_classifier

    config = ImageTrainConfig(
        model=model.value, method=method.value, epochs=epochs, batch_size=batch_size, lr=lr,
        optimizer=optimizer.value, momentum=momentum, dropout=dropout, attack=attack.value,
        budget=norm, goodfellow_weight=goodfellow_weight, split=split, rep_budget=rep_norm,
        vat_eps=vat_eps, labeled=labeled, patience=patience, seed=seed, device=device,
    )  # fmt: skip
    config.validate()
    data = load_image_dataset(
        dataset.value, data_dir, valid_size=valid_size, seed=seed, scale=scale,
        subtract_mean=subtract_mean,
    )  # fmt: skip
    if train_rows is not None:
        data = data.subset_train(train_rows, seed)
    quiet = quiet or not _is_main_process()
    out.mkdir(parents=True, exist_ok=True)
    with _progress(quiet) as progress:
        task = progress.add_task(f"epoch 1/{epochs}", total=len(data.train_x))

        def on_step(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        def on_epoch(record: dict) -> None:
            if not quiet:
                progress.console.print(
                    f"epoch {record['epoch']:>3}  loss {record['train_loss']:.4f}  "
                    f"valid accuracy {record.get('valid_accuracy', float('nan')):.4f}  "
                    f"{record['seconds']:.1f}s"
                )
            if record["epoch"] < epochs:
                progress.update(
                    task, completed=0, description=f"epoch {record['epoch'] + 1}/{epochs}"
                )

        classifier = train_image_classifier(
            data, config, log_path=out / "metrics.jsonl", on_step=on_step, on_epoch=on_epoch,
            checkpoint=out / "checkpoint.safetensors", resume=resume,
        )  # fmt: skip
    if not _is_main_process():
        return
    classifier.save(out / "model.safetensors")
    if not quiet:
        console.print(f"saved {out / 'model.safetensors'}")


def _image_test_rows(classifier, data_dir: Path | None, rows: int | None):
    from fmadv.data.image_prep import load_image_dataset

    data = load_image_dataset(
        classifier.dataset, data_dir, valid_size=0, scale=classifier.scale,
        subtract_mean=classifier.mean is not None,
    )  # fmt: skip
    x, y = data.test_x, data.test_y
    if classifier.mean is not None:
        # The test images take the mean image the model was trained with.
        x = x + data.mean - classifier.mean
    return (x[:rows], y[:rows]) if rows else (x, y)


def _image_attacks(names: str, norm: float, pixels: int, pgd_steps: int):
    from fmadv.attacks.base import check_budget
    from fmadv.training.image import attack_for_budget

    check_budget(norm)
    attacks = {}
    for name in (n.strip() for n in names.split(",") if n.strip()):
        if name == "pgd":
            attacks["pgd"] = attack_for_budget("pgd", norm, pixels, norm="l2", steps=pgd_steps)
        elif name == "pgd-linf":
            attacks[name] = attack_for_budget("pgd", norm, pixels, norm="linf", steps=pgd_steps)
        elif name in ATTACKS and name != "apr":
            attacks[name] = attack_for_budget(name, norm, pixels)
        else:
            raise ConfigError(
                f"unknown image attack {name!r}; expected fgsm, l2, alpha, pgd, pgd-linf"
            )
    return attacks


@image_app.command("evaluate")
@user_errors
def image_evaluate(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help="An image model file.")],
    attacks: Annotated[
        str, typer.Option(help="Comma-separated: fgsm, l2, alpha, pgd (L2), pgd-linf.")
    ] = "fgsm,l2,alpha,pgd",
    norm: Annotated[
        float, typer.Option(help="L2 budget of every attack (sign attacks: norm / sqrt(pixels)).")
    ] = 1.5,
    pgd_steps: Annotated[int, typer.Option(help="PGD iterations.")] = 20,
    rows: Annotated[int | None, typer.Option(help="Evaluate on the first N test images.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    device: Device = "cpu",
    data_dir: DataDir = None,
) -> None:
    """Accuracy and confidence of an image model, clean and under each attack (made
    against the model being tested)."""
    from fmadv.metrics.images import attack_report
    from fmadv.training.image import ImageClassifier

    classifier = ImageClassifier.load(model_path, device=device)
    x, y = _image_test_rows(classifier, data_dir, rows)
    pixels = int(np.prod(classifier.shape))
    report = attack_report(
        classifier.model, x, y, _image_attacks(attacks, norm, pixels, pgd_steps), classifier.bounds
    )
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table(title=f"{model_path}: {len(y)} test images, L2 budget {norm}")
    columns = list(next(iter(report.values())))
    table.add_column("rows")
    for column in columns:
        table.add_column(column, justify="right")
    for name, values in report.items():
        table.add_row(name, *(f"{values[c]:.4f}" for c in columns))
    console.print(table)


@image_app.command("curve")
@user_errors
def image_curve(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help="An image model file.")],
    attacks: Annotated[str, typer.Option(help="Comma-separated attacks.")] = "fgsm,l2,alpha",
    norms: Annotated[
        str, typer.Option(help="Comma-separated L2 budgets.")
    ] = "0,0.5,1,1.5,2,2.5,3,3.5,4",
    rows: Annotated[int | None, typer.Option(help="Use the first N test images.")] = 2000,
    out: Annotated[Path | None, typer.Option(help="Folder for curve.csv and curve.png.")] = None,
    device: Device = "cpu",
    data_dir: DataDir = None,
) -> None:
    """Accuracy against the L2 norm of each attack (Huang et al.'s Figure 1), CSV + PNG."""
    import pandas as pd

    from fmadv.metrics.images import accuracy_curve
    from fmadv.plots import plot_accuracy_curves
    from fmadv.training.image import ImageClassifier, attack_for_budget

    try:
        budgets = [float(b) for b in norms.split(",") if b.strip()]
    except ValueError:
        raise ConfigError(f"--norms must be comma-separated numbers, got {norms!r}") from None
    classifier = ImageClassifier.load(model_path, device=device)
    x, y = _image_test_rows(classifier, data_dir, rows)
    pixels = int(np.prod(classifier.shape))
    _image_attacks(attacks, 1.0, pixels, 1)  # unknown names fail before any work
    curves = {}
    for name in (n.strip() for n in attacks.split(",") if n.strip()):
        curves[name] = accuracy_curve(
            classifier.model, x, y, lambda b, n=name: attack_for_budget(n, b, pixels), budgets,
            classifier.bounds,
        )  # fmt: skip
    out = out or model_path.parent / "curve"
    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame([{"attack": n, **p} for n, c in curves.items() for p in c])
    atomic_write(out / "curve.csv", lambda t: frame.to_csv(t, index=False))
    plot_accuracy_curves(
        curves, out / "curve.png", title=f"{model_path.parent.name}: accuracy against L2 norm"
    )
    console.print(frame.pivot(index="budget", columns="attack", values="accuracy").to_string())
    console.print(f"curve: {out / 'curve.csv'}, plot: {out / 'curve.png'}")


if __name__ == "__main__":
    app()
