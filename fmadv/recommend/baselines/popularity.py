"""Most-popular items first."""

from __future__ import annotations

import numpy as np

from fmadv.recommend.baselines.base import Baseline, register


@register
class Popularity(Baseline):
    """Most-popular items first: the same list for everyone, minus what each has seen.

    The score of an item is the number of users who liked it in training, plus a
    tie-break below 1/2 that favours the lower item index (see :func:`popularity_scores`).

    Attributes
    ----------
    popularity_
        float64 scores per item.
    """

    name = "popularity"

    def __init__(self) -> None:
        pass

    def _user_scores(self, users: np.ndarray) -> np.ndarray:
        return np.tile(self.popularity_, (len(users), 1))
