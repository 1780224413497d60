"""Recommenders behind one interface, and the comparison of their top-k lists."""

from fmadv.recommend.base import Recommender
from fmadv.recommend.interactions import Interactions

__all__ = ["Interactions", "Recommender"]
