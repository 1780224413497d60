"""Recommenders behind one interface, and the comparison of their top-k lists."""

from fmadv.data.interactions import Interactions
from fmadv.recommend.base import Recommender

__all__ = ["Interactions", "Recommender"]
