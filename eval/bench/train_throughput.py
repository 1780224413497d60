"""Clean FM training throughput: fmadv's sparse path against the obvious PyTorch FM.

Both sides run the same work in the same process: take a shuffled mini-batch of CSR
rows, build what the model needs from them, forward, hinge loss, backward, Adam step.

* reference: the FM written the obvious way, rows padded to the longest row, a dense
  gather V[idx] (batch x m x k) and autograd;
* fmadv: ``FactorizationMachine`` on a ``SparseBatch`` (CSR products, precomputed transpose).

Run:  python eval/bench/train_throughput.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import scipy.sparse as sp
import torch

from fmadv.data import load_dataset
from fmadv.losses import hinge
from fmadv.models.fm import FactorizationMachine
from fmadv.sparse import SparseBatch


def reference_batch(X: sp.csr_matrix):
    """Padded index matrix and mask: what the obvious implementation gathers with."""
    lengths = np.diff(X.indptr)
    width = int(lengths.max())
    index = np.zeros((X.shape[0], width), dtype=np.int64)
    mask = np.arange(width)[None, :] < lengths[:, None]
    index[mask] = X.indices
    return torch.from_numpy(index), torch.from_numpy(mask.astype(np.float32))


class ObviousFM(torch.nn.Module):
    def __init__(self, n: int, k: int, generator: torch.Generator):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(()))
        self.linear = torch.nn.Parameter(torch.zeros(n))
        self.factors = torch.nn.Parameter(torch.randn(n, k, generator=generator) * 0.01)

    def forward(self, index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        embedded = self.factors[index] * mask[..., None]
        s = embedded.sum(1)
        linear = (self.linear[index] * mask).sum(1)
        return self.bias + linear + 0.5 * (s.square().sum(1) - embedded.square().sum((1, 2)))


def run(kind: str, X, y, k: int, batch_size: int, steps: int, seed: int = 0) -> float:
    """Rows per second over ``steps`` training steps (after two warm-up steps)."""
    generator = torch.Generator().manual_seed(seed)
    n = X.shape[1]
    model = (
        ObviousFM(n, k, generator)
        if kind == "reference"
        else FactorizationMachine(n, k, 0.01, generator)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)

    def step():
        rows = rng.choice(X.shape[0], batch_size, replace=False)
        labels = torch.from_numpy(y[rows])
        optimizer.zero_grad(set_to_none=True)
        if kind == "reference":
            scores = model(*reference_batch(X[rows]))
        else:
            scores = model(SparseBatch(X[rows]))
        hinge(scores, labels).mean().backward()
        optimizer.step()

    for _ in range(2):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - started)


def breakdown(X, y, k: int, batch_size: int, steps: int = 30) -> dict[str, float]:
    """Share of an fmadv training step spent in each phase."""
    generator = torch.Generator().manual_seed(0)
    model = FactorizationMachine(X.shape[1], k, 0.01, generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    phases = dict.fromkeys(
        ("slice rows (scipy)", "forward (+ CSR build)", "backward (+ transpose)", "Adam step"), 0.0
    )
    for _ in range(steps):
        t0 = time.perf_counter()
        rows = rng.choice(X.shape[0], batch_size, replace=False)
        batch = SparseBatch(X[rows])
        labels = torch.from_numpy(y[rows])
        t1 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = hinge(model(batch), labels).mean()
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        optimizer.step()
        t4 = time.perf_counter()
        for name, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            phases[name] += dt
    total = sum(phases.values())
    return {name: dt / total for name, dt in phases.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("FMADV_DATA_DIR"))
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--batch-sizes", default="1024,4096,16384")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    splits = load_dataset(
        "movielens-100k", args.data_dir, side_features=["genre", "gender", "age", "occupation"]
    )
    X, y = splits.train.X, splits.train.y.astype(np.float32)
    per_row = X.nnz / X.shape[0]
    print(f"# Clean FM training throughput, MovieLens-100K features, k = {args.k}")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"train rows {X.shape[0]}, features {X.shape[1]}, active per row {per_row:.2f}\n")
    print("| batch | reference rows/s | fmadv rows/s | speed-up |")
    print("|---:|---:|---:|---:|")
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        # Best of a few repeats: the least disturbed measurement of each side.
        ref = max(
            run("reference", X, y, args.k, batch_size, args.steps) for _ in range(args.repeats)
        )
        ours = max(run("fmadv", X, y, args.k, batch_size, args.steps) for _ in range(args.repeats))
        print(f"| {batch_size} | {ref:,.0f} | {ours:,.0f} | {ours / ref:.1f}x |")
    print("\nWhere an fmadv step spends its time (batch 4096):\n")
    print("| phase | share |")
    print("|---|---:|")
    for name, share in breakdown(X, y, args.k, 4096).items():
        print(f"| {name} | {share:.0%} |")


if __name__ == "__main__":
    main()
