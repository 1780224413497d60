"""A scikit-learn style estimator around the factorization machine and its fit loop."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from fmadv.attacks import Attack, make_attack
from fmadv.attacks.base import check_step
from fmadv.errors import ConfigError, DataError, ModelFileError
from fmadv.io import load_tensors, save_tensors
from fmadv.losses import get_loss
from fmadv.metrics.robustness import attacked_scores, robustness_report
from fmadv.models.fm import FactorizationMachine
from fmadv.models.fm_attack import PRECISIONS
from fmadv.training.device import resolve_device
from fmadv.training.loop import (
    History,
    Objective,
    StepHook,
    TrainConfig,
    clean_objective,
    fit,
    fit_fm,
    predict_scores,
)
from fmadv.training.objectives import AdversarialObjective
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
    """Labels as float32 in {-1, +1}; 0 is read as -1; anything else is an error."""
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    if len(y) != n_rows:
        raise DataError(f"{len(y)} labels for {n_rows} rows")
    if not np.all(np.isin(y, (-1.0, 0.0, 1.0))):
        bad = y[~np.isin(y, (-1.0, 0.0, 1.0))][0]
        raise DataError(f"label {bad} is not one of -1, +1, 0, 1")
    return np.where(y > 0, 1.0, -1.0).astype(np.float32)


class FMClassifier:
    """Factorization machine classifier for sparse binary rows and labels in {-1, +1}.

    ``__init__`` only stores hyperparameters; :meth:`fit` learns ``model_``,
    ``history_`` and ``n_features_in_``. The fields of :class:`TrainConfig` (epochs,
    lr, optimizer, loss, regularisation, patience, seed, device) are accepted as
    keyword arguments too.

    Parameters
    ----------
    k
        Number of latent factors.
    init_std
        Standard deviation of the initial factors.
    allow_real_valued
        Accept feature values other than 0 and 1.
    beta
        Weight of the adversarial loss: the objective is loss(x) + beta * loss(x_adv).
        0 trains a plain FM.
    alpha
        Step of the attack that makes x_adv (the L-inf radius for FGSM).
    attack
        ``"fgsm"`` (sign step) or ``"l2"`` (L2-normalised gradient step).
    support
        ``"all"``: every feature may move (exact, the default); ``"active"``: only the
        row's active features, and only down.
    adversarial_only
        Train on loss(x_adv) alone (learning with an adversary).
    grad_noise, grad_noise_gamma, grad_noise_rows
        Annealed gradient noise: variance grad_noise / (1 + t)^grad_noise_gamma, on the
        rows the batch touched (``"touched"``) or on every row (``"all"``).
    attack_precision
        ``"float32"`` or ``"bfloat16"``: the type of the attack's mask product during
        training (bf16 uses tensor cores on a GPU; a tiny share of mask coordinates
        differ, see :func:`fmadv.models.fm_attack.mask_disagreement`).
    random_state
        Seed of the initialisation and the batch order; same seed, same model on the CPU.
    **train_options
        Any field of :class:`TrainConfig` except ``seed``.
    """

    def __init__(
        self,
        k: int = 16,
        init_std: float = 0.01,
        allow_real_valued: bool = False,
        beta: float = 0.0,
        alpha: float = 0.003,
        attack: str = "fgsm",
        support: str = "all",
        adversarial_only: bool = False,
        grad_noise: float = 0.0,
        grad_noise_gamma: float = 0.55,
        grad_noise_rows: str = "touched",
        attack_precision: str = "float32",
        random_state: int = 0,
        **train_options: Any,
    ):
        self.k = k
        self.init_std = init_std
        self.allow_real_valued = allow_real_valued
        self.beta = beta
        self.alpha = alpha
        self.attack = attack
        self.support = support
        self.adversarial_only = adversarial_only
        self.grad_noise = grad_noise
        self.grad_noise_gamma = grad_noise_gamma
        self.grad_noise_rows = grad_noise_rows
        self.attack_precision = attack_precision
        self.random_state = random_state
        self.train_options = train_options

    # -- scikit-learn conventions -------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        params = {name: getattr(self, name) for name in _INIT_PARAMS}
        params.update(self.train_options)
        return params

    def set_params(self, **params: Any) -> FMClassifier:
        for name, value in params.items():
            if name in _INIT_PARAMS:
                setattr(self, name, value)
            elif name in _TRAIN_FIELDS:
                self.train_options[name] = value
            else:
                raise ConfigError(f"unknown parameter {name!r}")
        return self

    def train_config(self) -> TrainConfig:
        """The :class:`TrainConfig` these hyperparameters describe."""
        unknown = set(self.train_options) - _TRAIN_FIELDS
        if unknown:
            raise ConfigError(f"unknown options {sorted(unknown)}; known: {sorted(_TRAIN_FIELDS)}")
        return TrainConfig(seed=self.random_state, **self.train_options)

    def make_attack(self, alpha: float | None = None, support: str | None = None) -> Attack:
        """The attack these hyperparameters describe, optionally with another alpha/support.

        The FM's inputs live in the unit box, so alpha must lie in [0, 1] for every attack.
        """
        alpha = check_step(self.alpha if alpha is None else alpha)
        return make_attack(self.attack, alpha, support or self.support)

    def objective(self) -> Objective:
        """Clean loss, or the adversarial objective when beta > 0 or adversarial_only."""
        if self.attack_precision not in PRECISIONS:
            raise ConfigError(
                f"attack_precision must be one of {list(PRECISIONS)}, got {self.attack_precision!r}"
            )
        if self.beta == 0 and not self.adversarial_only:
            AdversarialObjective(self.make_attack(), self.beta)  # validates alpha and support
            return clean_objective
        return AdversarialObjective(
            self.make_attack(), self.beta, self.adversarial_only,
            lean_dtype=PRECISIONS[self.attack_precision],
        )  # fmt: skip

    def hooks(self) -> list[StepHook]:
        """Gradient noise when asked for (validated either way)."""
        noise = GradientNoise(
            self.grad_noise, self.grad_noise_gamma, self.grad_noise_rows, self.random_state
        )
        return [noise] if self.grad_noise > 0 else []

    def describe(self) -> str:
        """A short name of the training method: plain, adversarial, gradient noise."""
        if self.adversarial_only:
            kind = f"adversarial-only ({self.attack}, alpha={self.alpha}, {self.support})"
        elif self.beta > 0:
            kind = (
                f"adversarial ({self.attack}, beta={self.beta}, alpha={self.alpha}, {self.support})"
            )
        else:
            kind = "plain"
        if self.grad_noise > 0:
            kind += f" + gradient noise (eta={self.grad_noise}, {self.grad_noise_rows} rows)"
        return kind

    # -- learning -----------------------------------------------------------------
    def fit(
        self,
        X: Any,
        y: Any,
        eval_set: tuple[Any, Any] | None = None,
        log_path: str | Path | None = None,
        **fit_options: Any,
    ) -> FMClassifier:
        """Learn the model from rows X and labels y; ``eval_set`` drives early stopping.

        ``fit_options`` go to :func:`fmadv.training.loop.fit` (objective, hooks, progress
        callbacks).
        """
        config = self.train_config()
        config.validate()
        objective, hooks = self.objective(), self.hooks()
        X = check_rows(X, allow_real_valued=self.allow_real_valued)
        y = check_labels(y, X.shape[0])
        valid = None
        if eval_set is not None:
            Xv = check_rows(eval_set[0], X.shape[1], self.allow_real_valued)
            valid = (Xv, check_labels(eval_set[1], Xv.shape[0]))
        generator = torch.Generator().manual_seed(self.random_state)
        self.model_ = FactorizationMachine(X.shape[1], self.k, self.init_std, generator)
        self.n_features_in_ = X.shape[1]
        self.history_: History = fit(
            self.model_,
            (X, y),
            valid,
            config,
            objective=objective,
            hooks=hooks,
            log_path=log_path,
            **fit_options,
        )
        return self

    def fit_stream(
        self,
        log: Any,
        eval_set: tuple[Any, Any] | None = None,
        log_path: str | Path | None = None,
        **fit_options: Any,
    ) -> FMClassifier:
        """Learn from a :class:`~fmadv.data.stream.StreamingLog` that does not fit in
        memory: batches are read, encoded and shuffled chunk by chunk."""
        config = self.train_config()
        config.validate()
        objective, hooks = self.objective(), self.hooks()
        n_features = log.feature_map.n_features
        valid = None
        if eval_set is not None:
            Xv = check_rows(eval_set[0], n_features, self.allow_real_valued)
            valid = (Xv, check_labels(eval_set[1], Xv.shape[0]))
        generator = torch.Generator().manual_seed(self.random_state)
        self.model_ = FactorizationMachine(n_features, self.k, self.init_std, generator)
        self.n_features_in_ = n_features
        self.history_ = fit_fm(
            self.model_, log.batch_source(config.batch_size), log.n_rows, valid, config,
            objective=objective, hooks=hooks, log_path=log_path, **fit_options,
        )  # fmt: skip
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Raw scores y_hat; positive means class +1."""
        self._check_fitted()
        X = check_rows(X, self.n_features_in_, self.allow_real_valued)
        return predict_scores(self.model_, X)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels in {-1, +1}."""
        return np.where(self.decision_function(X) > 0, 1.0, -1.0).astype(np.float32)

    def robustness(
        self, X: Any, y: Any, alpha: float | None = None, support: str | None = None
    ) -> dict[str, float]:
        """Flip rate, error rates and margins under this model's attack (see
        :func:`fmadv.metrics.robustness.robustness_report`)."""
        self._check_fitted()
        X = check_rows(X, self.n_features_in_, self.allow_real_valued)
        y = check_labels(y, X.shape[0])
        loss_fn = get_loss(self.train_config().loss)
        clean, attacked = attacked_scores(
            self.model_, X, y, self.make_attack(alpha, support), loss_fn
        )
        return robustness_report(y, clean, attacked)

    def to(self, device: str | torch.device) -> FMClassifier:
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
            "params": self.get_params(),
            "n_features": model.n_features,
            "feature_map": None if feature_map is None else feature_map.to_dict(),
            "history": self.history_.records,
            **(extra or {}),
        }
        tensors = {"bias": model.bias, "linear": model.linear, "factors": model.factors}
        save_tensors(path, tensors, metadata)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> FMClassifier:
        """Read a model written by :meth:`save`; ``feature_map_`` and ``metadata_`` are set."""
        tensors, header = load_tensors(path)
        try:
            estimator = cls(**header["params"])
            n_features = int(header["n_features"])
            factors = tensors["factors"]
            model = FactorizationMachine(n_features, factors.shape[1])
            model.load_state_dict(tensors)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise ModelFileError(f"{path}: inconsistent model file ({err})") from None
        estimator.model_ = model.to(resolve_device(device))
        estimator.n_features_in_ = n_features
        estimator.history_ = History(records=header.get("history", []))
        estimator.metadata_ = header
        estimator.feature_map_ = None
        if header.get("feature_map") is not None:
            from fmadv.data.features import FeatureMap

            estimator.feature_map_ = FeatureMap.from_dict(header["feature_map"])
        return estimator

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise ConfigError("this FMClassifier is not fitted yet; call fit() first")


_INIT_PARAMS = tuple(
    name
    for name, param in inspect.signature(FMClassifier.__init__).parameters.items()
    if param.kind is param.POSITIONAL_OR_KEYWORD and name != "self"
)
_TRAIN_FIELDS = set(inspect.signature(TrainConfig).parameters) - {"seed"}
