"""Projected gradient ascent on the loss, in a norm ball, clipped to the input box.

Madry, Makelov, Schmidt, Tsipras and Vladu, "Towards Deep Learning Models Resistant to
Adversarial Attacks", ICLR 2018. Threat model: the perturbation lies in the L-inf or L2
ball of radius ``eps`` around x (per row, over all non-batch dimensions) and the
result in the input box; the attacker may query the loss's gradient many times.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fmadv.attacks.base import Attack, RowLoss, Target, register
from fmadv.checks import integer, nonnegative
from fmadv.errors import ConfigError
from fmadv.threat import (
    DEFAULT_EPS,
    UNBOUNDED,
    UNIT_BOX,
    Bounds,
    clip_to_box,
    project_l2,
    rows_like,
    steepest_ascent,
)

NORMS = ("linf", "l2")


@register
@dataclass
class PGD(Attack):
    """Iterate x <- proj(x + step_size * ascent(grad loss)).

    The ascent direction is sign(g) for ``norm="linf"`` and g / ||g||_2 for
    ``norm="l2"``. The projection follows ``box``: ``"project"`` onto the intersection
    of the ball of radius ``eps`` around the clean x and the box (exact; in L-inf it is
    the ball's clamp then the box's); ``"clip"`` onto the ball, then the box clip (in
    L2 that can land short of the nearest point); ``"none"`` onto the ball alone.

    Parameters
    ----------
    eps
        Radius of the ball. In [0, 1] for L-inf (the inputs live in a unit-width
        box); any number >= 0 for L2.
    support
        ``"all"``: every coordinate may move; ``"active"``: only the non-zero ones (on
        binary rows: only the ones, and only down), as for FGSM.
    norm
        ``"linf"`` or ``"l2"``.
    steps
        Gradient steps per restart, >= 1.
    step_size
        Length of one step (in the ball's norm); ``None``: 2.5 * eps / steps, Madry et
        al.'s choice, long enough to cross the ball and come back.
    random_start
        Start each restart at a uniformly random point of the ball (clipped to the box)
        instead of at x.
    restarts
        Independent random starts, >= 1; each row keeps its best. Without a random
        start all restarts would be the same path, so only one runs.
    box
        How the iterates meet the input box (:data:`~fmadv.threat.BOXES`).
    seed
        Seed of the random starts: ``perturb`` draws them from a fresh generator, so
        the same inputs and model give the same result on every call.

    Notes
    -----
    Each row returns the point of highest loss among all points the attack evaluated
    (the clean row, every iterate of every restart, and each final iterate), not
    necessarily the last iterate: the sign step oscillates near the ball's corners and
    its last iterate can be weaker than an earlier one. So the returned loss is never
    below the clean row's loss nor below the last iterate's, at the price of one extra
    forward pass per restart. ``loss_fn`` must treat rows independently (a model in
    eval mode): the per-row choice compares rows of one batched call.
    """

    eps: float = DEFAULT_EPS
    support: str = "all"
    norm: str = "linf"
    steps: int = 10
    step_size: float | None = None
    random_start: bool = True
    restarts: int = 1
    seed: int = 0
    box: str = "project"
    name = "pgd"

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ConfigError(f"unknown norm {self.norm!r} for PGD; expected one of {NORMS}")
        self.eps = self.threat.eps  # validates eps for the norm, the support and the box
        integer("steps", self.steps, 1)
        integer("restarts", self.restarts, 1)
        if self.step_size is not None:
            nonnegative("step_size (or None)", self.step_size)

    @property
    def effective_step_size(self) -> float:
        """``step_size``, or 2.5 * eps / steps when it is None."""
        if self.step_size is None:
            return 2.5 * self.eps / self.steps
        return float(self.step_size)

    def perturb(
        self, x: torch.Tensor, target: Target | RowLoss, bounds: Bounds = UNIT_BOX
    ) -> torch.Tensor:
        """The point of highest loss found in the ball around each row, inside the box.

        Parameters
        ----------
        x
            Inputs, batch first, inside the box.
        target
            A :class:`~fmadv.attacks.base.Target` or a per-row loss: ``loss(x)``
            returns one loss per row, what the attack increases.
        bounds
            (low, high) of the valid input box, floats or tensors broadcastable to x.

        Returns
        -------
        torch.Tensor
            The perturbed inputs, shape of x.
        """
        loss_fn = Target.of(target).loss
        x = x.detach()
        bounds = UNBOUNDED if self.box == "none" else bounds
        movable = (x != 0).to(x.dtype) if self.support == "active" else None
        step_size = self.effective_step_size
        generator = torch.Generator(device=x.device).manual_seed(int(self.seed))
        best = clip_to_box(x, bounds)
        best_loss = None
        if self.random_start:
            # The clean row is a point of the ball too: the attack never returns a
            # row it made less adversarial than it found it.
            with torch.no_grad():
                best_loss = _row_losses(loss_fn(best), len(x))
        for _ in range(self.restarts if self.random_start else 1):
            x_adv = best if not self.random_start else self._random_start(x, movable, generator)
            x_adv = clip_to_box(x_adv, bounds)
            for _ in range(self.steps):
                loss, grad = _loss_and_gradient(x_adv, loss_fn)
                best, best_loss = _keep_best(x_adv, loss, best, best_loss)
                if movable is not None:
                    grad = grad * movable
                x_adv = self._project(
                    x, x_adv + step_size * steepest_ascent(grad, self.norm), bounds
                )
            with torch.no_grad():
                loss = _row_losses(loss_fn(x_adv), len(x))
            best, best_loss = _keep_best(x_adv, loss, best, best_loss)
        return best

    def _project(self, x: torch.Tensor, z: torch.Tensor, bounds: Bounds) -> torch.Tensor:
        """z pulled back into the ball around x and the box."""
        if self.norm == "l2" and self.box == "project":
            return project_l2(x, z, self.eps, bounds)
        delta = z - x
        if self.norm == "linf":
            delta = delta.clamp(-self.eps, self.eps)
        else:
            norms = _l2(delta)
            scale = (self.eps / norms.clamp_min(_tiny(delta))).clamp(max=1.0)
            delta = delta * rows_like(scale, delta)
        return clip_to_box(x + delta, bounds)

    def _random_start(
        self, x: torch.Tensor, movable: torch.Tensor | None, generator: torch.Generator
    ) -> torch.Tensor:
        """x plus a point drawn uniformly from the ball (restricted to the support)."""
        if self.norm == "linf":
            noise = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            delta = (2 * noise - 1) * self.eps
            return x + (delta if movable is None else delta * movable)
        direction = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        if movable is not None:
            direction = direction * movable
        # Uniform in the d-ball: a uniform direction and a radius eps * U^(1/d), with d
        # the number of coordinates that may move in the row.
        dims = x[0].numel() if movable is None else movable.flatten(1).sum(1).clamp_min(1)
        radius = torch.rand(len(x), generator=generator, dtype=x.dtype, device=x.device)
        radius = self.eps * radius.pow(1.0 / torch.as_tensor(dims, dtype=x.dtype))
        unit = direction / rows_like(_l2(direction).clamp_min(_tiny(x)), x)
        return x + unit * rows_like(radius, x)


def _loss_and_gradient(x: torch.Tensor, loss_fn: RowLoss) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row losses at x and the gradient of their sum, from one forward pass."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(x)
        (grad,) = torch.autograd.grad(loss.sum(), x)
    return _row_losses(loss.detach(), len(x)), grad


def _keep_best(
    x_adv: torch.Tensor,
    loss: torch.Tensor,
    best: torch.Tensor,
    best_loss: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    if best_loss is None:
        return x_adv, loss
    better = loss > best_loss
    return torch.where(rows_like(better, x_adv), x_adv, best), torch.where(better, loss, best_loss)


def _row_losses(loss: torch.Tensor, n_rows: int) -> torch.Tensor:
    if loss.numel() != n_rows:
        raise ConfigError(
            f"loss_fn must return one loss per row ({n_rows}), got shape {tuple(loss.shape)}"
        )
    return loss.reshape(n_rows)


def _l2(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1)


def _tiny(t: torch.Tensor) -> float:
    return torch.finfo(t.dtype).tiny
