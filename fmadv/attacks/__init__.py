"""Attacks: one small file each, all behind :class:`~fmadv.attacks.base.Attack`."""

from fmadv.attacks.base import SUPPORTS, Attack, input_gradient
from fmadv.attacks.fgsm import FGSM
from fmadv.attacks.l2 import L2Step

ATTACKS: dict[str, type[Attack]] = {"fgsm": FGSM, "l2": L2Step}

__all__ = ["ATTACKS", "FGSM", "SUPPORTS", "Attack", "L2Step", "input_gradient"]
