"""Baseline recommenders: popularity, random, and the implicit library's ALS, BPR and item-kNN.

Every baseline learns from :attr:`Interactions.liked` (the positive training pairs, CSR,
rows = users) and ranks through :meth:`Recommender.recommend`, so its lists can be set
beside the FM's. Conventions shared by all of them:

- Deterministic: the same hyperparameters (``random_state`` included) give the same
  scores on the CPU, and a user's scores do not depend on the batch it is scored in.
- Users who liked nothing in training ("cold" users) get :class:`Popularity`'s scores
  from the models that learn a per-user profile (ALS, BPR, item-kNN): their profile is
  empty, and their scores would otherwise be constant or noise.
"""

import importlib
import pkgutil

from fmadv.recommend.baselines.base import BASELINES, Baseline, make_baseline, popularity_scores

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

from fmadv.recommend.baselines.als import ALS  # noqa: E402
from fmadv.recommend.baselines.bpr import BPR  # noqa: E402
from fmadv.recommend.baselines.itemknn import ItemKNN  # noqa: E402
from fmadv.recommend.baselines.popularity import Popularity  # noqa: E402
from fmadv.recommend.baselines.random import RandomRecommender  # noqa: E402

__all__ = [
    "ALS",
    "BASELINES",
    "BPR",
    "Baseline",
    "ItemKNN",
    "Popularity",
    "RandomRecommender",
    "make_baseline",
    "popularity_scores",
]
