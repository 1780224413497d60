"""One epoch at a million features: fmadv's sparse updates against xLearn and libFM SGD.

A synthetic libFM file: ``--rows`` rows (1,000,000) of 20 distinct active features out
of ``--features`` (1,000,000), with labels from a planted sparse linear model plus
noise, and a test file of a tenth of that size. Each tool reads the text file, trains
one epoch on one thread and predicts the test rows, as its own process. The table gives
each tool's CPU seconds (user + system, start-up and reading included) and peak
resident memory from /usr/bin/time, min and median over ``--repeats`` interleaved runs, the
ratio to the reference tool of that k in the same repeat (xLearn at k = 64, libFM SGD
at k = 8), and the test AUC.

Run:  python eval/bench/million_features.py --libfm /tmp/libfm/bin/libFM \\
          --xlearn /tmp/xlearn/src/xlearn-0.40a1/compile/build
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from fm_tools import (
    drop_xlearn_cache,
    found,
    libfm_sgd,
    run_child,
    scores_of,
    xlearn_commands,
    zero_one_copy,
)

from fmadv.data import Dataset
from fmadv.data.libfm import write_libfm
from fmadv.estimators import FMClassifier
from fmadv.metrics.classification import auc

ACTIVE = 20


def planted(rows: int, features: int, seed: int) -> Dataset:
    """Rows of ACTIVE distinct features; y = sign(sum of planted weights + noise)."""
    rng = np.random.default_rng(seed)
    weights = np.random.default_rng(0).standard_normal(features) * (rng.random(features) < 0.1)
    columns = rng.integers(0, features, (rows, ACTIVE))
    columns.sort(axis=1)
    distinct = np.ones_like(columns, dtype=bool)
    distinct[:, 1:] = columns[:, 1:] != columns[:, :-1]
    counts = distinct.sum(1)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    X = sp.csr_matrix(
        (np.ones(indptr[-1], np.float32), columns[distinct], indptr), (rows, features)
    )
    margin = X @ weights + rng.standard_normal(rows)
    return Dataset(X, np.where(margin > 0, 1.0, -1.0).astype(np.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--libfm", help="the libFM binary")
    parser.add_argument("--xlearn", help="folder holding xlearn_train and xlearn_predict")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    has_libfm = found(args.libfm, "libFM")
    has_xlearn = bool(args.xlearn) and found(str(Path(args.xlearn) / "xlearn_train"), "xLearn")

    work = Path(tempfile.mkdtemp(prefix="fmadv-million-"))
    train, test = work / "train.libfm", work / "test.libfm"
    write_libfm(train, planted(args.rows, args.features, seed=1))
    test_rows = planted(args.rows // 10, args.features, seed=2)
    write_libfm(test, test_rows)
    train01, test01 = (zero_one_copy(train), zero_one_copy(test)) if has_xlearn else (None, None)

    def fmadv(k: int, out: Path) -> list[list[str]]:
        return [[sys.executable, "-m", "fmadv", "train", "--train", str(train), "--test",
                 str(test), "--n-factors", str(k), "--epochs", "1", "--patience", "0",
                 "--sparse-updates", "--threads", "1", "--quiet", "--overwrite",
                 "--out", str(out)]]  # fmt: skip

    def xlearn(k: int, out: Path) -> list[list[str]]:
        drop_xlearn_cache(train01, test01)
        return list(xlearn_commands(args.xlearn, train01, test01, out, k, 1))

    runs = {}
    for k in (64, 8):
        if has_xlearn:
            runs[f"xLearn (AdaGrad), k = {k}"] = (k, lambda out, k=k: xlearn(k, out))
        if has_libfm:
            runs[f"libFM SGD, k = {k}"] = (
                k, lambda out, k=k: [libfm_sgd(args.libfm, train, test, out, k, 1)]
            )  # fmt: skip
        runs[f"fmadv, sparse updates, k = {k}"] = (k, lambda out, k=k: fmadv(k, out))
    cpu = {name: [] for name in runs}
    peak = {name: [] for name in runs}
    scores = {}
    for _ in range(args.repeats):
        for name, (_, commands) in runs.items():
            out = work / "".join(c if c.isalnum() else "_" for c in name)
            usages = [run_child(command) for command in commands(out)]
            cpu[name].append(sum(u.cpu_seconds for u in usages))
            peak[name].append(max(u.peak_mb for u in usages))
            if name.startswith("fmadv"):
                scores[name] = FMClassifier.load(out).decision_function(test_rows.X)
            else:
                scores[name] = scores_of(out)
    size = train.stat().st_size / 1e6
    print(f"# One epoch, {args.rows:,} rows x {args.features:,} features, {ACTIVE} active "
          f"per row ({size:.0f} MB of text), one thread\n")  # fmt: skip
    print("| tool | CPU s (min / median) | x reference (min / median) | peak RSS MB | "
          "x reference RSS | test AUC |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for name, (k, _) in runs.items():
        reference = next(
            (r for r in (f"xLearn (AdaGrad), k = {k}" if k == 64 else f"libFM SGD, k = {k}",)
             if r in runs), name
        )  # fmt: skip
        ratios = [a / b for a, b in zip(cpu[name], cpu[reference], strict=True)]
        rss = statistics.median(peak[name]) / statistics.median(peak[reference])
        print(
            f"| {name} | {min(cpu[name]):.1f} / {statistics.median(cpu[name]):.1f} | "
            f"{min(ratios):.2f} / {statistics.median(ratios):.2f} | "
            f"{statistics.median(peak[name]):.0f} | {rss:.2f} | "
            f"{auc(test_rows.y, scores[name]):.3f} |"
        )
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
