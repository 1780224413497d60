"""Training objectives: what one step minimises, for the FM and the image models alike.

* clean: mean loss on the rows (:func:`fmadv.training.loop.clean_objective`);
* mixed: clean_weight * loss(x) + beta * loss(x_adv), x_adv regenerated from the current
  model at every step. The FM blog uses 1 and beta = 0.5; Goodfellow et al. (2015) use
  a and 1 - a;
* adversarial only: loss(x_adv) alone (Nokland 2015; Huang et al. 2015, "learning with
  an adversary", LWA);
* representation: the same with the perturbation applied to a hidden representation
  instead of the inputs (Huang et al.'s LWA_Rep);
* virtual adversarial: KL divergence between the predictions at x and at x + r_adv, r_adv
  found by power iteration, no labels needed (Miyato et al. 2016).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from fmadv.attacks.base import Attack, make_attack
from fmadv.attacks.core import attacked_forward, perturb_dense
from fmadv.checks import integer, nonnegative
from fmadv.errors import ConfigError
from fmadv.evaluation.edits import edit_threat
from fmadv.evaluation.robustness import on_segment, worst_step
from fmadv.losses import LossFn
from fmadv.models.fm_attack import PRECISIONS
from fmadv.models.fm_edits import edit_certificate, greedy_edits, greedy_pair_edits
from fmadv.sparse import PairBatch, SparseBatch
from fmadv.threat import DEFAULT_EPS, UNBOUNDED, UNIT_BOX, Bounds, EditThreat, unit_rows
from fmadv.training.loop import Objective, clean_objective
from fmadv.training.seeded import SeededGenerator

#: The name of whole-feature edits among the training attacks.
EDITS = "flips"


def _check_weights(beta: float, clean_weight: float) -> None:
    nonnegative("beta", beta)
    nonnegative("clean weight", clean_weight)


@dataclass
class AdversarialObjective:
    """clean_weight * loss(x) + beta * loss(x_adv), or loss(x_adv) alone.

    Parameters
    ----------
    attack
        How x_adv is made from the current model; its gradient is taken with respect to
        the same loss the model is trained on.
    beta
        Weight of the adversarial term, >= 0.
    adversarial_only
        Train on the perturbed rows only (LWA).
    clean_weight
        Weight of the clean term (Goodfellow et al.'s a; 1 in the FM blog).
    bounds
        Input box of dense inputs (the FM's binary rows live in [0, 1]).
    lean_dtype
        Type of the FM attack's mask product (``torch.bfloat16`` or None for float32).
    """

    attack: Attack
    beta: float = 0.5
    adversarial_only: bool = False
    clean_weight: float = 1.0
    bounds: Bounds = UNIT_BOX
    lean_dtype: torch.dtype | None = None

    def __post_init__(self) -> None:
        _check_weights(self.beta, self.clean_weight)

    def __call__(
        self, model: nn.Module, inputs, labels: torch.Tensor, loss_fn: LossFn
    ) -> torch.Tensor:
        adv, scores = attacked_forward(
            model, inputs, labels, loss_fn, self.attack, bounds=self.bounds,
            keep_clean=not self.adversarial_only, lean_dtype=self.lean_dtype,
        )  # fmt: skip
        adversarial = loss_fn(adv, labels).mean()
        if self.adversarial_only:
            return adversarial
        return self.clean_weight * loss_fn(scores, labels).mean() + self.beta * adversarial


@dataclass
class LineSearchObjective:
    """loss(x) + beta * loss(x + a* e): e the attack's single step at budget 1, a* the
    exact worst step of [0, eps] for each row's label.

    Trained against the full step, an FM learns to push the attacked score past the
    boundary on the right side (gradient masking): the step overshoots. Along e the
    FM's score is exactly a quadratic in a (a binary row's step of length <= 1 never
    meets the box's walls), so its scores at a = 0, 1/2 and 1 give the score at a* by
    interpolation, differentiable in the parameters with the points held fixed. For
    the FM's single steps on rows moving on their own (not a ranking batch).
    """

    attack: Attack
    beta: float = 0.5
    lean_dtype: torch.dtype | None = None

    def __post_init__(self) -> None:
        _check_weights(self.beta, 1.0)
        if self.attack.single_step() is None:
            raise ConfigError(f"the line search follows a single step, not {self.attack.name}")

    def __call__(self, model, inputs, labels: torch.Tensor, loss_fn: LossFn) -> torch.Tensor:
        if isinstance(inputs, PairBatch):
            raise ConfigError("the line search trains FMs on labelled rows, not the ranker")
        scores = model(inputs)
        half, full = (
            attacked_forward(
                model, inputs, labels, loss_fn, replace(self.attack, eps=step),
                clean=scores, lean_dtype=self.lean_dtype,
            ).adversarial
            for step in (0.5, 1.0)
        )  # fmt: skip
        with torch.no_grad():
            a = worst_step(scores, half, full, labels, self.attack.eps)
        worst = on_segment(scores, half, full, a)
        return loss_fn(scores, labels).mean() + self.beta * loss_fn(worst, labels).mean()


@dataclass
class EditObjective:
    """loss(x) + beta * loss(x_e), x_e the FM's rows after the greedy attack of
    ``threat.budget`` whole-feature edits against each row's label
    (:func:`~fmadv.models.fm_edits.greedy_edits`), made from the current model at every
    step; or loss(x_e) alone. On a ranking batch each user's edits raise the loss of all
    of its rows at once (:func:`~fmadv.models.fm_edits.greedy_pair_edits`)."""

    threat: EditThreat
    beta: float = 0.5
    adversarial_only: bool = False

    def __post_init__(self) -> None:
        _check_weights(self.beta, 1.0)

    def __call__(self, model, inputs, labels: torch.Tensor, loss_fn: LossFn):
        if isinstance(inputs, PairBatch):  # a ranking batch: the users edit their profiles
            edited = greedy_pair_edits(model, inputs, labels, loss_fn, self.threat).rows
            attacked = inputs.with_users(edited)
        else:
            edited = greedy_edits(model, inputs.csr, -labels, self.threat).rows
            attacked = SparseBatch(edited, inputs.device)
        adversarial = loss_fn(model(attacked), labels).mean()
        if self.adversarial_only:
            return adversarial
        return loss_fn(model(inputs), labels).mean() + self.beta * adversarial


@dataclass
class CertifiedEditObjective:
    """loss(x) + beta * loss at the certified margin: each score moved against its label
    by the certificate's bound on ``threat.budget`` edits
    (:func:`~fmadv.models.fm_edits.edit_certificate`, differentiable). A row whose
    certified margin is positive keeps its prediction under any such edits, so this
    trains for certificates rather than against one attack."""

    threat: EditThreat
    beta: float = 0.5

    def __post_init__(self) -> None:
        _check_weights(self.beta, 1.0)

    def __call__(self, model, inputs, labels: torch.Tensor, loss_fn: LossFn):
        scores = model(inputs)
        # A ranking batch: each row on its own (a user's edits move all of its rows at
        # once, so the rows' separate bounds bound the group loss too).
        rows = inputs.to_rows().csr if isinstance(inputs, PairBatch) else inputs.csr
        reach = edit_certificate(model, rows, -labels, self.threat, grad=True)
        certified = loss_fn(scores - labels * reach, labels).mean()
        return loss_fn(scores, labels).mean() + self.beta * certified


@dataclass
class AdversarialConfig:
    """What adversarial training adds to a model's training: how x_adv is made and how
    much it weighs. The defaults train a plain model (beta = 0).

    Parameters
    ----------
    beta
        Weight of the adversarial loss: loss(x) + beta * loss(x_adv); 0: plain training.
    eps
        Budget of the attack (FGSM: the L-inf radius).
    attack
        A registered attack name (see :data:`fmadv.attacks.ATTACKS`).
    support
        ``"all"``: every feature may move; ``"active"``: only the row's active ones.
    box
        How the attack's step meets the input box (:data:`~fmadv.threat.BOXES`). On
        binary rows the projected sign step is the clipped one; the projected L2 step
        moves only coordinates that can move, by the full norm.
    adversarial_only
        Train on loss(x_adv) alone (learning with an adversary).
    attack_precision
        ``"float32"`` or ``"bfloat16"``: the type of the FM's attack mask product.
    line_search
        Train against the exact worst point of the segment from x to the attack's
        single step (:class:`LineSearchObjective`) rather than the step itself.
    budget, edit_fields, certified
        ``attack="flips"``: at most ``budget`` edits of whole features of the named
        fields per row (:data:`EDITS`; eps and support do not apply); ``certified``
        trains on the certified margin (:class:`CertifiedEditObjective`) instead of
        the greedy attack's rows.
    """

    beta: float = 0.0
    eps: float = DEFAULT_EPS
    attack: str = "fgsm"
    support: str = "all"
    box: str = "project"
    adversarial_only: bool = False
    attack_precision: str = "float32"
    budget: int = 1
    edit_fields: tuple[str, ...] = ()
    certified: bool = False
    line_search: bool = False

    @property
    def is_plain(self) -> bool:
        return self.beta == 0 and not self.adversarial_only

    def make_attack(self, eps: float | None = None, support: str | None = None) -> Attack:
        """The attack, optionally at another budget or support."""
        eps = self.eps if eps is None else eps
        return make_attack(self.attack, eps, support or self.support, box=self.box)

    @property
    def edits(self) -> bool:
        """Whether x_adv comes from whole-feature edits rather than an input attack."""
        return self.attack == EDITS

    def check_edits(self) -> None:
        """The checks of whole-feature edits that need no data."""
        integer("budget", self.budget, 1)
        if self.certified and self.adversarial_only:
            raise ConfigError("the certified margin trains beside the clean loss, not alone")
        if not self.edit_fields:
            raise ConfigError("--attack flips needs the fields the attacker edits")

    def edit_objective(self, feature_map) -> Objective:
        """The clean objective, or :class:`EditObjective` over ``feature_map``'s fields."""
        self.check_edits()
        if self.is_plain:
            return clean_objective
        if feature_map is None:
            raise ConfigError(
                "--attack flips edits named fields: train on a dataset with a feature map"
            )
        threat = edit_threat(feature_map, self.edit_fields, self.budget)
        if self.certified:
            return CertifiedEditObjective(threat, self.beta)
        return EditObjective(threat, self.beta, self.adversarial_only)

    def objective(self, bounds: Bounds = UNIT_BOX) -> Objective:
        """The clean objective, or :class:`AdversarialObjective`; every option is checked
        either way, so that a bad one fails before any data is read. Edits name fields of
        the data: :meth:`edit_objective`."""
        if self.edits:
            raise ConfigError("whole-feature edits need the data's feature map")
        if self.attack_precision not in PRECISIONS:
            raise ConfigError(
                f"attack_precision must be one of {list(PRECISIONS)}, got {self.attack_precision!r}"
            )
        lean_dtype = PRECISIONS[self.attack_precision]
        if self.line_search:
            if self.adversarial_only:
                raise ConfigError("the line search trains beside the clean loss, not alone")
            searched = LineSearchObjective(self.make_attack(), self.beta, lean_dtype)
            return clean_objective if self.is_plain else searched
        adversarial = AdversarialObjective(
            self.make_attack(), self.beta, self.adversarial_only, bounds=bounds,
            lean_dtype=lean_dtype,
        )  # fmt: skip
        return clean_objective if self.is_plain else adversarial

    def describe(self) -> str:
        """plain, adversarial or adversarial-only, with the attack's settings."""
        if self.is_plain:
            return "plain"
        if self.edits:
            edits = "edit" if self.budget == 1 else "edits"
            settings = f"{self.budget} {edits} of {', '.join(self.edit_fields)}"
            settings += ", certified margin" if self.certified else ""
            kind = "adversarial-only" if self.adversarial_only else f"adversarial, beta={self.beta}"
            return f"{kind} ({settings})"
        extras = ", line search" if self.line_search else ""
        extras += "" if self.box == "project" else f", box {self.box}"
        if self.adversarial_only:
            return f"adversarial-only ({self.attack}, eps={self.eps}, {self.support}{extras})"
        return (
            f"adversarial ({self.attack}, beta={self.beta}, eps={self.eps}, {self.support}{extras})"
        )


@dataclass
class RepresentationAdversarialObjective:
    """Adversarial training on a hidden representation (Huang et al.'s LWA_Rep).

    The model runs up to block ``split`` (``model.front``); the attack perturbs that
    representation against the rest of the network (``model.back``), with no box. The
    perturbation is a constant, so gradients reach the layers before the split too.

    Parameters
    ----------
    attack
        The attack on the representation (its budget is in representation units).
    split
        Block index of the split; None: the model's default (before its classifier).
    beta, adversarial_only, clean_weight
        As in :class:`AdversarialObjective`; LWA_Rep trains on the perturbed points only.
    """

    attack: Attack
    split: int | None = None
    beta: float = 1.0
    adversarial_only: bool = True
    clean_weight: float = 1.0

    def __post_init__(self) -> None:
        _check_weights(self.beta, self.clean_weight)

    def __call__(
        self, model: nn.Module, inputs, labels: torch.Tensor, loss_fn: LossFn
    ) -> torch.Tensor:
        hidden = model.front(inputs, self.split)

        def head(h: torch.Tensor) -> torch.Tensor:
            return model.back(h, self.split)

        moved = perturb_dense(self.attack, head, hidden.detach(), labels, loss_fn, UNBOUNDED)
        adversarial = loss_fn(head(hidden + (moved - hidden.detach())), labels).mean()
        if self.adversarial_only:
            return adversarial
        return self.clean_weight * loss_fn(head(hidden), labels).mean() + self.beta * adversarial


def _kl_rows(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row from log-probabilities."""
    return F.kl_div(log_q, log_p, log_target=True, reduction="none").sum(1)


@dataclass
class VirtualAdversarialObjective:
    """Virtual adversarial training (Miyato, Maeda, Koyama, Nakae, Ishii 2016).

    loss = mean supervised loss over the labelled rows + weight * mean KL(p(x) || p(x + r)),
    r = eps * d / ||d||, d found by ``iterations`` power iterations from a random
    direction scaled by ``xi``. Rows labelled -1 count as unlabelled: they contribute the
    smoothness term only, so a semi-supervised run needs no labels for most rows. r is
    not clipped to the input box: it measures local smoothness, not a realisable input.

    Parameters
    ----------
    eps
        L2 norm of the virtual adversarial perturbation.
    xi
        Scale of the finite-difference step of the power iteration.
    iterations
        Power iterations (1 in the paper's experiments).
    weight
        Weight of the smoothness term.
    seed
        Seed of the random starting directions.
    """

    eps: float = 2.0
    xi: float = 1e-6
    iterations: int = 1
    weight: float = 1.0
    seed: int = 0
    _random: SeededGenerator = field(init=False, repr=False)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The generator's state, so that a resumed run draws the same numbers."""
        return self._random.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self._random.load_state_dict(state)

    def __post_init__(self) -> None:
        self._random = SeededGenerator(self.seed)
        if not self.eps >= 0 or not self.xi > 0 or self.iterations < 1 or not self.weight >= 0:
            raise ConfigError("VAT needs eps >= 0, xi > 0, iterations >= 1 and weight >= 0")

    def __call__(
        self, model: nn.Module, inputs, labels: torch.Tensor, loss_fn: LossFn
    ) -> torch.Tensor:
        logits = model(inputs)
        labelled = labels >= 0
        supervised = logits.new_zeros(())
        if labelled.any():
            supervised = loss_fn(logits[labelled], labels[labelled]).mean()
        target = logits.detach().log_softmax(1)
        noise = torch.randn(
            inputs.shape, generator=self._random.on(inputs.device), device=inputs.device
        )
        direction = unit_rows(noise, 1e-12)
        for _ in range(self.iterations):
            probe = (self.xi * direction).requires_grad_(True)
            divergence = _kl_rows(target, model(inputs + probe).log_softmax(1)).sum()
            (gradient,) = torch.autograd.grad(divergence, probe)
            direction = unit_rows(gradient.detach(), 1e-12)
        smoothness = _kl_rows(target, model(inputs + self.eps * direction).log_softmax(1)).mean()
        return supervised + self.weight * smoothness
