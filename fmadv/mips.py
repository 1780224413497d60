"""Exact top-k maximum inner-product search: the k largest q . v of every query q.

A recommender whose scores are products of a user table and an item table (an FM's
side tables, a matrix factorisation) ranks a catalogue with this search. The exact
route (one float32 product per block of users, then ``torch.topk``) spends as much
time selecting as multiplying. Here selection touches a few candidates only:

1. Score a block of users against every item in bfloat16 (AMX or tensor cores make it
   several times faster than float32) into a: |a - s| <= E(u, v) + c |a|, with s the
   exact score, E bounding the rounding of the inputs and the float32 sums, and c the
   rounding of the output (see :func:`_threshold`).
2. Split each row into groups of items and take each group's largest a (over the raw
   bits, several times faster than over the floats, and right for every group with
   a score >= 0; rows whose threshold below is negative redo it over the floats).
3. The k groups with the largest maxima give k distinct items; their exact scores
   (float64) bound the row's k-th best score from below by L.
4. Only items with a + c |a| >= L - E can reach the top k. They lie in groups whose
   maximum passes that threshold (usually about k groups); their exact scores decide.

The answer equals a brute-force float64 ranking (tests/test_mips.py). Where bfloat16
is slow (no native support), the same search runs in float32 with float32 rounding.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from fmadv.checks import integer

# Users scored at once: 128 x a 50,000-item row of bfloat16 stays in the L2 cache.
BLOCK_USERS = 128
# Items per group: long enough that group maxima are a small fraction of the scores.
GROUP = 64
_UNIT_ROUNDOFF = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11, torch.float32: 2.0**-24}
# Integers with the floats' bit width: comparing raw bits orders non-negative floats.
_BITS = {torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float32: torch.int32}


def search_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 where the hardware multiplies it natively, else float32."""
    if device.type == "cuda":
        return torch.bfloat16
    return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32


@torch.no_grad()
def top_k_inner_products(
    queries: torch.Tensor,
    keys: torch.Tensor,
    k: int,
    exclude: sp.csr_matrix | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The k keys with the largest exact inner product with each query.

    Parameters
    ----------
    queries, keys
        (m x d) and (n x d) tables on one device.
    k
        List length, 1 <= k <= n.
    exclude
        (m x n) CSR: key j is never returned for query i where it holds an entry.
    dtype
        Precision of the candidate scores (default :func:`search_dtype`); the answer
        is exact either way.

    Returns
    -------
    (ids, scores)
        (m x k) key indices, best first, and their float64 scores, computed from the
        tables' values. Where fewer than k keys remain, the tail is id -1, score -inf.
    """
    n_keys = keys.shape[0]
    k = integer("k", k, low=1)
    k = min(k, n_keys)
    if exclude is not None and exclude.shape != (queries.shape[0], n_keys):
        raise ValueError(f"exclude must be {queries.shape[0]} x {n_keys}, got {exclude.shape}")
    dtype = dtype or search_dtype(keys.device)
    n_groups = -(-n_keys // GROUP)
    low_keys = _pad(keys, n_groups * GROUP).to(dtype)
    exact_keys = keys.double()
    key_norm = exact_keys.norm(dim=1).max()
    ids, scores = [], []
    for start in range(0, queries.shape[0], BLOCK_USERS):
        block = queries[start : start + BLOCK_USERS]
        hidden = None if exclude is None else exclude[start : start + BLOCK_USERS]
        found = _search_block(block, low_keys, exact_keys, key_norm, n_keys, k, hidden)
        ids.append(found[0].cpu().numpy())
        scores.append(found[1].cpu().numpy())
    if not ids:
        return np.zeros((0, k), np.int64), np.zeros((0, k), np.float64)
    return np.concatenate(ids), np.concatenate(scores)


def _pad(keys: torch.Tensor, rows: int) -> torch.Tensor:
    """Keys padded with zero rows to ``rows`` and zero columns to a multiple of 16 (the
    matrix units' tile width)."""
    width = -(-keys.shape[1] // 16) * 16
    return torch.nn.functional.pad(keys, (0, width - keys.shape[1], 0, rows - keys.shape[0]))


def _search_block(queries, low_keys, exact_keys, key_norm, n_keys, k, hidden):
    device, dtype = low_keys.device, low_keys.dtype
    n, n_groups = queries.shape[0], low_keys.shape[0] // GROUP
    exact_queries = queries.double()
    approx = _pad(queries, n).to(dtype) @ low_keys.T
    approx[:, n_keys:] = -torch.inf
    if hidden is not None and hidden.nnz:
        rows = np.repeat(np.arange(n), np.diff(hidden.indptr))
        cols = hidden.indices.astype(np.int64)
        approx[torch.from_numpy(rows).to(device), torch.from_numpy(cols).to(device)] = -torch.inf
    grouped = approx.view(n, n_groups, GROUP)
    maxima = grouped.view(_BITS[dtype]).amax(-1).view(dtype).float()

    threshold = _threshold(
        _lower_bounds(grouped, maxima, exact_queries, exact_keys, k), exact_queries, key_norm, dtype
    )
    # The maxima over raw bits order non-negative floats only; a group of negatives
    # comes out negative, below any threshold >= 0. Rows with a negative threshold
    # take the maxima over the floats.
    negative = (threshold < 0).nonzero().squeeze(1)
    if negative.numel():
        maxima[negative] = grouped[negative].float().amax(-1)

    # Candidates: items of the groups whose maximum passes the row's threshold.
    cand_rows, cand_groups = (maxima >= threshold[:, None]).nonzero(as_tuple=True)
    values = grouped[cand_rows, cand_groups].float()
    passes = (values >= threshold[cand_rows, None]) & (values > -torch.inf)
    keep_at, offset = passes.nonzero(as_tuple=True)
    row_of = cand_rows[keep_at]
    item_of = cand_groups[keep_at] * GROUP + offset
    exact = (exact_queries[row_of] * exact_keys[item_of]).sum(1)
    return _top_of_candidates(row_of, item_of, exact, n, k)


def _lower_bounds(grouped, maxima, exact_queries, exact_keys, k) -> torch.Tensor:
    """A lower bound on each row's k-th best exact score: the least exact score of k
    distinct unexcluded items, the best of the k groups with the largest maxima (-inf
    where there are fewer than k groups or the row has fewer than k items left)."""
    n, n_groups, _ = grouped.shape
    if k > n_groups:
        return torch.full((n,), -torch.inf, dtype=torch.float64, device=grouped.device)
    rows = torch.arange(n, device=grouped.device)[:, None]
    best_groups = torch.topk(maxima, k, dim=1).indices
    within = grouped[rows, best_groups].argmax(-1)
    probe = (best_groups * GROUP + within).clamp(max=exact_keys.shape[0] - 1)
    scores = (exact_queries[:, None, :] * exact_keys[probe]).sum(-1)
    scores[grouped[rows, best_groups, within] == -torch.inf] = -torch.inf
    return scores.min(1).values


def _threshold(lower: torch.Tensor, queries: torch.Tensor, key_norm, dtype) -> torch.Tensor:
    """The least candidate score a that can still hide an exact score >= ``lower``.

    With u the unit roundoff of ``dtype``, the product of rounded inputs summed in
    float32 is within E = (2u + u^2 + 1.01 d 2^-24) |q| max|v| of the exact score
    (Cauchy-Schwarz on sum |q_i v_i|), and rounding the output adds at most
    c = u / (1 - u) of |a|. So s >= lower needs a + c |a| >= lower - E; a + c |a| is
    increasing in a, which inverts in closed form.
    """
    u = _UNIT_ROUNDOFF[dtype]
    width = queries.shape[1]
    error = (2 * u + u * u + 1.01 * width * 2.0**-24) * queries.norm(dim=1) * key_norm
    target = lower - 1.01 * error
    c = u / (1 - u)
    return torch.where(target >= 0, target / (1 + c), target / (1 - c)).float()


def _top_of_candidates(row_of, item_of, exact, n, k):
    """The k best candidates of each row by exact score, padded with -1 / -inf."""
    device = exact.device
    counts = torch.bincount(row_of, minlength=n)
    width = max(int(counts.max()) if row_of.numel() else 0, k)
    position = torch.arange(row_of.numel(), device=device) - (counts.cumsum(0) - counts)[row_of]
    table = torch.full((n, width), -torch.inf, dtype=torch.float64, device=device)
    table[row_of, position] = exact
    items = torch.full((n, width), -1, dtype=torch.long, device=device)
    items[row_of, position] = item_of
    scores, at = torch.topk(table, k, dim=1)
    return items.gather(1, at).masked_fill(scores == -torch.inf, -1), scores
