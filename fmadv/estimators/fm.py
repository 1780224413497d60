"""The factorization machine as scikit-learn style estimators: what they share, and the
classifier (the ranker is in :mod:`fmadv.estimators.ranker`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from fmadv.attacks import Attack
from fmadv.checks import integer, positive
from fmadv.data.dataset import Splits
from fmadv.data.labels import binary_labels
from fmadv.errors import ConfigError, DataError, ModelFileError
from fmadv.estimators.base import Estimator, default
from fmadv.evaluation.predict import predict_scores
from fmadv.evaluation.robustness import strongest_scores
from fmadv.io import (
    check_kind,
    check_tensors,
    header_value,
    history_records,
    load_tensors,
    model_file,
    save_tensors,
)
from fmadv.losses import MARGIN_LOSSES, get_loss
from fmadv.metrics.classification import classification_report
from fmadv.metrics.robustness import robustness_report
from fmadv.models.fm import FactorizationMachine
from fmadv.threat import check_linf_eps
from fmadv.training.device import resolve_device
from fmadv.training.fm import FMPenalty, classification_evaluator, shuffled_batches
from fmadv.training.loop import (
    History,
    Objective,
    StepHook,
    TrainConfig,
    fit_loop,
)
from fmadv.training.objectives import AdversarialConfig
from fmadv.training.regularizers import GradientNoise


def check_rows(X: Any, n_features: int | None = None, allow_real_valued: bool = False):
    """Validate a feature matrix: sparse or dense, finite, binary unless allowed otherwise."""
    X = sp.csr_matrix(X, dtype=np.float32)
    if X.shape[0] == 0:
        raise DataError("no rows to work on")
    if not np.all(np.isfinite(X.data)):
        raise DataError("feature values contain NaN or inf")
    if not allow_real_valued and np.any(X.data[X.data != 0] != 1):
        raise DataError(
            "real-valued features found where binary ones were expected; "
            "pass allow_real_valued=True (CLI: --allow-real-valued) to accept them"
        )
    if n_features is not None and X.shape[1] != n_features:
        raise DataError(f"rows have {X.shape[1]} features but the model expects {n_features}")
    X.eliminate_zeros()
    return X


def check_labels(y: Any, n_rows: int) -> np.ndarray:
    """Labels as float32 in {-1, +1} (0 and False read as -1); anything else is an error."""
    y = np.asarray(y).reshape(-1)
    if len(y) != n_rows:
        raise DataError(f"{len(y)} labels for {n_rows} rows")
    return binary_labels(y)


class FMEstimator(Estimator):
    """What the FM estimators share: the components their parameters configure, the fit
    loop, scores, and model files. A subclass declares its parameters in ``__init__``
    (explicit, with the components' defaults) and how it learns (``fit``)."""

    RENAMED = {"k": "n_factors", "alpha": "eps"}

    # -- the components these parameters configure ---------------------------------
    def train_config(self) -> TrainConfig:
        """The fit loop's :class:`TrainConfig`."""
        return self.config(TrainConfig, seed=self.random_state)

    def adversarial_config(self) -> AdversarialConfig:
        return self.config(AdversarialConfig)

    def make_attack(self, eps: float | None = None, support: str | None = None) -> Attack:
        """The training attack, optionally at another budget or support."""
        eps = check_linf_eps(self.eps if eps is None else eps)
        return self.adversarial_config().make_attack(eps, support)

    def objective(self, feature_map: Any = None) -> Objective:
        """Clean loss, or the adversarial objective when beta > 0 or adversarial_only;
        whole-feature edits (``attack="flips"``) resolve their fields in ``feature_map``."""
        config = self.adversarial_config()
        if config.edits:
            config.check_edits()
            return config.edit_objective(feature_map) if feature_map is not None else None
        self.make_attack()  # the FM's budget check, also when training plain
        return config.objective()

    def hooks(self) -> list[StepHook]:
        """Gradient noise when asked for (validated either way)."""
        noise = GradientNoise(
            self.grad_noise, self.grad_noise_gamma, self.grad_noise_rows, self.random_state
        )
        return [noise] if self.grad_noise > 0 else []

    def validate(self) -> None:
        """Check every hyperparameter, before any data is read."""
        integer("n_factors", self.n_factors, 1)
        positive("init_std", self.init_std)
        self.train_config().validate()
        self.config(FMPenalty)
        self.objective()
        self.hooks()
        if self.sparse_updates and not self.adversarial_config().is_plain:
            raise ConfigError(
                "sparse updates train plain FMs: the attack's step reads every feature's "
                "row, so adversarial training updates them all"
            )
        if self.sparse_updates and self.grad_noise > 0 and self.grad_noise_rows == "all":
            raise ConfigError("with sparse updates gradient noise goes to the touched rows only")

    def describe(self) -> str:
        """A short name of the training method: plain, adversarial, gradient noise."""
        kind = self.adversarial_config().describe()
        if self.grad_noise > 0:
            kind += f" + gradient noise (eta={self.grad_noise}, {self.grad_noise_rows} rows)"
        return kind

    def _train(self, batches, n_rows, n_features, evaluate, log_path, fit_options, fields=None):
        """A fresh model of ``n_features``, trained on ``batches`` through the fit loop
        (``fields``: the feature map that whole-feature edits name fields of)."""
        objective = self.objective(fields)
        if objective is None:
            raise ConfigError(
                "--attack flips edits named fields: train the classifier on rows with a "
                "feature map (a registered dataset, fit_splits, or fit(..., feature_map=))"
            )
        generator = torch.Generator().manual_seed(self.random_state)
        self.model_ = FactorizationMachine(n_features, self.n_factors, self.init_std, generator)
        self.n_features_in_ = n_features
        self.history_: History = fit_loop(
            self.model_, batches, n_rows, evaluate, self.train_config(),
            penalty=self.config(FMPenalty), objective=objective, hooks=self.hooks(),
            log_path=log_path, **fit_options,
        )  # fmt: skip
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Raw scores y_hat; positive means class +1."""
        self._check_fitted()
        X = check_rows(X, self.n_features_in_, self.allow_real_valued)
        return predict_scores(self.model_, X)

    def to(self, device: str | torch.device) -> FMEstimator:
        """Move the fitted model to ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``)."""
        self._check_fitted()
        self.model_.to(resolve_device(device) if isinstance(device, str) else device)
        return self

    # -- files --------------------------------------------------------------------
    def save(self, path: str | Path, feature_map: Any = None, extra: dict | None = None) -> None:
        """Write the fitted model (and optionally its feature map) to one safetensors file."""
        self._check_fitted()
        model = self.model_
        metadata = {
            "estimator": type(self).__name__,
            "params": self.get_params(),
            "n_features": model.n_features,
            "feature_map": None if feature_map is None else feature_map.to_dict(),
            "history": self.history_.records,
            **(extra or {}),
        }
        tensors = {"bias": model.bias, "linear": model.linear, "factors": model.factors}
        save_tensors(path, tensors, metadata)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> FMEstimator:
        """Read a model written by :meth:`save` (or the one of a run folder);
        ``feature_map_`` and ``metadata_`` are set.

        Every field and tensor is checked first: a damaged file raises
        :class:`ModelFileError` rather than predicting wrong numbers.
        """
        path = model_file(path)
        tensors, header = load_tensors(path)
        estimator = cls._saved_class(path, header)._from_saved_params(path, header)
        n_features = header_value(path, header, "n_features", int, minimum=1)
        n_factors = check_kind(path, "parameter 'n_factors'", estimator.n_factors, int, minimum=1)
        shapes = {"bias": (), "linear": (n_features,), "factors": (n_features, n_factors)}
        check_tensors(path, tensors, shapes)
        model = FactorizationMachine(n_features, n_factors)
        model.load_state_dict(tensors)
        estimator.model_ = model.to(resolve_device(device))
        estimator.n_features_in_ = n_features
        estimator.history_ = History(records=history_records(path, header))
        estimator.feature_map_ = cls._saved_feature_map(path, header, n_features)
        # What the model was trained on, read back by the commands that reuse it.
        header_value(path, header, "data", dict, default={})
        estimator.metadata_ = header
        return estimator

    @classmethod
    def _saved_class(cls, path: Path, header: dict) -> type[FMEstimator]:
        """The estimator class that wrote the file (files of earlier releases hold an
        FMClassifier); it must be ``cls`` or derive from it."""
        name = header_value(path, header, "estimator", str, default="FMClassifier")
        saved = {c.__name__: c for c in FMEstimator.__subclasses__()}.get(name)
        if saved is None or not issubclass(saved, cls):
            raise ModelFileError(f"{path}: a model of {name}, not of {cls.__name__}")
        return saved

    @classmethod
    def _from_saved_params(cls, path: Path, header: dict) -> FMEstimator:
        params = header_value(path, header, "params", dict)
        try:
            return cls.from_params(params)
        except TypeError as err:  # a parameter this release does not know
            raise ModelFileError(
                f"{path}: parameters that do not fit {cls.__name__} ({err})"
            ) from None

    @staticmethod
    def _saved_feature_map(path: Path, header: dict, n_features: int):
        """The model's :class:`~fmadv.data.features.FeatureMap`, or None when it has none."""
        from fmadv.data.features import FeatureMap

        saved = header_value(path, header, "feature_map", dict, default=None)
        if saved is None:
            return None
        try:
            feature_map = FeatureMap.from_dict(saved)
        except DataError as err:
            raise ModelFileError(f"{path}: {err}") from None
        if feature_map.n_features != n_features:
            raise ModelFileError(
                f"{path}: the feature map has {feature_map.n_features} features, "
                f"the model {n_features}"
            )
        return feature_map

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise ConfigError(f"this {type(self).__name__} is not fitted yet; call fit() first")


class FMClassifier(FMEstimator):
    """Factorization machine classifier for sparse binary rows and labels in {-1, +1}.

    ``__init__`` only stores hyperparameters; :meth:`fit` learns ``model_``,
    ``history_`` and ``n_features_in_``. Each default comes from the dataclass of the
    component it configures: :class:`~fmadv.training.loop.TrainConfig` (the loop),
    :class:`~fmadv.training.objectives.AdversarialConfig` (adversarial training) and
    :class:`~fmadv.training.regularizers.GradientNoise`.

    Parameters
    ----------
    n_factors
        Number of latent factors per feature.
    init_std
        Standard deviation of the initial factors.
    allow_real_valued
        Accept feature values other than 0 and 1.
    loss, optimizer, lr, epochs, batch_size, patience, monitor, momentum, weight_decay,
    device
        The fit loop's settings (see :class:`~fmadv.training.loop.TrainConfig`).
    sparse_updates
        Gradients and optimizer steps only on the rows of the features each batch
        uses (Adam becomes lazy; Adagrad and SGD take the dense step): per-step cost in
        the batch, not in the number of features. Plain training only.
    reg_bias, reg_linear, reg_factors
        L2 on the bias and on the active rows (see :class:`~fmadv.training.fm.FMPenalty`).
    beta, eps, attack, support, box, adversarial_only, attack_precision
        Adversarial training: loss(x) + beta * loss(x_adv), x_adv made by ``attack``
        with budget ``eps`` over ``support`` (see
        :class:`~fmadv.training.objectives.AdversarialConfig`). beta = 0 trains a plain
        FM. The FM's inputs live in the unit box, so eps lies in [0, 1].
    line_search
        Train against the exact worst point of the segment from x to the attack's step
        (:class:`~fmadv.training.objectives.LineSearchObjective`), not the step itself.
    budget, edit_fields, certified
        ``attack="flips"``: x_adv is the greedy attack of at most ``budget`` edits of
        whole features of the fields ``edit_fields`` (named in the feature map given to
        ``fit``); with ``certified``, the second term is the loss at the certified
        margin instead.
    grad_noise, grad_noise_gamma, grad_noise_rows
        Annealed gradient noise: variance grad_noise / (1 + t)^grad_noise_gamma, on the
        rows the batch touched (``"touched"``) or on every row (``"all"``).
    random_state
        Seed of the initialisation and the batch order; same seed, same model on the CPU.
    """

    def __init__(
        self,
        *,
        n_factors: int = default(FactorizationMachine, "n_factors"),
        init_std: float = default(FactorizationMachine, "init_std"),
        allow_real_valued: bool = False,
        loss: str = default(TrainConfig, "loss"),
        optimizer: str = default(TrainConfig, "optimizer"),
        lr: float = default(TrainConfig, "lr"),
        epochs: int = default(TrainConfig, "epochs"),
        batch_size: int = default(TrainConfig, "batch_size"),
        reg_bias: float = default(FMPenalty, "reg_bias"),
        reg_linear: float = default(FMPenalty, "reg_linear"),
        reg_factors: float = default(FMPenalty, "reg_factors"),
        patience: int = default(TrainConfig, "patience"),
        monitor: str = default(TrainConfig, "monitor"),
        momentum: float = default(TrainConfig, "momentum"),
        weight_decay: float = default(TrainConfig, "weight_decay"),
        device: str = default(TrainConfig, "device"),
        sparse_updates: bool = default(TrainConfig, "sparse_updates"),
        beta: float = default(AdversarialConfig, "beta"),
        eps: float = default(AdversarialConfig, "eps"),
        attack: str = default(AdversarialConfig, "attack"),
        support: str = default(AdversarialConfig, "support"),
        box: str = default(AdversarialConfig, "box"),
        adversarial_only: bool = default(AdversarialConfig, "adversarial_only"),
        attack_precision: str = default(AdversarialConfig, "attack_precision"),
        budget: int = default(AdversarialConfig, "budget"),
        edit_fields: tuple[str, ...] = default(AdversarialConfig, "edit_fields"),
        certified: bool = default(AdversarialConfig, "certified"),
        line_search: bool = default(AdversarialConfig, "line_search"),
        grad_noise: float = default(GradientNoise, "eta"),
        grad_noise_gamma: float = default(GradientNoise, "gamma"),
        grad_noise_rows: str = default(GradientNoise, "rows"),
        random_state: int = 0,
    ):
        for name, value in locals().items():
            if name not in ("self", "__class__"):
                setattr(self, name, value)

    # -- learning -----------------------------------------------------------------
    def fit(
        self,
        X: Any,
        y: Any,
        eval_set: tuple[Any, Any] | None = None,
        log_path: str | Path | None = None,
        feature_map: Any = None,
        **fit_options: Any,
    ) -> FMClassifier:
        """Learn the model from rows X and labels y; ``eval_set`` drives early stopping.

        ``feature_map`` names the fields of X, for training against whole-feature edits
        (``attack="flips"``). ``fit_options`` go to :func:`fmadv.training.loop.fit_loop`
        (progress callbacks, checkpoint, resume, callbacks).
        """
        self.validate()
        X = check_rows(X, allow_real_valued=self.allow_real_valued)
        y = check_labels(y, X.shape[0])
        batches = shuffled_batches(X, y, self.batch_size)
        return self._fit(
            batches, X.shape[0], X.shape[1], eval_set, log_path, fit_options, feature_map
        )

    def fit_stream(
        self,
        log: Any,
        eval_set: tuple[Any, Any] | None = None,
        log_path: str | Path | None = None,
        **fit_options: Any,
    ) -> FMClassifier:
        """Learn from a :class:`~fmadv.data.stream.StreamingLog` that does not fit in
        memory: batches are read, encoded and shuffled chunk by chunk."""
        self.validate()
        batches = log.batch_source(self.batch_size)
        return self._fit(
            batches, log.n_rows, log.feature_map.n_features, eval_set, log_path, fit_options,
            log.feature_map,
        )  # fmt: skip

    def _fit(
        self, batches, n_rows, n_features, eval_set, log_path, fit_options, feature_map=None
    ) -> FMClassifier:
        evaluate = None
        if eval_set is not None:
            Xv = check_rows(eval_set[0], n_features, self.allow_real_valued)
            evaluate = classification_evaluator((Xv, check_labels(eval_set[1], Xv.shape[0])))
        return self._train(
            batches, n_rows, n_features, evaluate, log_path, fit_options, feature_map
        )

    def validate(self) -> None:
        super().validate()
        if self.loss not in MARGIN_LOSSES:
            raise ConfigError(
                f"the classifier trains with one of {sorted(MARGIN_LOSSES)}, not {self.loss!r}"
            )

    def fit_splits(self, splits: Splits, **fit_options: Any) -> FMClassifier:
        """:meth:`fit` on ``splits.train``, early stopping on ``splits.valid``."""
        valid = splits.valid
        eval_set = (valid.X, valid.y) if valid is not None else None
        return self.fit(
            splits.train.X, splits.train.y, eval_set=eval_set,
            feature_map=splits.train.feature_map, **fit_options,
        )  # fmt: skip

    def report(self, splits: Splits) -> dict[str, dict[str, float]]:
        """Accuracy, AUC, hinge and log loss on each split."""
        return {
            name: classification_report(rows.y, self.decision_function(rows.X))
            for name, rows in splits.datasets().items()
        }

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels in {-1, +1}."""
        return np.where(self.decision_function(X) > 0, 1.0, -1.0).astype(np.float32)

    def robustness(
        self,
        X: Any,
        y: Any,
        eps: float | None = None,
        support: str | None = None,
        strength: str = "strong",
    ) -> dict[str, float]:
        """Flip rate, error rates and margins under this model's attack (see
        :func:`fmadv.metrics.robustness.robustness_report`) at ``strength``: by default
        the strongest exact attack at the budget, ``"single"`` for the single step
        (:func:`fmadv.evaluation.robustness.strongest_scores`)."""
        self._check_fitted()
        X = check_rows(X, self.n_features_in_, self.allow_real_valued)
        y = check_labels(y, X.shape[0])
        loss_fn = get_loss(self.train_config().loss)
        budget = check_linf_eps(self.eps if eps is None else eps)
        clean, attacked = strongest_scores(
            self.model_, X, y, lambda step: self.make_attack(step, support), budget, loss_fn,
            strength,
        )  # fmt: skip
        return robustness_report(y, clean, attacked)
