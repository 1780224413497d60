"""Fast gradient sign method, clipped to the input box.

Goodfellow, Shlens and Szegedy, "Explaining and Harnessing Adversarial Examples",
ICLR 2015. Threat model: every coordinate may move by at most ``eps`` (an L-inf ball),
and the result is clipped to the box. On binary rows in [0, 1] that means a zero can only
rise to ``eps`` and a one can only fall to ``1 - eps``; rows whose loss has zero
gradient (a hinge that is not active) do not move.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fmadv.attacks.base import SteepestStep, register


@register
@dataclass
class FGSM(SteepestStep):
    """x_adv = clip(x + eps * sign(grad_x loss), box).

    Parameters
    ----------
    eps
        Step size, the L-inf radius.
    support
        ``"all"``: every coordinate may move; ``"active"``: only the non-zero ones (on
        binary rows: only the ones, and only down).
    """

    name = "fgsm"
    norm: ClassVar[str] = "linf"
