import math

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import kendalltau

from fmadv.errors import ConfigError
from fmadv.metrics.topk import (
    exclusive_items,
    exclusive_report,
    jaccard,
    kendall_tau_shared,
    list_mean,
    overlap,
    rank_biased_overlap,
    share_lower,
    user_genre_profile,
)

NAN = float("nan")


def test_hand_computed_pair():
    a = np.array([[1, 2, 3, 4]])
    b = np.array([[2, 1, 5, 6]])
    assert overlap(a, b)[0] == pytest.approx(2 / 4)
    assert jaccard(a, b)[0] == pytest.approx(2 / 6)
    # X_1 = 0, X_2 = X_3 = X_4 = 2; p = 0.9:
    # 2/4 * 0.9^4 + (0.1 / 0.9) * (0 + 2/2 * 0.9^2 + 2/3 * 0.9^3 + 2/4 * 0.9^4) = 0.5085.
    assert rank_biased_overlap(a, b)[0] == pytest.approx(0.5085)
    # Shared items 1, 2 are in opposite orders.
    assert kendall_tau_shared(a, b)[0] == pytest.approx(-1.0)
    only_a, only_b = exclusive_items(a, b)
    np.testing.assert_array_equal(only_a, [[3, 4, -1, -1]])
    np.testing.assert_array_equal(only_b, [[5, 6, -1, -1]])


def test_rbo_with_a_lower_persistence():
    a = np.array([[1, 2, 3]])
    b = np.array([[1, 3, 2]])
    # X = 1, 1, 3; p = 0.5: 3/3 * 0.125 + 1 * (1 * 0.5 + 1/2 * 0.25 + 3/3 * 0.125) = 0.875.
    assert rank_biased_overlap(a, b, p=0.5)[0] == pytest.approx(0.875)


def test_kendall_tau_three_shared_items():
    a = np.array([[1, 2, 3, 9]])
    b = np.array([[3, 1, 2, 8]])
    # B's ranks in A's order: 1, 2, 0 -> one concordant pair, two discordant: (1 - 2) / 3.
    assert kendall_tau_shared(a, b)[0] == pytest.approx(-1 / 3)


def test_identical_disjoint_and_reversed_lists():
    a = np.array([[0, 1, 2, 3, 4], [5, 6, 7, -1, -1]])
    np.testing.assert_allclose(overlap(a, a), [1.0, 3 / 5])
    np.testing.assert_allclose(jaccard(a, a), [1.0, 1.0])
    assert rank_biased_overlap(a, a)[0] == pytest.approx(1.0)
    np.testing.assert_allclose(kendall_tau_shared(a, a), [1.0, 1.0])

    disjoint = np.array([[10, 11, 12, 13, 14], [0, 1, 2, 3, 4]])
    np.testing.assert_array_equal(overlap(a, disjoint), [0.0, 0.0])
    np.testing.assert_array_equal(jaccard(a, disjoint), [0.0, 0.0])
    np.testing.assert_array_equal(rank_biased_overlap(a, disjoint), [0.0, 0.0])
    assert np.isnan(kendall_tau_shared(a, disjoint)).all()

    reversed_ = np.array([[4, 3, 2, 1, 0], [7, 6, 5, -1, -1]])
    np.testing.assert_allclose(kendall_tau_shared(a, reversed_), [-1.0, -1.0])
    np.testing.assert_allclose(overlap(a, reversed_), [1.0, 3 / 5])


def test_padding_is_never_an_item():
    a = np.array([[-1, -1, -1], [7, -1, -1]])
    b = np.array([[-1, -1, -1], [-1, 7, -1]])
    np.testing.assert_allclose(overlap(a, b), [0.0, 1 / 3])
    assert np.isnan(jaccard(a, b)[0]) and jaccard(a, b)[1] == pytest.approx(1.0)
    # X = 0, 1, 1 for user 1: 1/3 * 0.729 + (0.1 / 0.9) * (1/2 * 0.81 + 1/3 * 0.729).
    expected_rbo = 0.729 / 3 + (0.1 / 0.9) * (0.405 + 0.243)
    np.testing.assert_allclose(rank_biased_overlap(a, b), [0.0, expected_rbo])
    assert np.isnan(kendall_tau_shared(a, b)).all()  # fewer than 2 shared items
    only_a, only_b = exclusive_items(a, b)
    np.testing.assert_array_equal(only_a, -np.ones((2, 3)))
    np.testing.assert_array_equal(only_b, -np.ones((2, 3)))


def random_pair(seed, n_users=50, k=10, pool=18):
    """Lists drawn from a small pool so that they share items often, with padding."""
    rng = np.random.default_rng(seed)
    a = np.argsort(rng.random((n_users, pool)), axis=1)[:, :k]
    b = np.argsort(rng.random((n_users, pool)), axis=1)[:, :k]
    for lists in (a, b):
        lengths = rng.integers(0, k + 1, n_users)
        lengths[:5] = k
        lists[np.arange(k)[None, :] >= lengths[:, None]] = -1
    b[0] = a[0]  # one identical pair
    return a, b


def brute_force_rbo(row_a, row_b, p):
    k = len(row_a)
    overlaps = [len({i for i in row_a[:d] if i >= 0} & set(row_b[:d])) for d in range(1, k + 1)]
    tail = overlaps[-1] / k * p**k
    return tail + (1 - p) / p * sum(x / d * p**d for d, x in enumerate(overlaps, start=1))


@pytest.mark.parametrize("seed", range(4))
def test_comparisons_match_brute_force(seed):
    a, b = random_pair(seed)
    k = a.shape[1]
    exp_overlap, exp_jaccard, exp_rbo, exp_tau, exp_only_a, exp_only_b = [], [], [], [], [], []
    for row_a, row_b in zip(a.tolist(), b.tolist(), strict=True):
        set_a, set_b = {i for i in row_a if i >= 0}, {i for i in row_b if i >= 0}
        shared = set_a & set_b
        exp_overlap.append(len(shared) / k)
        union = set_a | set_b
        exp_jaccard.append(len(shared) / len(union) if union else NAN)
        exp_rbo.append(brute_force_rbo(row_a, row_b, 0.8))
        if len(shared) >= 2:
            items = sorted(shared)
            tau = kendalltau([row_a.index(i) for i in items], [row_b.index(i) for i in items])
            exp_tau.append(tau.statistic)
        else:
            exp_tau.append(NAN)
        only_a = [i for i in row_a if i >= 0 and i not in set_b]
        only_b = [i for i in row_b if i >= 0 and i not in set_a]
        exp_only_a.append(only_a + [-1] * (k - len(only_a)))
        exp_only_b.append(only_b + [-1] * (k - len(only_b)))
    np.testing.assert_allclose(overlap(a, b), exp_overlap)
    np.testing.assert_allclose(jaccard(a, b), exp_jaccard)
    np.testing.assert_allclose(rank_biased_overlap(a, b, p=0.8), exp_rbo)
    np.testing.assert_allclose(kendall_tau_shared(a, b), exp_tau)
    only_a, only_b = exclusive_items(a, b)
    np.testing.assert_array_equal(only_a, exp_only_a)
    np.testing.assert_array_equal(only_b, exp_only_b)
    # The comparisons are symmetric.
    np.testing.assert_allclose(rank_biased_overlap(b, a, p=0.8), exp_rbo)
    np.testing.assert_allclose(kendall_tau_shared(b, a), exp_tau)


def test_list_mean_and_share_lower():
    values = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    lists = np.array([[0, 2, -1], [-1, -1, -1]])
    np.testing.assert_allclose(list_mean(lists, values), [2.0, NAN])
    np.testing.assert_allclose(list_mean(np.array([[3], [1]]), values), [4.0, 6.0])

    x = np.array([1.0, 2.0, NAN, 3.0, 5.0])
    y = np.array([2.0, 1.0, 5.0, 4.0, 5.0])
    # Users 0, 1, 3, 4 have both values; x < y for users 0 and 3 (a tie is not lower).
    assert share_lower(x, y) == pytest.approx(2 / 4)
    assert share_lower(y, x) == pytest.approx(1 / 4)
    assert np.isnan(share_lower(np.array([NAN]), np.array([1.0])))


def test_user_genre_profile_counts_genres():
    liked = sp.csr_matrix(np.array([[1, 0, 1], [0, 1, 0]]))
    genres = np.array([[1, 0], [0, 1], [1, 1]])
    np.testing.assert_array_equal(user_genre_profile(liked, genres), [[2, 1], [0, 1]])
    np.testing.assert_array_equal(
        user_genre_profile(liked, sp.csr_matrix(genres)), [[2, 1], [0, 1]]
    )


def test_exclusive_report_hand_computed():
    only = np.array([[0, 2, 1], [-1, -1, -1], [3, -1, -1]])
    relevant = sp.csr_matrix(([1.0, 1.0], ([0, 2], [2, 4])), shape=(3, 5))
    ratings = sp.csr_matrix(([4.0, 5.0, 2.0], ([0, 0, 2], [0, 3, 4])), shape=(3, 5))
    popularity = np.array([10.0, 1.0, 4.0, 0.0, 0.0])
    genres = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    profile = np.array([[2.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    report = exclusive_report(
        only,
        relevant,
        ratings=ratings,
        item_popularity=popularity,
        item_genres=genres,
        user_profile=profile,
    )
    assert set(report) == {"count", "hit_rate", "mean_rating", "popularity", "genre_match"}
    np.testing.assert_array_equal(report["count"], [3, 0, 1])
    # User 0: item 2 of 0, 2, 1 is relevant; user 2's item 3 is not (its relevant item is 4).
    np.testing.assert_allclose(report["hit_rate"], [1 / 3, NAN, 0.0])
    # User 0 rated item 0 (4) among its exclusive items; user 2 rated item 4 only.
    np.testing.assert_allclose(report["mean_rating"], [4.0, NAN, NAN])
    np.testing.assert_allclose(report["popularity"], [5.0, NAN, 0.0])
    # User 0: cos(item 0) = 1, cos(item 2) = 1/sqrt(2), item 1 has no genre (left out).
    # User 2 has an empty profile.
    np.testing.assert_allclose(report["genre_match"], [(1 + 1 / math.sqrt(2)) / 2, NAN, NAN])

    sparse = exclusive_report(
        only, relevant, item_genres=sp.csr_matrix(genres), user_profile=profile
    )
    np.testing.assert_allclose(sparse["genre_match"], report["genre_match"])
    assert set(exclusive_report(only, relevant)) == {"count", "hit_rate"}


@pytest.mark.parametrize("seed", range(3))
def test_exclusive_report_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items, k, n_genres = 30, 20, 6, 4
    a, b = random_pair(seed, n_users, k, n_items)
    only, _ = exclusive_items(a, b)
    relevant = sp.random(n_users, n_items, density=0.3, format="csr", random_state=seed)
    ratings = sp.random(n_users, n_items, density=0.3, format="csr", random_state=seed + 10)
    ratings.data = np.ceil(ratings.data * 5)
    popularity = rng.integers(0, 30, n_items).astype(float)
    genres = (rng.random((n_items, n_genres)) < 0.4).astype(float)
    profile = user_genre_profile(relevant, genres)
    report = exclusive_report(only, relevant, ratings, popularity, genres, profile)

    rel_dense, rat_dense = relevant.toarray(), ratings.toarray()
    expected = {name: [] for name in ("hit_rate", "mean_rating", "popularity", "genre_match")}
    for u, row in enumerate(only.tolist()):
        items = [i for i in row if i >= 0]
        rated = [rat_dense[u, i] for i in items if rat_dense[u, i] != 0]
        cosines = []
        for i in items:
            norms = np.linalg.norm(genres[i]) * np.linalg.norm(profile[u])
            if norms > 0:
                cosines.append(genres[i] @ profile[u] / norms)
        expected["hit_rate"].append(
            np.mean([rel_dense[u, i] != 0 for i in items]) if items else NAN
        )
        expected["mean_rating"].append(np.mean(rated) if rated else NAN)
        expected["popularity"].append(np.mean(popularity[items]) if items else NAN)
        expected["genre_match"].append(np.mean(cosines) if cosines else NAN)
    for name, values in expected.items():
        np.testing.assert_allclose(report[name], values, err_msg=name)


def test_invalid_inputs_raise():
    a = np.array([[1, 2, 3]])
    with pytest.raises(ConfigError, match="same shape"):
        overlap(a, np.array([[1, 2]]))
    with pytest.raises(ConfigError, match="repeats"):
        overlap(a, np.array([[4, 4, 5]]))
    with pytest.raises(ConfigError, match="p must"):
        rank_biased_overlap(a, a, p=1.0)
    with pytest.raises(ConfigError, match="both"):
        exclusive_report(a, sp.csr_matrix((1, 5)), item_genres=np.ones((5, 2)))
    with pytest.raises(ConfigError, match="rows"):
        list_mean(a, np.ones((2, 5)))
