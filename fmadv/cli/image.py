"""fmadv image train, evaluate and curve: parse, one call to fmadv.runs, print.

Option defaults are those of :class:`~fmadv.estimators.image.ImageTrainConfig` and its
loop, :data:`~fmadv.estimators.image.IMAGE_LOOP`, so the command line and Python never
disagree about a default.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fmadv.cli.common import (
    BOX_HELP,
    BoxConvention,
    DataDir,
    Device,
    ImageDataset,
    InputAttack,
    Optimizer,
    Overwrite,
    Quiet,
    Resume,
    TrainDevice,
    app,
    choices,
    console,
    image_app,
    metrics_table,
    number_list,
    resumable,
    threaded,
    user_errors,
)
from fmadv.estimators.image import IMAGE_LOOP, METHODS, ImageTrainConfig, image_loop
from fmadv.models.image import IMAGE_MODELS
from fmadv.runs.image import (
    BOX,
    CURVE_ATTACKS,
    CURVE_EPS_GRID,
    EVALUATION_ATTACKS,
    PGD_STEPS,
    ImageDataSpec,
    evaluate_image,
    image_attack_names,
    image_curve,
    train_image,
)

IMAGE = ImageTrainConfig()
SPEC = ImageDataSpec()
ImageModelName = choices("ImageModelName", IMAGE_MODELS)
ImageMethod = choices("ImageMethod", METHODS)
ATTACKS_HELP = (
    f"Comma-separated attacks: {', '.join(image_attack_names())} (pgd in L2, pgd-linf in L-inf)."
)
ModelPath = Annotated[Path, typer.Argument(metavar="MODEL", help="An image model file.")]


@image_app.command("train")
@user_errors
@resumable
@threaded
def image_train(
    model: Annotated[ImageModelName, typer.Option(help="Network.")] = IMAGE.model,
    dataset: Annotated[ImageDataset, typer.Option(help="Image dataset.")] = SPEC.dataset,
    method: Annotated[ImageMethod, typer.Option(help="Training method.")] = IMAGE.method,
    epochs: Annotated[int, typer.Option(help="Maximum number of epochs.")] = IMAGE_LOOP.epochs,
    batch_size: Annotated[int, typer.Option(help="Images per mini-batch.")] = IMAGE_LOOP.batch_size,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = IMAGE_LOOP.lr,
    optimizer: Annotated[Optimizer, typer.Option(help="Optimizer.")] = IMAGE_LOOP.optimizer,
    momentum: Annotated[float, typer.Option(help="SGD momentum.")] = IMAGE_LOOP.momentum,
    attack: Annotated[
        InputAttack, typer.Option(help="Attack of the adversarial methods.")
    ] = IMAGE.attack,
    eps: Annotated[
        float,
        typer.Option(
            "--eps",
            "--norm",
            help="L2 norm of the training attack's perturbation (sign attacks: the sign "
            "step of that L2 norm).",
        ),
    ] = IMAGE.eps,
    box: Annotated[BoxConvention, typer.Option(help=BOX_HELP)] = IMAGE.box,
    goodfellow_weight: Annotated[
        float, typer.Option(help="goodfellow: weight a of the clean loss.")
    ] = IMAGE.goodfellow_weight,
    dropout: Annotated[
        float, typer.Option(help="dropout: rate in the MLP's hidden layers.")
    ] = IMAGE.dropout,
    split: Annotated[
        int | None, typer.Option(help="lwa-rep: block after which the representation is attacked.")
    ] = IMAGE.split,
    rep_eps: Annotated[
        float,
        typer.Option("--rep-eps", "--rep-norm", help="lwa-rep: L2 norm in the representation."),
    ] = IMAGE.rep_eps,
    vat_eps: Annotated[
        float, typer.Option(help="vat: norm of the virtual perturbation.")
    ] = IMAGE.vat_eps,
    labeled: Annotated[
        int | None, typer.Option(help="vat: keep only this many training labels (semi-supervised).")
    ] = IMAGE.labeled,
    scale: Annotated[int, typer.Option(help="Divide pixels by 255 or 256.")] = SPEC.scale,
    subtract_mean: Annotated[
        bool, typer.Option(help="Subtract the mean training image.")
    ] = SPEC.subtract_mean,
    valid_size: Annotated[
        int, typer.Option(help="Training images held out for validation.")
    ] = SPEC.valid_size,
    train_rows: Annotated[
        int | None, typer.Option(help="Train on a seeded subset of this many images.")
    ] = SPEC.train_rows,
    patience: Annotated[
        int, typer.Option(help="Early stopping on validation accuracy; 0: off.")
    ] = IMAGE_LOOP.patience,
    seed: Annotated[
        int, typer.Option(help="Seed of split, initialisation, batches, attacks.")
    ] = IMAGE_LOOP.seed,
    device: TrainDevice = IMAGE_LOOP.device,
    data_dir: DataDir = None,
    out: Annotated[
        Path, typer.Option(help="Run folder: model.safetensors, metrics.jsonl, summary.json.")
    ] = Path("runs/image"),
    resume: Resume = False,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Train a LeNet or MLP with one of the adversarial training methods."""
    loop = image_loop(
        epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer.value,
        momentum=momentum, patience=patience, seed=seed, device=device,
    )  # fmt: skip
    config = ImageTrainConfig(
        model=model.value, method=method.value, dropout=dropout, attack=attack.value, eps=eps,
        box=box.value, goodfellow_weight=goodfellow_weight, split=split, rep_eps=rep_eps,
        vat_eps=vat_eps, labeled=labeled, loop=loop,
    )  # fmt: skip
    data = ImageDataSpec(
        dataset=dataset.value, data_dir=data_dir, valid_size=valid_size, scale=scale,
        subtract_mean=subtract_mean, train_rows=train_rows,
    )  # fmt: skip
    summary = train_image(config, data, out, resume=resume, overwrite=overwrite, quiet=quiet)
    if quiet or summary is None:
        return
    title = f"{summary['model']} on {dataset.value}"
    console.print(metrics_table(title, summary["results"]))
    console.print(f"saved {summary['files']['model']}")


@image_app.command("evaluate")
@user_errors
@threaded
def image_evaluate(
    model_path: ModelPath,
    attacks: Annotated[str, typer.Option(help=ATTACKS_HELP)] = ",".join(EVALUATION_ATTACKS),
    eps: Annotated[
        float,
        typer.Option(
            "--eps",
            "--norm",
            help="L2 norm of every attack's perturbation (sign attacks: the sign step of "
            "that L2 norm).",
        ),
    ] = IMAGE.eps,
    box: Annotated[BoxConvention, typer.Option(help=BOX_HELP)] = BOX,
    transfer_from: Annotated[
        Path | None,
        typer.Option(
            help="Another image model: also attack it and evaluate this one on its "
            "adversarial images (a transfer attack; Huang et al.'s fixed set)."
        ),
    ] = None,
    pgd_steps: Annotated[int, typer.Option(help="PGD iterations.")] = PGD_STEPS,
    rows: Annotated[int | None, typer.Option(help="Evaluate on the first N test images.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    device: Device = "cpu",
    data_dir: DataDir = None,
) -> None:
    """Accuracy and confidence of an image model, clean and under each attack (made
    against the model being tested), with the mean L2 norm that reached the model."""
    result = evaluate_image(
        model_path, _names(attacks), eps, pgd_steps, rows, data_dir, device, box.value,
        transfer_from,
    )  # fmt: skip
    if as_json:
        typer.echo(json.dumps(result.report, indent=2))
        return
    table = Table(title=f"{model_path}: {result.rows} test images, L2 eps {eps}, {box.value} box")
    columns = list(next(iter(result.report.values())))
    table.add_column("rows")
    for column in columns:
        table.add_column(column, justify="right")
    for name, values in result.report.items():
        table.add_row(name, *(f"{values[c]:.4f}" for c in columns))
    console.print(table)


@image_app.command("curve")
@user_errors
@threaded
def image_curve_command(
    model_path: ModelPath,
    attacks: Annotated[str, typer.Option(help=ATTACKS_HELP)] = ",".join(CURVE_ATTACKS),
    eps_grid: Annotated[
        str, typer.Option("--eps-grid", "--norms", help="Comma-separated L2 norms.")
    ] = ",".join(f"{eps:g}" for eps in CURVE_EPS_GRID),
    rows: Annotated[int | None, typer.Option(help="Use the first N test images.")] = 2000,
    box: Annotated[BoxConvention, typer.Option(help=BOX_HELP)] = BOX,
    pgd_steps: Annotated[int, typer.Option(help="PGD iterations.")] = PGD_STEPS,
    out: Annotated[Path | None, typer.Option(help="Folder for curve.csv and curve.png.")] = None,
    device: Device = "cpu",
    data_dir: DataDir = None,
) -> None:
    """Accuracy against the L2 norm of each attack (Huang et al.'s Figure 1), CSV + PNG."""
    result = image_curve(
        model_path, _names(attacks), number_list(eps_grid, "--eps-grid"), rows, pgd_steps,
        out, data_dir, device, box.value,
    )  # fmt: skip
    table = result.points.pivot(index="eps", columns="attack", values="accuracy")
    console.print(table.to_string())
    console.print("written: " + ", ".join(str(path) for path in result.files))


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


if __name__ == "__main__":
    app()
