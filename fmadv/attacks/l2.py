"""L2-normalised gradient step, clipped to the input box.

The "Adv_Loss" perturbation of Huang, Xu, Schuurmans and Szepesvari, "Learning with a
Strong Adversary" (2015): r = eps * g / ||g||_2, the steepest ascent direction of the
linearised loss within an L2 ball of radius eps. Norms are taken per row over all
non-batch dimensions, before clipping to the box.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fmadv.attacks.base import SteepestStep, register


@register
@dataclass
class L2Step(SteepestStep):
    """x_adv = clip(x + eps * g / ||g||_2, box), g the gradient of the row's loss.

    Parameters
    ----------
    eps
        L2 radius of the step.
    support
        ``"all"`` or ``"active"`` (only non-zero coordinates move; the norm is taken
        over those).
    """

    name = "l2"
    norm: ClassVar[str] = "l2"
