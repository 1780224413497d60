"""Estimators: the FM classifier and ranker, and the image classifier, scikit-learn style.

Importing the package defines every FM estimator, so that a model file names the class
that wrote it and :meth:`FMEstimator.load` finds it.
"""

from fmadv.estimators.fm import FMClassifier, FMEstimator
from fmadv.estimators.ranker import FMRanker

__all__ = ["FMClassifier", "FMEstimator", "FMRanker"]
