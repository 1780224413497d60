"""What every estimator shares: scikit-learn's parameter conventions, written once.

An estimator's ``__init__`` takes explicit keyword parameters and only stores them;
their defaults come from the dataclass of the component each one configures (the loop,
the adversarial objective, the gradient noise...), so a default is written in one place.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from fmadv.errors import ConfigError


class Estimator:
    """``get_params`` / ``set_params`` from the named parameters of ``__init__``."""

    # Parameter names of earlier releases, read from old model files.
    RENAMED: dict[str, str] = {}

    @classmethod
    def _get_param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return [
            name
            for name, param in signature.parameters.items()
            if name != "self" and param.kind in named
        ]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The hyperparameters, by name (as passed to ``__init__``)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params: Any) -> Estimator:
        """Set hyperparameters by name; returns self."""
        known = self._get_param_names()
        for name, value in params.items():
            if name not in known:
                raise ConfigError(
                    f"unknown parameter {name!r} of {type(self).__name__}; known: {known}"
                )
            setattr(self, name, value)
        return self

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Estimator:
        """An estimator from saved parameters, earlier names included (JSON keeps a
        tuple as a list: a parameter whose default is a tuple gets one back)."""
        defaults = inspect.signature(cls).parameters
        named = {cls.RENAMED.get(name, name): value for name, value in params.items()}
        return cls(**{
            name: tuple(value)
            if isinstance(value, list) and name in defaults
            and isinstance(defaults[name].default, tuple) else value
            for name, value in named.items()
        })  # fmt: skip

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self.get_params().items())
        return f"{type(self).__name__}({shown})"

    def config(self, component: type, **overrides: Any) -> Any:
        """The ``component`` dataclass filled from the parameters of the same names."""
        names = {f.name for f in dataclasses.fields(component)}
        values = {name: getattr(self, name) for name in names if hasattr(self, name)}
        return component(**{**values, **overrides})


def default(component: Any, name: str) -> Any:
    """The default of ``name`` in ``component``: a field of a dataclass, or a parameter
    of a class or function. Estimators and commands take their defaults from here rather
    than writing them again."""
    if dataclasses.is_dataclass(component):
        return {f.name: f.default for f in dataclasses.fields(component)}[name]
    return inspect.signature(component).parameters[name].default
