"""What the image commands do: train into a run folder, evaluate under attacks, and
draw accuracy against the size of the perturbation.

Each function is one command's work, from Python with the same defaults; the CLI
parses, calls one of these and prints what it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch

from fmadv.attacks import ALIASES, Attack, input_attacks
from fmadv.checks import integer
from fmadv.data.image_prep import PreparedImages, load_image_dataset
from fmadv.errors import ConfigError
from fmadv.estimators.base import default
from fmadv.estimators.image import (
    METHODS,
    ImageClassifier,
    ImageTrainConfig,
    image_attack,
    train_image_classifier,
)
from fmadv.evaluation.images import accuracy_curve, attack_report, transfer_report
from fmadv.evaluation.predict import predict_logits
from fmadv.io import atomic_write, model_file
from fmadv.metrics.images import confidence_report
from fmadv.plots import plot_accuracy_curves
from fmadv.runs.folder import RunFolder, is_main_process
from fmadv.runs.progress import epoch_progress
from fmadv.threat import check_box, check_eps

# "pgd" is PGD in L2, the norm of every image budget; "pgd-linf" is its sign version.
PGD_NORMS = {"pgd": "l2", "pgd-linf": "linf"}
PGD_STEPS = 20
EVALUATION_ATTACKS = ("fgsm", "l2", "alpha", "pgd")
CURVE_ATTACKS = ("fgsm", "l2", "alpha")
CURVE_EPS_GRID = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)
BOX = default(ImageTrainConfig, "box")


@dataclass
class ImageDataSpec:
    """The images a training run reads.

    Parameters
    ----------
    dataset
        ``"mnist"`` or ``"cifar10"``.
    data_dir
        Folder of local dataset copies (default: the download cache).
    valid_size
        Training images held out for validation.
    scale
        Pixel divisor, 255 or 256.
    subtract_mean
        Subtract the mean training image.
    train_rows
        Train on a seeded subset of this many images (None: all).
    """

    dataset: str = "mnist"
    data_dir: Path | None = None
    valid_size: int = 5000
    scale: int = 255
    subtract_mean: bool = False
    train_rows: int | None = None

    def load(self, seed: int) -> PreparedImages:
        """The prepared splits; ``seed`` draws the hold-out and the subset."""
        data = load_image_dataset(
            self.dataset, self.data_dir, valid_size=self.valid_size, seed=seed,
            scale=self.scale, subtract_mean=self.subtract_mean,
        )  # fmt: skip
        return data if self.train_rows is None else data.subset_train(self.train_rows, seed)


def train_image(
    config: ImageTrainConfig,
    data: ImageDataSpec,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
) -> dict | None:
    """Train an image classifier as ``config`` says on ``data`` and write the run folder
    ``out``.

    A folder that holds a run is not trained into again unless ``resume`` continues that
    run from its checkpoint (with the settings it was started with; more epochs, another
    patience or device are fine) or ``overwrite`` replaces it.

    Returns the run's summary (also written to ``summary.json``), with the clean
    accuracy and confidence on the validation and test images; None in the processes of
    a ``torchrun`` group other than the first, which write nothing. A Ctrl-C raises
    :class:`~fmadv.runs.folder.RunInterrupted`.
    """
    config.validate()  # option errors before any data is read
    folder = RunFolder(Path(out))
    settings = _run_settings(config, data)
    folder.check_start(settings, resume=resume, overwrite=overwrite)
    # The folder is made only once the data has loaded: bad input leaves nothing behind.
    images = data.load(config.loop.seed)
    folder.start(settings, overwrite=overwrite)
    with folder.training():
        return _fit(config, data, images, folder, resume, quiet)


def _run_settings(config: ImageTrainConfig, data: ImageDataSpec) -> dict:
    """What ``run.json`` records: the config with its loop's settings beside the image
    ones (one flat namespace, as on the command line), and the images trained on."""
    image_settings = {name: value for name, value in config.to_dict().items() if name != "loop"}
    images = {name: value for name, value in asdict(data).items() if name != "data_dir"}
    return {**image_settings, **asdict(config.loop), "data": images}


def _fit(
    config: ImageTrainConfig,
    data: ImageDataSpec,
    images: PreparedImages,
    folder: RunFolder,
    resume: bool,
    quiet: bool,
) -> dict | None:
    main = is_main_process()
    rows = METHODS[config.method].epoch_rows(len(images.train_x))
    with epoch_progress(quiet or not main, config.loop.epochs, rows) as progress:
        classifier = train_image_classifier(
            images, config, log_path=folder.metrics, checkpoint=folder.checkpoint,
            resume=resume, **progress.callbacks(),
        )  # fmt: skip
    if not main:
        return None
    classifier.save(folder.model)
    splits = {"valid": (images.valid_x, images.valid_y), "test": (images.test_x, images.test_y)}
    results = {
        name: confidence_report(predict_logits(classifier.model, x), y)
        for name, (x, y) in splits.items()
        if x is not None
    }
    summary = {
        "model": f"{config.model}, {config.method}",
        "data": asdict(data),
        "config": config.to_dict(),
        "best_epoch": classifier.history.best_epoch,
        "results": results,
        "files": {"model": str(folder.model), "metrics": str(folder.metrics)},
    }
    folder.write_summary(summary)
    return summary


def image_attack_names() -> list[str]:
    """The attack names the image commands take: every registered attack that moves
    pixels, its earlier names, and the two PGDs of :data:`PGD_NORMS`."""
    pixels = input_attacks()
    aliases = [alias for alias, name in ALIASES.items() if name in pixels]
    return [*(name for name in pixels if name not in PGD_NORMS), *aliases, *PGD_NORMS]


def named_attack(
    name: str, eps: float, n_pixels: int, pgd_steps: int = PGD_STEPS, box: str = BOX
) -> Attack:
    """The attack ``name`` (one of :func:`image_attack_names`) at L2 size ``eps``,
    meeting the pixel box as ``box`` says."""
    if name in PGD_NORMS:
        return image_attack("pgd", eps, n_pixels, box, norm=PGD_NORMS[name], steps=pgd_steps)
    return image_attack(name, eps, n_pixels, box)


def _check_rows(rows: int | None) -> None:
    if rows is not None:
        integer("rows", rows, 1)


def _check_attack_names(names: Sequence[str]) -> None:
    known = image_attack_names()
    for name in names:
        if name not in known:
            raise ConfigError(f"unknown image attack {name!r}; expected one of {known}")


def evaluation_images(
    classifier: ImageClassifier, data_dir: Path | None, rows: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``rows`` test images (all when None) of the classifier's dataset and
    their labels, prepared as its training images were."""
    data = load_image_dataset(
        classifier.dataset, data_dir, valid_size=0, scale=classifier.scale,
        subtract_mean=classifier.mean is not None,
    )  # fmt: skip
    x, y = data.test_x, data.test_y
    if classifier.mean is not None:
        # The test images take the mean image the model was trained with.
        x = x + data.mean - classifier.mean
    return (x, y) if rows is None else (x[:rows], y[:rows])


@dataclass
class ImageEvaluation:
    """Confidence reports by rows (``clean`` and each attack, by the name given), and
    how many test images they cover."""

    report: dict[str, dict[str, float]]
    rows: int


def evaluate_image(
    model_path: str | Path,
    attacks: Sequence[str] = EVALUATION_ATTACKS,
    eps: float = default(ImageTrainConfig, "eps"),
    pgd_steps: int = PGD_STEPS,
    rows: int | None = None,
    data_dir: Path | None = None,
    device: str = "cpu",
    box: str = BOX,
    transfer_from: str | Path | None = None,
) -> ImageEvaluation:
    """Accuracy and confidence of a saved image model on its dataset's test images,
    clean and under each attack (made against this model) at L2 size ``eps``, its step
    meeting the pixel box as ``box`` says; each report has the mean L2 norm that reached
    the model. With ``transfer_from`` (another model of the same images), each attack is
    also made against that model and met by this one (``"<attack>, transferred"``)."""
    check_eps(eps)
    check_box(box)
    _check_rows(rows)
    _check_attack_names(attacks)
    classifier = ImageClassifier.load(model_path, device=device)
    made = {name: named_attack(name, eps, classifier.n_pixels, pgd_steps, box) for name in attacks}
    x, y = evaluation_images(classifier, data_dir, rows)
    report = attack_report(classifier.model, x, y, made, classifier.bounds)
    if transfer_from is not None:
        source = ImageClassifier.load(transfer_from, device=device)
        _check_same_images(classifier, source, transfer_from)
        moved = transfer_report(classifier.model, source.model, x, y, made, classifier.bounds)
        report.update({f"{name}, transferred": values for name, values in moved.items()})
    return ImageEvaluation(report, len(y))


def _check_same_images(classifier: ImageClassifier, source: ImageClassifier, path) -> None:
    """A transfer attack needs a source model of the same images, prepared the same way."""
    same = (
        source.shape == classifier.shape
        and source.scale == classifier.scale
        and (source.mean is None) == (classifier.mean is None)
        and torch.equal(source.low, classifier.low)
    )
    if not same:
        raise ConfigError(
            f"{path}: the transfer source takes other images than the model "
            f"(shape {source.shape}, scale {source.scale}; the model: {classifier.shape}, "
            f"scale {classifier.scale}, and the same mean image and box)"
        )


@dataclass
class ImageCurves:
    """Accuracy by attack and L2 size (columns ``attack``, ``eps``, ``accuracy``),
    and the files written."""

    points: pd.DataFrame
    files: list[Path]


def image_curve(
    model_path: str | Path,
    attacks: Sequence[str] = CURVE_ATTACKS,
    eps_grid: Sequence[float] = CURVE_EPS_GRID,
    rows: int | None = 2000,
    pgd_steps: int = PGD_STEPS,
    out: Path | None = None,
    data_dir: Path | None = None,
    device: str = "cpu",
    box: str = BOX,
) -> ImageCurves:
    """Accuracy of a saved image model against the L2 size of each attack's perturbation
    (Huang et al.'s Figure 1), each step meeting the pixel box as ``box`` says:
    ``curve.csv`` (with the mean L2 norm that reached the model) and ``curve.png`` in
    ``out``, by default ``curve/`` beside the model."""
    model_path = model_file(model_path)
    grid = [check_eps(float(eps)) for eps in eps_grid]
    check_box(box)
    _check_rows(rows)
    _check_attack_names(attacks)
    classifier = ImageClassifier.load(model_path, device=device)
    x, y = evaluation_images(classifier, data_dir, rows)

    def curve(name: str) -> list[dict[str, float]]:
        def make(eps: float) -> Attack:
            return named_attack(name, eps, classifier.n_pixels, pgd_steps, box)

        return accuracy_curve(classifier.model, x, y, make, grid, classifier.bounds)

    curves = {name: curve(name) for name in attacks}
    points = pd.DataFrame([{"attack": name, **p} for name, c in curves.items() for p in c])
    out = out or model_path.parent / "curve"
    files = [out / "curve.csv", out / "curve.png"]
    atomic_write(files[0], lambda temp: points.to_csv(temp, index=False))
    title = f"{model_path.parent.name}: accuracy against L2 norm ({box} box)"
    plot_accuracy_curves(curves, files[1], title=title)
    return ImageCurves(points, files)
