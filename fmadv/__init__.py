"""fmadv: robust factorization-machine recommenders.

Factorization machines on sparse binary inputs, adversarial perturbations of those
inputs, adversarial training, and the figures that show what robustness changes.
"""

from fmadv.errors import ChecksumError, ConfigError, DataError, FmadvError, ModelFileError

__version__ = "0.1.0"

# The estimators, imported on first use: ``import fmadv.errors`` stays free of torch.
_LAZY = {
    "FMClassifier": "fmadv.estimators.fm",
    "FMRanker": "fmadv.estimators.ranker",
    "ImageClassifier": "fmadv.estimators.image",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fmadv' has no attribute {name!r}")


__all__ = [
    "ChecksumError",
    "ConfigError",
    "DataError",
    "FMClassifier",
    "FMRanker",
    "FmadvError",
    "ImageClassifier",
    "ModelFileError",
    "__version__",
]
