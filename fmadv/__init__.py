"""fmadv: robust factorization-machine recommenders.

Factorization machines on sparse binary inputs, adversarial perturbations of those
inputs, adversarial training, and the figures that show what robustness changes.
"""

from fmadv.errors import ChecksumError, ConfigError, DataError, FmadvError, ModelFileError

__version__ = "0.1.0"

__all__ = [
    "ChecksumError",
    "ConfigError",
    "DataError",
    "FmadvError",
    "ModelFileError",
    "__version__",
]
