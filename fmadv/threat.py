"""Threat models: what an attacker may change, stated once for attacks and models alike.

An attack declares its :class:`ThreatModel` (a norm ball of radius ``eps`` around the
input, the coordinates that may move, and the space it acts in); a model that can
evaluate some attacks exactly, such as the factorization machine, reads the same
description and never needs to know which attack class it is serving. This module sits
below both, beside the sparse rows and the losses.

Every budget is called ``eps``, whatever its norm.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from fmadv.checks import nonnegative
from fmadv.errors import ConfigError

Bounds = tuple[float | torch.Tensor, float | torch.Tensor]
UNIT_BOX: Bounds = (0.0, 1.0)
UNBOUNDED: Bounds = (-math.inf, math.inf)

# The budget when none is given: the FM blog's FGSM step in the unit box.
DEFAULT_EPS = 0.003
SUPPORTS = ("all", "active")
NORMS = ("linf", "l2", "l1")
# How a step of the stated norm meets the input box:
# * "project": it is placed in the intersection of the ball and the box, so the norm
#   that reaches the model is the stated one wherever the box leaves room for it (a
#   step along a direction keeps that direction until coordinates meet the box's walls;
#   PGD projects onto the intersection exactly);
# * "clip": the step of the stated norm, then clipped to the box, which shortens it;
# * "none": the step of the stated norm, unclipped, as the image papers state their
#   budgets (the perturbed input may leave the box).
BOXES = ("project", "clip", "none")
# What the perturbation moves: the model's inputs, or the embeddings of the row's
# active features (APR), which have no box.
SPACES = ("inputs", "embeddings")


@dataclass(frozen=True)
class ThreatModel:
    """A ball of radius ``eps`` in ``norm`` around each row, restricted to ``support``.

    Parameters
    ----------
    norm
        ``"linf"``, ``"l2"`` or ``"l1"``, measured per row over all non-batch dimensions.
    eps
        The budget: the radius of the ball, before any clipping to the input box.
    support
        ``"all"``: every coordinate may move; ``"active"``: only the non-zero ones (on
        binary rows: only the ones, and only down).
    space
        ``"inputs"`` (inside the input box) or ``"embeddings"`` (no box).
    box
        How a step of norm eps meets the input box (:data:`BOXES`).
    """

    norm: str
    eps: float
    support: str = "all"
    space: str = "inputs"
    box: str = "clip"

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ConfigError(f"unknown norm {self.norm!r}; expected one of {NORMS}")
        check_support(self.support)
        check_box(self.box)
        if self.space not in SPACES:
            raise ConfigError(f"unknown space {self.space!r}; expected one of {SPACES}")
        if self.norm == "linf" and self.space == "inputs":
            check_linf_eps(self.eps)
        else:
            check_eps(self.eps)


def check_support(support: str) -> str:
    if support not in SUPPORTS:
        raise ConfigError(f"unknown perturbation support {support!r}; expected one of {SUPPORTS}")
    return support


def check_linf_eps(eps: float) -> float:
    """An L-inf budget in a unit-width box: 0 <= eps <= 1."""
    if not 0.0 <= eps <= 1.0:
        raise ConfigError(f"eps must lie in [0, 1] (inputs live in the unit box), got {eps}")
    return float(eps)


def check_eps(eps: float) -> float:
    """A norm budget: finite and >= 0 (an L2 or L1 radius may exceed 1)."""
    return nonnegative("the attack budget eps", eps)


def check_box(box: str) -> str:
    if box not in BOXES:
        raise ConfigError(f"unknown box convention {box!r}; expected one of {BOXES}")
    return box


def clip_to_box(x: torch.Tensor, bounds: Bounds) -> torch.Tensor:
    low, high = bounds
    return torch.clamp(x, min=low, max=high)


def row_norms(x: torch.Tensor, norm: str) -> torch.Tensor:
    """The ``norm`` of each row over all non-batch dimensions."""
    order = {"linf": math.inf, "l2": 2, "l1": 1}[norm]
    return torch.linalg.vector_norm(x.flatten(1), ord=order, dim=1)


def place_step(
    x: torch.Tensor, direction: torch.Tensor, eps: float, norm: str, bounds: Bounds, box: str
) -> torch.Tensor:
    """x moved along ``direction`` (per row; any length, 0 stays put) by a step whose
    ``norm`` is ``eps``, meeting the box as ``box`` says (see :data:`BOXES`).

    With ``"project"`` the step is clip(s * direction) for the s at which its norm is
    eps: along its direction until coordinates reach the walls, the others then carry
    on. For a sign direction in L-inf that is the clipped step itself; in L2 it is the
    steepest ascent of a linear loss over the ball and the box together. Where the box
    leaves less room than eps, every coordinate that moves ends at its wall.
    """
    x = x.detach()
    if box == "project" and norm == "linf" and _is_sign(direction):
        box = "clip"  # every coordinate with room moves by eps: the clipped step, cheaper
    if box == "project":
        low, high = _room(x, bounds)
        scale = reach_scale(direction, eps, norm, low, high)
        return x + torch.clamp(rows_like(scale, x) * direction, min=low, max=high)
    unit = direction / rows_like(row_norms(direction, norm).clamp_min(_tiny(x)), x)
    step = x + eps * unit
    return step if check_box(box) == "none" else clip_to_box(step, bounds)


def project_l2(x: torch.Tensor, z: torch.Tensor, eps: float, bounds: Bounds) -> torch.Tensor:
    """The point of the L2 ball of radius eps around x and of the box nearest to z.

    Minimising ||d - (z - x)||^2 over the box with the ball as a constraint gives, per
    coordinate, d = clip((z - x) / (1 + mu)) for one multiplier mu >= 0 per row: the
    box clip of z - x when its norm is within eps, else the shrink at which it is eps.
    """
    low, high = _room(x, bounds)
    delta = z - x
    scale = reach_scale(delta, eps, "l2", low, high).clamp(max=1.0)
    return x + torch.clamp(rows_like(scale, x) * delta, min=low, max=high)


def _room(x: torch.Tensor, bounds: Bounds) -> tuple[torch.Tensor, torch.Tensor]:
    """How far each coordinate of x may fall and rise inside the box (<= 0 and >= 0)."""
    low, high = bounds
    return (low - x).clamp(max=0).expand_as(x), (high - x).clamp(min=0).expand_as(x)


def reach_scale(
    direction: torch.Tensor, eps: float, norm: str, low: torch.Tensor, high: torch.Tensor
) -> torch.Tensor:
    """Per row, the smallest s >= 0 at which clip(s * direction, low, high) has ``norm``
    eps; where it never does, one large enough that every moving coordinate is at its
    wall (0 for a row that does not move).

    Coordinate i meets its wall at t_i = room_i / |d_i|. In L-inf the norm reaches eps
    first on a coordinate with room for it, at s = eps / |d_i|. In L2 and L1 the norm is
    (C + s^p A)^(1/p) while the set of coordinates at their walls stays the same (C their
    part, A the free ones'). Solving that for eps from s = 0 gives an s no larger than the
    answer, at which more coordinates may have reached their walls; repeating with them
    climbs to the answer, and stops exactly there once no coordinate joins: at most one
    round per coordinate, a handful in practice.
    """
    d = direction.detach().flatten(1)
    size = d.abs()
    room = torch.where(d > 0, high.flatten(1), -low.flatten(1)).to(d.dtype)
    moving = size > 0
    t = torch.where(moving, room / size.clamp_min(_tiny(d)), math.inf)
    # Out of reach: past the last finite wall every moving coordinate is at its wall.
    last_wall = torch.where(torch.isfinite(t), t, 0.0).amax(1)
    if norm == "linf":
        fits = (room >= eps) & moving
        first = torch.where(fits, eps / size.clamp_min(_tiny(d)), math.inf).amin(1)
        return torch.where(fits.any(1), first, last_wall)
    p = {"l2": 2.0, "l1": 1.0}[norm]
    wall_part = torch.where(moving, room, 0.0).pow(p)
    free_part = size.pow(p)
    scale = torch.zeros(len(d), dtype=d.dtype, device=d.device)
    walled = t <= 0
    while True:
        walls = torch.where(walled, wall_part, 0.0).sum(1)
        free = torch.where(walled, 0.0, free_part).sum(1)
        reachable = free > 0
        solved = ((eps**p - walls).clamp_min(0) / free.clamp_min(_tiny(d))) ** (1 / p)
        # Never below the last round's (rounding), and past every wall when out of reach.
        scale = torch.where(reachable, torch.maximum(solved, scale), math.inf)
        now = t <= scale[:, None]
        if torch.equal(now.sum(1), walled.sum(1)):  # the walled sets only grow
            return torch.where(reachable, scale, last_wall)
        walled = now


def _is_sign(direction: torch.Tensor) -> bool:
    """Whether every entry is -1, 0 or 1 (an L-inf steepest-ascent direction)."""
    return torch.equal(direction, torch.sign(direction))


def _tiny(x: torch.Tensor) -> float:
    return torch.finfo(x.dtype).tiny


def unit_rows(x: torch.Tensor, tiny: float | None = None) -> torch.Tensor:
    """Each row divided by its L2 norm over all non-batch dimensions (0 stays 0)."""
    tiny = torch.finfo(x.dtype).tiny if tiny is None else tiny
    return x / rows_like(x.flatten(1).norm(dim=1).clamp_min(tiny), x)


def rows_like(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-row values shaped to broadcast against a batch-first tensor like ``like``."""
    return values.view(-1, *([1] * (like.dim() - 1)))


class Attackable:
    """What the attack core asks of a model; a model overrides what differs.

    The defaults describe a model on dense inputs with class logits (the image models).
    The factorization machine overrides all of them: its batches are sparse, its one
    score becomes two class outputs, and it evaluates single steps exactly.
    """

    def dense_view(self, inputs) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
        """(x, forward) for attacks with no exact path: the batch as the dense tensor an
        attack perturbs, and the model's outputs as a function of it."""
        return inputs, self.forward_dense

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs of dense rows, differentiable in x."""
        return self(x)

    def class_outputs(self, outputs: torch.Tensor) -> torch.Tensor:
        """Per-class outputs (batch x classes) for boundary attacks: probabilities here."""
        return outputs.softmax(1)

    def class_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """The true class index of each row."""
        return labels

    def exact_attack_scores(
        self, inputs, slope: torch.Tensor, ball: ThreatModel, lean_dtype: torch.dtype | None = None
    ) -> torch.Tensor | None:
        """Outputs after one steepest-ascent step to the edge of ``ball``, given the
        loss's slope in each output; None when this model has no closed form for it."""
        return None


def steepest_ascent(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The direction of norm 1 (per row, in ``norm``) maximising <grad, u>; 0 where
    grad is 0: sign(g) for L-inf, g / ||g||_2 for L2, and for L1 the signed unit vector
    on the coordinate of largest |g|."""
    if norm == "linf":
        return torch.sign(grad)
    if norm == "l2":
        return unit_rows(grad)
    flat = grad.flatten(1)
    top = flat.abs().argmax(1, keepdim=True)
    return torch.zeros_like(flat).scatter_(1, top, torch.sign(flat.gather(1, top))).view_as(grad)


@dataclass(frozen=True)
class EditThreat:
    """Whole-feature edits of binary rows, at most ``budget`` of them per row: what a user
    who edits a profile, or a seller who edits an item's tags, can do.

    An edit either toggles one feature of ``toggles`` (a multi-valued field such as a
    history or a list of genres) or changes the value of one of the one-hot fields in
    ``choices`` (switching one feature off and another on is one edit; a row with no
    value in the field may take one). Each feature and each field is edited at most
    once.

    Parameters
    ----------
    budget
        The number of edits, b >= 0.
    toggles
        Features that may be toggled (sorted, distinct).
    choices
        (offset, size) of each one-hot field whose value may change.
    """

    budget: int
    toggles: tuple[int, ...] = ()
    choices: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget < 0:
            raise ConfigError(f"the edit budget must be an integer >= 0, got {self.budget!r}")
        toggles = tuple(sorted(set(int(j) for j in self.toggles)))
        object.__setattr__(self, "toggles", toggles)
        spans = sorted((int(offset), int(size)) for offset, size in self.choices)
        object.__setattr__(self, "choices", tuple(spans))
        taken = set(toggles)
        for offset, size in spans:
            if size < 2 or offset < 0:
                raise ConfigError(f"a one-hot field needs >= 2 values at offset >= 0, got {size}")
            if taken & set(range(offset, offset + size)):
                raise ConfigError("a feature belongs to at most one editable field")
            taken |= set(range(offset, offset + size))
        if not taken:
            raise ConfigError("the attacker may edit no feature: give toggles or choices")

    @property
    def n_edits(self) -> int:
        """The number of distinct single edits: each toggle, each value of each field."""
        return len(self.toggles) + sum(size for _, size in self.choices)
