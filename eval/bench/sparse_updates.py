"""Sparse updates at a million features: a clean FM step, dense against sparse.

Synthetic one-hot rows (8 active features each out of ``--features``), k = 64,
batches of 4,096 rows, hinge loss plus the L2 of the active rows, one thread. The dense
step computes a gradient for every row of the tables and lets the optimizer touch
them all; the sparse step (``sparse_updates=True``) gathers the rows the batch uses,
gets a sparse gradient for them, and updates only those (lazy Adam; Adagrad's sparse
step is its dense step). CPU seconds per step, min and median over interleaved repeats.

Run:  python eval/bench/sparse_updates.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import scipy.sparse as sp
import torch

from fmadv.losses import hinge
from fmadv.models.fm import FactorizationMachine
from fmadv.sparse import SparseBatch
from fmadv.training.optimizers import make_optimizer


def batches(n_features: int, rows: int, active: int, count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        columns = np.sort(rng.choice(n_features, (rows, active)), axis=1)
        indptr = np.arange(0, rows * active + 1, active)
        X = sp.csr_matrix((np.ones(rows * active, np.float32), columns.ravel(), indptr),
                          shape=(rows, n_features))  # fmt: skip
        X.sum_duplicates()
        X.data[:] = 1
        out.append((X, torch.from_numpy(rng.choice([-1.0, 1.0], rows).astype(np.float32))))
    return out


def make_step(n_features: int, k: int, optimizer: str, sparse: bool):
    model = FactorizationMachine(n_features, k, generator=torch.Generator().manual_seed(0))
    model.sparse_gradients = sparse
    opt = make_optimizer(model, optimizer, lr=0.01, sparse=sparse)

    def step(X, y):
        batch = SparseBatch(X)
        opt.zero_grad(set_to_none=True)
        loss = hinge(model(batch), y).mean() + model.l2_penalty(batch, 1e-5, 1e-5)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=1_000_000)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = batches(args.features, args.batch_size, 8, args.steps)
    routes = {
        f"{name}, {'sparse' if sparse else 'dense'}": make_step(args.features, args.k, name, sparse)
        for name in ("adam", "adagrad")
        for sparse in (False, True)
    }
    for step in routes.values():  # warm-up: the optimizer's state is allocated
        step(*data[0])
    times = {name: [] for name in routes}
    for _ in range(args.repeats):
        for name, step in routes.items():
            started = time.process_time()
            for X, y in data:
                step(X, y)
            times[name].append((time.process_time() - started) / len(data))
    print(f"# A clean FM step at {args.features:,} features, k = {args.k}, "
          f"{args.batch_size} rows of 8 features, one thread\n")  # fmt: skip
    print("| optimizer, updates | CPU s / step (min) | median | dense / sparse (min, median) |")
    print("|---|---:|---:|---:|")
    for name, values in times.items():
        dense = times[name.replace("sparse", "dense")]
        ratios = [d / s for d, s in zip(dense, values, strict=True)]
        shown = f"{min(ratios):.1f}x, {statistics.median(ratios):.1f}x" if "sparse" in name else ""
        print(f"| {name} | {min(values):.3f} | {statistics.median(values):.3f} | {shown} |")


if __name__ == "__main__":
    main()
