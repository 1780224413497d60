"""How the ranking FM's defaults were chosen: validation NDCG@10 of candidate settings.

    python eval/ranker_defaults.py --data-dir ../shared/data

MovieLens-100K fold u1 (user and item only), seed 0. Each candidate changes a base
setting of :class:`~fmadv.estimators.ranker.FMRanker` in one or two places (the base:
logistic loss, 8 uniform negatives, 64 factors, L2 1e-2, Adam at lr 0.01 for up to 50
epochs); the epoch and the comparison both read the validation split carved from
training. The test split is not read. The winner, lr 0.005 for up to 80 epochs, is
the ranker's default.
"""

from __future__ import annotations

import argparse
import os
import time

from fmadv.data import load_dataset
from fmadv.data.interactions import Interactions
from fmadv.estimators import FMRanker

BASE = {"lr": 0.01, "epochs": 50}
CANDIDATES = {
    "base (logistic, 8 negatives)": {},
    "bpr, 4 negatives": {"loss": "bpr", "n_negatives": 4},
    "bpr, 8 negatives": {"loss": "bpr"},
    "logistic, 4 negatives": {"n_negatives": 4},
    "logistic, 12 negatives": {"n_negatives": 12},
    "logistic, 16 negatives": {"n_negatives": 16},
    "popularity-weighted negatives": {"negative_sampling": "popularity"},
    "L2 3e-3": {"reg_linear": 3e-3, "reg_factors": 3e-3},
    "L2 3e-2": {"reg_linear": 3e-2, "reg_factors": 3e-2},
    "lr 0.005, 80 epochs": {"lr": 0.005, "epochs": 80},
    "128 factors": {"n_factors": 128},
    "lr 0.005, 80 epochs, 12 negatives": {"lr": 0.005, "epochs": 80, "n_negatives": 12},
    "lr 0.005, 80 epochs, 128 factors": {"lr": 0.005, "epochs": 80, "n_factors": 128},
    "lr 0.005, 80 epochs, L2 5e-3": {
        "lr": 0.005,
        "epochs": 80,
        "reg_linear": 5e-3,
        "reg_factors": 5e-3,
    },
    "batch 512": {"batch_size": 512},
    "softmax, 8 negatives": {"loss": "softmax"},
    "softmax, 32 negatives": {"loss": "softmax", "n_negatives": 32},
    "softmax, 32 negatives, lr 0.005": {"loss": "softmax", "n_negatives": 32, "lr": 0.005},
    "softmax, 32 negatives, L2 3e-3": {
        "loss": "softmax",
        "n_negatives": 32,
        "reg_linear": 3e-3,
        "reg_factors": 3e-3,
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("FMADV_DATA_DIR"))
    parser.add_argument(
        "--only", nargs="+", default=None, metavar="TEXT",
        help="run only the candidates whose label contains one of these",
    )  # fmt: skip
    args = parser.parse_args()
    chosen = {
        label: changes for label, changes in CANDIDATES.items()
        if args.only is None or any(text in label for text in args.only)
    }  # fmt: skip
    splits = load_dataset("movielens-100k", args.data_dir, split="u1", side_features=[])
    interactions = Interactions.from_splits(splits)
    print("| candidate | valid NDCG@10 | best epoch | CPU s |")
    print("|---|---:|---:|---:|")
    for label, changes in chosen.items():
        started = time.process_time()
        ranker = FMRanker(**(BASE | changes), random_state=0).fit(interactions, valid=splits.valid)
        history = ranker.history_
        seconds = time.process_time() - started
        print(f"| {label} | {history.best_value:.4f} | {history.best_epoch} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
