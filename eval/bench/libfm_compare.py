"""Clean FM training against libFM and xLearn on MovieLens-100K, each run as its own process.

Fold u1, user and item one-hot (the training rows carved by ``load_dataset``, the test
rows of u1.test), labels rating >= 4. Every tool trains k factors (64, then 8) for 20
epochs on one thread with no validation, and its test AUC is computed here from its
predictions. CPU seconds are the children's user + system time (start-up included),
one run of each tool after the other, ``--repeats`` times; the table gives min and
median, and the ratio of each tool's CPU to libFM SGD's in the same repeat.

The tools are not installed by this project (see ``fm_tools.py``): pass
``--libfm path/to/bin/libFM`` and ``--xlearn folder/with/xlearn_train``; a tool not
found is left out, and without libFM the script stops.

Run:  python eval/bench/libfm_compare.py --data-dir ../shared/data --libfm /tmp/libfm/bin/libFM \\
          --xlearn /tmp/xlearn/src/xlearn-0.40a1/compile/build
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from fm_tools import (
    drop_xlearn_cache,
    found,
    libfm_mcmc,
    libfm_sgd,
    run_child,
    scores_of,
    xlearn_commands,
    zero_one_copy,
)

from fmadv.data import load_dataset
from fmadv.data.libfm import write_libfm
from fmadv.estimators import FMClassifier
from fmadv.metrics.classification import auc

EPOCHS = 20


def tools(args, train: Path, test: Path, k: int) -> dict:
    """{name: function(out folder) -> commands to run one after the other}."""
    fmadv = [sys.executable, "-m", "fmadv", "train", "--train", str(train), "--test", str(test),
             "--n-factors", str(k), "--epochs", str(EPOCHS), "--patience", "0", "--quiet",
             "--overwrite", "--threads", "1"]  # fmt: skip
    chosen = {
        "libFM SGD": lambda out: [libfm_sgd(args.libfm, train, test, out, k, EPOCHS)],
        "libFM MCMC (100 it.)": lambda out: [libfm_mcmc(args.libfm, train, test, out, k, 100)],
    }
    if args.xlearn and found(str(Path(args.xlearn) / "xlearn_train"), "xLearn"):
        train01, test01 = zero_one_copy(train), zero_one_copy(test)

        def xlearn(out: Path) -> list[list[str]]:
            drop_xlearn_cache(train01, test01)
            return list(xlearn_commands(args.xlearn, train01, test01, out, k, EPOCHS))

        chosen["xLearn (AdaGrad)"] = xlearn
    chosen["fmadv, dense Adam"] = lambda out: [[*fmadv, "--out", str(out)]]
    chosen["fmadv, sparse updates"] = lambda out: [[*fmadv, "--sparse-updates", "--out", str(out)]]
    return chosen


def compare(args, splits, work: Path, k: int) -> None:
    train, test = work / "train.libfm", work / "test.libfm"
    write_libfm(train, splits.train)
    write_libfm(test, splits.test)
    runs = tools(args, train, test, k)
    cpu = {name: [] for name in runs}
    scores = {}
    for _ in range(args.repeats):
        for name, commands in runs.items():
            out = work / "".join(c if c.isalnum() else "_" for c in name)
            cpu[name].append(sum(run_child(c).cpu_seconds for c in commands(out)))
            if name.startswith("fmadv"):
                scores[name] = FMClassifier.load(out).decision_function(splits.test.X)
            else:
                scores[name] = scores_of(out)
    print(f"\n## k = {k}, {EPOCHS} epochs, one thread\n")
    print("| tool | CPU s (min / median) | x libFM SGD (min / median) | test AUC |")
    print("|---|---:|---:|---:|")
    base = cpu["libFM SGD"]
    for name, values in cpu.items():
        ratios = [v / b for v, b in zip(values, base, strict=True)]
        print(
            f"| {name} | {min(values):.2f} / {statistics.median(values):.2f} | "
            f"{min(ratios):.2f} / {statistics.median(ratios):.2f} | "
            f"{auc(splits.test.y, scores[name]):.3f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("FMADV_DATA_DIR"))
    parser.add_argument("--libfm", default=shutil.which("libFM"))
    parser.add_argument("--xlearn", help="folder holding xlearn_train and xlearn_predict")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--factors", type=int, nargs="+", default=[64, 8])
    args = parser.parse_args()
    if not found(args.libfm, "libFM"):
        return
    splits = load_dataset("movielens-100k", args.data_dir, split="u1", side_features=[])
    print("# Clean training, MovieLens-100K u1, user + item one-hot")
    for k in args.factors:
        work = Path(tempfile.mkdtemp(prefix="fmadv-tools-"))
        compare(args, splits, work, k)
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
