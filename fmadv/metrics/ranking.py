"""Ranking metrics of top-k lists against held-out items, one value per user.

Conventions shared by every function here:

* ``recommended`` is an int array of shape (n_users, k): row u holds user u's list, best
  first, padded with -1 where the list is shorter. Padding is never an item: it never
  hits, and it still occupies its rank, so a short list is scored as a list of k whose
  tail missed. A list holds distinct items (a repeated relevant item would count twice).
* ``relevant`` is a scipy CSR matrix (n_users x n_items); a stored nonzero marks a relevant
  (held-out) item.
* Per-user metrics return a float array of length n_users with NaN where the metric is
  undefined for that user (no relevant items, for most of them). Average with
  :func:`numpy.nanmean`, as scikit-learn and lightfm leave the averaging to the caller.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from fmadv.errors import ConfigError

# Cells of the dense score block ranked at once by auc_per_user: bounds its peak memory
# (a few float64 copies of the block) without a Python loop over users.
_AUC_BLOCK_CELLS = 1 << 22


def _check_lists(lists: np.ndarray, n_items: int | None = None, name: str = "lists") -> np.ndarray:
    """``lists`` as a 2-D int64 array of item indices or -1, checked."""
    lists = np.asarray(lists)
    if lists.ndim != 2:
        raise ConfigError(f"{name} must be 2-D (n_users, k), got shape {lists.shape}")
    if lists.size and not np.issubdtype(lists.dtype, np.integer):
        raise ConfigError(f"{name} must hold integer item indices, got dtype {lists.dtype}")
    lists = lists.astype(np.int64, copy=False)
    if lists.size:
        if lists.min() < -1:
            raise ConfigError(f"{name} holds an index below -1 (the only padding value)")
        if n_items is not None and lists.max() >= n_items:
            raise ConfigError(f"{name} holds an item index >= n_items = {n_items}")
    return lists


def _binary_csr(matrix, n_users: int | None = None, name: str = "relevant") -> sp.csr_matrix:
    """Canonical CSR copy of ``matrix``: duplicates summed, explicit zeros dropped."""
    csr = sp.csr_matrix(matrix, copy=True)
    csr.sum_duplicates()
    csr.eliminate_zeros()
    if n_users is not None and csr.shape[0] != n_users:
        raise ConfigError(f"{name} has {csr.shape[0]} rows, the lists cover {n_users} users")
    return csr


def _lookup(lists: np.ndarray, csr: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """(found, value) of the entry (u, lists[u, j]) of a canonical ``csr``, per cell.

    Every stored entry becomes the key row * n_cols + col; after canonicalisation the keys
    are already sorted (rows ascending, columns sorted within rows), so one searchsorted
    answers all n_users * k cells at once. Padding cells are never found.
    """
    n_cols = csr.shape[1]
    rows = np.repeat(np.arange(csr.shape[0], dtype=np.int64), np.diff(csr.indptr))
    keys = rows * n_cols + csr.indices.astype(np.int64)
    query = np.arange(lists.shape[0], dtype=np.int64)[:, None] * n_cols + lists
    if len(keys) == 0:
        return np.zeros(lists.shape, dtype=bool), np.zeros(lists.shape, dtype=np.float64)
    where = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    found = (keys[where] == query) & (lists >= 0)
    values = np.where(found, csr.data[where], 0).astype(np.float64)
    return found, values


def _hits_and_counts(recommended, relevant) -> tuple[np.ndarray, np.ndarray]:
    """(hit matrix, number of relevant items per user), inputs checked."""
    csr = _binary_csr(relevant)
    lists = _check_lists(recommended, csr.shape[1], "recommended")
    if csr.shape[0] != lists.shape[0]:
        raise ConfigError(
            f"relevant has {csr.shape[0]} rows, recommended has {lists.shape[0]} users"
        )
    found, _ = _lookup(lists, csr)
    return found, np.diff(csr.indptr)


def _undefined_where_empty(values: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    return np.where(n_relevant > 0, values, np.nan)


def _discounts(k: int) -> np.ndarray:
    """1 / log2(rank + 1) for the ranks 1..k."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def _precision(hit: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    k = hit.shape[1]
    return _undefined_where_empty(hit.sum(axis=1) / max(k, 1), n_rel)


def _recall(hit: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return _undefined_where_empty(hit.sum(axis=1) / n_rel, n_rel)


def _ndcg(hit: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    k = hit.shape[1]
    discount = _discounts(k)
    dcg = hit @ discount
    # ideal[m] = DCG of m hits in the first m ranks; the ideal list holds min(k, n_rel) hits.
    ideal = np.concatenate([[0.0], np.cumsum(discount)])
    idcg = ideal[np.minimum(n_rel, k)]
    with np.errstate(divide="ignore", invalid="ignore"):
        return _undefined_where_empty(dcg / idcg, n_rel)


def _average_precision(hit: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    k = hit.shape[1]
    ranks = np.arange(1, k + 1, dtype=np.float64)
    precision_at_hits = np.cumsum(hit, axis=1) / ranks * hit
    denominator = np.minimum(n_rel, k)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _undefined_where_empty(precision_at_hits.sum(axis=1) / denominator, n_rel)


def _reciprocal_rank(hit: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    any_hit = hit.any(axis=1)
    first = np.argmax(hit, axis=1)  # 0 for rows without a hit, masked below
    return _undefined_where_empty(np.where(any_hit, 1.0 / (first + 1.0), 0.0), n_rel)


def _hit_rate(hit: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    return _undefined_where_empty(hit.any(axis=1).astype(np.float64), n_rel)


def hits(recommended: np.ndarray, relevant: sp.spmatrix) -> np.ndarray:
    """Whether each recommended item is relevant.

    Parameters
    ----------
    recommended : ndarray of int, shape (n_users, k)
        Top-k lists, best first, padded with -1.
    relevant : sparse matrix, shape (n_users, n_items)
        Held-out truth; a stored nonzero marks a relevant item.

    Returns
    -------
    ndarray of bool, shape (n_users, k)
        True where ``recommended[u, j]`` is relevant for user u; padding is never a hit.
    """
    return _hits_and_counts(recommended, relevant)[0]


def precision_at_k(recommended: np.ndarray, relevant: sp.spmatrix) -> np.ndarray:
    """Precision@k: relevant items in the list / k (k = the list width, padding included).

    Parameters
    ----------
    recommended : ndarray of int, shape (n_users, k)
        Top-k lists, best first, padded with -1.
    relevant : sparse matrix, shape (n_users, n_items)
        Held-out truth; a stored nonzero marks a relevant item.

    Returns
    -------
    ndarray of float, shape (n_users,)
        NaN for users with no relevant item.
    """
    return _precision(*_hits_and_counts(recommended, relevant))


def recall_at_k(recommended: np.ndarray, relevant: sp.spmatrix) -> np.ndarray:
    """Recall@k: relevant items in the list / all relevant items of the user.

    The denominator is the user's full relevant count (not capped at k), so a user with
    more than k relevant items cannot reach 1.

    Parameters
    ----------
    recommended : ndarray of int, shape (n_users, k)
        Top-k lists, best first, padded with -1.
    relevant : sparse matrix, shape (n_users, n_items)
        Held-out truth; a stored nonzero marks a relevant item.

    Returns
    -------
    ndarray of float, shape (n_users,)
        NaN for users with no relevant item.
    """
    return _recall(*_hits_and_counts(recommended, relevant))


def ndcg_at_k(recommended: np.ndarray, relevant: sp.spmatrix) -> np.ndarray:
    """Normalised discounted cumulative gain with binary gains.

    ``DCG = sum_{r=1..k} hit_r / log2(r + 1)``; the ideal DCG puts ``min(k, n_relevant)``
    hits in the first ranks, so a perfect list scores 1 even when the user has more
    relevant items than fit in it.

    Parameters
    ----------
    recommended : ndarray of int, shape (n_users, k)
        Top-k lists, best first, padded with -1.
    relevant : sparse matrix, shape (n_users, n_items)
        Held-out truth; a stored nonzero marks a relevant item.

    Returns
    -------
    ndarray of float, shape (n_users,)
        NaN for users with no relevant item.
    """
    return _ndcg(*_hits_and_counts(recommended, relevant))


def average_precision_at_k(recommended: np.ndarray, relevant: sp.spmatrix) -> np.ndarray:
    """Average precision@k, whose mean over users is MAP@k.

    ``AP@k = sum_{r: hit_r} precision@r / min(k, n_relevant)``: capping the denominator
    at k lets a list of k hits score 1 however many relevant items the user has.

    Parameters
    ----------
    recommended : ndarray of int, shape (n_users, k)
        Top-k lists, best first, padded with -1.
    relevant : sparse matrix, shape (n_users, n_items)
        Held-out truth; a stored nonzero marks a relevant item.

    Returns
    -------
    ndarray of float, shape (n_users,)
        NaN for users with no relevant item.
    """
    return _average_precision(*_hits_and_counts(recommended, relevant))


def reciprocal_rank(recommended: np.ndarray, relevant: sp.spmatrix) -> np.ndarray:
    """1 / rank of the first relevant item in the list, 0 when the list has none.

    Parameters
    ----------
    recommended : ndarray of int, shape (n_users, k)
        Top-k lists, best first, padded with -1.
    relevant : sparse matrix, shape (n_users, n_items)
        Held-out truth; a stored nonzero marks a relevant item.

    Returns
    -------
    ndarray of float, shape (n_users,)
        NaN for users with no relevant item; the mean over users is MRR@k.
    """
    return _reciprocal_rank(*_hits_and_counts(recommended, relevant))


def hit_rate_at_k(recommended: np.ndarray, relevant: sp.spmatrix) -> np.ndarray:
    """1 when the list holds at least one relevant item, else 0.

    Parameters
    ----------
    recommended : ndarray of int, shape (n_users, k)
        Top-k lists, best first, padded with -1.
    relevant : sparse matrix, shape (n_users, n_items)
        Held-out truth; a stored nonzero marks a relevant item.

    Returns
    -------
    ndarray of float, shape (n_users,)
        NaN for users with no relevant item.
    """
    return _hit_rate(*_hits_and_counts(recommended, relevant))


def auc_per_user(
    scores: np.ndarray, relevant: sp.spmatrix, exclude: sp.spmatrix | None = None
) -> np.ndarray:
    """Per-user AUC of the relevant items' scores against the other items' scores.

    For user u the positives are the relevant items, the negatives every other item, and
    items stored in ``exclude[u]`` (e.g. the user's training items) are dropped from both
    sides, an excluded relevant item included. With ties counted half, the AUC is the
    Mann-Whitney statistic ``(sum of positive ranks - P (P + 1) / 2) / (P N)`` over the
    average ranks (as :func:`scipy.stats.rankdata` gives them) of the kept items.

    Parameters
    ----------
    scores : ndarray of float, shape (n_users, n_items)
        Predicted score of every (user, item).
    relevant : sparse matrix, shape (n_users, n_items)
        Held-out truth; a stored nonzero marks a relevant item.
    exclude : sparse matrix, shape (n_users, n_items), optional
        Items to leave out per user; a stored nonzero marks an excluded item.

    Returns
    -------
    ndarray of float, shape (n_users,)
        NaN for users with no kept positive or no kept negative, and for rows with a NaN
        score.
    """
    scores = np.asarray(scores)  # cast block by block, not as one float64 copy
    if scores.ndim != 2:
        raise ConfigError(f"scores must be 2-D (n_users, n_items), got shape {scores.shape}")
    n_users, n_items = scores.shape
    rel = _binary_csr(relevant, n_users)
    excl = None if exclude is None else _binary_csr(exclude, n_users, "exclude")
    for name, matrix in (("relevant", rel), ("exclude", excl)):
        if matrix is not None and matrix.shape[1] != n_items:
            raise ConfigError(f"{name} has {matrix.shape[1]} columns, scores has {n_items}")

    out = np.full(n_users, np.nan)
    block = max(1, _AUC_BLOCK_CELLS // max(n_items, 1))
    for start in range(0, n_users, block):
        stop = min(start + block, n_users)
        kept = np.ones((stop - start, n_items), dtype=bool)
        if excl is not None:
            kept &= excl[start:stop].toarray() == 0
        positive = (rel[start:stop].toarray() != 0) & kept
        out[start:stop] = rowwise_auc(scores[start:stop].astype(np.float64), positive, kept)
    return out


def rowwise_auc(scores: np.ndarray, positive: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Row-wise Mann-Whitney AUC of the kept cells, positives against the rest.

    The same average ranks scipy.stats.rankdata gives, computed on all rows at once from
    one argsort: an item's rank among the kept items of its row is L + (T + 1) / 2, with
    L the kept items scored strictly lower and T the kept items of its tie group. Counting
    only kept items along the sorted row is what drops the excluded ones from both sides.
    """
    n_rows, n_items = scores.shape
    if n_items == 0:
        return np.full(n_rows, np.nan)
    order = np.argsort(scores, axis=1)
    ordered = np.take_along_axis(scores, order, axis=1)
    kept_sorted = np.take_along_axis(kept, order, axis=1)
    positive_sorted = np.take_along_axis(positive, order, axis=1)
    kept_through = np.cumsum(kept_sorted, axis=1)  # kept items up to and including here
    column = np.arange(n_items)
    starts = np.ones(ordered.shape, dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ends = np.ones(ordered.shape, dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    first = np.maximum.accumulate(np.where(starts, column, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, column, n_items)[:, ::-1], axis=1)[:, ::-1]
    lower = np.take_along_axis(kept_through - kept_sorted, first, axis=1)
    tied = np.take_along_axis(kept_through, last, axis=1) - lower
    rank_sum = ((lower + (tied + 1) / 2.0) * positive_sorted).sum(axis=1)

    n_pos = positive.sum(axis=1)
    n_neg = kept.sum(axis=1) - n_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    # A NaN score has no place in the order (and NaN != NaN breaks the tie groups).
    defined = (n_pos > 0) & (n_neg > 0) & ~np.isnan(ordered).any(axis=1)
    return np.where(defined, auc, np.nan)


def catalog_coverage(recommended: np.ndarray, n_items: int) -> float:
    """Share of the catalogue's ``n_items`` items that appear in at least one list."""
    if n_items <= 0:
        raise ConfigError(f"n_items must be positive, got {n_items}")
    lists = _check_lists(recommended, n_items, "recommended")
    shown = np.unique(lists[lists >= 0])
    return float(len(shown) / n_items)


def novelty(recommended: np.ndarray, item_popularity: np.ndarray, n_users: int) -> np.ndarray:
    """Mean self-information of each list's items.

    An item's self-information is ``-log2(max(pop_i, 1) / n_users)``, with ``pop_i`` the
    number of training users who interacted with it; the floor at 1 keeps items no one
    interacted with finite (they score as rare as an item seen once).

    Parameters
    ----------
    recommended : ndarray of int, shape (n_users, k)
        Top-k lists, best first, padded with -1 (padding is ignored).
    item_popularity : ndarray, shape (n_items,)
        Training interaction count of every item.
    n_users : int
        Number of training users, the denominator of the popularity share.

    Returns
    -------
    ndarray of float, shape (n_lists,)
        In bits; NaN for an empty list.
    """
    if n_users <= 0:
        raise ConfigError(f"n_users must be positive, got {n_users}")
    popularity = np.asarray(item_popularity, dtype=np.float64).ravel()
    lists = _check_lists(recommended, len(popularity), "recommended")
    information = -np.log2(np.maximum(popularity, 1.0) / n_users)
    shown = lists >= 0
    total = np.where(shown, information[np.where(shown, lists, 0)], 0.0).sum(axis=1)
    count = shown.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, total / count, np.nan)


def ranking_report(
    recommended: np.ndarray,
    relevant: sp.spmatrix,
    k: int,
    scores: np.ndarray | None = None,
    exclude: sp.spmatrix | None = None,
    item_popularity: np.ndarray | None = None,
) -> dict[str, np.ndarray | float]:
    """Every ranking metric of the first ``k`` columns of ``recommended`` at once.

    Parameters
    ----------
    recommended : ndarray of int, shape (n_users, k_max)
        Top-k lists, best first, padded with -1; k <= k_max.
    relevant : sparse matrix, shape (n_users, n_items)
        Held-out truth; a stored nonzero marks a relevant item.
    k : int
        Cut-off: the metrics see ``recommended[:, :k]``.
    scores : ndarray, shape (n_users, n_items), optional
        Dense scores; adds the per-user ``auc``.
    exclude : sparse matrix, optional
        Items left out of the AUC (see :func:`auc_per_user`).
    item_popularity : ndarray, shape (n_items,), optional
        Training interaction counts; adds ``novelty`` (``n_users`` = the rows of ``relevant``).

    Returns
    -------
    dict
        Per-user arrays ``precision``, ``recall``, ``ndcg``, ``map``, ``mrr``, ``hit_rate``
        (and ``auc``, ``novelty`` when their inputs are given); the float ``coverage``.
    """
    lists = _check_lists(recommended, name="recommended")
    if not 1 <= k <= lists.shape[1]:
        raise ConfigError(f"k must lie in [1, {lists.shape[1]}] (the list width), got {k}")
    lists = lists[:, :k]
    hit, n_rel = _hits_and_counts(lists, relevant)
    n_users, n_items = lists.shape[0], int(relevant.shape[1])
    report: dict[str, np.ndarray | float] = {
        "precision": _precision(hit, n_rel),
        "recall": _recall(hit, n_rel),
        "ndcg": _ndcg(hit, n_rel),
        "map": _average_precision(hit, n_rel),
        "mrr": _reciprocal_rank(hit, n_rel),
        "hit_rate": _hit_rate(hit, n_rel),
    }
    if scores is not None:
        report["auc"] = auc_per_user(scores, relevant, exclude)
    if item_popularity is not None:
        report["novelty"] = novelty(lists, item_popularity, n_users)
    report["coverage"] = catalog_coverage(lists, n_items)
    return report
