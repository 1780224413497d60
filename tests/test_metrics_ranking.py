import math

import numpy as np
import pytest
import scipy.sparse as sp

from fmadv.errors import ConfigError
from fmadv.metrics.ranking import (
    auc_per_user,
    average_precision_at_k,
    catalog_coverage,
    hit_rate_at_k,
    hits,
    ndcg_at_k,
    novelty,
    precision_at_k,
    ranking_report,
    recall_at_k,
    reciprocal_rank,
)

NAN = float("nan")


def csr_from_sets(sets, n_items):
    rows = [u for u, items in enumerate(sets) for _ in items]
    cols = [i for items in sets for i in items]
    data = np.ones(len(cols))
    return sp.csr_matrix((data, (rows, cols)), shape=(len(sets), n_items))


# Four users over six items:
# user 0 hits item 1 at rank 2 and misses relevant item 4;
# user 1 hits item 3 at rank 1, its list is padded;
# user 2 has no relevant item (every metric NaN);
# user 3's relevant item 0 is not in its list.
RECOMMENDED = np.array([[0, 1, 2], [3, 4, -1], [5, 0, 1], [2, 3, 4]])
RELEVANT = csr_from_sets([{1, 4}, {3}, set(), {0}], 6)


def test_hits_hand_computed():
    expected = np.array(
        [[False, True, False], [True, False, False], [False, False, False], [False] * 3]
    )
    np.testing.assert_array_equal(hits(RECOMMENDED, RELEVANT), expected)


def test_per_user_metrics_hand_computed():
    g = 1 / math.log2(3)  # discount of rank 2
    np.testing.assert_allclose(precision_at_k(RECOMMENDED, RELEVANT), [1 / 3, 1 / 3, NAN, 0])
    np.testing.assert_allclose(recall_at_k(RECOMMENDED, RELEVANT), [1 / 2, 1, NAN, 0])
    # user 0: DCG = g, ideal DCG over min(3, 2) = 2 hits = 1 + g.
    np.testing.assert_allclose(ndcg_at_k(RECOMMENDED, RELEVANT), [g / (1 + g), 1, NAN, 0])
    # user 0: precision@2 = 1/2 at its one hit, divided by min(3, 2) = 2.
    np.testing.assert_allclose(average_precision_at_k(RECOMMENDED, RELEVANT), [1 / 4, 1, NAN, 0])
    np.testing.assert_allclose(reciprocal_rank(RECOMMENDED, RELEVANT), [1 / 2, 1, NAN, 0])
    np.testing.assert_allclose(hit_rate_at_k(RECOMMENDED, RELEVANT), [1, 1, NAN, 0])


def test_average_precision_caps_denominator_at_k():
    # Hits at ranks 1, 3, 4 of a list of 4; 5 relevant items, so the denominator is 4.
    recommended = np.array([[0, 9, 1, 2]])
    relevant = csr_from_sets([{0, 1, 2, 3, 4}], 10)
    expected = (1 / 1 + 2 / 3 + 3 / 4) / 4
    assert average_precision_at_k(recommended, relevant)[0] == pytest.approx(expected)
    # Recall is not capped: 3 of 5.
    assert recall_at_k(recommended, relevant)[0] == pytest.approx(3 / 5)
    # A perfect list of 4 scores 1 on MAP and NDCG although the user has 5 relevant items.
    perfect = np.array([[0, 1, 2, 3]])
    assert average_precision_at_k(perfect, relevant)[0] == pytest.approx(1.0)
    assert ndcg_at_k(perfect, relevant)[0] == pytest.approx(1.0)


def test_ndcg_two_hits_below_the_top():
    # DCG = 1/log2(3) + 1/log2(4); ideal = 1 + 1/log2(3).
    recommended = np.array([[9, 0, 1]])
    relevant = csr_from_sets([{0, 1}], 10)
    expected = (1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(recommended, relevant)[0] == pytest.approx(expected)
    assert reciprocal_rank(recommended, relevant)[0] == pytest.approx(1 / 2)


def test_stored_zero_is_not_relevant_and_padding_never_hits():
    relevant = sp.csr_matrix(([1.0, 0.0], ([0, 0], [2, 0])), shape=(1, 3))
    recommended = np.array([[0, 2, -1]])
    np.testing.assert_array_equal(hits(recommended, relevant), [[False, True, False]])
    # Only item 2 is relevant, so precision is 1 of 3 slots (padding is a miss).
    assert precision_at_k(recommended, relevant)[0] == pytest.approx(1 / 3)
    assert recall_at_k(recommended, relevant)[0] == pytest.approx(1.0)


def test_fully_padded_list_scores_zero_not_nan():
    recommended = np.array([[-1, -1]])
    relevant = csr_from_sets([{0}], 3)
    assert precision_at_k(recommended, relevant)[0] == 0.0
    assert ndcg_at_k(recommended, relevant)[0] == 0.0
    assert reciprocal_rank(recommended, relevant)[0] == 0.0


def random_case(seed, n_users=40, n_items=30, k=8):
    rng = np.random.default_rng(seed)
    recommended = np.argsort(rng.random((n_users, n_items)), axis=1)[:, :k]
    lengths = rng.integers(0, k + 1, n_users)
    recommended[np.arange(k)[None, :] >= lengths[:, None]] = -1
    sets = []
    for u in range(n_users):
        size = 0 if u % 7 == 0 else rng.integers(1, 12)
        sets.append(set(rng.choice(n_items, size, replace=False).tolist()))
    return recommended, sets, csr_from_sets(sets, n_items)


def brute_force(recommended, sets):
    out = {name: [] for name in ("precision", "recall", "ndcg", "map", "mrr", "hit_rate")}
    for row, rel in zip(recommended.tolist(), sets, strict=True):
        if not rel:
            for values in out.values():
                values.append(NAN)
            continue
        k = len(row)
        flags = [item != -1 and item in rel for item in row]
        n_hits = sum(flags)
        out["precision"].append(n_hits / k)
        out["recall"].append(n_hits / len(rel))
        dcg = sum(1 / math.log2(r + 2) for r, f in enumerate(flags) if f)
        idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(rel))))
        out["ndcg"].append(dcg / idcg)
        ap, seen = 0.0, 0
        for r, f in enumerate(flags):
            if f:
                seen += 1
                ap += seen / (r + 1)
        out["map"].append(ap / min(k, len(rel)))
        first = next((r for r, f in enumerate(flags) if f), None)
        out["mrr"].append(0.0 if first is None else 1 / (first + 1))
        out["hit_rate"].append(float(n_hits > 0))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_per_user_metrics_match_brute_force(seed):
    recommended, sets, relevant = random_case(seed)
    expected = brute_force(recommended, sets)
    functions = {
        "precision": precision_at_k,
        "recall": recall_at_k,
        "ndcg": ndcg_at_k,
        "map": average_precision_at_k,
        "mrr": reciprocal_rank,
        "hit_rate": hit_rate_at_k,
    }
    for name, function in functions.items():
        np.testing.assert_allclose(function(recommended, relevant), expected[name], err_msg=name)
    pairs = zip(recommended.tolist(), sets, strict=True)
    flags = [[i != -1 and i in rel for i in row] for row, rel in pairs]
    np.testing.assert_array_equal(hits(recommended, relevant), flags)


def test_auc_hand_computed():
    scores = np.array([[0.9, 0.5, 0.5, 0.1, 0.7]] * 4)
    relevant = csr_from_sets([{1, 4}, {1, 4}, set(), {1}], 5)
    # Positives 0.5, 0.7 against negatives 0.9, 0.5, 0.1:
    # 0.5 -> loss, tie (1/2), win = 1.5; 0.7 -> loss, win, win = 2; AUC = 3.5 / 6.
    assert auc_per_user(scores, relevant)[0] == pytest.approx(3.5 / 6)
    # Excluding item 0 (0.9) for user 0: 3.5 / 4. Excluding item 4 (a positive) and item 0
    # for user 1: positive 0.5 against 0.5, 0.1 -> 1.5 / 2. User 3 keeps only item 1.
    exclude = csr_from_sets([{0}, {0, 4}, set(), {0, 2, 3, 4}], 5)
    np.testing.assert_allclose(auc_per_user(scores, relevant, exclude), [0.875, 0.75, NAN, NAN])


def test_auc_handles_infinite_scores_and_nan_rows():
    scores = np.array([[np.inf, 1.0, -np.inf, np.inf], [np.nan, 1.0, 0.0, 2.0]])
    relevant = csr_from_sets([{0}, {1}], 4)
    exclude = csr_from_sets([{3}, set()], 4)
    # User 0: +inf against 1 and -inf, the tying +inf is excluded -> 1.
    out = auc_per_user(scores, relevant, exclude)
    assert out[0] == pytest.approx(1.0)
    assert np.isnan(out[1])
    # Without the exclusion the +inf tie counts half: (1/2 + 1 + 1) / 3.
    assert auc_per_user(scores[:1], relevant[:1])[0] == pytest.approx(2.5 / 3)


def brute_force_auc(scores, sets, excluded):
    out = []
    for row, rel, excl in zip(scores, sets, excluded, strict=True):
        pos = [row[i] for i in range(len(row)) if i in rel and i not in excl]
        neg = [row[i] for i in range(len(row)) if i not in rel and i not in excl]
        if not pos or not neg:
            out.append(NAN)
            continue
        wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
        out.append(wins / (len(pos) * len(neg)))
    return out


@pytest.mark.parametrize("seed", range(3))
def test_auc_matches_pairwise_count(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    n_users, n_items = 30, 25
    scores = rng.integers(0, 6, (n_users, n_items)).astype(float)  # many ties
    _, sets, relevant = random_case(seed, n_users, n_items)
    excluded = [set(rng.choice(n_items, rng.integers(0, 10), replace=False).tolist()) for _ in sets]
    exclude = csr_from_sets(excluded, n_items)
    # Small blocks so that several of them are stitched together.
    monkeypatch.setattr("fmadv.metrics.ranking._AUC_BLOCK_CELLS", 7 * n_items)
    np.testing.assert_allclose(
        auc_per_user(scores, relevant, exclude), brute_force_auc(scores, sets, excluded)
    )
    np.testing.assert_allclose(
        auc_per_user(scores, relevant), brute_force_auc(scores, sets, [set()] * n_users)
    )


def test_catalog_coverage():
    assert catalog_coverage(np.array([[0, 1], [1, -1]]), 4) == 0.5
    assert catalog_coverage(np.array([[-1, -1]]), 4) == 0.0
    assert catalog_coverage(np.array([[3, 2], [1, 0]]), 4) == 1.0


def test_novelty_hand_computed():
    popularity = np.array([10, 1, 0, 5])
    # -log2(10/20) = 1; -log2(1/20) = log2(20), also for the unseen item 2; -log2(5/20) = 2.
    lists = np.array([[0, 3], [1, -1], [-1, -1], [2, 1]])
    expected = [1.5, math.log2(20), NAN, math.log2(20)]
    np.testing.assert_allclose(novelty(lists, popularity, 20), expected)


def test_ranking_report_bundles_the_metrics_at_k():
    recommended, sets, relevant = random_case(11, k=8)
    rng = np.random.default_rng(11)
    scores = rng.random(relevant.shape)
    popularity = rng.integers(0, 50, relevant.shape[1])
    report = ranking_report(recommended, relevant, 5, scores=scores, item_popularity=popularity)
    assert set(report) == {
        "precision",
        "recall",
        "ndcg",
        "map",
        "mrr",
        "hit_rate",
        "auc",
        "novelty",
        "coverage",
    }
    top5 = recommended[:, :5]
    expected = brute_force(top5, sets)
    for name in ("precision", "recall", "ndcg", "map", "mrr", "hit_rate"):
        np.testing.assert_allclose(report[name], expected[name], err_msg=name)
    np.testing.assert_allclose(report["auc"], auc_per_user(scores, relevant))
    np.testing.assert_allclose(report["novelty"], novelty(top5, popularity, len(sets)))
    shown = {i for row in top5.tolist() for i in row if i >= 0}
    assert report["coverage"] == pytest.approx(len(shown) / relevant.shape[1])

    plain = ranking_report(recommended, relevant, 8)
    assert "auc" not in plain and "novelty" not in plain
    np.testing.assert_allclose(plain["recall"], brute_force(recommended, sets)["recall"])


def test_invalid_inputs_raise():
    with pytest.raises(ConfigError, match="n_items"):
        hits(np.array([[6]]), csr_from_sets([{0}], 6))
    with pytest.raises(ConfigError, match="below -1"):
        hits(np.array([[-2]]), csr_from_sets([{0}], 6))
    with pytest.raises(ConfigError, match="integer"):
        hits(np.array([[0.0]]), csr_from_sets([{0}], 6))
    with pytest.raises(ConfigError, match="rows"):
        hits(np.array([[0], [1]]), csr_from_sets([{0}], 6))
    with pytest.raises(ConfigError, match="k must"):
        ranking_report(RECOMMENDED, RELEVANT, 4)
    with pytest.raises(ConfigError, match="columns"):
        auc_per_user(np.zeros((4, 5)), RELEVANT)
