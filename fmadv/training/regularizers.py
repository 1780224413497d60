"""Regularizers that act on gradients between ``backward`` and the optimizer step."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from fmadv.checks import nonnegative
from fmadv.errors import ConfigError
from fmadv.training.seeded import SeededGenerator

NOISE_ROWS = ("touched", "all")


@dataclass
class GradientNoise:
    """Annealed Gaussian gradient noise (Neelakantan et al., 2015).

    After backward, every gradient gets N(0, sigma_t^2) added, sigma_t^2 = eta / (1 + t)^gamma
    with t the step. With ``rows="touched"`` (the default) the noise goes only to the
    entries of the embedding tables (linear weights, factor rows) that the batch gave a
    gradient: under Adam, noise on rows the batch never touched is rescaled to a full-size
    step and drowns the sparse signal. ``rows="all"`` adds it everywhere, as in the paper.

    Parameters
    ----------
    eta
        Noise variance at step 0, >= 0; 0 adds nothing.
    gamma
        Decay exponent of the variance.
    rows
        ``"touched"`` or ``"all"``.
    seed
        Seed of the noise generator (same seed, same noise).
    """

    eta: float = 0.0
    gamma: float = 0.55
    rows: str = "touched"
    seed: int = 0
    _random: SeededGenerator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._random = SeededGenerator(self.seed)
        nonnegative("gradient noise eta", self.eta)
        nonnegative("gradient noise gamma", self.gamma)
        if self.rows not in NOISE_ROWS:
            raise ConfigError(f"gradient noise rows must be one of {NOISE_ROWS}, got {self.rows!r}")

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The generator's state, so that a resumed run draws the same numbers."""
        return self._random.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self._random.load_state_dict(state)

    def std(self, step: int) -> float:
        return math.sqrt(self.eta / (1 + step) ** self.gamma)

    @torch.no_grad()
    def __call__(self, model: nn.Module, step: int) -> None:
        if self.eta == 0:
            return
        std = self.std(step)
        for param in model.parameters():
            grad = param.grad
            if grad is None:
                continue
            if grad.is_sparse:  # sparse updates: the stored rows are the touched ones
                grad = grad.coalesce()
                values = grad.values() + self._noise(grad.values(), std)
                param.grad = torch.sparse_coo_tensor(
                    grad.indices(), values, grad.shape, check_invariants=False
                )
                continue
            noise = self._noise(grad, std)
            if self.rows == "touched" and grad.dim() > 0:
                touched = grad != 0 if grad.dim() == 1 else (grad != 0).any(1, keepdim=True)
                noise *= touched
            grad += noise

    def _noise(self, like: torch.Tensor, std: float) -> torch.Tensor:
        """Gaussian noise of standard deviation ``std`` shaped like ``like``."""
        generator = self._random.on(like.device)
        return torch.randn(like.shape, generator=generator, device=like.device).to(like.dtype) * std
