"""The recommender interface: one ``recommend`` for every model, in implicit's convention.

A model only says how it scores items for users (:meth:`Recommender.score`); filtering
what a user has seen, restricting to candidate items and top-k selection live here,
once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import scipy.sparse as sp
import torch

from fmadv.data.interactions import Interactions
from fmadv.errors import ConfigError
from fmadv.mips import top_k_inner_products

BLOCK_SCORES = 1 << 22


class Recommender(ABC):
    """Fit on :class:`Interactions`, then rank items for users (all ids are indices)."""

    name: str = ""
    #: Scores are predicted preferences on a common scale (an FM's y_hat), so this model
    #: can judge other models' lists.
    predicts_preference: bool = False

    def fit(self, interactions: Interactions) -> Recommender:
        """Learn from the training interactions; returns self."""
        self.interactions_ = interactions
        self._fit(interactions)
        return self

    @abstractmethod
    def _fit(self, interactions: Interactions) -> None: ...

    def under_attack(self, attack, k: int = 10) -> Recommender | None:
        """This fitted recommender with its inputs attacked before scoring (the attack
        aimed at the top ``k``), or None when it has no inputs an attack can move (the
        baselines)."""
        return None

    def tables(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(user table, item table) whose product is every score, for a model that
        scores by inner products; :meth:`recommend` then searches them exactly
        (:func:`~fmadv.mips.top_k_inner_products`) instead of scoring every item.
        None (the default) for other models."""
        return None

    @abstractmethod
    def score(self, user_ids: np.ndarray, items: np.ndarray | None = None) -> torch.Tensor:
        """Scores (len(user_ids) x n_items, or x len(items)); higher is better.

        The tensor belongs to the caller: :meth:`recommend` overwrites filtered entries in
        place, so an implementation never returns a view of its own state.
        """

    def recommend(
        self,
        user_ids,
        user_items: sp.csr_matrix | None = None,
        k: int = 10,
        filter_seen: bool = True,
        items=None,
        batch_size: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items for each user.

        Parameters
        ----------
        user_ids
            User indices (an int or an array).
        user_items
            (n_users x n_items) CSR of what each user has seen; default: the training
            interactions.
        k
            List length, 1 <= k <= number of candidate items.
        filter_seen
            Never return an item of ``user_items`` for that user.
        items
            Candidate item indices; default: the whole catalogue.
        batch_size
            Users scored at once; default: blocks of about 2^22 scores (16 MiB), small
            enough for the allocator to reuse one block instead of mapping fresh pages.
            A model with :meth:`tables` searches in blocks of its own.

        Returns
        -------
        (ids, scores)
            Arrays of shape (len(user_ids), k), best first. Where filtering leaves fewer
            than k candidates, the tail is padded with id -1 and score -inf.
        """
        self._check_fitted()
        users = np.atleast_1d(np.asarray(user_ids, dtype=np.int64))
        n_users, n_items = self.interactions_.n_users, self.interactions_.n_items
        if users.size and (users.min() < 0 or users.max() >= n_users):
            raise ConfigError(
                f"user indices must lie in [0, {n_users}); got {users.min()}..{users.max()}"
            )
        candidates = None if items is None else np.asarray(items, dtype=np.int64)
        if (
            candidates is not None
            and candidates.size
            and (candidates.min() < 0 or candidates.max() >= n_items)
        ):
            raise ConfigError(f"item indices must lie in [0, {n_items})")
        n_candidates = n_items if candidates is None else len(candidates)
        if not 1 <= k <= n_candidates:
            raise ConfigError(f"k must lie in [1, {n_candidates}] (the candidate items), got {k}")
        seen = self.interactions_.seen if user_items is None else sp.csr_matrix(user_items)
        tables = self.tables()
        if tables is not None:
            return _search(tables, users, seen if filter_seen else None, candidates, k)
        position = None
        if candidates is not None:
            position = np.full(n_items, -1, dtype=np.int64)
            position[candidates] = np.arange(len(candidates))

        batch_size = batch_size or max(1, BLOCK_SCORES // n_candidates)
        all_ids, all_scores = [], []
        for start in range(0, len(users), batch_size):
            chunk = users[start : start + batch_size]
            scores = self.score(chunk, candidates).to(torch.float32).cpu()
            if filter_seen:
                block = seen[chunk]
                rows = np.repeat(np.arange(len(chunk)), np.diff(block.indptr))
                cols = block.indices.astype(np.int64)
                if position is not None:
                    cols = position[cols]
                    rows, cols = rows[cols >= 0], cols[cols >= 0]
                scores[torch.from_numpy(rows), torch.from_numpy(cols)] = -torch.inf
            top_scores, top = torch.topk(scores, k, dim=1)
            ids = top.numpy() if candidates is None else candidates[top.numpy()]
            ids = np.where(np.isneginf(top_scores.numpy()), -1, ids)
            all_ids.append(ids)
            all_scores.append(top_scores.numpy())
        if not all_ids:
            return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
        return np.concatenate(all_ids), np.concatenate(all_scores)

    def _check_fitted(self) -> None:
        if not hasattr(self, "interactions_"):
            raise ConfigError(f"{type(self).__name__} is not fitted yet; call fit() first")


def _search(tables, users, seen, candidates, k) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`Recommender.recommend` by an exact inner-product search of the tables."""
    user_table, item_table = tables
    exclude = None if seen is None else seen[users]
    if candidates is not None:
        item_table = item_table[torch.from_numpy(candidates).to(item_table.device)]
        exclude = None if exclude is None else exclude[:, candidates]
    queries = user_table[torch.from_numpy(users).to(user_table.device)]
    ids, scores = top_k_inner_products(queries, item_table, k, exclude)
    if candidates is not None:
        ids = np.where(ids >= 0, candidates[ids], -1)
    return ids, scores.astype(np.float32)
