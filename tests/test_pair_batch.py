"""The ranking batch kept as its two sides: the same scores, penalty and gradients as its
rows, and the shared attack on a user's features equal to autograd on dense rows."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from fmadv.attacks import FGSM, PGD, L2Step
from fmadv.attacks.core import attacked_forward
from fmadv.losses import GROUP_LOSSES, bpr, logistic
from fmadv.models import fm_attack
from fmadv.sparse import PairBatch
from tests.fm_helpers import random_fm

N_FEATURES, USER_COLUMNS = 30, np.r_[0:8, 20:26]  # the user's fields need not be contiguous
ITEM_COLUMNS = np.setdiff1d(np.arange(N_FEATURES), USER_COLUMNS)
GROUP = 3  # a positive and two negatives


def _rows(n_rows: int, columns: np.ndarray, active: int, rng, real: bool) -> sp.csr_matrix:
    picked = np.stack([rng.choice(columns, active, replace=False) for _ in range(n_rows)])
    values = rng.uniform(0.3, 1.5, picked.shape) if real else np.ones(picked.shape)
    values = values.astype(np.float32)  # what the sparse tensors hold
    indptr = np.arange(0, n_rows * active + 1, active)
    return sp.csr_matrix((values.ravel(), picked.ravel(), indptr), shape=(n_rows, N_FEATURES))


def pair_batch(seed: int = 0, real: bool = False, n_users: int = 5) -> PairBatch:
    rng = np.random.default_rng(seed)
    users = _rows(n_users, USER_COLUMNS, 3, rng, real)
    items = _rows(7, ITEM_COLUMNS, 2, rng, real)
    # Distinct items within a group: the same item twice would leave a group with no
    # gradient at all, and the sign of a zero is a matter of rounding.
    item_of_row = np.concatenate([rng.permutation(7)[:GROUP] for _ in range(n_users)])
    return PairBatch(
        users, items, np.repeat(np.arange(n_users), GROUP), item_of_row, USER_COLUMNS,
        dtype=torch.float64,
    )  # fmt: skip


def group_labels(n_users: int = 5) -> torch.Tensor:
    return torch.tensor([1.0, -1.0, -1.0] * n_users, dtype=torch.float64)


def test_the_two_sides_score_and_penalise_as_the_rows_do():
    model = random_fm(N_FEATURES, 4, seed=1).double()
    for real in (False, True):
        batch = pair_batch(real=real)
        rows = batch.to_rows()
        torch.testing.assert_close(model(batch), model(rows))
        torch.testing.assert_close(
            model.l2_penalty(batch, 0.3, 0.7), model.l2_penalty(rows, 0.3, 0.7)
        )
        x, forward = model.dense_view(batch)
        assert x.shape == (batch.n_users, len(USER_COLUMNS))
        torch.testing.assert_close(forward(x), model.forward_dense(rows.to_dense()))
        # Rows in any order (not consecutive per user) score the same way.
        order = np.random.default_rng(0).permutation(batch.n_rows)
        shuffled = PairBatch(
            batch.users.csr, batch.items.csr, batch.user_of_row.numpy()[order],
            batch.item_of_row.numpy()[order], USER_COLUMNS, dtype=torch.float64,
        )  # fmt: skip
        torch.testing.assert_close(model(shuffled), model(rows)[order])


def test_the_two_sides_give_the_gradients_of_the_rows():
    batch = pair_batch(seed=2)
    grads = []
    for inputs in (batch, batch.to_rows()):
        model = random_fm(N_FEATURES, 4, seed=3).double()
        loss = bpr(model(inputs), group_labels()).sum() + model.l2_penalty(inputs, 0.1, 0.2)
        grads.append(torch.autograd.grad(loss, list(model.parameters())))
    for pair, row in zip(*grads, strict=True):
        torch.testing.assert_close(pair, row)


ATTACKS = [FGSM(0.2), FGSM(0.2, support="active"), L2Step(0.7), L2Step(0.7, support="active")]


@pytest.mark.parametrize("loss_fn", [*GROUP_LOSSES.values(), logistic], ids=lambda f: f.__name__)
@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: f"{a.name}-{a.support}")
@pytest.mark.parametrize("tile", [None, 5], ids=["one-tile", "tiled"])
def test_the_shared_step_on_a_users_features_equals_autograd(attack, loss_fn, tile, monkeypatch):
    """The closed form moves each user's features once for all of its rows, along the
    gradient of the user's summed loss: the same scores and parameter gradients as the
    attack run by autograd on the users' dense features."""
    if tile is not None:
        monkeypatch.setattr(fm_attack, "TILE_ELEMENTS", tile * 5)
    batch, labels = pair_batch(seed=4), group_labels()
    results = []
    for exact in (True, False):
        model = random_fm(N_FEATURES, 4, seed=5).double()
        if exact:
            scores = attacked_forward(model, batch, labels, loss_fn, attack).adversarial
        else:
            x, forward = model.dense_view(batch)
            x_adv = attack.perturb(x.detach(), lambda z, f=forward: loss_fn(f(z), labels))
            # The dense route keeps the perturbation fixed as well.
            scores = forward(x_adv.detach())
        grads = torch.autograd.grad(scores.square().sum(), list(model.parameters()))
        results.append((scores.detach(), grads))
    (exact_scores, exact_grads), (dense_scores, dense_grads) = results
    torch.testing.assert_close(exact_scores, dense_scores, rtol=1e-10, atol=1e-10)
    for a, b in zip(exact_grads, dense_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_on_one_negative_the_sign_step_is_the_worst_point_of_the_box():
    """Under BPR with one negative, the score gap is linear in the user's features (the
    user's own terms cancel), so the sign step is the exact maximiser over the box:
    no vertex of the clipped box does better."""
    users = sp.csr_matrix(([1.0, 1.0], ([0, 0], [0, 3])), shape=(1, N_FEATURES))
    items = sp.csr_matrix(([1.0, 1.0], ([0, 1], [10, 12])), shape=(2, N_FEATURES))
    columns = np.array([0, 1, 2, 3, 4, 5])
    batch = PairBatch(users, items, [0, 0], [0, 1], columns, dtype=torch.float64)
    labels = torch.tensor([1.0, -1.0], dtype=torch.float64)
    model = random_fm(N_FEATURES, 3, seed=6).double()
    eps = 0.4
    attacked = attacked_forward(model, batch, labels, bpr, FGSM(eps)).adversarial
    worst = bpr(attacked, labels).item()
    x, forward = model.dense_view(batch)
    with torch.no_grad():
        for moves in itertools.product((-1.0, 0.0, 1.0), repeat=len(columns)):
            point = (x + eps * torch.tensor(moves, dtype=x.dtype)).clamp(0, 1)
            assert bpr(forward(point), labels).item() <= worst + 1e-12


def test_a_generic_attack_runs_on_the_users_features():
    """PGD has no closed form: it runs on the users' dense features, inside the box."""
    batch, labels = pair_batch(seed=7), group_labels()
    model = random_fm(N_FEATURES, 4, seed=8).double()
    clean = bpr(model(batch), labels)
    attacked = attacked_forward(model, batch, labels, bpr, PGD(0.2, steps=5)).adversarial
    assert (bpr(attacked, labels) >= clean - 1e-12).all()
    assert bpr(attacked, labels).sum() > clean.sum()


def test_user_rows_must_lie_in_the_users_columns():
    users = sp.csr_matrix(([1.0], ([0], [0])), shape=(1, N_FEATURES))
    items = sp.csr_matrix(([1.0], ([0], [10])), shape=(1, N_FEATURES))
    PairBatch(users, items, [0], [0], USER_COLUMNS)
    with pytest.raises(ValueError, match="user_columns"):
        PairBatch(users, items, [0], [0], USER_COLUMNS[1:])


def test_a_shard_keeps_each_users_rows_together():
    batch, labels = pair_batch(seed=9, n_users=5), group_labels(5)
    model = random_fm(N_FEATURES, 4, seed=9).double()
    scores = model(batch)
    seen = []
    for rank in range(2):
        local, rows = batch.shard(rank, 2)
        assert local.n_users == len(range(rank, 5, 2))
        torch.testing.assert_close(model(local), scores[rows])
        assert torch.equal(labels[rows].view(-1, GROUP)[:, 0], torch.ones(local.n_users).double())
        seen.append(rows)
    assert sorted(torch.cat(seen).tolist()) == list(range(batch.n_rows))
