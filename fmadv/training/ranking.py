"""The FM trained to rank: implicit positives, negatives redrawn every epoch, and the
validation NDCG@k that picks the epoch.

A pointwise classifier of "liked among rated pairs" never sees an unrated item, so it
cannot learn which items a user picks at all. Here every batch holds groups of rows,
each a (user, liked item) pair followed by ``n_negatives`` pairs of the same user with
items drawn from the catalogue, none of them one the user liked. A group loss (BPR)
compares the positive with its negatives; a margin loss (logistic, hinge) reads the
same rows as +1 / -1 labels. A batch is a :class:`~fmadv.sparse.PairBatch`: each
group's user features are stored once, each distinct item's once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from fmadv.checks import integer
from fmadv.errors import ConfigError
from fmadv.metrics.ranking import ranking_report
from fmadv.mips import top_k_inner_products
from fmadv.models.fm import FactorizationMachine
from fmadv.sparse import PairBatch

SAMPLINGS = ("uniform", "popularity")
# Redraws of the negatives that hit a positive; each round redraws only those, so a
# user who likes a fraction f of the catalogue keeps f^rounds of them.
REDRAW_ROUNDS = 64


@dataclass(frozen=True)
class NegativeSampler:
    """Items for the negative rows: ``n_negatives`` per positive, never one of the
    user's positives, drawn uniformly over the catalogue or in proportion to each item's
    number of positives (``"popularity"``, which makes popular items harder negatives).
    """

    n_negatives: int = 4
    sampling: str = "uniform"

    def __post_init__(self) -> None:
        integer("n_negatives", self.n_negatives, 1)
        if self.sampling not in SAMPLINGS:
            raise ConfigError(
                f"unknown negative sampling {self.sampling!r}; expected one of {SAMPLINGS}"
            )

    def weights(self, positives: sp.csr_matrix) -> np.ndarray | None:
        """The item distribution: None for uniform, else popularity (plus one, so that no
        item is never drawn)."""
        if self.sampling == "uniform":
            return None
        counts = np.bincount(positives.indices, minlength=positives.shape[1]) + 1.0
        return counts / counts.sum()

    def draw(
        self,
        rng: np.random.Generator,
        users: np.ndarray,
        keys: np.ndarray,
        n_items: int,
        weights: np.ndarray | None = None,
    ) -> np.ndarray:
        """(len(users), n_negatives) item indices, none a positive of its row's user.

        ``keys`` are the sorted ``user * n_items + item`` of every positive pair.
        """
        shape = (len(users), self.n_negatives)
        items = _draw_items(rng, n_items, shape, weights)
        owners = np.broadcast_to(users[:, None], shape)
        for _ in range(REDRAW_ROUNDS):
            hit = _contains(keys, owners * n_items + items)
            if not hit.any():
                return items
            items[hit] = _draw_items(rng, n_items, int(hit.sum()), weights)
        raise ConfigError(
            "could not draw negatives: some users have a positive for (nearly) every item"
        )


def _draw_items(rng, n_items: int, size, weights: np.ndarray | None) -> np.ndarray:
    if weights is None:
        return rng.integers(n_items, size=size)
    return rng.choice(n_items, size=size, p=weights)


def pair_keys(pairs: sp.csr_matrix) -> np.ndarray:
    """Sorted ``user * n_items + item`` of the non-zero entries of a users x items CSR."""
    pairs = sp.csr_matrix(pairs)
    users = np.repeat(np.arange(pairs.shape[0], dtype=np.int64), np.diff(pairs.indptr))
    return np.sort(users * pairs.shape[1] + pairs.indices.astype(np.int64))


def _contains(sorted_keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    if not len(sorted_keys):
        return np.zeros(queries.shape, dtype=bool)
    at = np.searchsorted(sorted_keys, queries).clip(max=len(sorted_keys) - 1)
    return sorted_keys[at] == queries


@dataclass
class GroupBatches:
    """The ranker's batch source: each epoch, every positive (user, item) pair once, in
    an order drawn from the loop's generator, each followed by freshly drawn negatives.

    A batch holds ``batch_size`` groups of ``1 + n_negatives`` rows; the row of a pair
    is the user's feature row plus the item's, and ``user_columns`` are the user's
    fields (what an attack on the batch may move).
    """

    user_features: sp.csr_matrix
    item_features: sp.csr_matrix
    positives: sp.csr_matrix
    sampler: NegativeSampler
    batch_size: int
    user_columns: np.ndarray
    _users: np.ndarray = field(init=False, repr=False)
    _items: np.ndarray = field(init=False, repr=False)
    _keys: np.ndarray = field(init=False, repr=False)
    _weights: np.ndarray | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        integer("batch_size", self.batch_size, 1)
        positives = sp.csr_matrix(self.positives)
        positives.eliminate_zeros()
        if positives.nnz == 0:
            raise ConfigError("no positive (user, item) pairs to train the ranker on")
        counts = np.diff(positives.indptr)
        self._users = np.repeat(np.arange(positives.shape[0], dtype=np.int64), counts)
        self._items = positives.indices.astype(np.int64)
        self._keys = pair_keys(positives)
        self._weights = self.sampler.weights(positives)

    @property
    def n_groups(self) -> int:
        return len(self._users)

    @property
    def group_labels(self) -> np.ndarray:
        return np.array([1.0] + [-1.0] * self.sampler.n_negatives, dtype=np.float32)

    def __call__(
        self, rng: np.random.Generator, device: torch.device
    ) -> Iterator[tuple[PairBatch, torch.Tensor]]:
        n_items = self.item_features.shape[0]
        order = rng.permutation(self.n_groups)
        size = 1 + self.sampler.n_negatives
        for start in range(0, self.n_groups, self.batch_size):
            chosen = order[start : start + self.batch_size]
            users = self._users[chosen]
            negatives = self.sampler.draw(rng, users, self._keys, n_items, self._weights)
            items = np.concatenate([self._items[chosen, None], negatives], 1).ravel()
            distinct, item_of_row = np.unique(items, return_inverse=True)
            batch = PairBatch(
                self.user_features[users], self.item_features[distinct],
                np.repeat(np.arange(len(chosen)), size), item_of_row, self.user_columns, device,
            )  # fmt: skip
            labels = torch.from_numpy(np.tile(self.group_labels, len(chosen))).to(device)
            yield batch, labels


@torch.no_grad()
def top_k_unseen(
    model: FactorizationMachine,
    user_features: sp.csr_matrix,
    item_features: sp.csr_matrix,
    users: np.ndarray,
    seen: sp.csr_matrix,
    k: int,
) -> np.ndarray:
    """(len(users), k) item indices, best first, of the whole catalogue minus what each
    user has seen (an exact search of the FM's side tables, :mod:`fmadv.mips`)."""
    user_table, item_table = model.side_tables(user_features[users], item_features)
    return top_k_inner_products(user_table, item_table, k, seen[users])[0]


@dataclass
class HeldOutRanking:
    """Ranking metrics on held-out pairs: each user with a relevant held-out item ranks
    the whole catalogue, its training pairs filtered out, and the metrics of
    :func:`~fmadv.metrics.ranking.ranking_report` at ``k`` are averaged over those
    users. Called with a model, as the fit loop's ``evaluate``."""

    user_features: sp.csr_matrix
    item_features: sp.csr_matrix
    seen: sp.csr_matrix
    relevant: sp.csr_matrix
    k: int = 10
    metrics: tuple[str, ...] = ("ndcg",)
    users: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.relevant = sp.csr_matrix(self.relevant)
        self.users = np.flatnonzero(np.diff(self.relevant.indptr))
        if not len(self.users):
            raise ConfigError("the held-out split has no relevant (user, item) pair")

    def __call__(self, model: FactorizationMachine) -> dict[str, float]:
        lists = top_k_unseen(
            model, self.user_features, self.item_features, self.users, self.seen, self.k
        )
        report = ranking_report(lists, self.relevant[self.users], self.k)
        return {metric: float(np.nanmean(report[metric])) for metric in self.metrics}
