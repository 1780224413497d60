"""Whole-feature edits of an FM's binary rows, exactly: the greedy attack and its certificate.

For a binary row x with s = x V, flipping the features of a set of edits moves x by
delta (delta_j = 1 - 2 x_j on the flipped features). The score changes by exactly

    y_hat(x + delta) - y_hat(x) = sum_e gain_e + sum_{e < e'} <u_e, u_e'>,

where u_e = sum_{j in e} delta_j V_j is an edit's move of x V and gain_e its change on its
own:
- toggling feature j: gain = delta_j (w_j + <V_j, s>) + x_j ||V_j||^2;
- changing a one-hot field from value a to c: gain = w_c + <V_c, s - V_a> - (w_a +
  <V_a, s> - ||V_a||^2) (without a, the terms of a drop).

So after an edit, every other edit's gain moves by <u_e, u_e'>: updating s by u_e and
recomputing the gains from the row's original features is exact. The greedy attack takes
the best edit, b times (O(b n k) per row); the certificate bounds any b edits by the b
largest gains plus the pairwise terms, sum_{e < e'} |u_e| |u_e'| over the b longest
moves (at most one edit per field).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from fmadv.models.fm import FactorizationMachine
from fmadv.sparse import SparseBatch
from fmadv.threat import EditThreat

# Candidate toggles scored at once per row (the (rows x tile) gains stay small).
TILE = 4096


@dataclass
class EditResult:
    """The greedy attack's outcome for each row."""

    rows: sp.csr_matrix  # the edited rows
    scores: torch.Tensor  # y_hat of the edited rows (exact, from the closed form)
    n_edits: np.ndarray  # edits made (the attack stops early where no edit helps)
    # (rows x budget + 1) y_hat after 0, 1, ..., budget edits: the attack of a smaller
    # budget makes the same first edits, so column b is the b-edit attack's score.
    path: torch.Tensor | None = None


def field_values(rows: sp.csr_matrix, offset: int, size: int) -> np.ndarray:
    """The feature each row has on in the one-hot field at ``offset`` (-1: none)."""
    block = sp.csr_matrix(rows[:, offset : offset + size])
    value = np.full(rows.shape[0], -1, dtype=np.int64)
    has = np.diff(block.indptr) > 0
    value[has] = offset + block.indices[block.indptr[:-1][has]]
    return value


class _Candidates:
    """Every single edit of a block of rows, with its gain and its move of x V."""

    def __init__(
        self, model: FactorizationMachine, rows: sp.csr_matrix, threat: EditThreat, grad=False
    ):
        device, dtype = model.bias.device, model.linear.dtype
        self.V, self.w = model.factors, model.linear
        if not grad:
            self.V, self.w = self.V.detach(), self.w.detach()
        self.q = self.V.square().sum(1)
        self.toggles = torch.as_tensor(threat.toggles, dtype=torch.long, device=device)
        x_toggles = rows[:, list(threat.toggles)].toarray() if threat.toggles else None
        self.x_toggles = (
            torch.zeros((rows.shape[0], 0), dtype=dtype, device=device)
            if x_toggles is None
            else torch.as_tensor(x_toggles, dtype=dtype, device=device)
        )
        self.fields = [
            (offset, size, torch.as_tensor(field_values(rows, offset, size), device=device))
            for offset, size in threat.choices
        ]

    def _field_terms(self, s: torch.Tensor, offset: int, size: int, value: torch.Tensor):
        """(gains, moves' squared norms) of changing the field to each of its values."""
        columns = slice(offset, offset + size)
        has = value >= 0
        at = value.clamp(min=0)
        V_a = self.V[at] * has[:, None]
        base = (self.w[at] + (self.V[at] * s).sum(1) - self.q[at]) * has
        cross = V_a @ self.V[columns].T
        gains = self.w[columns] + s @ self.V[columns].T - cross - base[:, None]
        norms2 = self.q[columns] + self.q[at][:, None] * has[:, None] - 2 * cross
        same = torch.arange(offset, offset + size, device=s.device) == value[:, None]
        return gains, norms2.clamp_min(0), same

    def _toggle_terms(self, s: torch.Tensor, tile: slice):
        features = self.toggles[tile]
        x = self.x_toggles[:, tile]
        gains = (1 - 2 * x) * (self.w[features] + s @ self.V[features].T) + x * self.q[features]
        return gains, self.q[features].expand_as(gains), None

    def blocks(self, s: torch.Tensor):
        """Yield (kind, index, gains, squared norms of the moves, edits that change
        nothing or None): kind "toggle" with the tile's first position, or "field" with
        the field's number."""
        for start in range(0, len(self.toggles), TILE):
            yield ("toggle", start, *self._toggle_terms(s, slice(start, start + TILE)))
        for number, (offset, size, value) in enumerate(self.fields):
            yield ("field", number, *self._field_terms(s, offset, size, value))


def _sums(model: FactorizationMachine, rows: sp.csr_matrix):
    batch = SparseBatch(rows, model.bias.device, model.linear.dtype)
    sums = model.side_sums(batch, model.side_table())
    return sums[:, : model.n_factors].clone(), model.scores_from_sums(sums)


@torch.no_grad()
def greedy_edits(
    model: FactorizationMachine, rows: sp.csr_matrix, direction: torch.Tensor, threat: EditThreat
) -> EditResult:
    """Up to ``threat.budget`` edits per row, each the one that moves the score most in
    ``direction`` (+1 up, -1 down) given the edits before it; a row stops when no edit
    moves it that way. The scores are exact (see the module's docstring)."""
    rows = sp.csr_matrix(rows, dtype=np.float32)
    candidates = _Candidates(model, rows, threat)
    s, scores = _sums(model, rows)
    n_rows, device = rows.shape[0], s.device
    direction = direction.to(device, s.dtype)
    toggled = torch.zeros((n_rows, len(candidates.toggles)), dtype=torch.bool, device=device)
    changed = torch.zeros((n_rows, len(candidates.fields)), dtype=torch.bool, device=device)
    flips: list[tuple[np.ndarray, np.ndarray]] = []  # (row, feature) pairs that flip
    n_edits = np.zeros(n_rows, dtype=np.int64)
    everyone = torch.arange(n_rows, device=device)
    path = [scores]
    for _ in range(threat.budget):
        best = torch.zeros(n_rows, dtype=s.dtype, device=device)  # only gains > 0 count
        choice = torch.full((n_rows, 3), -1, dtype=torch.long, device=device)
        for kind, index, gains, _, void in candidates.blocks(s):
            value = gains * direction[:, None]
            if void is not None:
                value = value.masked_fill(void, -torch.inf)
            if kind == "toggle":
                value = value.masked_fill(toggled[:, index : index + value.shape[1]], -torch.inf)
            else:
                value = value.masked_fill(changed[:, index, None], -torch.inf)
            top, at = value.max(1)
            better = top > best
            best = torch.where(better, top, best)
            code = 0 if kind == "toggle" else 1
            new = torch.stack([torch.full_like(at, code), torch.full_like(at, index), at], 1)
            choice = torch.where(better[:, None], new, choice)
        moving = everyone[choice[:, 0] >= 0]
        if not len(moving):
            break
        for code, kind in ((0, "toggle"), (1, "field")):
            rows_of = moving[choice[moving, 0] == code]
            if not len(rows_of):
                continue
            index, at = choice[rows_of, 1], choice[rows_of, 2]
            if kind == "toggle":
                position = index + at
                feature = candidates.toggles[position]
                delta = 1 - 2 * candidates.x_toggles[rows_of, position]
                s[rows_of] += delta[:, None] * candidates.V[feature]
                toggled[rows_of, position] = True
                flips.append((rows_of.cpu().numpy(), feature.cpu().numpy()))
            else:
                for number in index.unique().tolist():
                    chosen = rows_of[index == number]
                    offset, _, value = candidates.fields[number]
                    new_value = offset + at[index == number]
                    old = value[chosen]
                    s[chosen] += candidates.V[new_value]
                    had = old >= 0
                    s[chosen[had]] -= candidates.V[old[had]]
                    changed[chosen, number] = True
                    flips.append((chosen.cpu().numpy(), new_value.cpu().numpy()))
                    flips.append((chosen[had].cpu().numpy(), old[had].cpu().numpy()))
        scores = scores + best * direction
        path.append(scores)
        n_edits[moving.cpu().numpy()] += 1
    path += [scores] * (threat.budget + 1 - len(path))
    return EditResult(flip(rows, flips), scores, n_edits, torch.stack(path, 1))


def flip(rows: sp.csr_matrix, flips) -> sp.csr_matrix:
    """``rows`` with the listed (row, feature) entries flipped between 0 and 1."""
    if not flips:
        return rows.copy()
    row = np.concatenate([r for r, _ in flips])
    col = np.concatenate([c for _, c in flips])
    toggle = sp.csr_matrix((np.ones(len(row), np.float32), (row, col)), rows.shape)
    flipped = rows + toggle - 2 * rows.multiply(toggle)
    flipped.eliminate_zeros()
    return sp.csr_matrix(flipped, dtype=np.float32)


def edit_certificate(
    model: FactorizationMachine,
    rows: sp.csr_matrix,
    direction: torch.Tensor,
    threat: EditThreat,
    grad: bool = False,
    every_budget: bool = False,
) -> torch.Tensor:
    """An upper bound, per row, on how far any ``threat.budget`` edits move the score in
    ``direction``: the b largest positive gains (one per field) plus the pairwise terms
    of the b longest moves, sum_{e < e'} |u_e| |u_e'|. Never below what any attack
    achieves (tests/test_fm_edits.py, against brute force). With ``grad``, the bound is
    differentiable in the model's parameters (to train on the certified margin); with
    ``every_budget``, (rows x budget + 1): the bound for 0, 1, ..., b edits."""
    with torch.set_grad_enabled(grad):
        rows = sp.csr_matrix(rows, dtype=np.float32)
        bounds = _certificate(model, rows, direction, threat, grad)
    return bounds if every_budget else bounds[:, -1]


def _certificate(model, rows, direction, threat, grad) -> torch.Tensor:
    candidates = _Candidates(model, rows, threat, grad)
    s, _ = _sums(model, rows)
    b = threat.budget
    direction = direction.to(s.device, s.dtype)
    gains_kept = torch.zeros((rows.shape[0], 0), dtype=s.dtype, device=s.device)
    norms_kept = gains_kept.clone()
    for kind, _, gains, norms2, void in candidates.blocks(s):
        value = (gains * direction[:, None]).clamp_min(0)
        if void is not None:
            value = value.masked_fill(void, 0)
        norms = norms2.clamp_min(1e-12).sqrt()  # (no infinite slope at 0; only larger)
        if kind == "field":  # at most one edit per field: its best gain, its longest move
            value, norms = value.max(1, keepdim=True).values, norms.max(1, keepdim=True).values
        gains_kept = _top(torch.cat([gains_kept, value], 1), b)
        norms_kept = _top(torch.cat([norms_kept, norms], 1), b)
    # Largest first, so that the first b' columns are the b' largest, for every b' <= b.
    zero = gains_kept.new_zeros((rows.shape[0], 1))
    first = torch.cat([zero, gains_kept.sort(1, descending=True).values.cumsum(1)], 1)
    norms = norms_kept.sort(1, descending=True).values
    pairs = (norms.cumsum(1).square() - norms.square().cumsum(1)) / 2
    bounds = first + torch.cat([zero, pairs], 1)
    # Fewer single edits than the budget: more budget reaches no further.
    return torch.cat([bounds, bounds[:, -1:].expand(-1, b + 1 - bounds.shape[1])], 1)


def _top(values: torch.Tensor, b: int) -> torch.Tensor:
    return values if values.shape[1] <= b else torch.topk(values, b, dim=1).values
