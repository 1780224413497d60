"""Comparing two sets of top-k lists, user by user.

``a`` and ``b`` are int arrays of the same shape (n_users, k): row u of each holds the list
one model gives user u, best first, padded with -1 where a list is shorter. Padding is
never an item: it matches nothing, not even the other list's padding. Each list holds
distinct items. Per-user functions return float arrays of length n_users with NaN where
the value is undefined; average them with :func:`numpy.nanmean`.

The questions these answer: how much do two models' lists share (:func:`overlap`,
:func:`jaccard`, :func:`rank_biased_overlap`), do they order their shared items alike
(:func:`kendall_tau_shared`), and what are the items one model alone suggests worth
(:func:`exclusive_items`, :func:`exclusive_report`, :func:`list_mean`,
:func:`share_lower`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from fmadv.errors import ConfigError
from fmadv.metrics.ranking import _binary_csr, _check_lists, _lookup


def _match(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Check two list sets; return them with the rank each gives the other's items.

    Returns ``(a, b, pos_ab, pos_ba)``: ``pos_ab[u, i]`` is the 0-based rank of
    ``a[u, i]`` in ``b[u]``, or -1 when b's list lacks it (or it is padding); ``pos_ba``
    likewise the other way round.

    Both rows are sorted together, a's items coded 2 * item and b's 2 * item + 1, so an
    item the two lists share shows up as an even code followed directly by the next odd
    one. One row-wise sort answers every user, and a repeated item within one list shows
    up as two equal neighbouring codes.
    """
    a = _check_lists(a, name="a")
    b = _check_lists(b, name="b")
    if a.shape != b.shape:
        raise ConfigError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    n_users, k = a.shape
    pos_ab = np.full(a.shape, -1, dtype=np.int64)
    pos_ba = np.full(a.shape, -1, dtype=np.int64)
    if a.size == 0:
        return a, b, pos_ab, pos_ba
    codes = np.concatenate([2 * a, 2 * b + 1], axis=1)  # padding codes are negative
    order = np.argsort(codes, axis=1)
    ordered = np.take_along_axis(codes, order, axis=1)
    item = ordered >= 0
    repeated = (ordered[:, 1:] == ordered[:, :-1]) & item[:, 1:]
    if repeated.any():
        user = int(np.flatnonzero(repeated.any(axis=1))[0])
        raise ConfigError(f"a or b repeats an item in the list of user {user}")
    pair = item[:, :-1] & (ordered[:, :-1] % 2 == 0) & (ordered[:, 1:] == ordered[:, :-1] + 1)
    rows, t = np.nonzero(pair)
    in_a, in_b = order[rows, t], order[rows, t + 1] - k
    pos_ab[rows, in_a] = in_b
    pos_ba[rows, in_b] = in_a
    return a, b, pos_ab, pos_ba


def _lengths(lists: np.ndarray) -> np.ndarray:
    return (lists >= 0).sum(axis=1)


def overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Share of the k slots whose items both lists hold: ``|A ∩ B| / k``.

    Its mean over users answers "what share of model A's top-k does model B also
    recommend". Padding counts as a slot that matches nothing.

    Parameters
    ----------
    a, b : ndarray of int, shape (n_users, k)
        Two list sets over the same users, padded with -1.

    Returns
    -------
    ndarray of float, shape (n_users,)
        In [0, 1]; 1 for identical full lists.
    """
    a, _, pos, _ = _match(a, b)
    return (pos >= 0).sum(axis=1) / max(a.shape[1], 1)


def jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``|A ∩ B| / |A ∪ B|`` per user, padding left out of both sets.

    Parameters
    ----------
    a, b : ndarray of int, shape (n_users, k)
        Two list sets over the same users, padded with -1.

    Returns
    -------
    ndarray of float, shape (n_users,)
        NaN where both lists are empty.
    """
    a, b, pos, _ = _match(a, b)
    shared = (pos >= 0).sum(axis=1)
    union = _lengths(a) + _lengths(b) - shared
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, shared / union, np.nan)


def _prefix_overlaps(pos_ab: np.ndarray) -> np.ndarray:
    """X[u, d - 1] = |A[u, :d] ∩ B[u, :d]| for d = 1..k, from the ranks ``pos_ab``.

    A shared item at rank i in A and rank j in B enters both prefixes from depth
    max(i, j) + 1 on, so X is a cumulative count of those depths.
    """
    n_users, k = pos_ab.shape
    shared = pos_ab >= 0
    depth = np.maximum(np.arange(k), pos_ab)
    rows = np.broadcast_to(np.arange(n_users, dtype=np.int64)[:, None], pos_ab.shape)
    entered = np.bincount(rows[shared] * k + depth[shared], minlength=n_users * k)
    return np.cumsum(entered.reshape(n_users, k), axis=1)


def rank_biased_overlap(a: np.ndarray, b: np.ndarray, p: float = 0.9) -> np.ndarray:
    """Rank-biased overlap, extrapolated (RBO_ext), per user.

    Webber, Moffat and Zobel, "A similarity measure for indefinite rankings", ACM TOIS
    28(4), 2010; the extrapolated form for two lists of the same length k::

        RBO_ext = X_k / k * p^k + (1 - p) / p * sum_{d=1..k} X_d / d * p^d

    with ``X_d = |A[:d] ∩ B[:d]|`` the overlap of the depth-d prefixes. It weights the top
    of the lists most (the first d ranks carry a share 1 - p^d of the weight) and assumes
    the agreement seen at depth k continues below it, so identical lists score exactly 1
    and disjoint ones 0. Padding is an item that matches nothing.

    Parameters
    ----------
    a, b : ndarray of int, shape (n_users, k)
        Two list sets over the same users, padded with -1.
    p : float, default 0.9
        Persistence, in (0, 1): how far down the lists the comparison looks (the expected
        depth is 1 / (1 - p)).

    Returns
    -------
    ndarray of float, shape (n_users,)
        In [0, 1].
    """
    if not 0.0 < p < 1.0:
        raise ConfigError(f"p must lie in (0, 1), got {p}")
    a, _, pos, _ = _match(a, b)
    k = a.shape[1]
    if k == 0:
        return np.zeros(a.shape[0])
    agreement = _prefix_overlaps(pos) / np.arange(1, k + 1)
    weights = p ** np.arange(1, k + 1)
    return agreement[:, -1] * p**k + (1.0 - p) / p * (agreement @ weights)


def kendall_tau_shared(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kendall's tau-b between the ranks the two lists give their shared items.

    Each list holds distinct items, so neither ranking has ties and tau-b reduces to
    ``(concordant - discordant) / (n (n - 1) / 2)`` over the n shared items: 1 when both
    lists order them alike, -1 when one reverses the other.

    Parameters
    ----------
    a, b : ndarray of int, shape (n_users, k)
        Two list sets over the same users, padded with -1.

    Returns
    -------
    ndarray of float, shape (n_users,)
        NaN for users whose lists share fewer than 2 items.
    """
    a, _, pos, _ = _match(a, b)
    shared = pos >= 0
    n = shared.sum(axis=1)
    # B's ranks of the shared items in A's order, packed to the front; the sentinel k in
    # the tail is above every rank, so tail cells never count as discordant.
    k = a.shape[1]
    narrow = np.int16 if k < 2**15 else np.int64  # less memory traffic in the O(k^2) loop
    ranks = _compact(pos, shared, fill=k).astype(narrow)
    discordant = np.zeros(a.shape[0], dtype=np.int64)
    # Column j against every earlier column: A ranks i before j, so the pair is discordant
    # when B ranks it the other way. O(k^2) work per user, no loop over users.
    for j in range(1, int(n.max(initial=0))):
        discordant += np.count_nonzero(ranks[:, :j] > ranks[:, j : j + 1], axis=1)
    pairs = n * (n - 1) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n >= 2, (pairs - 2.0 * discordant) / pairs, np.nan)


def _compact(lists: np.ndarray, keep: np.ndarray, fill: int = -1) -> np.ndarray:
    """The kept cells of each row moved to the front in their order, the rest ``fill``."""
    packed = np.full_like(lists, fill)
    rows, cols = np.nonzero(keep)
    packed[rows, np.cumsum(keep, axis=1)[rows, cols] - 1] = lists[rows, cols]
    return packed


def exclusive_items(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The items each list holds and the other does not, in their list's rank order.

    Parameters
    ----------
    a, b : ndarray of int, shape (n_users, k)
        Two list sets over the same users, padded with -1.

    Returns
    -------
    only_a, only_b : ndarray of int, shape (n_users, k)
        Items of A not in B (resp. of B not in A), best first, padded with -1.
    """
    a, b, pos_ab, pos_ba = _match(a, b)
    only_a = _compact(a, (a >= 0) & (pos_ab < 0))
    only_b = _compact(b, (b >= 0) & (pos_ba < 0))
    return only_a, only_b


def list_mean(lists: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Mean of ``values[u, i]`` over the items i of each user's list.

    With ``values`` a judge model's predicted preferences this is each list's preference
    score: how much the judge expects the user to like what the list recommends.

    Parameters
    ----------
    lists : ndarray of int, shape (n_users, k)
        Lists, padded with -1 (padding is ignored).
    values : ndarray, shape (n_users, n_items)
        Dense per-(user, item) values.

    Returns
    -------
    ndarray of float, shape (n_users,)
        NaN for an empty list.
    """
    values = np.asarray(values)  # no float64 copy of a possibly huge matrix: cast the picks
    if values.ndim != 2:
        raise ConfigError(f"values must be 2-D (n_users, n_items), got shape {values.shape}")
    lists = _check_lists(lists, values.shape[1], "lists")
    if lists.shape[0] != values.shape[0]:
        raise ConfigError(f"values has {values.shape[0]} rows, lists has {lists.shape[0]}")
    shown = lists >= 0
    picked = np.take_along_axis(values, np.where(shown, lists, 0), axis=1).astype(np.float64)
    count = shown.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, np.where(shown, picked, 0.0).sum(axis=1) / count, np.nan)


def share_lower(x: np.ndarray, y: np.ndarray) -> float:
    """Share of users with ``x < y``, among those where both values are finite.

    E.g. ``share_lower(list_mean(adv, judge), list_mean(plain, judge))``: the share of
    users for whom the adversarial model's lists score lower under the judge. NaN when no
    user has both values.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ConfigError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    both = np.isfinite(x) & np.isfinite(y)
    if not both.any():
        return float("nan")
    return float(np.mean(x[both] < y[both]))


def user_genre_profile(liked: sp.spmatrix, item_genres: np.ndarray | sp.spmatrix) -> np.ndarray:
    """``liked @ item_genres`` as a dense (n_users, n_genres) array.

    With a binary ``liked`` (e.g. the training positives) row u counts how many of the
    user's liked items carry each genre.
    """
    product = sp.csr_matrix(liked) @ item_genres
    if sp.issparse(product):
        product = product.toarray()
    return np.asarray(product, dtype=np.float64)


def _row_norms(matrix: np.ndarray | sp.spmatrix) -> np.ndarray:
    if sp.issparse(matrix):
        return np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    return np.linalg.norm(matrix, axis=1)


def _genre_cosines(
    only: np.ndarray, item_genres: np.ndarray | sp.spmatrix, user_profile: np.ndarray
) -> np.ndarray:
    """cos(item_genres[only[u, j]], user_profile[u]) per cell; NaN where undefined."""
    profile = np.asarray(user_profile, dtype=np.float64)
    if profile.shape != (only.shape[0], item_genres.shape[1]):
        raise ConfigError(
            f"user_profile must have shape {(only.shape[0], item_genres.shape[1])}, "
            f"got {profile.shape}"
        )
    item_norm = _row_norms(item_genres)
    user_norm = np.linalg.norm(profile, axis=1)
    # Unit rows, zero rows left at zero: their cosines are masked out below.
    with np.errstate(divide="ignore", invalid="ignore"):
        user_unit = np.where(user_norm[:, None] > 0, profile / user_norm[:, None], 0.0)
        item_scale = np.where(item_norm > 0, 1.0 / item_norm, 0.0)
    if sp.issparse(item_genres):
        item_unit = sp.diags(item_scale) @ sp.csr_matrix(item_genres, dtype=np.float64)
    else:
        item_unit = np.asarray(item_genres, dtype=np.float64) * item_scale[:, None]
    items = np.where(only >= 0, only, 0)
    cosines = np.empty(only.shape)
    # One column at a time keeps the gathered genre rows at (n_users, n_genres).
    for j in range(only.shape[1]):
        gathered = item_unit[items[:, j]]
        if sp.issparse(gathered):
            dots = np.asarray(gathered.multiply(user_unit).sum(axis=1)).ravel()
        else:
            dots = np.einsum("ug,ug->u", gathered, user_unit)
        cosines[:, j] = dots
    defined = (only >= 0) & (item_norm[items] > 0) & (user_norm[:, None] > 0)
    return np.where(defined, cosines, np.nan)


def _cell_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    count = mask.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, np.where(mask, values, 0.0).sum(axis=1) / count, np.nan)


def exclusive_report(
    only: np.ndarray,
    relevant: sp.spmatrix,
    ratings: sp.spmatrix | None = None,
    item_popularity: np.ndarray | None = None,
    item_genres: np.ndarray | sp.spmatrix | None = None,
    user_profile: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """What the items one model alone recommends are worth, per user.

    Parameters
    ----------
    only : ndarray of int, shape (n_users, k)
        Exclusive items per user, padded with -1 (e.g. from :func:`exclusive_items`).
    relevant : sparse matrix, shape (n_users, n_items)
        Held-out truth; a stored nonzero marks a relevant item.
    ratings : sparse matrix, shape (n_users, n_items), optional
        Held-out ratings; a stored nonzero is a rating the user gave.
    item_popularity : ndarray, shape (n_items,), optional
        Training interaction count of every item.
    item_genres : ndarray or sparse matrix, shape (n_items, n_genres), optional
        Genre vector of every item; needs ``user_profile``.
    user_profile : ndarray, shape (n_users, n_genres), optional
        Genre profile of every user, e.g. :func:`user_genre_profile` of the training
        positives; needs ``item_genres``.

    Returns
    -------
    dict of str to ndarray, shape (n_users,)
        * ``count``: number of exclusive items;
        * ``hit_rate``: share of them that are relevant (NaN with no exclusive items);
        * ``mean_rating``: mean held-out rating over the exclusive items the user rated
          (NaN if none), when ``ratings`` is given;
        * ``popularity``: mean item popularity (NaN with no exclusive items), when
          ``item_popularity`` is given;
        * ``genre_match``: mean cosine similarity between each exclusive item's genre
          vector and the user's profile, over the items where it is defined (both vectors
          nonzero; NaN if none), when ``item_genres`` and ``user_profile`` are given.
    """
    rel = _binary_csr(relevant)
    n_users, n_items = rel.shape
    only = _check_lists(only, n_items, "only")
    if only.shape[0] != n_users:
        raise ConfigError(f"relevant has {n_users} rows, only has {only.shape[0]} users")
    shown = only >= 0
    hit, _ = _lookup(only, rel)
    report = {"count": shown.sum(axis=1).astype(np.float64)}
    report["hit_rate"] = _cell_mean(hit.astype(np.float64), shown)
    if ratings is not None:
        rated_csr = _binary_csr(ratings, n_users, "ratings")
        if rated_csr.shape != rel.shape:
            raise ConfigError(f"ratings has shape {rated_csr.shape}, relevant has {rel.shape}")
        rated, rating = _lookup(only, rated_csr)
        report["mean_rating"] = _cell_mean(rating, rated)
    if item_popularity is not None:
        popularity = np.asarray(item_popularity, dtype=np.float64).ravel()
        if popularity.shape != (n_items,):
            raise ConfigError(f"item_popularity must have {n_items} entries, got {popularity.size}")
        report["popularity"] = _cell_mean(popularity[np.where(shown, only, 0)], shown)
    if (item_genres is None) != (user_profile is None):
        raise ConfigError("genre_match needs both item_genres and user_profile")
    if item_genres is not None:
        if not sp.issparse(item_genres):
            item_genres = np.asarray(item_genres, dtype=np.float64)
        if item_genres.ndim != 2 or item_genres.shape[0] != n_items:
            raise ConfigError(f"item_genres must be ({n_items}, n_genres), got {item_genres.shape}")
        cosines = _genre_cosines(only, item_genres, user_profile)
        report["genre_match"] = _cell_mean(np.nan_to_num(cosines), ~np.isnan(cosines))
    return report
