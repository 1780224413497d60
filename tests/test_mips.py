"""The inner-product search against brute force: float64 products and a full sort."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from fmadv.errors import ConfigError
from fmadv.mips import GROUP, top_k_inner_products


def brute_force(queries, keys, k, exclude=None):
    scores = queries.double() @ keys.double().T
    if exclude is not None:
        scores[torch.from_numpy(exclude.toarray() > 0)] = -torch.inf
    top = torch.topk(scores, k, dim=1)
    ids = top.indices.masked_fill(top.values == -torch.inf, -1)
    return ids.numpy(), top.values.numpy()


def tables(n_queries, n_keys, width, seed, shift=0.0):
    generator = torch.Generator().manual_seed(seed)
    queries = torch.randn(n_queries, width, generator=generator)
    keys = torch.randn(n_keys, width, generator=generator) + shift
    return queries, keys


def random_exclusions(n_queries, n_keys, per_row, seed):
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n_queries), per_row)
    cols = rng.integers(0, n_keys, rows.size)
    exclude = sp.csr_matrix((np.ones(rows.size), (rows, cols)), (n_queries, n_keys))
    exclude.sum_duplicates()
    return exclude


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize(
    ("n_queries", "n_keys", "width", "k"),
    [(300, 1000, 66, 10), (7, 5 * GROUP + 3, 8, 5), (130, 2 * GROUP, 3, 20), (5, 40, 4, 40)],
)
def test_equals_brute_force(dtype, n_queries, n_keys, width, k):
    queries, keys = tables(n_queries, n_keys, width, seed=n_keys)
    exclude = random_exclusions(n_queries, n_keys, per_row=min(20, n_keys - k), seed=1)
    ids, scores = top_k_inner_products(queries, keys, k, exclude, dtype=dtype)
    want_ids, want_scores = brute_force(queries, keys, k, exclude)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-12)


@pytest.mark.parametrize("shift", [-3.0, 0.0, 3.0])
def test_all_negative_or_all_positive_scores(shift):
    # Negative thresholds take the maxima over the floats, not over the raw bits.
    queries, keys = tables(40, 700, 16, seed=3, shift=shift)
    queries = queries.abs()
    ids, _ = top_k_inner_products(queries, keys, 10, dtype=torch.bfloat16)
    np.testing.assert_array_equal(ids, brute_force(queries, keys, 10)[0])


def test_near_ties_beyond_bfloat16_precision():
    # Keys 1e-6 apart look equal in bfloat16; the exact scores still order them.
    queries = torch.ones(3, 4)
    keys = torch.ones(500, 4) + torch.arange(500.0)[:, None] * 1e-6
    ids, _ = top_k_inner_products(queries, keys.flip(0), 5, dtype=torch.bfloat16)
    np.testing.assert_array_equal(ids, np.tile(np.arange(5), (3, 1)))


def test_rows_with_fewer_than_k_keys_left_are_padded():
    queries, keys = tables(3, 2 * GROUP, 6, seed=4)
    exclude = sp.csr_matrix(np.ones((3, 2 * GROUP)))
    exclude[1, :] = 0
    exclude[2, :] = 0
    exclude[2, 5] = exclude[2, 70] = 1
    exclude.eliminate_zeros()
    exclude[0, 3] = 0
    exclude.eliminate_zeros()
    ids, scores = top_k_inner_products(queries, keys, 4, exclude)
    want_ids, want_scores = brute_force(queries, keys, 4, exclude)
    np.testing.assert_array_equal(ids, want_ids)
    assert ids[0, 0] == 3 and (ids[0, 1:] == -1).all() and np.isneginf(scores[0, 1:]).all()


def test_checks_its_arguments():
    queries, keys = tables(2, 10, 3, seed=5)
    with pytest.raises(ConfigError):
        top_k_inner_products(queries, keys, 0)
    with pytest.raises(ValueError, match="exclude must be 2 x 10"):
        top_k_inner_products(queries, keys, 3, sp.csr_matrix((3, 10)))
    assert top_k_inner_products(queries[:0], keys, 3)[0].shape == (0, 3)
