"""Image classifiers (LeNet, MLP) trained through the same loop, objectives and attacks
as the factorization machine.

Methods, as tabled by Huang et al. (2015) and the "Harnessing adversarial examples"
LeNet report:

* ``normal``: cross-entropy on clean images;
* ``dropout``: the same with dropout in the MLP's hidden layers;
* ``goodfellow``: a * J(x) + (1 - a) * J(x_adv), x_adv from the current model each step;
* ``lwa``: learning with an adversary, J(x_adv) alone (Huang's Algorithm 2);
* ``lwa-rep``: the same with the perturbation on a hidden representation;
* ``augment``: at the start of each epoch, the whole training set is attacked once and the
  epoch trains on clean and adversarial images together (the report's procedure);
* ``vat``: virtual adversarial training, labels optional (``labeled`` keeps that many).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fmadv.attacks import make_attack
from fmadv.attacks.base import Attack
from fmadv.data.image_prep import PreparedImages, batches
from fmadv.errors import ConfigError
from fmadv.io import load_tensors, save_tensors
from fmadv.metrics.images import adversarial_examples, confidence_report, predict_logits
from fmadv.models.image import ImageModel, make_image_model
from fmadv.training.device import resolve_device
from fmadv.training.loop import History, TrainConfig, clean_objective, fit_loop
from fmadv.training.objectives import (
    AdversarialObjective,
    RepresentationAdversarialObjective,
    VirtualAdversarialObjective,
)

METHODS = ("normal", "dropout", "goodfellow", "lwa", "lwa-rep", "augment", "vat")
IMAGE_FORMAT = "fmadv.image"
L2_ATTACKS = ("l2", "alpha")


def attack_for_budget(name: str, budget: float, n_pixels: int, **options) -> Attack:
    """The attack ``name`` at an L2 ``budget``: sign attacks (fgsm, pgd in L-inf) get the
    per-pixel eps whose sign vector has that L2 norm, budget / sqrt(n_pixels), the way
    Huang et al. rescale Adv_Loss_Sign to their c = 1.5."""
    l2 = name in L2_ATTACKS or (name == "pgd" and options.get("norm", "linf") == "l2")
    return make_attack(name, budget if l2 else budget / math.sqrt(n_pixels), **options)


@dataclass
class ImageTrainConfig:
    """Everything that defines an image training run; every field has a default."""

    model: str = "mlp"
    method: str = "normal"
    epochs: int = 10
    batch_size: int = 100
    lr: float = 0.01
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    dropout: float = 0.5
    attack: str = "l2"
    budget: float = 1.5
    goodfellow_weight: float = 0.5
    split: int | None = None
    rep_budget: float = 1.0
    vat_eps: float = 2.0
    labeled: int | None = None
    patience: int = 0
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; expected one of {METHODS}")
        if not 0 <= self.goodfellow_weight <= 1:
            raise ConfigError(f"goodfellow_weight must lie in [0, 1], got {self.goodfellow_weight}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must lie in [0, 1), got {self.dropout}")
        for name in ("budget", "rep_budget", "vat_eps"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.labeled is not None and self.labeled < 1:
            raise ConfigError(f"labeled must be >= 1, got {self.labeled}")
        self.loop_config().validate()

    def loop_config(self) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, optimizer=self.optimizer,
            loss="cross_entropy", patience=self.patience, monitor="accuracy", seed=self.seed,
            device=self.device, momentum=self.momentum, weight_decay=self.weight_decay,
            reg_linear=0.0, reg_factors=0.0,
        )  # fmt: skip


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

    def save(self, path: str | Path) -> None:
        """One safetensors file: the weights, the box, the mean image, and JSON metadata."""
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update({"low": self.low, "high": self.high})
        if self.mean is not None:
            tensors["mean"] = self.mean
        metadata = {
            "config": asdict(self.config),
            "shape": list(self.shape),
            "n_classes": self.n_classes,
            "scale": self.scale,
            "dataset": self.dataset,
            "history": self.history.records,
        }
        save_tensors(path, tensors, metadata, kind=IMAGE_FORMAT)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> ImageClassifier:
        from fmadv.errors import ModelFileError

        tensors, header = load_tensors(path, kind=IMAGE_FORMAT)
        try:
            config = ImageTrainConfig(**header["config"])
            shape = tuple(header["shape"])
            model = build_model(config, shape, int(header["n_classes"]))
            weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
            model.load_state_dict(weights)
        except (KeyError, TypeError, ValueError, RuntimeError, ConfigError) as err:
            raise ModelFileError(f"{path}: inconsistent image model file ({err})") from None
        model.to(resolve_device(device)).eval()
        return cls(
            model, config, shape, int(header["n_classes"]), int(header["scale"]),
            tensors.get("mean"), tensors["low"], tensors["high"], header.get("dataset", ""),
            History(records=header.get("history", [])),
        )  # fmt: skip


def build_model(config: ImageTrainConfig, shape, n_classes: int) -> ImageModel:
    options = {"generator": torch.Generator().manual_seed(config.seed)}
    if config.model == "mlp":
        options["dropout"] = config.dropout if config.method == "dropout" else 0.0
    return make_image_model(config.model, shape[0], shape[1], n_classes, **options)


def make_objective(config: ImageTrainConfig, data: PreparedImages):
    """The objective of ``config.method`` (``augment`` trains clean on augmented data)."""
    n_pixels = int(np.prod(data.shape))
    if config.method in ("normal", "dropout", "augment"):
        return clean_objective
    if config.method == "vat":
        return VirtualAdversarialObjective(eps=config.vat_eps, seed=config.seed)
    attack = attack_for_budget(config.attack, config.budget, n_pixels)
    if config.method == "goodfellow":
        a = config.goodfellow_weight
        return AdversarialObjective(attack, beta=1 - a, clean_weight=a, bounds=data.bounds)
    if config.method == "lwa":
        return AdversarialObjective(attack, adversarial_only=True, bounds=data.bounds)
    rep_attack = make_attack(
        config.attack if config.attack in L2_ATTACKS else "l2", config.rep_budget
    )
    return RepresentationAdversarialObjective(rep_attack, split=config.split)


def _training_labels(data: PreparedImages, config: ImageTrainConfig) -> torch.Tensor:
    """Training labels; for a semi-supervised run all but ``labeled`` rows become -1."""
    labels = data.train_y.clone()
    if config.labeled is not None and config.labeled < len(labels):
        rng = np.random.default_rng(config.seed)
        hidden = rng.permutation(len(labels))[config.labeled :]
        labels[torch.from_numpy(hidden)] = -1
    return labels


def train_image_classifier(
    data: PreparedImages,
    config: ImageTrainConfig | None = None,
    log_path: str | Path | None = None,
    on_step=None,
    on_epoch=None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
) -> ImageClassifier:
    """Train ``config.model`` on ``data`` with ``config.method`` through :func:`fit_loop`."""
    config = config or ImageTrainConfig()
    config.validate()
    if config.labeled is not None and config.method != "vat":
        raise ConfigError("labeled (semi-supervised training) needs method 'vat'")
    torch.manual_seed(config.seed)  # dropout masks
    model = build_model(config, data.shape, data.n_classes)
    objective = make_objective(config, data)
    train_x, train_y = data.train_x, _training_labels(data, config)
    n_pixels = int(np.prod(data.shape))

    def epoch_batches(rng: np.random.Generator, device: torch.device):
        x, y = train_x, train_y
        if config.method == "augment":
            attack = attack_for_budget(config.attack, config.budget, n_pixels)
            x_adv = adversarial_examples(model, x, y, attack, data.bounds)
            x, y = torch.cat([x, x_adv]), torch.cat([y, y])
        for xb, yb in batches(x, y, config.batch_size, rng):
            yield xb.to(device), yb.to(device)

    evaluate = None
    if data.valid_x is not None:

        def evaluate(net: nn.Module) -> dict[str, float]:
            return {
                "accuracy": confidence_report(predict_logits(net, data.valid_x), data.valid_y)[
                    "correct"
                ]
            }

    rows = len(train_x) * (2 if config.method == "augment" else 1)
    history = fit_loop(
        model, epoch_batches, rows, evaluate, config.loop_config(), objective,
        log_path=log_path, on_step=on_step, on_epoch=on_epoch, checkpoint=checkpoint,
        resume=resume,
    )  # fmt: skip
    model.eval()
    return ImageClassifier(
        model, config, tuple(data.shape), data.n_classes, data.scale, data.mean,
        data.low, data.high, data.name, history,
    )  # fmt: skip
