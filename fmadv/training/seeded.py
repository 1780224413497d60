"""A seeded random generator that lives on the device that uses it and survives
checkpoints: for the training pieces that draw random numbers (gradient noise, VAT)."""

from __future__ import annotations

import torch


class SeededGenerator:
    """A ``torch.Generator`` made on first use, on the device of the tensors it draws
    for. A state restored from a checkpoint is kept until then, so a resumed run draws
    the same numbers on a GPU as on the CPU."""

    def __init__(self, seed: int):
        self.seed = seed
        self._generator: torch.Generator | None = None
        self._restored: torch.Tensor | None = None

    def on(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device).manual_seed(self.seed)
            if self._restored is not None:
                self._generator.set_state(self._restored)
                self._restored = None
        return self._generator

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = self._generator.get_state() if self._generator is not None else self._restored
        return {} if state is None else {"generator": state}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self._generator, self._restored = None, state.get("generator")
