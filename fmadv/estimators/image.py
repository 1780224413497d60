"""Image classifiers (LeNet, MLP) trained through the same loop, objectives and attacks
as the factorization machine.

Methods, as tabled by Huang et al. (2015) and the "Harnessing adversarial examples"
LeNet report, one entry each in :data:`METHODS`:

* ``normal``: cross-entropy on clean images;
* ``dropout``: the same with dropout in the MLP's hidden layers;
* ``goodfellow``: a * J(x) + (1 - a) * J(x_adv), x_adv from the current model each step;
* ``lwa``: learning with an adversary, J(x_adv) alone (Huang's Algorithm 2);
* ``lwa-rep``: the same with the perturbation on a hidden representation;
* ``augment``: at the start of each epoch, the whole training set is attacked once and the
  epoch trains on clean and adversarial images together (the report's procedure);
* ``vat``: virtual adversarial training, labels optional (``labeled`` keeps that many).

Every image budget ``eps`` is the L2 norm of the perturbation, as in Huang et al.; see
:func:`image_attack` for the sign attacks. ``box`` says how it meets the pixel box: by
default projected into it, so that the model meets the stated norm wherever the box
leaves room (clipping shortens the step, and the papers' unclipped step leaves the box).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fmadv.attacks import Attack, make_attack
from fmadv.attacks.base import SteepestStep
from fmadv.checks import integer, nonnegative
from fmadv.data.image_prep import PreparedImages, batches
from fmadv.errors import ConfigError, ModelFileError
from fmadv.evaluation.images import adversarial_examples
from fmadv.evaluation.predict import predict_logits
from fmadv.io import (
    check_kind,
    check_tensors,
    header_value,
    history_records,
    load_tensors,
    model_file,
    save_tensors,
)
from fmadv.metrics.images import confidence_report
from fmadv.models.image import IMAGE_MODELS, ImageModel, make_image_model
from fmadv.threat import check_box
from fmadv.training.device import resolve_device
from fmadv.training.loop import History, Objective, TrainConfig, clean_objective, fit_loop
from fmadv.training.objectives import (
    AdversarialObjective,
    RepresentationAdversarialObjective,
    VirtualAdversarialObjective,
)

IMAGE_FORMAT = "fmadv.image"

# The fit loop as the image papers run it: SGD with momentum on batches of 100, the
# cross-entropy, and early stopping on validation accuracy when asked for.
IMAGE_LOOP = TrainConfig(
    epochs=10, batch_size=100, lr=0.01, optimizer="sgd", loss="cross_entropy",
    patience=0, monitor="accuracy", momentum=0.9,
)  # fmt: skip


def image_loop(**changes: Any) -> TrainConfig:
    """:data:`IMAGE_LOOP` with ``changes`` (``epochs``, ``lr``, ``seed``...)."""
    return replace(IMAGE_LOOP, **changes)


def image_attack(
    name: str, eps: float, n_pixels: int, box: str | None = None, **options: Any
) -> Attack:
    """The attack ``name`` whose perturbation has L2 norm ``eps``, meeting the pixel box
    as ``box`` says (:data:`~fmadv.threat.BOXES`; None: the attack's default). The sign
    step keeps its direction and is measured in L2, as Huang et al. state Adv_Loss_Sign
    (eps / sqrt(pixels) per pixel before the box); PGD in L-inf gets that per-pixel
    radius."""
    attack = make_attack(name, 0.0, **({} if box is None else {"box": box}), **options)
    if isinstance(attack, SteepestStep) and attack.norm == "linf":
        return replace(attack, eps=eps, measure="l2")
    if attack.threat.norm == "linf":
        eps /= math.sqrt(n_pixels)
    return replace(attack, eps=eps)


# Names of earlier releases, read from old model files.
_RENAMED = {"budget": "eps", "rep_budget": "rep_eps"}
# Settings of earlier releases that never applied to images (the FM's L2 penalty).
_DROPPED = {"reg_bias", "reg_linear", "reg_factors"}


@dataclass
class ImageTrainConfig:
    """Everything that defines an image training run; every field has a default.

    Parameters
    ----------
    model
        ``"mlp"`` or ``"lenet"``.
    method
        A key of :data:`METHODS`.
    dropout
        Rate of the MLP's hidden dropout, for the methods that use it.
    attack, eps
        The training attack and the L2 norm of its perturbation (see :func:`image_attack`).
    box
        How every pixel attack's step meets the pixel box: ``"project"``, ``"clip"`` or
        ``"none"`` (:data:`~fmadv.threat.BOXES`).
    goodfellow_weight
        ``goodfellow``: weight a of the clean loss.
    split, rep_eps
        ``lwa-rep``: the block after which the representation is attacked (None: before
        the classifier) and the L2 norm of that perturbation.
    vat_eps
        ``vat``: L2 norm of the virtual adversarial perturbation.
    labeled
        Keep only this many training labels (methods that train on unlabelled rows).
    loop
        The fit loop's settings, :data:`IMAGE_LOOP` by default; its seed also seeds the
        initialisation, the dropout masks, VAT's directions and which labels are hidden.
    """

    model: str = "mlp"
    method: str = "normal"
    dropout: float = 0.5
    attack: str = "l2"
    eps: float = 1.5
    box: str = "project"
    goodfellow_weight: float = 0.5
    split: int | None = None
    rep_eps: float = 1.0
    vat_eps: float = 2.0
    labeled: int | None = None
    loop: TrainConfig = field(default_factory=image_loop)

    def validate(self) -> None:
        """Raise :class:`ConfigError` on a value outside its valid range."""
        if self.model not in IMAGE_MODELS:
            raise ConfigError(
                f"unknown image model {self.model!r}; expected one of {list(IMAGE_MODELS)}"
            )
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; expected one of {list(METHODS)}")
        make_attack(self.attack, 0.0)  # an unknown attack fails here, before data is read
        check_box(self.box)
        if not 0 <= self.goodfellow_weight <= 1:
            raise ConfigError(f"goodfellow_weight must lie in [0, 1], got {self.goodfellow_weight}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must lie in [0, 1), got {self.dropout}")
        for name in ("eps", "rep_eps", "vat_eps"):
            nonnegative(name, getattr(self, name))
        if self.labeled is not None:
            integer("labeled", self.labeled, 1)
            if not METHODS[self.method].unlabeled:
                names = " or ".join(repr(n) for n, m in METHODS.items() if m.unlabeled)
                raise ConfigError(f"labeled (semi-supervised training) needs method {names}")
        self.loop.validate()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> ImageTrainConfig:
        """A config as :meth:`to_dict` wrote it, or as earlier files did: one flat dict
        with the loop's settings beside the image ones, the budgets named ``budget`` and
        ``rep_budget``, and no ``box`` (their attacks clipped)."""
        saved = {_RENAMED.get(name, name): value for name, value in saved.items()}
        loop = dict(saved.pop("loop", {}))
        for name in {f.name for f in fields(TrainConfig)} & set(saved):
            loop[name] = saved.pop(name)
        for name in _DROPPED & set(saved):
            saved.pop(name)
        saved.setdefault("box", "clip")  # earlier releases clipped every step
        loop = {name: value for name, value in loop.items() if name not in _DROPPED}
        return cls(**saved, loop=image_loop(**loop))


ObjectiveMaker = Callable[[ImageTrainConfig, PreparedImages], Objective]


@dataclass(frozen=True)
class Method:
    """One training method: what each step minimises, and what it changes around that.

    Parameters
    ----------
    objective
        ``objective(config, data)``: the :class:`~fmadv.training.loop.Objective`.
    dropout
        The MLP drops hidden units at ``config.dropout``.
    augment
        Each epoch trains on the clean images and on a copy attacked at its start.
    unlabeled
        Rows without a label still train, so ``config.labeled`` may hide most labels.
    """

    objective: ObjectiveMaker
    dropout: bool = False
    augment: bool = False
    unlabeled: bool = False

    def epoch_rows(self, n_train: int) -> int:
        """Rows one epoch trains on."""
        return 2 * n_train if self.augment else n_train


def training_attack(config: ImageTrainConfig, data: PreparedImages) -> Attack:
    """``config.attack`` at ``config.eps`` on images of ``data``'s shape."""
    return image_attack(config.attack, config.eps, int(np.prod(data.shape)), config.box)


def _clean(config: ImageTrainConfig, data: PreparedImages) -> Objective:
    return clean_objective


def _goodfellow(config: ImageTrainConfig, data: PreparedImages) -> Objective:
    a = config.goodfellow_weight
    attack = training_attack(config, data)
    return AdversarialObjective(attack, beta=1 - a, clean_weight=a, bounds=data.bounds)


def _lwa(config: ImageTrainConfig, data: PreparedImages) -> Objective:
    attack = training_attack(config, data)
    return AdversarialObjective(attack, adversarial_only=True, bounds=data.bounds)


def _lwa_rep(config: ImageTrainConfig, data: PreparedImages) -> Objective:
    # A representation has no pixels to rescale a sign step to: an L2 attack keeps its
    # kind, any other becomes the L2 step.
    is_l2 = make_attack(config.attack, 0.0).threat.norm == "l2"
    attack = make_attack(config.attack if is_l2 else "l2", config.rep_eps)
    return RepresentationAdversarialObjective(attack, split=config.split)


def _vat(config: ImageTrainConfig, data: PreparedImages) -> Objective:
    return VirtualAdversarialObjective(eps=config.vat_eps, seed=config.loop.seed)


METHODS: dict[str, Method] = {
    "normal": Method(_clean),
    "dropout": Method(_clean, dropout=True),
    "goodfellow": Method(_goodfellow),
    "lwa": Method(_lwa),
    "lwa-rep": Method(_lwa_rep),
    "augment": Method(_clean, augment=True),
    "vat": Method(_vat, unlabeled=True),
}


@dataclass
class ImageClassifier:
    """A trained image model with what is needed to reuse it: its config, the data's
    shape, scale, mean image and box."""

    model: ImageModel
    config: ImageTrainConfig
    shape: tuple[int, int, int]
    n_classes: int
    scale: int
    mean: torch.Tensor | None
    low: torch.Tensor
    high: torch.Tensor
    dataset: str = ""
    history: History = field(default_factory=History)

    @property
    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.low, self.high

    @property
    def n_pixels(self) -> int:
        return int(np.prod(self.shape))

    def save(self, path: str | Path) -> None:
        """One safetensors file: the weights, the box, the mean image, and JSON metadata."""
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update({"low": self.low, "high": self.high})
        if self.mean is not None:
            tensors["mean"] = self.mean
        metadata = {
            "config": self.config.to_dict(),
            "shape": list(self.shape),
            "n_classes": self.n_classes,
            "scale": self.scale,
            "dataset": self.dataset,
            "history": self.history.records,
        }
        save_tensors(path, tensors, metadata, kind=IMAGE_FORMAT)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> ImageClassifier:
        """Read a model written by :meth:`save` (or the one of a run folder; earlier
        releases' files included), every field and tensor checked first."""
        path = model_file(path)
        tensors, header = load_tensors(path, kind=IMAGE_FORMAT)
        shape = cls._saved_shape(path, header)
        n_classes = header_value(path, header, "n_classes", int, minimum=1)
        saved_config = header_value(path, header, "config", dict)
        try:
            config = ImageTrainConfig.from_dict(saved_config)
            model = build_model(config, shape, n_classes)
        except (KeyError, TypeError, ValueError, ConfigError) as err:
            raise ModelFileError(f"{path}: inconsistent image model file ({err})") from None
        shapes = {f"model.{k}": v.shape for k, v in model.state_dict().items()}
        box = ("low", "high", "mean") if "mean" in tensors else ("low", "high")
        check_tensors(path, tensors, {**shapes, **dict.fromkeys(box, shape)})
        if (tensors["low"] > tensors["high"]).any():
            raise ModelFileError(f"{path}: the box's low bound exceeds its high bound")
        model.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k in shapes})
        model.to(resolve_device(device)).eval()
        return cls(
            model, config, shape, n_classes, header_value(path, header, "scale", int, minimum=1),
            tensors.get("mean"), tensors["low"], tensors["high"],
            header_value(path, header, "dataset", str, default=""),
            History(records=history_records(path, header)),
        )  # fmt: skip

    @staticmethod
    def _saved_shape(path: Path, header: dict) -> tuple[int, int, int]:
        """The (channels, height, width) of the images a saved model takes."""
        shape = header_value(path, header, "shape", list)
        if len(shape) != 3:
            raise ModelFileError(f"{path}: 'shape' has {len(shape)} entries, expected 3")
        return tuple(check_kind(path, "a 'shape' entry", d, int, minimum=1) for d in shape)


def build_model(config: ImageTrainConfig, shape, n_classes: int) -> ImageModel:
    """The untrained ``config.model`` for images of ``shape``, seeded by the loop's seed."""
    options = {"generator": torch.Generator().manual_seed(config.loop.seed)}
    if config.model == "mlp":
        options["dropout"] = config.dropout if METHODS[config.method].dropout else 0.0
    return make_image_model(config.model, shape[0], shape[1], n_classes, **options)


def _training_labels(data: PreparedImages, config: ImageTrainConfig) -> torch.Tensor:
    """Training labels; for a semi-supervised run all but ``labeled`` rows become -1."""
    labels = data.train_y.clone()
    if config.labeled is not None and config.labeled < len(labels):
        rng = np.random.default_rng(config.loop.seed)
        hidden = rng.permutation(len(labels))[config.labeled :]
        labels[torch.from_numpy(hidden)] = -1
    return labels


def train_image_classifier(
    data: PreparedImages, config: ImageTrainConfig | None = None, **fit_options: Any
) -> ImageClassifier:
    """Train ``config.model`` on ``data`` with ``config.method`` through
    :func:`~fmadv.training.loop.fit_loop`; ``fit_options`` go to the loop (``log_path``,
    ``on_step``, ``on_epoch``, ``checkpoint``, ``resume``, ``callbacks``)."""
    config = config or ImageTrainConfig()
    config.validate()
    method = METHODS[config.method]
    torch.manual_seed(config.loop.seed)  # dropout masks
    model = build_model(config, data.shape, data.n_classes)
    objective = method.objective(config, data)
    train_x, train_y = data.train_x, _training_labels(data, config)

    def epoch_batches(rng: np.random.Generator, device: torch.device):
        x, y = train_x, train_y
        if method.augment:
            x_adv = adversarial_examples(model, x, y, training_attack(config, data), data.bounds)
            x, y = torch.cat([x, x_adv]), torch.cat([y, y])
        for xb, yb in batches(x, y, config.loop.batch_size, rng):
            yield xb.to(device), yb.to(device)

    evaluate = None
    if data.valid_x is not None:

        def evaluate(net: nn.Module) -> dict[str, float]:
            report = confidence_report(predict_logits(net, data.valid_x), data.valid_y)
            return {"accuracy": report["correct"]}

    rows = method.epoch_rows(len(train_x))
    history = fit_loop(model, epoch_batches, rows, evaluate, config.loop, objective, **fit_options)
    model.eval()
    return ImageClassifier(
        model, config, tuple(data.shape), data.n_classes, data.scale, data.mean,
        data.low, data.high, data.name, history,
    )  # fmt: skip
