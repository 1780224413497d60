"""Whole-feature edits of an FM's rows: the greedy attack and the certificate against
brute force over every set of edits."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from fmadv.errors import ConfigError
from fmadv.losses import bpr, logistic
from fmadv.models.fm import FactorizationMachine
from fmadv.models.fm_edits import edit_certificate, greedy_edits, greedy_pair_edits
from fmadv.sparse import PairBatch, SparseBatch
from fmadv.threat import EditThreat

# Features 0..5 are a multi-valued field (toggles); 6..8 and 9..11 are one-hot fields,
# the second optional (some rows have no value).
THREAT_FIELDS = dict(toggles=tuple(range(6)), choices=((6, 3), (9, 3)))
N = 12


def model(seed: int) -> FactorizationMachine:
    fm = FactorizationMachine(N, 4, 0.6, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        fm.linear.normal_(0, 0.5, generator=torch.Generator().manual_seed(seed + 1))
        fm.bias.fill_(0.1)
    return fm


def random_rows(n_rows: int, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    x = np.zeros((n_rows, N), np.float32)
    x[:, :6] = rng.random((n_rows, 6)) < 0.4
    x[np.arange(n_rows), 6 + rng.integers(0, 3, n_rows)] = 1
    has = rng.random(n_rows) < 0.7
    x[np.flatnonzero(has), 9 + rng.integers(0, 3, has.sum())] = 1
    return sp.csr_matrix(x)


def scores(fm: FactorizationMachine, rows) -> np.ndarray:
    with torch.no_grad():
        return fm(SparseBatch(sp.csr_matrix(rows), "cpu")).numpy()


def single_edits(x: np.ndarray) -> list[np.ndarray]:
    """Each edit as the set of features it flips."""
    edits = [np.array([j]) for j in range(6)]
    for offset in (6, 9):
        current = np.flatnonzero(x[offset : offset + 3])
        for c in range(3):
            if current.size and current[0] == c:
                continue
            edits.append(np.concatenate([[offset + c], offset + current]))
    return edits


def field_of(edit: np.ndarray) -> int:
    return int(edit.max()) // 3 if edit.max() >= 6 else -1 - int(edit[0])


def best_change(fm, x: np.ndarray, direction: float, budget: int) -> float:
    """The largest move of the score in ``direction`` over every set of <= budget
    edits (at most one per field)."""
    edits = single_edits(x)
    candidates = [x[None]]
    for size in range(1, budget + 1):
        for chosen in itertools.combinations(edits, size):
            if len({field_of(e) for e in chosen}) < size:
                continue
            edited = x.copy()
            for edit in chosen:
                edited[edit] = 1 - edited[edit]
            candidates.append(edited[None])
    moved = scores(fm, np.concatenate(candidates)) * direction
    return float(moved.max() - moved[0])


@pytest.mark.parametrize("budget", [1, 2, 3])
def test_greedy_scores_are_exact_and_within_the_certificate(budget):
    fm, rows = model(budget), random_rows(40, seed=budget)
    direction = torch.where(torch.arange(40) % 2 == 0, 1.0, -1.0)
    threat = EditThreat(budget, **THREAT_FIELDS)
    result = greedy_edits(fm, rows, direction, threat)
    np.testing.assert_allclose(result.scores.numpy(), scores(fm, result.rows), atol=1e-5)
    exact = edit_certificate(fm, rows, direction, threat).numpy()  # few enough settings
    bound = edit_certificate(fm, rows, direction, threat, grad=True).detach().numpy()
    clean = scores(fm, rows)
    dense, edited = rows.toarray(), result.rows.toarray()
    for r in range(40):
        changed = np.flatnonzero(dense[r] != edited[r])
        assert len(changed) <= 2 * budget and result.n_edits[r] <= budget
        assert edited[r, 6:9].sum() == 1 and edited[r, 9:12].sum() <= 1
        greedy = float((result.scores[r] - clean[r]) * direction[r])
        best = best_change(fm, dense[r], float(direction[r]), budget)
        assert greedy >= -1e-6 and greedy <= best + 1e-5
        assert bound[r] >= best - 1e-5
        assert exact[r] == pytest.approx(best, abs=1e-5)


def test_greedy_flips_at_least_80_percent_of_what_brute_force_flips():
    fm, rows = model(7), random_rows(200, seed=7)
    clean = scores(fm, rows)
    labels = np.where(clean > 0, 1.0, -1.0)  # attack the model's own predictions
    direction = torch.from_numpy(-labels).float()
    threat = EditThreat(2, **THREAT_FIELDS)
    result = greedy_edits(fm, rows, direction, threat)
    greedy_flips = (result.scores.numpy() * labels) <= 0
    dense = rows.toarray()
    margins = clean * labels
    brute_flips = np.array(
        [best_change(fm, dense[r], -labels[r], 2) >= margins[r] for r in range(200)]
    )
    assert brute_flips.sum() >= 20  # the comparison has something to compare
    assert (greedy_flips & ~brute_flips).sum() == 0
    assert greedy_flips.sum() >= 0.8 * brute_flips.sum()


def test_a_zero_budget_changes_nothing_and_certifies_zero():
    fm, rows = model(1), random_rows(5, seed=1)
    threat = EditThreat(0, **THREAT_FIELDS)
    result = greedy_edits(fm, rows, torch.ones(5), threat)
    assert (result.rows != rows).nnz == 0 and not result.n_edits.any()
    assert torch.equal(edit_certificate(fm, rows, torch.ones(5), threat), torch.zeros(5))


def test_the_threat_is_checked():
    with pytest.raises(ConfigError, match="budget"):
        EditThreat(-1, toggles=(1,))
    with pytest.raises(ConfigError, match="no feature"):
        EditThreat(1)
    with pytest.raises(ConfigError, match="at most one"):
        EditThreat(1, toggles=(3,), choices=((2, 3),))


def test_the_largest_budget_gives_every_smaller_one():
    fm, rows = model(5), random_rows(60, seed=5)
    direction = torch.where(torch.arange(60) % 3 == 0, 1.0, -1.0)
    largest = EditThreat(3, **THREAT_FIELDS)
    path = greedy_edits(fm, rows, direction, largest).path
    bounds = edit_certificate(fm, rows, direction, largest, every_budget=True)
    for budget in range(4):
        threat = EditThreat(budget, **THREAT_FIELDS)
        torch.testing.assert_close(
            path[:, budget], greedy_edits(fm, rows, direction, threat).scores
        )
        torch.testing.assert_close(bounds[:, budget], edit_certificate(fm, rows, direction, threat))


# Ranking batches: user rows over features 0..11 (as above), items one-hot on 12..19.
N_ITEMS = 8


def pair_batch(n_users: int, group: int, seed: int) -> tuple[PairBatch, torch.Tensor]:
    rng = np.random.default_rng(seed)
    users = sp.hstack([random_rows(n_users, seed), sp.csr_matrix((n_users, N_ITEMS))]).tocsr()
    items = sp.hstack([sp.csr_matrix((N_ITEMS, N)), sp.eye(N_ITEMS)]).tocsr()
    item_of_row = np.concatenate([rng.choice(N_ITEMS, group, replace=False) for _ in users])
    batch = PairBatch(
        users, items, np.repeat(np.arange(n_users), group), item_of_row, np.arange(N)
    )  # fmt: skip
    labels = torch.tensor(([1.0] + [-1.0] * (group - 1)) * n_users)
    return batch, labels


def user_losses(fm, batch: PairBatch, users: sp.csr_matrix, labels, loss_fn) -> np.ndarray:
    """The loss of each user's rows (summed) with the user rows ``users``."""
    with torch.no_grad():
        losses = loss_fn(fm(batch.with_users(sp.csr_matrix(users))), labels)
    if len(losses) == batch.n_users:
        return losses.numpy()
    return np.bincount(batch.user_of_row.numpy(), losses.numpy(), batch.n_users)


def worst_losses(fm, batch, labels, loss_fn, budget: int) -> np.ndarray:
    """Each user's largest loss over every set of <= budget edits of its profile."""
    users = batch.users.csr.toarray()
    items = batch.items.csr.toarray()
    user_of_row, item_of_row = batch.user_of_row.numpy(), batch.item_of_row.numpy()
    worst = []
    for user, x in enumerate(users):
        profiles = [x]
        edits = single_edits(x[:N])
        for size in range(1, budget + 1):
            for chosen in itertools.combinations(edits, size):
                if len({field_of(e) for e in chosen}) == size:
                    edited = x.copy()
                    for edit in chosen:
                        edited[edit] = 1 - edited[edit]
                    profiles.append(edited)
        mine = user_of_row == user
        rows = np.concatenate([p + items[item_of_row[mine]] for p in profiles])
        group = labels[torch.from_numpy(mine)].repeat(len(profiles))
        losses = loss_fn(torch.from_numpy(scores(fm, rows)), group)
        worst.append(float(losses.view(len(profiles), -1).sum(1).max()))
    return np.array(worst)


@pytest.mark.parametrize("loss_fn", [bpr, logistic], ids=["bpr", "logistic"])
@pytest.mark.parametrize("budget", [1, 2, 3])
def test_pair_edits_raise_each_users_loss_exactly(loss_fn, budget):
    """One profile edit moves all of a user's rows: the greedy attack's scores are the
    edited rows' scores, its loss is brute force's at b = 1 and never above it."""
    fm = FactorizationMachine(N + N_ITEMS, 4, 0.6, torch.Generator().manual_seed(7))
    with torch.no_grad():
        fm.linear.normal_(0, 0.5, generator=torch.Generator().manual_seed(8))
    batch, labels = pair_batch(25, 4, seed=budget)
    threat = EditThreat(budget, **THREAT_FIELDS)
    result = greedy_pair_edits(fm, batch, labels, loss_fn, threat)
    with torch.no_grad():
        rescored = fm(batch.with_users(result.rows))
    torch.testing.assert_close(result.scores, rescored, rtol=1e-5, atol=1e-5)
    assert np.all(result.n_edits <= budget)
    changed = (result.rows != batch.users.csr).tocoo()
    assert changed.col.max() < N  # only the user fields move
    clean = user_losses(fm, batch, batch.users.csr, labels, loss_fn)
    found = user_losses(fm, batch, result.rows, labels, loss_fn)
    worst = worst_losses(fm, batch, labels, loss_fn, budget)
    assert np.all(found >= clean - 1e-6) and np.all(found <= worst + 1e-5)
    assert (found > clean + 1e-6).mean() > 0.5
    if budget == 1:
        np.testing.assert_allclose(found, worst, rtol=1e-5, atol=1e-5)
