"""Small random problems shared by the model tests."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from fmadv.losses import loss_direction
from fmadv.models.fm import FactorizationMachine


def random_rows(n_rows: int, n_features: int, active: int, seed: int, real: bool = False):
    """CSR rows with ``active`` distinct features each; values 1, or random when ``real``."""
    rng = np.random.default_rng(seed)
    indices = np.stack([rng.choice(n_features, active, replace=False) for _ in range(n_rows)])
    values = rng.uniform(0.2, 2.0, indices.shape) if real else np.ones(indices.shape)
    indptr = np.arange(0, n_rows * active + 1, active)
    return sp.csr_matrix(
        (values.ravel().astype(np.float32), indices.ravel(), indptr), shape=(n_rows, n_features)
    )


def random_fm(n_features: int, k: int, seed: int, scale: float = 0.5) -> FactorizationMachine:
    """An FM with every parameter random (not the zero start), so all terms matter."""
    generator = torch.Generator().manual_seed(seed)
    model = FactorizationMachine(n_features, k, init_std=scale, generator=generator)
    with torch.no_grad():
        model.bias.fill_(0.1)
        model.linear.copy_(torch.randn(n_features, generator=generator) * scale)
    return model


def planted_problem(n_rows: int = 6000, n_users: int = 60, n_items: int = 40, seed: int = 0):
    """One-hot user + item rows labelled by a planted rank-2 preference, with 5% noise."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n_rows)
    items = rng.integers(0, n_items, n_rows)
    taste_u, taste_i = rng.normal(size=(n_users, 2)), rng.normal(size=(n_items, 2))
    score = (taste_u[users] * taste_i[items]).sum(1)
    y = np.where(score > 0, 1.0, -1.0)
    flip = rng.random(n_rows) < 0.05
    y[flip] = -y[flip]
    cols = np.stack([users, n_users + items], 1).ravel()
    X = sp.csr_matrix(
        (np.ones(2 * n_rows, np.float32), cols, np.arange(0, 2 * n_rows + 1, 2)),
        shape=(n_rows, n_users + n_items),
    )
    return X, y.astype(np.float32)


def dense_perturbation(model, batch, labels, loss_fn, attack) -> torch.Tensor:
    """x_adv as a dense (batch x n) tensor, from the closed-form rules of the FM's exact
    path (zeros rise, ones fall, by the lean rho * g_j): what that path never builds."""
    ball = attack.single_step()
    sign, all_features = ball.norm == "linf", ball.support == "all"
    V, w = model.factors.detach(), model.linear.detach()
    with torch.no_grad():
        rho = loss_direction(model(batch), labels, loss_fn).to(V.dtype)
        s = batch.rows @ V
        gradient = torch.addmm(w, s, V.T) - batch.to_dense() * V.square().sum(1)
        lean = rho[:, None] * gradient
        x = batch.to_dense()
        active = x != 0
        if not all_features:
            lean = lean * active
        if sign:
            move = torch.where(active, -(lean < 0).to(V.dtype), (lean > 0).to(V.dtype))
        else:
            move = torch.where(active, lean.clamp(max=0), lean.clamp(min=0))
            # Clipped: the norm of the whole gradient; projected: of the moving part.
            counted = move if ball.box == "project" else lean
            inv_norm = counted.square().sum(1).clamp_min(torch.finfo(V.dtype).tiny).rsqrt()
            move = move * inv_norm[:, None]
        return x + ball.eps * move
