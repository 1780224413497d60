"""A recommender's training data in index space, built from labelled FM rows.

Users and items get indices 0..n-1 (sorted raw ids over every split, so test-only users
and items have an index too). Matrices follow the implicit library's convention: CSR,
rows = users, columns = items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from fmadv.data.dataset import Dataset, Splits
from fmadv.data.features import FeatureMap
from fmadv.errors import ConfigError


@dataclass
class Interactions:
    """Who interacted with what in the training split, and each side's features.

    Attributes
    ----------
    users, items
        Raw ids by index.
    liked
        (n_users x n_items) 1 where a training row of the pair is labelled +1: the
        implicit-feedback view the baselines learn from.
    seen
        (n_users x n_items) 1 for every training pair, whatever its label: what
        ``filter_seen`` removes.
    ratings
        (n_users x n_items) raw ratings of the training rows, when the data has them.
    user_features, item_features
        (n_users x n_features) and (n_items x n_features) rows holding only the features
        that are a function of the user (resp. the item): the split of the FM into a user
        part and an item part. None without a feature map.
    context_fields
        Fields that depend on neither the user nor the item alone (time, place...).
    """

    users: np.ndarray
    items: np.ndarray
    liked: sp.csr_matrix
    seen: sp.csr_matrix
    ratings: sp.csr_matrix | None
    feature_map: FeatureMap | None
    user_features: sp.csr_matrix | None
    item_features: sp.csr_matrix | None
    user_fields: tuple[str, ...] = ()
    item_fields: tuple[str, ...] = ()
    context_fields: tuple[str, ...] = ()

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @classmethod
    def from_splits(cls, splits: Splits) -> Interactions:
        """Index every user and item of every split; learn from the training split."""
        parts = [d for d in (splits.train, splits.valid, splits.test) if d is not None]
        for part in parts:
            if part.user_ids is None or part.item_ids is None:
                raise ConfigError(f"dataset {part.name!r} has no user and item ids per row")
        users = np.unique(np.concatenate([p.user_ids for p in parts]))
        items = np.unique(np.concatenate([p.item_ids for p in parts]))
        interactions = cls(users, items, None, None, None, splits.train.feature_map, None, None)
        train = splits.train
        interactions.liked = interactions.relevant(train)
        interactions.seen = interactions.matrix(train)
        if train.ratings is not None:
            interactions.ratings = interactions.matrix(train, train.ratings)
        if train.feature_map is not None:
            interactions._split_features(parts)
        return interactions

    # -- ids ------------------------------------------------------------------------
    def user_index(self, raw_ids) -> np.ndarray:
        """Indices of raw user ids; a :class:`ConfigError` names the unknown ones."""
        return _index(self.users, raw_ids, "user")

    def item_index(self, raw_ids) -> np.ndarray:
        """Indices of raw item ids; a :class:`ConfigError` names the unknown ones."""
        return _index(self.items, raw_ids, "item")

    def relevant(self, dataset: Dataset) -> sp.csr_matrix:
        """(n_users x n_items) 1 where a row of ``dataset`` is labelled +1: the liked pairs
        of training, the relevant pairs of a held-out split."""
        return self.matrix(dataset, dataset.y > 0)

    def matrix(self, dataset: Dataset, values=None) -> sp.csr_matrix:
        """(n_users x n_items) CSR of a split's rows; ``values`` per row (default 1)."""
        rows = self.user_index(dataset.user_ids)
        cols = self.item_index(dataset.item_ids)
        data = np.ones(len(rows), np.float32) if values is None else np.asarray(values, np.float32)
        keep = data != 0
        matrix = sp.csr_matrix(
            (data[keep], (rows[keep], cols[keep])), shape=(self.n_users, self.n_items)
        )
        matrix.sum_duplicates()
        if values is None or values.dtype == bool:
            matrix.data[:] = 1  # a pair rated twice is still one interaction
        return matrix

    # -- the user part and the item part of the features ----------------------------
    @property
    def user_columns(self) -> np.ndarray:
        """Sorted feature indices of the user's fields: what a user's profile can hold."""
        if self.feature_map is None:
            raise ConfigError("these interactions have no feature map")
        # The fields follow the map's order, so their spans come out sorted.
        spans = [self.feature_map.field_slice(name) for name in self.user_fields]
        return np.concatenate([np.arange(s.start, s.stop) for s in spans] or [np.zeros(0, int)])

    def _split_features(self, parts: list[Dataset]) -> None:
        X = sp.vstack([p.X for p in parts]).tocsr()
        user_of_row = self.user_index(np.concatenate([p.user_ids for p in parts]))
        item_of_row = self.item_index(np.concatenate([p.item_ids for p in parts]))
        fmap = self.feature_map
        user_fields, item_fields, context = [], [], []
        for field in fmap.fields:
            block = X[:, fmap.field_slice(field.name)]
            if _is_function_of(block, user_of_row):
                user_fields.append(field.name)
            elif _is_function_of(block, item_of_row):
                item_fields.append(field.name)
            else:
                context.append(field.name)
        self.user_fields, self.item_fields = tuple(user_fields), tuple(item_fields)
        self.context_fields = tuple(context)
        self.user_features = _owner_rows(X, user_of_row, self.n_users, fmap, user_fields)
        self.item_features = _owner_rows(X, item_of_row, self.n_items, fmap, item_fields)


def _index(known: np.ndarray, raw_ids, what: str) -> np.ndarray:
    raw = np.atleast_1d(np.asarray(raw_ids, dtype=np.int64))
    positions = np.searchsorted(known, raw)
    positions = np.clip(positions, 0, len(known) - 1)
    unknown = known[positions] != raw if len(known) else np.ones(len(raw), bool)
    if unknown.any():
        shown = ", ".join(str(i) for i in raw[unknown][:5])
        raise ConfigError(f"unknown {what} id(s): {shown} ({unknown.sum()} in all)")
    return positions


def _first_rows(owner_of_row: np.ndarray) -> np.ndarray:
    """Row position of each owner's first occurrence (owners without rows: -1)."""
    first = np.full(owner_of_row.max() + 1, -1, dtype=np.int64)
    order = np.arange(len(owner_of_row))[::-1]
    first[owner_of_row[order]] = order  # later writes (earlier rows) win
    return first


def _is_function_of(block: sp.csr_matrix, owner_of_row: np.ndarray) -> bool:
    """True when every row's pattern in ``block`` equals its owner's first row's."""
    first = _first_rows(owner_of_row)
    difference = block - block[first[owner_of_row]]
    difference.eliminate_zeros()
    return difference.nnz == 0


def _owner_rows(X, owner_of_row, n_owners, fmap: FeatureMap, fields) -> sp.csr_matrix:
    """One feature row per owner, keeping only the columns of ``fields``."""
    keep = np.zeros(fmap.n_features, np.float32)
    for name in fields:
        keep[fmap.field_slice(name)] = 1
    first = _first_rows(owner_of_row)
    rows = sp.csr_matrix((n_owners, fmap.n_features), dtype=np.float32)
    present = np.flatnonzero(first[:n_owners] >= 0) if len(first) else np.zeros(0, np.int64)
    picked = X[first[present]] @ sp.diags(keep)
    rows = sp.csr_matrix(
        (picked.data, picked.indices, picked.indptr), shape=(len(present), fmap.n_features)
    )
    scatter = sp.csr_matrix(
        (np.ones(len(present), np.float32), (present, np.arange(len(present)))),
        shape=(n_owners, len(present)),
    )
    result = (scatter @ rows).tocsr()
    result.eliminate_zeros()
    result.sort_indices()
    return result
