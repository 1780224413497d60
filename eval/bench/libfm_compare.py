"""Clean FM training against libFM on MovieLens-100K, each run as its own process.

Fold u1, user and item one-hot (the training rows carved by ``load_dataset``, the test
rows of u1.test), labels rating >= 4. Every tool trains k = 64 factors for 20 epochs on
one thread with no validation, and its test AUC is computed here from its predictions.
CPU seconds are the children's user + system time (start-up included), one run of each
tool after the other, ``--repeats`` times; the table gives min and median, and the ratio
of each tool's CPU to libFM SGD's in the same repeat.

libFM is not installed by this project: build it from its sources (``make`` in a clone
of srendle/libfm) and pass ``--libfm path/to/bin/libFM``; without it the script says so
and stops.

Run:  python eval/bench/libfm_compare.py --data-dir ../shared/data --libfm /tmp/libfm/bin/libFM
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from fmadv.data import load_dataset
from fmadv.data.libfm import write_libfm
from fmadv.estimators import FMClassifier
from fmadv.metrics.classification import auc

EPOCHS, K = 20, 64


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(command: list[str], env: dict) -> float:
    """CPU seconds of one child process."""
    before = children_cpu()
    subprocess.run(
        command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    return children_cpu() - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("FMADV_DATA_DIR"))
    parser.add_argument("--libfm", default=shutil.which("libFM"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not args.libfm or not Path(args.libfm).exists():
        print("libFM not found: build it (make in a clone of srendle/libfm) and pass --libfm")
        return

    splits = load_dataset("movielens-100k", args.data_dir, split="u1", side_features=[])
    work = Path(tempfile.mkdtemp(prefix="fmadv-libfm-"))
    train, test = work / "train.libfm", work / "test.libfm"
    write_libfm(train, splits.train)
    write_libfm(test, splits.test)
    y_test = splits.test.y
    env = {**os.environ, "FMADV_THREADS": "1", "OMP_NUM_THREADS": "1"}
    fmadv = [sys.executable, "-m", "fmadv", "train", "--train", str(train), "--test", str(test),
             "--n-factors", str(K), "--epochs", str(EPOCHS), "--patience", "0", "--quiet",
             "--overwrite"]  # fmt: skip

    def libfm(method: str, out: Path) -> list[str]:
        common = [args.libfm, "-task", "c", "-train", str(train), "-test", str(test),
                  "-dim", f"1,1,{K}", "-iter", str(EPOCHS if method == "sgd" else 100),
                  "-method", method, "-out", str(out), "-init_stdev", "0.1"]  # fmt: skip
        if method == "sgd":
            common += ["-learn_rate", "0.01", "-regular", "0,0,0.01"]
        return common

    tools = {
        "libFM SGD": lambda out: libfm("sgd", out),
        "libFM MCMC (100 it.)": lambda out: libfm("mcmc", out),
        "fmadv, dense Adam": lambda out: [*fmadv, "--out", str(out)],
        "fmadv, sparse updates": lambda out: [*fmadv, "--sparse-updates", "--out", str(out)],
    }
    cpu = {name: [] for name in tools}
    scores = {}
    for _ in range(args.repeats):
        for name, command in tools.items():
            out = work / name.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
            cpu[name].append(run(command(out), env))
            if name.startswith("libFM"):
                scores[name] = np.loadtxt(out)
            else:
                model = FMClassifier.load(out)
                scores[name] = model.decision_function(splits.test.X)

    print(
        f"# Clean training, MovieLens-100K u1, user + item, k = {K}, {EPOCHS} epochs, one thread\n"
    )
    print("| tool | CPU s (min / median) | x libFM SGD (min / median) | test AUC |")
    print("|---|---:|---:|---:|")
    base = cpu["libFM SGD"]
    for name, values in cpu.items():
        ratios = [v / b for v, b in zip(values, base, strict=True)]
        print(
            f"| {name} | {min(values):.2f} / {statistics.median(values):.2f} | "
            f"{min(ratios):.2f} / {statistics.median(ratios):.2f} | "
            f"{auc(y_test, scores[name]):.3f} |"
        )
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
