"""How the adversarial ranking FMs' beta and eps were chosen: validation only.

MovieLens-100K fold u1 (user and item only), seed 0. Each candidate trains
:class:`~fmadv.estimators.ranker.FMRanker` at its defaults plus adversarial training
(FGSM on the user's features, shared by the positive and its negatives), and is read on
the validation split carved from training: its NDCG@10, and the share of its top 10
that survives the profile attack (FGSM on each user's features against the user's own
list) at several budgets, over the first 200 validation users with a relevant item.
The test split is not read.

Run:  python eval/ranker_adversarial.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from fmadv.attacks import make_attack
from fmadv.data import load_dataset
from fmadv.estimators import FMRanker
from fmadv.recommend import Interactions
from fmadv.recommend.fm import FMRecommender
from fmadv.recommend.stability import stability

CANDIDATES = [
    {},
    {"beta": 0.5, "eps": 0.003},
    {"beta": 0.5, "eps": 0.01},
    {"beta": 0.2, "eps": 0.01},
    {"beta": 0.1, "eps": 0.01},
    {"beta": 0.05, "eps": 0.01},
    {"beta": 0.02, "eps": 0.01},
    {"beta": 0.05, "eps": 0.03},
]
BUDGETS = (0.003, 0.01, 0.03)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("FMADV_DATA_DIR"))
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--only", type=int, nargs="+", default=None, metavar="I",
        help="run only these candidates (their indices in CANDIDATES)",
    )  # fmt: skip
    args = parser.parse_args()
    splits = load_dataset("movielens-100k", args.data_dir, split="u1")
    interactions = Interactions.from_splits(splits)
    relevant = interactions.relevant(splits.valid)
    users = np.flatnonzero(np.diff(relevant.indptr))[: args.users]
    budgets = " | ".join(f"kept at eps {eps:g}" for eps in BUDGETS)
    print(f"| training | seed | valid NDCG@10 | best epoch | {budgets} |")
    print("|---|---:|---:|---:|" + "---:|" * len(BUDGETS), flush=True)
    chosen = args.only if args.only is not None else range(len(CANDIDATES))
    for changes in (CANDIDATES[i] for i in chosen):
        for seed in args.seeds:
            ranker = FMRanker(random_state=seed, **changes)
            ranker.fit(interactions, valid=splits.valid)
            recommender = FMRecommender(ranker).fit(interactions)
            kept = [
                stability(recommender, make_attack("fgsm", eps, "all"), users, 10)[2].mean()
                for eps in BUDGETS
            ]
            label = ", ".join(f"{name} {value}" for name, value in changes.items()) or "plain"
            history = ranker.history_
            shown = " | ".join(f"{share:.3f}" for share in kept)
            print(
                f"| {label} | {seed} | {history.best_value:.4f} | {history.best_epoch} | {shown} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
