"""Top-k for every user: fmadv's FM recommender against implicit's ALS ``recommend``.

Both rank the whole catalogue for every user, drop the items each user has seen, and
keep the top k, with the same number of factors, in the same run. The FM splits into a
user part, an item part and one product; ALS scores with the product of its factors.

Run:  python eval/bench/topk_throughput.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import scipy.sparse as sp
import torch
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from fmadv.data.features import FeatureMap
from fmadv.data.interactions import Interactions
from fmadv.estimators.fm import FMClassifier
from fmadv.models.fm import FactorizationMachine
from fmadv.recommend.fm import FMRecommender


def one_hot_catalogue(n_users: int, n_items: int, seen_per_user: int, seed: int = 0):
    """Interactions of a synthetic catalogue: one-hot users and items, random history."""
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n_users), seen_per_user)
    cols = rng.integers(0, n_items, rows.size)
    seen = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), (n_users, n_items))
    seen.sum_duplicates()
    seen.data[:] = 1
    fmap = FeatureMap.from_categories({"user": range(n_users), "item": range(n_items)})
    users_x = sp.csr_matrix(
        (np.ones(n_users, np.float32), np.arange(n_users), np.arange(n_users + 1)),
        (n_users, n_users + n_items),
    )
    items_x = sp.csr_matrix(
        (np.ones(n_items, np.float32), n_users + np.arange(n_items), np.arange(n_items + 1)),
        (n_items, n_users + n_items),
    )
    return Interactions(
        np.arange(n_users), np.arange(n_items), seen, seen, None, fmap, users_x, items_x,
        ("user",), ("item",),
    )  # fmt: skip


def random_classifier(n_features: int, k: int) -> FMClassifier:
    classifier = FMClassifier(n_factors=k)
    classifier.model_ = FactorizationMachine(n_features, k, 0.1, torch.Generator().manual_seed(0))
    classifier.n_features_in_ = n_features
    return classifier


def timed(function) -> tuple[float, float]:
    """(wall, CPU) seconds of one call; CPU counts every thread of the process."""
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def compare(name: str, interactions: Interactions, classifier, k: int, factors: int, repeats: int):
    users = np.arange(interactions.n_users)
    fm = FMRecommender(classifier).fit(interactions)
    seen = interactions.seen
    # implicit asks for single-threaded BLAS (it runs its own threads): give it its best.
    with threadpool_limits(1, "blas"):
        als = AlternatingLeastSquares(factors=factors, iterations=1, random_state=0)
        als.fit(interactions.liked, show_progress=False)
    runs = {"als": [], "fm": []}
    for _ in range(repeats):  # interleaved, so that both meet the same machine load
        with threadpool_limits(1, "blas"):
            runs["als"].append(timed(lambda: als.recommend(users, seen, N=k)))
        runs["fm"].append(timed(lambda: fm.recommend(users, k=k)))
    als_wall, fm_wall = (np.array([wall for wall, _ in runs[m]]) for m in ("als", "fm"))
    als_cpu, fm_cpu = (np.array([cpu for _, cpu in runs[m]]) for m in ("als", "fm"))
    ratio = als_wall / fm_wall
    print(
        f"| {name} | {interactions.n_users:,} x {interactions.n_items:,} | {factors} | "
        f"{als_wall.min():.3f} / {np.median(als_wall):.3f} | "
        f"{fm_wall.min():.3f} / {np.median(fm_wall):.3f} | "
        f"{ratio.min():.2f}x / {np.median(ratio):.2f}x | "
        f"{np.median(als_cpu):.2f} / {np.median(fm_cpu):.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("FMADV_DATA_DIR"))
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=50_000)
    args = parser.parse_args()
    print(f"# Top-{args.k} for every user, {os.cpu_count()} cores, torch {torch.__version__}\n")
    print(
        "| catalogue | users x items | factors | implicit ALS s (min / median) | fmadv FM s | "
        "FM speed-up (min / median) | CPU s, ALS / FM (median) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    if args.data_dir:
        from fmadv.data import load_dataset

        splits = load_dataset(
            "movielens-100k", args.data_dir, side_features=["genre", "gender", "age", "occupation"]
        )
        interactions = Interactions.from_splits(splits)
        classifier = random_classifier(splits.train.n_features, args.factors)
        compare("MovieLens-100K (side features)", interactions, classifier, args.k, args.factors,
                args.repeats)  # fmt: skip
    interactions = one_hot_catalogue(args.users, args.items, seen_per_user=20)
    classifier = random_classifier(args.users + args.items, args.factors)
    compare("synthetic one-hot", interactions, classifier, args.k, args.factors, args.repeats)


if __name__ == "__main__":
    main()
