"""The attack interface shared by the factorization machine and the image models.

An attack gets the inputs, a :class:`Target` (what it pushes against) and the box the
inputs must stay in. It never knows which model, loss or box: the same attack serves a
hinge FM on binary rows in [0, 1] and a softmax CNN on mean-subtracted pixels.

Each attack declares its :class:`~fmadv.threat.ThreatModel`, and how its step meets the
input box (``box``: projected into the ball and the box, clipped, or not at all; see
:data:`~fmadv.threat.BOXES`). An attack that is one
steepest-ascent step of the linearised loss to the edge of its ball says so through
:meth:`Attack.single_step`; a model that can evaluate such a step exactly (the FM) then
does, and every other attack runs on dense rows (see :mod:`fmadv.attacks.core`).

Attacks register themselves with :func:`register`; the registry is the one list of
attack names (the CLI's choices come from it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch

from fmadv.errors import ConfigError
from fmadv.threat import (
    DEFAULT_EPS,
    UNIT_BOX,
    Bounds,
    ThreatModel,
    place_step,
    steepest_ascent,
)

RowLoss = Callable[[torch.Tensor], torch.Tensor]
# Maps inputs to per-class outputs (batch x classes), for attacks that need more than
# the loss (Huang et al.'s minimal-step attack linearises them).
Outputs = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Target:
    """What an attack pushes against.

    Parameters
    ----------
    loss
        ``loss(x)`` returns one loss per row of x: what gradient attacks increase.
    outputs
        ``outputs(x)`` returns per-class outputs (batch x classes), for attacks that
        aim at a decision boundary; None when the model has none.
    labels
        True class index of each row, for ``outputs``.
    """

    loss: RowLoss
    outputs: Outputs | None = None
    labels: torch.Tensor | None = None

    @classmethod
    def of(cls, target: Target | RowLoss) -> Target:
        """A :class:`Target` as it is, or a bare per-row loss wrapped in one."""
        return target if isinstance(target, Target) else cls(target)


class Attack(ABC):
    """A perturbation that increases a loss, inside a threat model's ball and a box.

    Subclasses are dataclasses with at least ``eps`` (the budget), ``support`` and
    ``box`` (how a step meets the input box, :data:`~fmadv.threat.BOXES`).
    """

    name: ClassVar[str] = ""
    eps: float
    support: str
    box: str

    @property
    def threat(self) -> ThreatModel:
        """The ball this attack stays in, and how it meets the box."""
        return ThreatModel(getattr(self, "norm", "linf"), self.eps, self.support, box=self.box)

    def single_step(self) -> ThreatModel | None:
        """The ball when the attack is one steepest-ascent step of the linearised loss to
        its edge (what a model may evaluate in closed form); None otherwise."""
        return None

    @abstractmethod
    def perturb(
        self, x: torch.Tensor, target: Target | RowLoss, bounds: Bounds = UNIT_BOX
    ) -> torch.Tensor:
        """The perturbed inputs.

        Parameters
        ----------
        x
            Inputs, batch first.
        target
            A :class:`Target`, or just its per-row loss.
        bounds
            (low, high) of the valid input box, floats or tensors broadcastable to x.
        """


ATTACKS: dict[str, type[Attack]] = {}
# Earlier names that scripts may still use.
ALIASES = {"alpha": "minimal-step"}


def register(cls: type[Attack]) -> type[Attack]:
    """Class decorator: add an attack to :data:`ATTACKS` under its ``name``."""
    if not cls.name or cls.name in ATTACKS:
        raise ValueError(f"attack {cls.__name__} needs a unique name, got {cls.name!r}")
    ATTACKS[cls.name] = cls
    return cls


def input_attacks() -> list[str]:
    """The registered attacks that move a model's inputs (not its embeddings)."""
    return [name for name, cls in ATTACKS.items() if cls().threat.space == "inputs"]


def make_attack(name: str, eps: float, support: str = "all", **options) -> Attack:
    """The registered attack ``name`` with budget ``eps`` over ``support``; ``options``
    set its other fields (``norm``, ``steps``...)."""
    name = ALIASES.get(name, name)
    if name not in ATTACKS:
        raise ConfigError(f"unknown attack {name!r}; expected one of {sorted(ATTACKS)}")
    try:
        return ATTACKS[name](eps=eps, support=support, **options)
    except TypeError as err:
        raise ConfigError(f"bad options for attack {name!r}: {err}") from None


def input_gradient(x: torch.Tensor, loss: RowLoss) -> torch.Tensor:
    """Gradient of the summed row losses with respect to the inputs."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(loss(x).sum(), x)
    return grad


def steepest_step(
    x: torch.Tensor,
    loss: RowLoss,
    direction_norm: str,
    ball: ThreatModel,
    bounds: Bounds,
    box: str,
) -> torch.Tensor:
    """One steepest-ascent step (in ``direction_norm``) of the linearised loss, of
    ``ball``'s norm and radius, meeting the box as ``box`` says; on ``support="active"``
    only the non-zero coordinates move (and the norm of the step is taken over those)."""
    grad = input_gradient(x, loss)
    if ball.support == "active":
        grad = grad * (x != 0)
    direction = steepest_ascent(grad, direction_norm)
    return place_step(x, direction, ball.eps, ball.norm, bounds, box)


@dataclass
class SteepestStep(Attack):
    """One steepest-ascent step of the linearised loss in the subclass's ``norm``: the
    single-step attacks' shared body.

    Parameters
    ----------
    eps
        The budget: the norm of the step (in ``measure``).
    support
        ``"all"``: every coordinate may move; ``"active"``: only the non-zero ones (the
        norm of the step is taken over those).
    box
        How the step meets the input box: ``"project"`` (the stated norm reaches the
        model wherever the box leaves room), ``"clip"`` or ``"none"``
        (:data:`~fmadv.threat.BOXES`).
    measure
        The norm eps is stated in; None: the attack's own. Huang et al. state their sign
        step (Adv_Loss_Sign) by its L2 norm: ``FGSM(1.5, measure="l2")``.
    """

    eps: float = DEFAULT_EPS
    support: str = "all"
    box: str = "project"
    measure: str | None = None

    def __post_init__(self) -> None:
        self.eps = self.threat.eps  # validates eps, the measure, the support and the box

    @property
    def threat(self) -> ThreatModel:
        return ThreatModel(self.measure or self.norm, self.eps, self.support, box=self.box)

    def single_step(self) -> ThreatModel | None:
        # A step measured in another norm (the sign step of an L2 size) is not the
        # steepest ascent of its ball: no model has a closed form for it.
        return self.threat if self.measure in (None, self.norm) else None

    def perturb(
        self, x: torch.Tensor, target: Target | RowLoss, bounds: Bounds = UNIT_BOX
    ) -> torch.Tensor:
        loss = Target.of(target).loss
        return steepest_step(x, loss, self.norm, self.threat, bounds, self.box)
