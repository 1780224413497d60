"""An FM recommender whose users edit whole features of their own profiles.

A user who changes their age or occupation (or toggles a feature of a multi-valued
field) moves their x V by an edit's move u_e. Each score is the user table's row times
the item table's, and the item table's column of the user part is all ones, so the gap
between two items' scores moves by <u_e, s_i - s_j> (s: the items' x V): the user's own
terms cancel. The attacker raises the mean score of the user's other unseen items
against the mean score of the user's clean top k; that gain is linear in x V, so each
edit's share of it is exact and additive, and the b edits with the largest gains (at
most one per field) are its exact maximum. The edited profiles are then ranked as any
other (:meth:`Recommender.recommend` on the edited user table).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from fmadv.errors import ConfigError
from fmadv.evaluation.edits import edit_threat
from fmadv.models.fm_edits import field_values, flip
from fmadv.recommend.base import Recommender
from fmadv.threat import EditThreat


def side_fields(interactions) -> tuple[str, ...]:
    """The users' side fields: every user field but the one naming the user (which has a
    value per user)."""
    return tuple(
        name
        for name in interactions.user_fields
        if interactions.feature_map.field(name).size != interactions.n_users
    )


def profile_threat(interactions, budget: int, fields: tuple[str, ...] | None = None):
    """Edits of the users' ``fields`` (default: their :func:`side_fields`)."""
    fields = side_fields(interactions) if fields is None else fields
    others = [name for name in fields if name not in interactions.user_fields]
    if others:
        raise ConfigError(
            f"profile edits change user fields ({', '.join(interactions.user_fields)}), "
            f"not {', '.join(others)}"
        )
    return edit_threat(interactions.feature_map, fields, budget)


class EditedFMRecommender(Recommender):
    """The users of a fitted :class:`~fmadv.recommend.fm.FMRecommender` after their b
    most harmful profile edits (see the module's docstring); ``k``: the clean list the
    edits aim at."""

    def __init__(self, base, threat: EditThreat, k: int = 10):
        self.base = base
        self.threat = threat
        self.k = k
        self.name = f"{base.name} under {threat.budget} profile edits"

    def _fit(self, interactions) -> None:
        self.base._check_fitted()

    def fit(self, interactions=None) -> EditedFMRecommender:
        """Reuse the base recommender's interactions (``interactions`` is ignored)."""
        self.interactions_ = self.base.interactions_
        return self

    def edited_profiles(self) -> sp.csr_matrix:
        """Every user's features after the edits."""
        inter, fm = self.interactions_, self.base.model.model_
        users = np.arange(inter.n_users)
        rows = sp.csr_matrix(inter.user_features, dtype=np.float32)
        top_ids, _ = self.base.recommend(users, k=min(self.k, inter.n_items))
        _, item_table = self.base.tables()
        items = item_table[:, : fm.n_factors].double().cpu()
        # The gain direction per user: mean x V of the other unseen items minus that of
        # the clean top k (the top k holds no seen item).
        found = top_ids >= 0
        top = sp.csr_matrix(
            (np.ones(found.sum()), (np.nonzero(found)[0], top_ids[found])),
            (inter.n_users, inter.n_items),
        )
        seen = sp.csr_matrix(inter.seen, dtype=np.float64)
        seen.data[:] = 1
        in_top = np.asarray(top.sum(1)).ravel()
        rest_count = inter.n_items - np.asarray(seen.sum(1)).ravel() - in_top
        top_sum, seen_sum = (torch.from_numpy(m @ items.numpy()) for m in (top, seen))
        rest_sum = items.sum(0) - seen_sum - top_sum
        direction = (
            rest_sum / torch.from_numpy(rest_count.clip(1))[:, None]
            - top_sum / (torch.from_numpy(in_top.clip(1))[:, None])
        )
        return _best_edits(fm, rows, direction, self.threat)

    def radius(self, user_ids) -> np.ndarray:
        """The fewest edits that change each user's clean top k (:func:`list_radius`):
        above ``threat.budget``, the list is certified against these edits."""
        return list_radius(self.base, user_ids, self.threat, self.k)

    def tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_fitted()
        if not hasattr(self, "user_table_"):
            self.user_table_ = self.base.model.model_.user_table(self.edited_profiles())
        return self.user_table_, self.base.tables()[1]

    def score(self, user_ids: np.ndarray, items: np.ndarray | None = None) -> torch.Tensor:
        users, item_table = self.tables()
        chosen = users[torch.as_tensor(np.asarray(user_ids, dtype=np.int64))]
        if items is not None:
            item_table = item_table[torch.as_tensor(np.asarray(items, dtype=np.int64))]
        return chosen @ item_table.T


def _best_edits(fm, rows: sp.csr_matrix, direction: torch.Tensor, threat: EditThreat):
    """Each row after its at most b edits with the largest gains <u_e, direction> > 0,
    at most one per field (the exact maximum: the gains add up)."""
    V = fm.factors.detach().double().cpu()
    n_rows = rows.shape[0]
    gains, moves = [], []  # per candidate group: (rows x 1) best gain and its flips
    if threat.toggles:
        toggles = np.asarray(threat.toggles)
        x = rows[:, toggles].toarray()
        gain = (1 - 2 * x) * (direction @ V[toggles].T).numpy()
        for position, feature in enumerate(toggles):
            gains.append(gain[:, position])
            moves.append([np.full(n_rows, feature)])
    for offset, size in threat.choices:
        current = field_values(rows, offset, size)
        has = current >= 0
        values = (direction @ V[offset : offset + size].T).numpy()
        base = np.where(has, (direction * V[np.maximum(current, 0)]).sum(1).numpy(), 0.0)
        gain = values - base[:, None]
        gain[np.arange(n_rows)[has], current[has] - offset] = -np.inf
        best = gain.argmax(1)
        gains.append(gain[np.arange(n_rows), best])
        moves.append([offset + best, current])
    gain = np.stack(gains, 1)
    order = np.argsort(-gain, axis=1, kind="stable")[:, : threat.budget]
    flips = []
    for slot in range(order.shape[1]):
        chosen = order[:, slot]
        takes = gain[np.arange(n_rows), chosen] > 0
        for group in np.unique(chosen[takes]):
            who = np.flatnonzero(takes & (chosen == group))
            for features in moves[group]:
                real = features[who] >= 0
                flips.append((who[real], features[who][real]))
    return flip(rows, flips)


@dataclass
class Push:
    """How many profile edits bring an item into a user's top k.

    ``edits``: the greedy attack's count (None: not within the budget), with the edited
    ``profile``; ``at_least``: no set of fewer edits can do it (the certificate: each
    item above the target that it must overtake is checked on its own, with its exact
    best gain); budget + 1 when no edits within the budget can.
    """

    edits: int | None
    at_least: int
    profile: sp.csr_matrix
    changed: list[int]  # the features whose value the edits flipped


def push(base, user: int, item: int, threat: EditThreat, k: int = 10) -> Push:
    """The fewest profile edits (at most ``threat.budget``) that bring ``item`` into the
    top ``k`` of ``user`` on a fitted FM recommender: greedy (each step the edit that
    ranks the item highest, every candidate scored exactly), and a lower bound no attack
    can beat."""
    inter, fm = base.interactions_, base.model.model_
    if inter.seen[user, item]:
        raise ConfigError(f"user {user} has already seen item {item}: it is never recommended")
    items = base.tables()[1].double()
    unseen = np.ones(inter.n_items, bool)
    unseen[inter.seen[user].indices] = False
    profile = sp.csr_matrix(inter.user_features[user], dtype=np.float32)
    used: set[int] = set()  # candidate groups already edited
    at_least = _pushes_needed(fm, profile, items, unseen, item, threat, k)
    for edits in range(threat.budget + 1):
        if _rank(fm, profile, items, unseen, item) < k:
            changed = (profile != inter.user_features[user]).nonzero()[1].tolist()
            return Push(edits, at_least, profile, sorted(changed))
        if edits == threat.budget:
            break
        options = [
            (group, candidate)
            for group, candidate in _single_edits(profile, threat)
            if group not in used
        ]
        if not options:  # every field edited already
            break
        ranks = [_rank(fm, c, items, unseen, item) for _, c in options]
        best = int(np.argmin(ranks))
        used.add(options[best][0])
        profile = options[best][1]
    changed = (profile != inter.user_features[user]).nonzero()[1].tolist()
    return Push(None, at_least, profile, sorted(changed))


def _rank(fm, profile, items, unseen, item) -> int:
    """The item's 0-based rank among the user's unseen items."""
    scores = (_user_row(fm, profile) @ items.T).numpy()[0]
    return int((scores[unseen] > scores[item]).sum())


def _single_edits(profile: sp.csr_matrix, threat: EditThreat):
    """(group, edited profile) for each single edit: a toggle, or a field's new value."""
    x = profile.toarray()[0]
    for feature in threat.toggles:
        y = x.copy()
        y[feature] = 1 - y[feature]
        yield ("toggle", feature), sp.csr_matrix(y)
    for offset, size in threat.choices:
        for value in range(size):
            if x[offset + value] == 1:
                continue
            y = x.copy()
            y[offset : offset + size] = 0
            y[offset + value] = 1
            yield ("field", offset), sp.csr_matrix(y)


def _pushes_needed(fm, profile, items, unseen, item, threat: EditThreat, k: int) -> int:
    """The least b for which b edits are not ruled out (at most ``threat.budget`` + 1).

    To enter the top k the item must overtake all but k - 1 of the m unseen items above
    it. Overtaking item j needs sum_e <u_e, s_item - s_j> > score_j - score_item, and the
    largest such sum over b edits (one per field) is exact: the b largest per-field
    maxima. So if fewer than m - k + 1 items can be overtaken even one at a time, no b
    edits bring the item in.
    """
    scores = (_user_row(fm, profile) @ items.T)[0]
    above = np.flatnonzero(unseen & (scores > scores[item]).numpy())
    needed = len(above) - k + 1
    if needed <= 0:
        return 0
    moves, group = _moves(fm, profile, threat)
    toward = moves @ items[:, : fm.n_factors].T  # <u_e, s_j> for every item
    reach = _reach(toward[:, item, None] - toward[:, above], group)
    gaps = scores[above] - scores[item]
    for b in range(1, threat.budget + 1):
        if (reach[min(b, len(reach)) - 1] > gaps).sum() >= needed:
            return b
    return threat.budget + 1


def list_radius(base, user_ids, threat: EditThreat, k: int = 10) -> np.ndarray:
    """The fewest profile edits (of ``threat``) that change each user's top-``k`` set on
    a fitted FM recommender; ``threat.budget`` + 1 where no edits within the budget can.

    Exact: the set changes exactly when some item j outside it overtakes some item i in
    it, and the most b edits can move the gap score_i - score_j is the sum of the b
    largest per-field maxima of <u_e, s_j - s_i> (the gap is linear in the user's x V).
    A tie after the edits counts as a change. Costs O(n_edits k n_items) per user.
    """
    inter, fm = base.interactions_, base.model.model_
    user_ids = np.asarray(user_ids, dtype=np.int64)
    users, items = base.tables()
    items = items.double()
    vectors = items[:, : fm.n_factors]
    top_ids, _ = base.recommend(user_ids, k=min(k, inter.n_items))
    radius = np.full(len(user_ids), threat.budget + 1)
    for row, user in enumerate(user_ids):
        scores = users[user].double() @ items.T
        top = top_ids[row][top_ids[row] >= 0]
        rest = np.ones(inter.n_items, bool)
        rest[inter.seen[user].indices] = False
        rest[top] = False
        if not len(top) or not rest.any():
            continue
        profile = sp.csr_matrix(inter.user_features[user], dtype=np.float32)
        moves, group = _moves(fm, profile, threat)
        toward = moves @ vectors.T
        # (b x top x rest) the most b edits move each gap score_i - score_j down by
        reach = _reach(toward[:, None, rest] - toward[:, top, None], group)
        gaps = scores[top][:, None] - scores[rest][None, :]
        for b in range(1, threat.budget + 1):
            if (reach[min(b, len(reach)) - 1] >= gaps).any():
                radius[row] = b
                break
    return radius


def _moves(fm, profile: sp.csr_matrix, threat: EditThreat) -> tuple[torch.Tensor, torch.Tensor]:
    """Every single edit of one profile as its move u_e of x V (edits x k), and the
    group (toggle or field) each belongs to: at most one edit per group."""
    V = fm.factors.detach().double().cpu()
    x = profile.toarray()[0]
    moves, group = [], []
    for feature in threat.toggles:
        moves.append((1 - 2 * x[feature]) * V[feature][None, :])
        group.append(len(group))
    for offset, size in threat.choices:
        current = field_values(profile, offset, size)[0]
        old = V[current] if current >= 0 else torch.zeros(fm.n_factors, dtype=V.dtype)
        values = [v for v in range(offset, offset + size) if v != current]
        moves.append(V[values] - old)
        group.append(len(group))
    number = torch.cat([torch.full((len(m),), g) for m, g in zip(moves, group, strict=True)])
    return torch.cat(moves), number


def _reach(gains: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """(b x ...) the largest sum of at most b of ``gains`` (edits x ...), at most one per
    group: the cumulative sums of the per-group positive maxima, largest first."""
    index = group.view(-1, *[1] * (gains.dim() - 1)).expand_as(gains)
    best = gains.new_zeros((int(group.max()) + 1, *gains.shape[1:]))
    best = best.scatter_reduce(0, index, gains, "amax", include_self=True)
    return best.sort(0, descending=True).values.cumsum(0)


def _user_row(fm, profile: sp.csr_matrix) -> torch.Tensor:
    """The user table's row of one profile."""
    return fm.user_table(profile).double()
