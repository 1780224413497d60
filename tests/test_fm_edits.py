"""Whole-feature edits of an FM's rows: the greedy attack and the certificate against
brute force over every set of edits."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from fmadv.errors import ConfigError
from fmadv.models.fm import FactorizationMachine
from fmadv.models.fm_edits import edit_certificate, greedy_edits
from fmadv.sparse import SparseBatch
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
    bound = edit_certificate(fm, rows, direction, threat).numpy()
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
