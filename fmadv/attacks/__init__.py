"""Attacks: one small file each, all behind :class:`~fmadv.attacks.base.Attack`."""

from fmadv.attacks.apr import APR
from fmadv.attacks.base import SUPPORTS, Attack, input_gradient
from fmadv.attacks.fgsm import FGSM
from fmadv.attacks.l2 import L2Step
from fmadv.errors import ConfigError

ATTACKS: dict[str, type[Attack]] = {"fgsm": FGSM, "l2": L2Step, "apr": APR}


def make_attack(name: str, alpha: float, support: str = "all") -> Attack:
    """The registered attack ``name`` with step ``alpha`` over ``support``."""
    if name not in ATTACKS:
        raise ConfigError(f"unknown attack {name!r}; expected one of {sorted(ATTACKS)}")
    return ATTACKS[name](alpha=alpha, support=support)


__all__ = [
    "APR",
    "ATTACKS",
    "FGSM",
    "SUPPORTS",
    "Attack",
    "L2Step",
    "input_gradient",
    "make_attack",
]
