"""The factorization machine trained to rank items for users from implicit feedback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fmadv.checks import integer
from fmadv.data.dataset import Dataset, Splits
from fmadv.data.interactions import Interactions
from fmadv.errors import ConfigError
from fmadv.estimators.base import default
from fmadv.estimators.fm import FMEstimator
from fmadv.losses import GROUP_LOSSES, MARGIN_LOSSES
from fmadv.models.fm import FactorizationMachine
from fmadv.training.fm import FMPenalty
from fmadv.training.loop import TrainConfig
from fmadv.training.objectives import AdversarialConfig
from fmadv.training.ranking import GroupBatches, HeldOutRanking, NegativeSampler
from fmadv.training.regularizers import GradientNoise

POSITIVES = ("liked", "seen")
# The ranking metrics a fitted ranker reports on each held-out split.
REPORTED = ("ndcg", "recall", "hit_rate", "map")


class FMRanker(FMEstimator):
    """A factorization machine that ranks items for users, trained on implicit feedback.

    Each epoch visits every positive (user, item) pair of the training interactions
    once, each with ``n_negatives`` items drawn afresh from the catalogue (never one the
    user liked), and minimises a group loss (BPR, sampled softmax) or a margin loss over
    those rows. An adversary of the ranker is the user: it moves the user's features
    once for the positive and all of its negatives. The
    epoch kept is the one with the best validation NDCG@``eval_k``. User and item side
    features enter the rows, so a user or item unseen in training still gets scores
    from its features. Scores, model files, adversarial training and gradient noise are
    those of every FM estimator; :class:`~fmadv.recommend.fm.FMRecommender` ranks with
    it.

    Parameters
    ----------
    n_negatives
        Negative rows per positive.
    negative_sampling
        ``"uniform"`` over the catalogue, or ``"popularity"`` (in proportion to each
        item's positives plus one: popular items become harder negatives).
    positives
        ``"liked"``: the training pairs labelled +1 (MovieLens: rated >= the threshold);
        ``"seen"``: every training pair, whatever its label.
    eval_k
        List length of the validation NDCG that picks the epoch, and of the reported
        ranking metrics.
    loss
        A group loss over each positive and its negatives (``"bpr"``, pairwise;
        ``"softmax"``, the sampled softmax) or a margin loss (``"logistic"``,
        ``"hinge"``, ``"squared"``) on +1 / -1 rows.
    batch_size
        Positives per batch (each with its negatives).
    budget, edit_fields, certified
        ``attack="flips"``: each user of a batch edits at most ``budget`` whole features
        of its ``edit_fields`` (user fields), the edits that raise the loss of all of
        its rows most; ``certified`` trains on the certified margin instead.
    The others
        As in :class:`~fmadv.estimators.fm.FMClassifier`.
    """

    def __init__(
        self,
        *,
        n_negatives: int = 8,
        negative_sampling: str = "uniform",
        positives: str = "liked",
        eval_k: int = 10,
        n_factors: int = 64,
        init_std: float = default(FactorizationMachine, "init_std"),
        allow_real_valued: bool = False,
        loss: str = "logistic",
        optimizer: str = default(TrainConfig, "optimizer"),
        lr: float = 0.005,
        epochs: int = 80,
        batch_size: int = 1024,
        reg_bias: float = default(FMPenalty, "reg_bias"),
        reg_linear: float = 1e-2,
        reg_factors: float = 1e-2,
        patience: int = 10,
        monitor: str = "ndcg",
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
        grad_noise: float = default(GradientNoise, "eta"),
        grad_noise_gamma: float = default(GradientNoise, "gamma"),
        grad_noise_rows: str = default(GradientNoise, "rows"),
        random_state: int = 0,
    ):
        for name, value in locals().items():
            if name not in ("self", "__class__"):
                setattr(self, name, value)

    def validate(self) -> None:
        super().validate()
        if self.loss not in {**GROUP_LOSSES, **MARGIN_LOSSES}:
            known = sorted({**GROUP_LOSSES, **MARGIN_LOSSES})
            raise ConfigError(f"the ranker trains with one of {known}, not {self.loss!r}")
        if self.positives not in POSITIVES:
            raise ConfigError(f"positives must be one of {POSITIVES}, got {self.positives!r}")
        integer("eval_k", self.eval_k, 1)
        self.sampler()

    def sampler(self) -> NegativeSampler:
        return NegativeSampler(self.n_negatives, self.negative_sampling)

    def fit(
        self,
        interactions: Interactions,
        valid: Dataset | None = None,
        log_path: str | Path | None = None,
        **fit_options: Any,
    ) -> FMRanker:
        """Learn to rank from the training ``interactions``; ``valid`` (labelled rows held
        out from training, +1 = relevant) picks the epoch by NDCG@k.

        ``fit_options`` go to :func:`fmadv.training.loop.fit_loop` (progress callbacks,
        checkpoint, resume, callbacks).
        """
        self.validate()
        if interactions.user_features is None:
            raise ConfigError("the ranker needs interactions with a feature map")
        user_rows, item_rows = interactions.user_features, interactions.item_features
        pairs = interactions.liked if self.positives == "liked" else interactions.seen
        batches = GroupBatches(
            user_rows, item_rows, pairs, self.sampler(), self.batch_size,
            interactions.user_columns,
        )  # fmt: skip
        evaluate = None
        if valid is not None:
            relevant = interactions.relevant(valid)
            evaluate = HeldOutRanking(
                user_rows, item_rows, interactions.seen, relevant, self.eval_k
            )
        self.feature_map_ = interactions.feature_map
        n_features = interactions.feature_map.n_features
        rows = batches.n_groups * (1 + self.n_negatives)
        if self.adversarial_config().edits:
            others = [name for name in self.edit_fields if name not in interactions.user_fields]
            if others:
                raise ConfigError(
                    f"the ranker's adversary edits user fields "
                    f"({', '.join(interactions.user_fields)}), not {', '.join(others)}"
                )
        fields = interactions.feature_map
        return self._train(batches, rows, n_features, evaluate, log_path, fit_options, fields)

    def fit_splits(self, splits: Splits, **fit_options: Any) -> FMRanker:
        """:meth:`fit` on the interactions of ``splits.train``, validated on ``splits.valid``."""
        return self.fit(Interactions.from_splits(splits), valid=splits.valid, **fit_options)

    def report(self, splits: Splits) -> dict[str, dict[str, float]]:
        """NDCG, recall, hit rate and MAP at ``eval_k`` on the validation and test splits:
        each user with a relevant held-out item ranks the whole catalogue, training
        pairs filtered out."""
        self._check_fitted()
        interactions = Interactions.from_splits(splits)
        results = {}
        for name in ("valid", "test"):
            held_out = getattr(splits, name)
            if held_out is None:
                continue
            ranking = HeldOutRanking(
                interactions.user_features, interactions.item_features, interactions.seen,
                interactions.relevant(held_out), self.eval_k, REPORTED,
            )  # fmt: skip
            scores = ranking(self.model_)
            results[name] = {f"{metric}@{self.eval_k}": scores[metric] for metric in REPORTED}
            results[name]["users"] = len(ranking.users)
        return results
