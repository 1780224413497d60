"""The greedy edit attack against brute force on small FMs: of the rows some set of at
most b edits flips, the share the greedy attack flips.

    python eval/edit_greedy.py

Random FMs of 12 features (6 toggles and two one-hot fields of 3 values, the second
optional), k = 4; 200 random rows each, 5 models; each row attacked against its own
prediction. Brute force scores every set of at most b edits (one per field).
"""

from __future__ import annotations

import itertools

import numpy as np
import scipy.sparse as sp
import torch

from fmadv.models.fm import FactorizationMachine
from fmadv.models.fm_edits import greedy_edits
from fmadv.sparse import SparseBatch
from fmadv.threat import EditThreat

N, TOGGLES, FIELDS = 12, tuple(range(6)), ((6, 3), (9, 3))


def random_model(seed: int) -> FactorizationMachine:
    fm = FactorizationMachine(N, 4, 0.6, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        fm.linear.normal_(0, 0.5, generator=torch.Generator().manual_seed(seed + 1))
    return fm


def random_rows(n_rows: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros((n_rows, N), np.float32)
    x[:, :6] = rng.random((n_rows, 6)) < 0.4
    x[np.arange(n_rows), 6 + rng.integers(0, 3, n_rows)] = 1
    has = np.flatnonzero(rng.random(n_rows) < 0.7)
    x[has, 9 + rng.integers(0, 3, has.size)] = 1
    return x


def scores(fm, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return fm(SparseBatch(sp.csr_matrix(x))).numpy()


def flippable(fm, x: np.ndarray, budget: int) -> bool:
    """Whether some set of at most ``budget`` edits changes the row's predicted class."""
    edits = [(j, np.array([j])) for j in TOGGLES]
    for number, (offset, size) in enumerate(FIELDS):
        current = offset + np.flatnonzero(x[offset : offset + size])
        edits += [
            (-1 - number, np.concatenate([[offset + c], current]))
            for c in range(size)
            if offset + c not in current
        ]
    rows = [x]
    for size in range(1, budget + 1):
        for chosen in itertools.combinations(edits, size):
            if len({key for key, _ in chosen}) < size:
                continue
            edited = x.copy()
            for _, flips in chosen:
                edited[flips] = 1 - edited[flips]
            rows.append(edited)
    moved = scores(fm, np.stack(rows))
    return bool(((moved > 0) != (moved[0] > 0)).any())


def main() -> None:
    print("| b | rows brute force flips | of them, greedy flips | share |")
    print("|---:|---:|---:|---:|")
    for budget in (1, 2, 3):
        found = greedy_found = 0
        for seed in range(5):
            fm, x = random_model(10 + seed), random_rows(200, 10 + seed)
            clean = scores(fm, x)
            labels = np.where(clean > 0, 1.0, -1.0)
            threat = EditThreat(budget, TOGGLES, FIELDS)
            attacked = greedy_edits(fm, x, torch.from_numpy(-labels).float(), threat).scores
            greedy = (attacked.numpy() > 0) != (clean > 0)
            brute = np.array([flippable(fm, row, budget) for row in x])
            found += brute.sum()
            greedy_found += (greedy & brute).sum()
        print(f"| {budget} | {found} | {greedy_found} | {greedy_found / found:.1%} |")


if __name__ == "__main__":
    main()
