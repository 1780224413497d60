"""Baselines tuned on validation against their defaults (MovieLens-100K, compare-topk).

Tunes ALS, BPR and item-kNN for NDCG@10 on the validation rows carved out of the
training file (never the test file), then scores each baseline with its default and its
tuned hyperparameters on the test split under the compare-topk protocol: relevant =
held-out rating >= 4, training items left out of every list, NDCG@10 over the users with
a held-out row. Popularity, which has nothing to tune, is the floor.

Run:  python eval/tune_baselines.py --data-dir ../shared/data
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import time

import pandas as pd

from fmadv.data import load_dataset
from fmadv.recommend import Interactions
from fmadv.recommend.baselines import make_baseline
from fmadv.recommend.compare import compare_topk
from fmadv.recommend.tuning import (
    DEFAULT_BUDGET_SECONDS,
    TuningResult,
    relevant_pairs,
    tune,
    validation_ndcg,
)
from fmadv.reports import markdown_table

TUNED = ("als", "bpr", "itemknn")
FLOOR = "popularity"


def rows_of(result: TuningResult, test_ndcg: dict[str, float], seconds: float) -> list[dict]:
    """The default and the tuned row of one baseline."""
    best = result.best
    return [
        {
            "baseline": result.name,
            "hyperparameters": f"default: {result.values(result.default)}",
            "valid NDCG": result.default.ndcg,
            "test NDCG": test_ndcg[f"{result.name} default"],
            "points tried": "",
            "tuning s": "",
        },
        {
            "baseline": result.name,
            "hyperparameters": f"tuned: {result.values(best)}",
            "valid NDCG": best.ndcg,
            "test NDCG": test_ndcg[f"{result.name} tuned"],
            "points tried": len(result.trials),
            "tuning s": f"{seconds:.1f}",
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("FMADV_DATA_DIR"))
    parser.add_argument("--split", default="u1")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_SECONDS,
                        help="seconds of tuning per baseline")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    splits = load_dataset("movielens-100k", args.data_dir, split=args.split, seed=args.seed)
    interactions = Interactions.from_splits(splits)
    valid = relevant_pairs(interactions, splits.valid)

    results, seconds = {}, {}
    recommenders = {FLOOR: make_baseline(FLOOR).fit(interactions)}
    for name in TUNED:
        began = time.perf_counter()
        results[name] = tune(name, interactions, valid, args.k, args.budget, args.seed)
        seconds[name] = time.perf_counter() - began
        for label, params in (("default", results[name].default.params),
                              ("tuned", results[name].best_params)):  # fmt: skip
            recommenders[f"{name} {label}"] = make_baseline(name, **params).fit(interactions)
    comparison = compare_topk(recommenders, interactions, splits.test, k=args.k)
    test_ndcg = comparison.models["ndcg"].to_dict()

    floor = {
        "baseline": FLOOR,
        "hyperparameters": "",
        "valid NDCG": validation_ndcg(recommenders[FLOOR], valid, args.k),
        "test NDCG": test_ndcg[FLOOR],
        "points tried": "",
        "tuning s": "",
    }
    rows = [floor]
    for name, result in results.items():
        rows += rows_of(result, test_ndcg, seconds[name])
    print(
        f"MovieLens-100K {args.split}: {len(comparison.users)} test users, NDCG@{args.k}, "
        f"budget {args.budget:g} s per baseline, seed {args.seed}\n"
    )
    print(markdown_table(pd.DataFrame(rows), digits=3))


if __name__ == "__main__":
    main()
