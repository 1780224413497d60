"""The ranking FM's sampled-negative training step: three routes on the same batches.

Every route takes the same drawn groups (a user's positive item followed by its sampled
negatives), builds what its model needs, scores the rows, and takes one Adam step on
the logistic loss plus the L2 of the active rows (the ranker's defaults):

* gather + autograd: the FM written the obvious way, each (user, item) row padded to
  its longest feature list, a dense gather V[idx] (rows x m x k) and autograd;
* fmadv rows: one CSR row per (user, item) pair, the FM's sparse products (how the
  ranker trained before its batches kept two sides);
* fmadv pairs: the :class:`~fmadv.sparse.PairBatch` the ranker trains on now: each
  group's user features and each distinct item's summed once, then combined;
* the two fmadv routes with adversarial training (loss + 0.5 * loss under FGSM at eps
  0.003): on rows every row moves on its own over all features; on pairs each user's
  features move once for its group (the ranker's threat model).

CPU seconds per step with one thread, interleaved repeats; ratios to the gather route
with their min and median over the repeats, and where the pair step's time goes.

Run:  python eval/bench/ranking_step.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
from train_throughput import ObviousFM, reference_batch

from fmadv.attacks import FGSM
from fmadv.data import load_dataset
from fmadv.losses import logistic
from fmadv.models.fm import FactorizationMachine
from fmadv.recommend import Interactions
from fmadv.sparse import PairBatch, SparseBatch
from fmadv.training.objectives import AdversarialObjective
from fmadv.training.ranking import NegativeSampler, pair_keys

ROUTES = ("gather + autograd", "fmadv rows", "fmadv pairs", "rows + FGSM", "pairs + FGSM")
ADVERSARIAL = AdversarialObjective(FGSM(0.003), beta=0.5)
REG = 1e-2


def draw_batches(inter: Interactions, n_negatives: int, groups: int, count: int, seed: int):
    """``count`` batches of (users, items (groups x (1 + n_negatives)))."""
    rng = np.random.default_rng(seed)
    liked = inter.liked.tocsr()
    users_of = np.repeat(np.arange(liked.shape[0]), np.diff(liked.indptr))
    keys, sampler = pair_keys(liked), NegativeSampler(n_negatives)
    batches = []
    for _ in range(count):
        chosen = rng.choice(liked.nnz, groups, replace=False)
        users = users_of[chosen]
        negatives = sampler.draw(rng, users, keys, inter.n_items)
        batches.append((users, np.concatenate([liked.indices[chosen, None], negatives], 1)))
    return batches


def make_step(route: str, inter: Interactions, k: int):
    generator = torch.Generator().manual_seed(0)
    n = inter.feature_map.n_features
    model = ObviousFM(n, k, generator) if route == ROUTES[0] else FactorizationMachine(n, k)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)

    def step(users: np.ndarray, items: np.ndarray) -> None:
        size = items.shape[1]
        labels = torch.from_numpy(np.tile(np.r_[1.0, -np.ones(size - 1)], len(users))).float()
        optimizer.zero_grad(set_to_none=True)
        if route == ROUTES[0]:
            index, mask = reference_batch(pair_rows(inter, users, items))
            active = model.linear[index].square() + model.factors[index].square().sum(-1)
            penalty = REG * (active * mask).sum(1).mean()
            loss = logistic(model(index, mask), labels).mean()
        else:
            if "rows" in route:
                batch = SparseBatch(pair_rows(inter, users, items))
            else:
                distinct, item_of_row = np.unique(items.ravel(), return_inverse=True)
                batch = PairBatch(
                    inter.user_features[users], inter.item_features[distinct],
                    np.repeat(np.arange(len(users)), size), item_of_row, inter.user_columns,
                )  # fmt: skip
            penalty = model.l2_penalty(batch, REG, REG)
            if "FGSM" in route:
                loss = ADVERSARIAL(model, batch, labels, logistic)
            else:
                loss = logistic(model(batch), labels).mean()
        (loss + penalty).backward()
        optimizer.step()

    return step


def pair_rows(inter: Interactions, users: np.ndarray, items: np.ndarray):
    """One CSR row per (user, item): the user's features plus the item's."""
    users = np.repeat(users, items.shape[1])
    return (inter.user_features[users] + inter.item_features[items.ravel()]).tocsr()


def cpu_per_step(step, batches) -> float:
    started = time.process_time()
    for users, items in batches:
        step(users, items)
    return (time.process_time() - started) / len(batches)


def pair_breakdown(inter: Interactions, batches, k: int) -> dict[str, float]:
    """CPU share of each phase of the pair step."""
    model = FactorizationMachine(inter.feature_map.n_features, k)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    phases = dict.fromkeys(("build PairBatch", "forward + loss", "backward", "Adam step"), 0.0)
    for users, items in batches:
        size = items.shape[1]
        t0 = time.process_time()
        distinct, item_of_row = np.unique(items.ravel(), return_inverse=True)
        batch = PairBatch(
            inter.user_features[users], inter.item_features[distinct],
            np.repeat(np.arange(len(users)), size), item_of_row, inter.user_columns,
        )  # fmt: skip
        labels = torch.from_numpy(np.tile(np.r_[1.0, -np.ones(size - 1)], len(users))).float()
        t1 = time.process_time()
        optimizer.zero_grad(set_to_none=True)
        loss = logistic(model(batch), labels).mean() + model.l2_penalty(batch, REG, REG)
        t2 = time.process_time()
        loss.backward()
        t3 = time.process_time()
        optimizer.step()
        t4 = time.process_time()
        for name, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            phases[name] += dt
    total = sum(phases.values())
    return {name: dt / total for name, dt in phases.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("FMADV_DATA_DIR"))
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--negatives", type=int, default=8)
    parser.add_argument("--groups", type=int, default=1024, help="positives per batch")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)

    print(f"# The ranking FM's training step, MovieLens-100K u1, k = {args.k}")
    print(f"{args.groups} positives x (1 + {args.negatives}) rows per step, one thread\n")
    for features in ((), ("genre", "gender", "age", "occupation")):
        splits = load_dataset("movielens-100k", args.data_dir, side_features=features)
        inter = Interactions.from_splits(splits)
        batches = draw_batches(inter, args.negatives, args.groups, args.steps, seed=0)
        steps = {route: make_step(route, inter, args.k) for route in ROUTES}
        for route in ROUTES:  # warm-up
            steps[route](*batches[0])
        times = {route: [] for route in ROUTES}
        for _ in range(args.repeats):
            for route in ROUTES:
                times[route].append(cpu_per_step(steps[route], batches))
        label = "user + item ids" if not features else "ids + " + ", ".join(features)
        print(f"## {label}\n")
        print("| route | CPU ms / step (min) | x gather, min | x gather, median |")
        print("|---|---:|---:|---:|")
        reference = times[ROUTES[0]]
        for route in ROUTES:
            ratios = [r / t for r, t in zip(reference, times[route], strict=True)]
            print(
                f"| {route} | {1000 * min(times[route]):.1f} | {min(ratios):.2f} | "
                f"{statistics.median(ratios):.2f} |"
            )
        for kind in ("rows", "pairs"):
            cost = [
                a / c for a, c in zip(times[f"{kind} + FGSM"], times[f"fmadv {kind}"], strict=True)
            ]
            print(
                f"\nadversarial step on {kind}: {min(cost):.2f}x (min), "
                f"{statistics.median(cost):.2f}x (median) its clean step"
            )
        shares = pair_breakdown(inter, batches, args.k)
        print("\nfmadv pairs, where the step goes: " + ", ".join(
            f"{name} {share:.0%}" for name, share in shares.items()
        ) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
