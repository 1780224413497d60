"""fmadv train, evaluate, predict and robustness: parse, one call to fmadv.runs, print.

Option defaults are the estimator's, which come from the dataclass of each component,
so the command line and Python never disagree about a default.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fmadv.attacks import ATTACKS
from fmadv.cli.common import (
    BOX_HELP,
    BoxConvention,
    DataDir,
    Device,
    FMDataset,
    Loss,
    Monitor,
    NoiseRows,
    Optimizer,
    Overwrite,
    Precision,
    Quiet,
    Resume,
    Support,
    TrainDevice,
    app,
    choices,
    console,
    defaults_of,
    metrics_table,
    number_list,
    number_text,
    resumable,
    threaded,
    user_errors,
)
from fmadv.errors import ConfigError
from fmadv.estimators.fm import FMClassifier
from fmadv.estimators.ranker import POSITIVES, FMRanker
from fmadv.evaluation.robustness import STRENGTHS
from fmadv.io import atomic_write
from fmadv.runs.data import DataSpec
from fmadv.runs.fm import (
    edit_robustness_fm,
    evaluate_fm,
    predict_fm,
    robustness_fm,
    train_fm,
)
from fmadv.training.objectives import EDITS
from fmadv.training.ranking import SAMPLINGS

ESTIMATORS = {"classification": FMClassifier, "ranking": FMRanker}
DEFAULTS = {task: cls().get_params() for task, cls in ESTIMATORS.items()}
# Options whose default is the same for every task show it; the others are None, and
# the task's estimator fills them in.
FM = {
    name: value
    for name, value in DEFAULTS["classification"].items()
    if all(defaults.get(name) == value for defaults in DEFAULTS.values())
}
Task = choices("Task", ESTIMATORS)
Sampling = choices("Sampling", SAMPLINGS)
Positives = choices("Positives", POSITIVES)


def by_task(name: str) -> str:
    """The per-task defaults of a parameter, for an option's help."""
    shown = [f"{task}: {d[name]}" for task, d in DEFAULTS.items() if name in d]
    return "Default " + ", ".join(shown) + "."


def make_estimator(task: str, options: dict, **fixed):
    """The task's estimator from the command's options: those set and known to it (an
    option of another task only is an error), the rest at its defaults."""
    cls = ESTIMATORS[task]
    known = set(DEFAULTS[task])
    given = {
        name: getattr(value, "value", value)
        for name, value in options.items()
        if value is not None and any(name in d for d in DEFAULTS.values())
    }
    foreign = sorted(name for name in given if name not in known and name not in FM)
    if foreign:
        flags = ", ".join("--" + name.replace("_", "-") for name in foreign)
        raise ConfigError(f"{flags}: not an option of --task {task}")
    return cls(**{name: value for name, value in given.items() if name in known}, **fixed)


ROBUSTNESS = defaults_of(robustness_fm)
EDIT_ROBUSTNESS = defaults_of(edit_robustness_fm)
# The attacks of train and robustness: the registry's, and whole-feature edits.
AttackOrEdits = choices("AttackOrEdits", [*ATTACKS, EDITS])
Strength = choices("Strength", STRENGTHS)
ModelPath = Annotated[Path, typer.Argument(metavar="MODEL", help="A model.safetensors file.")]


@app.command()
@user_errors
@resumable
@threaded
def train(
    task: Annotated[
        Task,
        typer.Option(
            help="classification: labelled rows (FMClassifier); ranking: top-k lists "
            "from implicit feedback with sampled negatives (FMRanker)."
        ),
    ] = Task.classification,
    n_negatives: Annotated[
        int | None, typer.Option(help=f"Ranking: negatives per positive. {by_task('n_negatives')}")
    ] = None,
    negative_sampling: Annotated[
        Sampling | None,
        typer.Option(help=f"Ranking: uniform or popularity. {by_task('negative_sampling')}"),
    ] = None,
    positives: Annotated[
        Positives | None,
        typer.Option(
            help="Ranking: the training pairs labelled +1 (liked) or every training pair "
            f"(seen). {by_task('positives')}"
        ),
    ] = None,
    eval_k: Annotated[
        int | None,
        typer.Option(help=f"Ranking: list length of the validation NDCG. {by_task('eval_k')}"),
    ] = None,
    dataset: Annotated[
        FMDataset, typer.Option(help="Registered dataset of FM rows (see `fmadv data list`).")
    ] = FMDataset.synthetic,
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
    n_factors: Annotated[
        int | None,
        typer.Option(
            "--n-factors", "--k", help=f"Latent factors per feature. {by_task('n_factors')}"
        ),
    ] = None,
    init_std: Annotated[
        float, typer.Option(help="Standard deviation of the initial factors.")
    ] = FM["init_std"],
    loss: Annotated[
        Loss | None,
        typer.Option(help=f"Training loss (bpr, softmax: ranking only). {by_task('loss')}"),
    ] = None,
    optimizer: Annotated[Optimizer, typer.Option(help="Optimizer.")] = FM["optimizer"],
    lr: Annotated[float | None, typer.Option(help=f"Learning rate. {by_task('lr')}")] = None,
    epochs: Annotated[
        int | None, typer.Option(help=f"Maximum number of epochs. {by_task('epochs')}")
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(help=f"Rows (ranking: positives) per mini-batch. {by_task('batch_size')}"),
    ] = None,
    reg_bias: Annotated[float, typer.Option(help="L2 on the global bias.")] = FM["reg_bias"],
    reg_linear: Annotated[
        float | None, typer.Option(help=f"L2 on active linear weights. {by_task('reg_linear')}")
    ] = None,
    reg_factors: Annotated[
        float | None, typer.Option(help=f"L2 on active factor rows. {by_task('reg_factors')}")
    ] = None,
    momentum: Annotated[float, typer.Option(help="SGD momentum.")] = FM["momentum"],
    weight_decay: Annotated[
        float, typer.Option(help="The optimizer's dense weight decay (prefer the reg options).")
    ] = FM["weight_decay"],
    patience: Annotated[
        int | None,
        typer.Option(
            help="Stop after this many epochs without gain; 0 never stops early. "
            + by_task("patience")
        ),
    ] = None,
    monitor: Annotated[
        Monitor | None,
        typer.Option(help=f"Validation metric for early stopping. {by_task('monitor')}"),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of data split, initialisation, batches.")] = FM[
        "random_state"
    ],
    beta: Annotated[
        float,
        typer.Option(help="Adversarial training: loss(x) + beta * loss(x_adv); 0 = plain FM."),
    ] = FM["beta"],
    eps: Annotated[
        float,
        typer.Option(
            "--eps", "--alpha", help="Attack budget in the unit box (FGSM: L-inf radius)."
        ),
    ] = FM["eps"],
    attack: Annotated[
        AttackOrEdits,
        typer.Option(help="Attack that makes x_adv; flips: edits of whole --edit-fields."),
    ] = FM["attack"],
    budget: Annotated[
        int | None, typer.Option(min=1, help="--attack flips: edits per row [default: 1].")
    ] = None,
    edit_fields: Annotated[
        str | None,
        typer.Option(help="--attack flips: comma-separated fields the attacker edits."),
    ] = None,
    certified: Annotated[
        bool | None,
        typer.Option("--certified", help="--attack flips: train on the certified margin instead."),
    ] = None,
    line_search: Annotated[
        bool | None,
        typer.Option(
            "--line-search",
            help="Train against the exact worst point between x and the attack's step, "
            "not the step itself (which can overshoot).",
        ),
    ] = None,
    support: Annotated[
        Support, typer.Option(help="Features the attack may move: all, or only the active ones.")
    ] = FM["support"],
    box: Annotated[BoxConvention, typer.Option(help=BOX_HELP)] = FM["box"],
    adversarial_only: Annotated[
        bool, typer.Option(help="Train on loss(x_adv) alone (learning with an adversary).")
    ] = FM["adversarial_only"],
    grad_noise: Annotated[
        float, typer.Option(help="Gradient noise variance eta at step 0; 0 = none.")
    ] = FM["grad_noise"],
    grad_noise_gamma: Annotated[
        float, typer.Option(help="Noise variance decays as eta / (1 + t)^gamma.")
    ] = FM["grad_noise_gamma"],
    grad_noise_rows: Annotated[
        NoiseRows, typer.Option(help="Noise on the rows the batch touched, or on all rows.")
    ] = FM["grad_noise_rows"],
    attack_precision: Annotated[
        Precision,
        typer.Option(help="Type of the attack's mask product (bfloat16: GPU tensor cores)."),
    ] = FM["attack_precision"],
    device: TrainDevice = FM["device"],
    sparse_updates: Annotated[
        bool,
        typer.Option(
            help="Update only the embedding rows each batch uses (lazy Adam; plain "
            "training): a step costs what the batch holds, not what the model holds."
        ),
    ] = FM["sparse_updates"],
    allow_real_valued: Annotated[
        bool, typer.Option(help="Accept feature values other than 0/1.")
    ] = FM["allow_real_valued"],
    out: Annotated[
        Path, typer.Option(help="Run folder: model.safetensors, metrics.jsonl, summary.json.")
    ] = Path("runs/fm"),
    resume: Resume = False,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Train a factorization machine and save it with its feature map and metrics.

    Runs on several processes under ``torchrun --nproc_per_node=N -m fmadv train ...``:
    each process takes its shard of every batch, and the first one writes the files."""
    # Every estimator parameter is an option of the same name (a test checks it); an
    # option left unset takes the default of the task's estimator.
    edit_fields = tuple(f for f in edit_fields.split(",") if f) if edit_fields else None
    estimator = make_estimator(task.value, locals(), random_state=seed)
    data = DataSpec(
        dataset=dataset.value, data_dir=data_dir, train_file=train_file, valid_file=valid_file,
        test_file=test_file, log=log, valid_log=valid_log, label=label, threshold=threshold,
        fields=tuple(f.strip() for f in log_fields.split(",") if f.strip()),
        allow_real_valued=allow_real_valued,
        settings={
            "seed": seed, "split": split, "threshold": threshold, "train_from": train_from,
            "side_features": [s for s in side_features.split(",") if s],
        },
    )  # fmt: skip
    summary = train_fm(estimator, data, out, resume=resume, overwrite=overwrite, quiet=quiet)
    if quiet or summary is None:
        return
    if summary["results"]:
        source = summary["data"].get("dataset", "libFM files")
        title = f"FM n_factors={estimator.n_factors} on {source}"
        console.print(metrics_table(title, summary["results"], caption=summary["model"]))
    if "rows" in summary:
        console.print(f"trained on {summary['rows']:,} streamed rows")
    console.print(f"saved {summary['files']['model']}")


@app.command()
@user_errors
@threaded
def evaluate(
    model_path: ModelPath,
    input_file: Annotated[
        Path | None, typer.Option("--input", help="Labelled libFM file to evaluate on.")
    ] = None,
    dataset: Annotated[
        FMDataset | None,
        typer.Option(help="Dataset to evaluate on (its test split); default: the model's own."),
    ] = None,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    device: Device = "cpu",
) -> None:
    """Accuracy, AUC, hinge and log loss of a saved model on labelled rows."""
    name = dataset.value if dataset is not None else None
    results = evaluate_fm(model_path, input_file, name, data_dir, device)
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    else:
        console.print(metrics_table(str(model_path), results))


@app.command()
@user_errors
@threaded
def predict(
    model_path: ModelPath,
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
    result = predict_fm(model_path, input_file, device)
    if output is None:
        result.to_csv(sys.stdout, index=False)
    else:
        atomic_write(output, lambda temp: result.to_csv(temp, index=False))


@app.command()
@user_errors
@threaded
def robustness(
    model_path: ModelPath,
    eps: Annotated[
        float, typer.Option("--eps", "--alpha", help="Attack budget for the summary table.")
    ] = ROBUSTNESS["eps"],
    eps_grid: Annotated[
        str,
        typer.Option("--eps-grid", "--alphas", help="Comma-separated budgets for the curve."),
    ] = number_text(ROBUSTNESS["eps_grid"]),
    attack: Annotated[
        AttackOrEdits | None,
        typer.Option(
            help="Attack; default: the one the model trained with. 'flips' edits whole "
            "features of --fields, at most --budget per row, with certificates."
        ),
    ] = None,
    support: Annotated[
        Support | None, typer.Option(help="Features the attack may move; default: the model's.")
    ] = None,
    strength: Annotated[
        Strength,
        typer.Option(
            help="strong: per row the worst of the exact line search along the attack's "
            "step and PGD in the same ball; line: the line search; single: the single "
            "step (the blog's figure, which can overshoot)."
        ),
    ] = ROBUSTNESS["strength"],
    fields: Annotated[
        str | None,
        typer.Option(help="--attack flips: comma-separated fields the attacker edits."),
    ] = None,
    budget: Annotated[
        int, typer.Option(min=0, help="--attack flips: edits per row for the summary.")
    ] = EDIT_ROBUSTNESS["budget"],
    budget_grid: Annotated[
        str, typer.Option(help="--attack flips: comma-separated edit budgets for the curve.")
    ] = number_text(EDIT_ROBUSTNESS["budgets"]),
    input_file: Annotated[
        Path | None, typer.Option("--input", help="Labelled libFM file to attack.")
    ] = None,
    dataset: Annotated[
        FMDataset | None,
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
    flip rate as a function of the budget eps (CSV and PNG); with --attack flips, under
    edits of whole features, with the share of rows certified against any such edits.

    By default every figure comes from the strongest attack at its budget: on an FM a
    single step can overshoot and land on the safe side, so the single step's figures
    are printed beside it."""
    rows = {"input_file": input_file, "dataset": dataset.value if dataset is not None else None,
            "data_dir": data_dir, "out": out, "device": device}  # fmt: skip
    if attack is not None and attack.value == EDITS:
        budgets = tuple(int(b) for b in number_list(budget_grid, "--budget-grid"))
        named = tuple(name for name in (fields or "").split(",") if name)
        result = edit_robustness_fm(model_path, named, budget, budgets, **rows)
        title = f"{model_path} under {budget} edits of {', '.join(named)}"
    else:
        result = robustness_fm(
            model_path, eps, number_list(eps_grid, "--eps-grid"),
            attack=attack.value if attack is not None else None,
            support=support.value if support is not None else None,
            strength=strength.value, **rows,
        )  # fmt: skip
        used = f"{result.report['attack']} ({result.report['support']}, {strength.value})"
        title = f"{model_path} under {used}, eps={eps}"
    report = result.report
    if as_json:
        typer.echo(json.dumps({**report, "curve": result.curve}, indent=2))
        return
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in report.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4f}")
    console.print(table)
    console.print("written: " + ", ".join(str(path) for path in result.files))
