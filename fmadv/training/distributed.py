"""Data-parallel training over several processes (``torchrun``), on torch.distributed.

Every process holds the whole model and takes its shard of each global batch. It scales
its loss by n_local / n_global, and the gradients are summed across processes before the
optimizer step. So every process takes the step that single-process training takes on
the same global batch, up to the order of float additions. This is what
DistributedDataParallel does; it is done explicitly here because the FM's adversarial
step reads the parameters outside ``forward``, where DDP's reducer would not see them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from fmadv.sparse import PairBatch, SparseBatch


@dataclass(frozen=True)
class Distributed:
    """This process's place in the group: ``rank`` of ``world`` (1 = no group)."""

    rank: int = 0
    world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: torch.device) -> Distributed:
        """Join the group that ``torchrun`` describes in the environment, if any."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size())

    def shard(self, inputs, labels: torch.Tensor):
        """This process's rows of a global batch (rows rank, rank + world, ...)."""
        if not self.enabled:
            return inputs, labels
        if isinstance(inputs, PairBatch):  # whole groups: a group loss needs them together
            local, rows = inputs.shard(self.rank, self.world)
            return local, labels[rows]
        if isinstance(inputs, SparseBatch):
            local = SparseBatch(inputs.csr[self.rank :: self.world], inputs.device)
        else:
            local = inputs[self.rank :: self.world]
        return local, labels[self.rank :: self.world]

    def sum_gradients(self, model: nn.Module) -> None:
        if not self.enabled:
            return
        for param in model.parameters():
            if param.grad is None:  # every process must join every all-reduce
                param.grad = torch.zeros_like(param)
            sparse = param.grad.is_sparse
            if sparse:  # each process touched other rows: sum them dense
                param.grad = param.grad.to_dense()
            dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
            if sparse:  # back to the rows some process touched
                param.grad = param.grad.to_sparse(1)

    def sum(self, value: float) -> float:
        if not self.enabled:
            return value
        tensor = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return float(tensor.item())

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()
