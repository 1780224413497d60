"""Attacks: one small file each, all behind :class:`~fmadv.attacks.base.Attack`."""

from fmadv.attacks.alpha import MinimalStep
from fmadv.attacks.apr import APR
from fmadv.attacks.base import SUPPORTS, Attack, input_gradient
from fmadv.attacks.fgsm import FGSM
from fmadv.attacks.l2 import L2Step
from fmadv.attacks.pgd import PGD
from fmadv.errors import ConfigError

ATTACKS: dict[str, type[Attack]] = {
    "fgsm": FGSM,
    "l2": L2Step,
    "apr": APR,
    "alpha": MinimalStep,
    "pgd": PGD,
}


def make_attack(name: str, alpha: float, support: str = "all", **options) -> Attack:
    """The registered attack ``name`` with budget ``alpha`` over ``support``; ``options``
    set its other fields (``norm``, ``steps``...)."""
    if name not in ATTACKS:
        raise ConfigError(f"unknown attack {name!r}; expected one of {sorted(ATTACKS)}")
    try:
        return ATTACKS[name](alpha=alpha, support=support, **options)
    except TypeError as err:
        raise ConfigError(f"bad options for attack {name!r}: {err}") from None


__all__ = [
    "APR",
    "ATTACKS",
    "FGSM",
    "SUPPORTS",
    "Attack",
    "L2Step",
    "MinimalStep",
    "PGD",
    "input_gradient",
    "make_attack",
]
