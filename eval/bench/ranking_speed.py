"""Training to the best validation NDCG: the ranking FM against implicit's BPR and ALS.

MovieLens-100K fold u1, user and item ids; validation carved from training, relevant =
rating >= 4, training pairs filtered. Each model trains with one thread and is scored on
validation after every epoch; the epoch that the validation NDCG@10 peaks at and the
training seconds up to it (validation excluded) are reported, for:

* the ranking FM at :class:`~fmadv.estimators.ranker.FMRanker`'s defaults;
* implicit's ALS and BPR at the hyperparameters the validation tuning chose
  (eval/README.md, "Baselines tuned on validation"), run for a fixed number of epochs.

The models run interleaved, ``--repeats`` times each; the table gives min and median.

Run:  python eval/bench/ranking_speed.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import scipy.sparse as sp
import torch
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.bpr import BayesianPersonalizedRanking
from threadpoolctl import threadpool_limits

from fmadv.data import load_dataset
from fmadv.estimators import FMRanker
from fmadv.metrics.ranking import ranking_report
from fmadv.recommend import Interactions
from fmadv.training.callbacks import Callback

K = 10
IMPLICIT = {
    "implicit ALS (factors 32, reg 10)": (
        AlternatingLeastSquares,
        {"factors": 32, "regularization": 10.0, "alpha": 1.0, "iterations": 30},
    ),
    "implicit BPR (factors 128, lr 0.01, reg 0.01)": (
        BayesianPersonalizedRanking,
        {"factors": 128, "learning_rate": 0.01, "regularization": 0.01, "iterations": 150},
    ),
}


def validation_ndcg(user_factors, item_factors, users, seen, relevant) -> float:
    scores = user_factors[users] @ item_factors.T
    hidden = seen[users].tocoo()
    scores[hidden.row, hidden.col] = -np.inf
    lists = np.argsort(-scores, axis=1)[:, :K]
    return float(np.nanmean(ranking_report(lists, relevant[users], K)["ndcg"]))


def run_implicit(name: str, inter: Interactions, relevant: sp.csr_matrix, seed: int):
    """(epochs to the best, best NDCG, training seconds to it, CPU seconds to it)."""
    kind, params = IMPLICIT[name]
    model = kind(**params, num_threads=1, random_state=seed)
    users = np.flatnonzero(np.diff(relevant.indptr))
    curve, clock = [], {"wall": 0.0, "cpu": 0.0, "mark": (time.perf_counter(), time.process_time())}

    def after_epoch(iteration, *_):
        wall, cpu = clock["mark"]
        clock["wall"] += time.perf_counter() - wall
        clock["cpu"] += time.process_time() - cpu
        ndcg = validation_ndcg(
            np.asarray(model.user_factors), np.asarray(model.item_factors), users, inter.seen,
            relevant,
        )  # fmt: skip
        curve.append((ndcg, clock["wall"], clock["cpu"]))
        clock["mark"] = (time.perf_counter(), time.process_time())

    clock["mark"] = (time.perf_counter(), time.process_time())
    model.fit(inter.liked, show_progress=False, callback=after_epoch)
    best = int(np.argmax([ndcg for ndcg, _, _ in curve]))
    return best + 1, *curve[best]


class TrainingClock(Callback):
    """Wall and CPU seconds spent training, validation passes left out: cumulative at
    the end of each epoch."""

    def __init__(self):
        self.curve: list[tuple[float, float]] = []
        self.wall = self.cpu = 0.0

    def _now(self) -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def on_train_begin(self, state) -> None:
        self.mark = self.last = self._now()

    def on_batch_end(self, state, rows_done: int) -> None:
        self.last = self._now()

    def on_epoch_end(self, state, record) -> bool:
        self.wall += self.last[0] - self.mark[0]
        self.cpu += self.last[1] - self.mark[1]
        self.curve.append((self.wall, self.cpu))
        self.mark = self._now()  # after the validation pass
        return False


def run_fm(inter: Interactions, valid, seed: int):
    clock = TrainingClock()
    ranker = FMRanker(random_state=seed).fit(inter, valid=valid, callbacks=[clock])
    best = ranker.history_.best_epoch
    return best, ranker.history_.best_value, *clock.curve[best - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("FMADV_DATA_DIR"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    threadpool_limits(1)  # numpy's BLAS too (implicit warns when it is threaded)

    splits = load_dataset("movielens-100k", args.data_dir, split="u1")
    inter = Interactions.from_splits(splits)
    relevant = inter.relevant(splits.valid)
    results: dict[str, list[tuple]] = {"fmadv FMRanker (defaults)": []}
    results.update({name: [] for name in IMPLICIT})
    for seed in range(args.repeats):
        results["fmadv FMRanker (defaults)"].append(run_fm(inter, splits.valid, seed))
        for name in IMPLICIT:
            results[name].append(run_implicit(name, inter, relevant, seed))

    print("# Training to the best validation NDCG@10, MovieLens-100K u1, one thread\n")
    print("| model | epochs to best | valid NDCG@10 | train s to best (min / median) "
          "| CPU s to best (min / median) |")  # fmt: skip
    print("|---|---|---:|---:|---:|")
    for name, runs in results.items():
        epochs = ", ".join(str(r[0]) for r in runs)
        ndcg = statistics.mean(r[1] for r in runs)
        walls, cpus = [r[2] for r in runs], [r[3] for r in runs]
        print(
            f"| {name} | {epochs} | {ndcg:.4f} | {min(walls):.1f} / {statistics.median(walls):.1f} "
            f"| {min(cpus):.1f} / {statistics.median(cpus):.1f} |"
        )


if __name__ == "__main__":
    main()
