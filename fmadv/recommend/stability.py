"""Top-k lists under attack: how much of a ranking survives an attack on its inputs."""

from __future__ import annotations

import numpy as np

from fmadv.attacks.base import Attack
from fmadv.errors import ConfigError
from fmadv.metrics.topk import overlap
from fmadv.recommend.base import Recommender


def stability(
    base: Recommender, attack: Attack, user_ids, k: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clean lists, attacked lists, per-user overlap |A and A_adv| / k)."""
    attacked = base.under_attack(attack, k)
    if attacked is None:
        raise ConfigError(f"{base.name or type(base).__name__} has no inputs to attack")
    clean_ids, _ = base.recommend(user_ids, k=k)
    adv_ids, _ = attacked.recommend(user_ids, k=k)
    return clean_ids, adv_ids, overlap(clean_ids, adv_ids)
