"""The optimizers of the fit loop: Adam here, Adagrad and SGD from torch.

With sparse updates (:attr:`TrainConfig.sparse_updates`) the FM's embedding tables get
gradients only on the rows a batch uses. Adagrad and SGD (without momentum or weight
decay) then take exactly the dense step: a row with a zero gradient does not move
under either. Adam's moments decay at every step, so a dense Adam moves every row; the
Adam here is lazy on sparse gradients (a row's moments and weights change only when
the row has a gradient, as in TensorFlow's LazyAdam and torch's SparseAdam). On dense
gradients, and on rows touched at every step, it is torch's Adam, operation for
operation. It is the default optimizer of every run because torch's optimizer
constructor imports its compiler stack: about a second of every start-up.
"""

from __future__ import annotations

import torch
from torch import nn

from fmadv.errors import ConfigError

OPTIMIZERS = ("adam", "adagrad", "sgd")


class _Optimizer:
    """What the fit loop and its checkpoints use of :class:`torch.optim.Optimizer`:
    parameter groups, per-parameter state, ``zero_grad`` and state dicts in torch's
    layout. torch's constructor imports its compiler stack (torch._dynamo), about a
    second of every run's start-up; this one imports nothing."""

    def __init__(self, params, defaults: dict):
        self.defaults = defaults
        self.param_groups = [{"params": list(params), **defaults}]
        self.state: dict[torch.Tensor, dict] = {}

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for param in self._params():
            if set_to_none or param.grad is None or param.grad.is_sparse:
                param.grad = None
            else:
                param.grad.zero_()

    def state_dict(self) -> dict:
        index = {id(p): i for i, p in enumerate(self._params())}
        groups = [
            {**{k: v for k, v in group.items() if k != "params"},
             "params": [index[id(p)] for p in group["params"]]}
            for group in self.param_groups
        ]  # fmt: skip
        return {"state": {index[id(p)]: s for p, s in self.state.items()}, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        params = self._params()
        self.state = {
            params[int(i)]: {
                name: value.to(params[int(i)].device) if torch.is_tensor(value) and name != "step"
                else value
                for name, value in saved.items()
            }
            for i, saved in state_dict["state"].items()
        }  # fmt: skip
        for group, saved in zip(self.param_groups, state_dict["param_groups"], strict=True):
            group.update({k: v for k, v in saved.items() if k != "params"})


class Adam(_Optimizer):
    """Adam (Kingma and Ba, 2015): torch's single-tensor step, operation for operation,
    on dense gradients; on sparse gradients, lazy (only the rows they hold move)."""

    def __init__(
        self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):  # fmt: skip
        super().__init__(
            params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        )

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state.setdefault(param, {})
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
                    rows, grad = _distinct_rows(grad)
                    exp_avg = state["exp_avg"].index_select(0, rows)
                    exp_avg_sq = state["exp_avg_sq"].index_select(0, rows)
                else:
                    rows, exp_avg, exp_avg_sq = None, state["exp_avg"], state["exp_avg_sq"]
                    if group["weight_decay"]:
                        grad = grad.add(param, alpha=group["weight_decay"])
                # The same operations, in the same order, as torch.optim.Adam.
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (exp_avg_sq.sqrt() / correction2_sqrt).add_(group["eps"])
                if rows is None:
                    param.addcdiv_(exp_avg, denom, value=-step_size)
                    continue
                # index_select / index_copy_ rather than [rows]: several times faster.
                state["exp_avg"].index_copy_(0, rows, exp_avg)
                state["exp_avg_sq"].index_copy_(0, rows, exp_avg_sq)
                moved = param.index_select(0, rows).addcdiv_(exp_avg, denom, value=-step_size)
                param.index_copy_(0, rows, moved)


def _distinct_rows(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, values) of a sparse row gradient, each row once. Autograd drops the
    coalesced flag of the FM's gradients although their rows are distinct and sorted;
    checking that costs far less than coalescing again."""
    rows = grad._indices()[0]
    if grad.is_coalesced() or bool((rows[1:] > rows[:-1]).all()):
        return rows, grad._values()
    grad = grad.coalesce()
    return grad.indices()[0], grad.values()


#: What the fit loop steps: fmadv's Adam or one of torch's optimizers.
Optimizer = _Optimizer | torch.optim.Optimizer


def make_optimizer(
    model: nn.Module,
    name: str,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    sparse: bool = False,
) -> Optimizer:
    """The optimizer ``name`` over the model's parameters. Each takes sparse gradients
    too (``sparse``): Adam lazily, torch's Adagrad and SGD with their dense step."""
    if name not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {name!r}; expected one of {OPTIMIZERS}")
    check_sparse(sparse, momentum, weight_decay)
    params = model.parameters()
    if name == "adam":
        return Adam(params, lr=lr, weight_decay=weight_decay)
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
