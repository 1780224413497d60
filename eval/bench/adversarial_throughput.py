"""Adversarial FM training: the exact tiled attack against the obvious dense route.

One step of loss(x) + beta * loss(x_adv) with box-clipped FGSM over all features
(support = "all", alpha = 0.003, beta = 0.5), hinge loss, Adam, in the same process:

* dense reference: x as a dense (batch x n) tensor, autograd for grad_x, x_adv by the
  generic FGSM, autograd again for the parameters;
* fmadv: ``AdversarialObjective`` (sparse clean pass + tiled masked products).

Also measures this machine's float32 matrix-multiply rate in the same run, the rate the
masked products reach, and (in a fresh subprocess each) peak memory at n = 1,000,000.

Run:  python eval/bench/adversarial_throughput.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import scipy.sparse as sp
import torch

from fmadv.attacks import FGSM, adversarial_scores
from fmadv.losses import hinge, loss_direction
from fmadv.models import fm_attack
from fmadv.models.fm import FactorizationMachine
from fmadv.sparse import SparseBatch
from fmadv.training.objectives import AdversarialObjective

ALPHA, BETA = 0.003, 0.5


def synthetic_rows(n_rows: int, n_features: int, active: int, seed: int = 0) -> sp.csr_matrix:
    """Rows with up to ``active`` random features each (duplicates merge to one)."""
    rng = np.random.default_rng(seed)
    cols = rng.integers(0, n_features, (n_rows, active))
    csr = sp.csr_matrix(
        (np.ones(cols.size, np.float32), cols.ravel(), np.arange(0, cols.size + 1, active)),
        shape=(n_rows, n_features),
    )
    csr.sum_duplicates()
    csr.data[:] = 1
    return csr


def model_and_optimizer(n: int, k: int):
    model = FactorizationMachine(n, k, 0.01, torch.Generator().manual_seed(0))
    with torch.no_grad():  # a model past its first steps: weights of realistic size
        model.linear.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
        model.factors.mul_(10)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def dense_step(model, optimizer, rows: sp.csr_matrix, labels: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    x = torch.from_numpy(rows.toarray())
    attack = FGSM(ALPHA)
    x_adv = attack.perturb(x, lambda r: hinge(model.forward_dense(r), labels))
    clean = hinge(model.forward_dense(x), labels).mean()
    adv = hinge(model.forward_dense(x_adv), labels).mean()
    (clean + BETA * adv).backward()
    optimizer.step()


def fmadv_step(model, optimizer, rows: sp.csr_matrix, labels: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    objective = AdversarialObjective(FGSM(ALPHA), BETA)
    objective(model, SparseBatch(rows), labels, hinge).backward()
    optimizer.step()


def clean_step(model, optimizer, rows: sp.csr_matrix, labels: torch.Tensor) -> None:
    """The plain training step, for the cost of adversarial training relative to it."""
    optimizer.zero_grad(set_to_none=True)
    hinge(model(SparseBatch(rows)), labels).mean().backward()
    optimizer.step()


def seconds_per_step(step, n: int, k: int, rows, labels, repeats: int) -> float:
    model, optimizer = model_and_optimizer(n, k)
    step(model, optimizer, rows, labels)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        step(model, optimizer, rows, labels)
        best = min(best, time.perf_counter() - started)
    return best


def matmul_rate(size: int = 2048, repeats: int = 10) -> float:
    """This machine's float32 matrix-multiply rate (GFLOP/s): the best of ``repeats``
    square products, measured like the steps it is compared with (best of several)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def masked_product_flops(n: int, k: int, rows, labels) -> float:
    """Flops of the tile products one fmadv step runs, counted from the rows that move
    (nonzero slope at x) and the rows with a nonzero gradient at x_adv, as the attack does:
    forward [rho, rho s] @ [w, V]^T and A @ [V, w, q]; backward A^T @ U, plus the first
    product again when the masks were too large to keep."""
    model, _ = model_and_optimizer(n, k)
    batch = SparseBatch(rows)
    with torch.no_grad():
        clean = model(batch)
        rho = loss_direction(clean, labels, hinge)
        attacked = adversarial_scores(model, batch, labels, hinge, FGSM(ALPHA), clean=clean)
    moving = int((rho != 0).sum())
    needed = int(((rho != 0) & (labels * attacked < 1)).sum())
    flops = 2 * moving * n * ((k + 1) + (k + 2))
    if moving * n <= fm_attack.CACHE_ELEMENTS:
        return flops + 2 * moving * n * (k + 2)
    return flops + 2 * needed * n * ((k + 1) + (k + 2))


def peak_rss_mib() -> float:
    """High-water mark of this process's resident memory. VmHWM belongs to the address
    space, so unlike ru_maxrss it does not inherit the parent's peak across exec."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_probe(n: int, k: int, batch: int, with_optimizer: bool) -> None:
    """Child process: one fmadv adversarial step at n features; prints peak RSS in MiB."""
    rows = synthetic_rows(batch, n, 8)
    labels = torch.from_numpy(
        np.random.default_rng(0).choice([-1.0, 1.0], batch).astype(np.float32)
    )
    model, optimizer = model_and_optimizer(n, k)
    baseline = peak_rss_mib()
    if with_optimizer:
        fmadv_step(model, optimizer, rows, labels)
    else:
        objective = AdversarialObjective(FGSM(ALPHA), BETA)
        objective(model, SparseBatch(rows), labels, hinge).backward()
    peak = peak_rss_mib()
    print(json.dumps({"peak_mib": peak, "before_step_mib": baseline}))


def probe(n: int, k: int, batch: int, with_optimizer: bool) -> dict:
    command = [sys.executable, __file__, "--probe", str(n), "--k", str(k), "--batch", str(batch)]
    if with_optimizer:
        command.append("--with-optimizer")
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("FMADV_DATA_DIR"))
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--probe", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--with-optimizer", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        memory_probe(args.probe, args.k, args.batch, args.with_optimizer)
        return

    k, batch = args.k, args.batch
    rate = matmul_rate()
    print(f"# Adversarial FM training step (FGSM alpha={ALPHA}, beta={BETA}, support=all)")
    print(f"batch {batch}, k = {k}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"float32 matmul rate {rate:.0f} GFLOP/s (2048^3, same run)\n")  # fmt: skip
    settings = []
    if args.data_dir:
        from fmadv.data import load_dataset

        train = load_dataset(
            "movielens-100k", args.data_dir, side_features=["genre", "gender", "age", "occupation"]
        ).train
        pick = np.random.default_rng(0).choice(train.n_rows, batch, replace=False)
        settings.append(("MovieLens-100K features", train.X[pick], train.y[pick]))
    rows = synthetic_rows(batch, 100_000, 8)
    settings.append(
        ("synthetic, n = 100,000", rows, np.random.default_rng(0).choice([-1.0, 1.0], batch))
    )

    print(
        "| features | n | dense reference s/step | fmadv s/step | speed-up "
        "| masked-product GFLOP per second of step | share of matmul rate "
        "| clean step s | fmadv / clean |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, X, y in settings:
        labels = torch.from_numpy(np.asarray(y, np.float32))
        n = X.shape[1]
        dense = seconds_per_step(dense_step, n, k, X, labels, args.repeats)
        ours = seconds_per_step(fmadv_step, n, k, X, labels, args.repeats)
        clean = seconds_per_step(clean_step, n, k, X, labels, args.repeats)
        achieved = masked_product_flops(n, k, X, labels) / ours / 1e9
        print(f"| {name} | {n:,} | {dense:.3f} | {ours:.3f} | {dense / ours:.1f}x "
              f"| {achieved:.0f} | {achieved / rate:.0%} | {clean:.4f} "
              f"| {ours / clean:.0f}x |")  # fmt: skip

    if not args.skip_memory:
        n = 1_000_000
        print(f"\nPeak memory, one adversarial step at n = {n:,} (fresh process each):\n")
        print("| what | peak RSS MiB | of which before the step |")
        print("|---|---:|---:|")
        for label, with_opt in (("forward + backward", False), ("forward + backward + Adam", True)):
            result = probe(n, k, batch, with_opt)
            print(f"| {label} | {result['peak_mib']:.0f} | {result['before_step_mib']:.0f} |")
        dense_gib = batch * n * 4 / 2**30
        print(f"\nThe dense route holds x, grad_x and x_adv as {batch} x {n:,} float32 tensors: "
              f"{dense_gib:.1f} GiB each, {3 * dense_gib:.0f} GiB at least.")  # fmt: skip


if __name__ == "__main__":
    main()
