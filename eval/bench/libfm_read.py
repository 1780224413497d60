"""Reading a large libFM file: fmadv's validating reader against scikit-learn's loader.

Writes a synthetic libFM file (``--rows`` rows of 8 one-hot features out of
``--features``, labels -1/+1) once, then reads it with :func:`fmadv.data.read_libfm`
(its fast path), with the reader that checks every token (what a file with an error
goes through), and, when scikit-learn is installed, with ``sklearn.datasets.load_svmlight_file``
(Cython, no line numbers in its errors, no check of duplicates, binary values or a
feature budget). CPU seconds, one after the other, ``--repeats`` times; min and median.

Run:  python eval/bench/libfm_read.py
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from fmadv.data.libfm import _read_checked, max_features_budget, read_libfm


def write_file(path: Path, rows: int, features: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with path.open("w") as out:
        for start in range(0, rows, 200_000):
            n = min(200_000, rows - start)
            labels = rng.choice([-1, 1], n)
            columns = np.sort(rng.choice(features, (n, 8)), axis=1)
            out.write(
                "\n".join(
                    f"{label} " + " ".join(f"{c}:1" for c in np.unique(row))
                    for label, row in zip(labels, columns, strict=True)
                )
                + "\n"
            )


def cpu_seconds(read, path: Path) -> float:
    started = time.process_time()
    read(path)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--features", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    readers = {
        "fmadv read_libfm": read_libfm,
        "fmadv, checking every token (the path of a bad file)": lambda p: _read_checked(
            p.read_bytes(), p, None, False, True, max_features_budget()
        ),
    }
    try:
        from sklearn.datasets import load_svmlight_file

        readers["scikit-learn load_svmlight_file"] = lambda p: load_svmlight_file(
            str(p), zero_based=True
        )
    except ImportError:
        print("scikit-learn is not installed: only fmadv's reader runs")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "big.libfm"
        write_file(path, args.rows, args.features)
        size = path.stat().st_size / 1e6
        times = {name: [] for name in readers}
        for _ in range(args.repeats):
            for name, read in readers.items():
                times[name].append(cpu_seconds(read, path))
    print(f"# Reading {size:.0f} MB: {args.rows:,} rows, {args.features:,} features\n")
    print("| reader | CPU s (min / median) | MB per CPU s |")
    print("|---|---:|---:|")
    for name, values in times.items():
        print(
            f"| {name} | {min(values):.1f} / {statistics.median(values):.1f} | "
            f"{size / min(values):.0f} |"
        )


if __name__ == "__main__":
    main()
