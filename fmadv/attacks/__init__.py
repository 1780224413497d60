"""Attacks: one small file each, all behind :class:`~fmadv.attacks.base.Attack`.

Every module of this package is imported here, so an attack that registers itself
(``@register``) in a new file is in :data:`ATTACKS`, the CLI and the contract tests
without any other change.
"""

import importlib
import pkgutil

from fmadv.attacks.base import (
    ALIASES,
    ATTACKS,
    Attack,
    Target,
    input_attacks,
    input_gradient,
    make_attack,
)
from fmadv.threat import SUPPORTS

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

from fmadv.attacks.apr import APR  # noqa: E402
from fmadv.attacks.core import adversarial_scores, attacked_forward  # noqa: E402
from fmadv.attacks.fgsm import FGSM  # noqa: E402
from fmadv.attacks.l2 import L2Step  # noqa: E402
from fmadv.attacks.minimal_step import MinimalStep  # noqa: E402
from fmadv.attacks.pgd import PGD  # noqa: E402

__all__ = [
    "ALIASES",
    "APR",
    "ATTACKS",
    "FGSM",
    "SUPPORTS",
    "Attack",
    "L2Step",
    "MinimalStep",
    "PGD",
    "Target",
    "adversarial_scores",
    "attacked_forward",
    "input_attacks",
    "input_gradient",
    "make_attack",
]
