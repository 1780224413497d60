"""The optimizers of the fit loop, and Adam for sparse gradients.

With sparse updates (:attr:`TrainConfig.sparse_updates`) the FM's embedding tables get
gradients only on the rows a batch uses. Adagrad and SGD (without momentum or weight
decay) then take exactly the dense step: a row with a zero gradient does not move
under either. Adam's moments decay at every step, so a dense Adam moves every row; the
lazy variant here updates a row's moments and weights only when the row has a gradient,
as TensorFlow's LazyAdam and torch's SparseAdam do. On rows touched at every step it is
Adam, to the last bit of its formula.
"""

from __future__ import annotations

import torch
from torch import nn

from fmadv.errors import ConfigError

OPTIMIZERS = ("adam", "adagrad", "sgd")


class LazyAdam(torch.optim.Optimizer):
    """Adam (Kingma and Ba, 2015) whose sparse gradients update only the rows they hold;
    dense gradients take torch's Adam step."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(param)
                    state["exp_avg_sq"] = torch.zeros_like(param)
                state["step"] += 1
                step = state["step"].item()
                step_size = group["lr"] / (1 - beta1**step)
                correction2_sqrt = (1 - beta2**step) ** 0.5
                grad = param.grad
                if grad.is_sparse:
                    grad = grad.coalesce()
                    rows, grad = grad.indices()[0], grad.values()
                    exp_avg, exp_avg_sq = state["exp_avg"][rows], state["exp_avg_sq"][rows]
                else:
                    rows, exp_avg, exp_avg_sq = None, state["exp_avg"], state["exp_avg_sq"]
                # The same operations, in the same order, as torch.optim.Adam.
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (exp_avg_sq.sqrt() / correction2_sqrt).add_(group["eps"])
                if rows is None:
                    param.addcdiv_(exp_avg, denom, value=-step_size)
                    continue
                state["exp_avg"][rows], state["exp_avg_sq"][rows] = exp_avg, exp_avg_sq
                param[rows] = param[rows].addcdiv_(exp_avg, denom, value=-step_size)


def make_optimizer(
    model: nn.Module,
    name: str,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    sparse: bool = False,
) -> torch.optim.Optimizer:
    """The optimizer ``name`` over the model's parameters; with ``sparse``, one that
    takes sparse gradients (LazyAdam, or torch's Adagrad and SGD, whose sparse step is
    the dense one)."""
    if name not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {name!r}; expected one of {OPTIMIZERS}")
    check_sparse(sparse, momentum, weight_decay)
    params = model.parameters()
    if name == "adam":
        if sparse:
            return LazyAdam(params, lr=lr)
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def check_sparse(sparse: bool, momentum: float, weight_decay: float) -> None:
    """Sparse updates take no momentum and no weight decay: both move every row."""
    if sparse and (momentum or weight_decay):
        raise ConfigError(
            "sparse updates take no momentum and no weight decay (both would move every "
            "row at every step); the FM's L2 on the active rows is what regularises them"
        )
