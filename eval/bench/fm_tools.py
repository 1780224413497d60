"""The FM tools users already have, run as child processes for the benchmarks.

libFM and xLearn are not installed by this project. Build libFM from its sources
(``make`` in a clone of srendle/libfm) and xLearn from its PyPI source archive
(``pip download xlearn --no-binary :all:``, then cmake and make in its ``compile``
folder); pass the binaries to the benchmark scripts. Each child runs on one thread, and
its CPU seconds (user + system) and peak resident memory come from /usr/bin/time.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ONE_THREAD = {"FMADV_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass
class Usage:
    cpu_seconds: float
    peak_mb: float


def run_child(command: list[str], env: dict | None = None) -> Usage:
    """Run a command to its end under /usr/bin/time; its CPU seconds and peak RSS
    (raises on failure). The command runs as time's child: a child of this (large)
    process would count this process's pages in its own peak."""
    environment = {**os.environ, **ONE_THREAD, **(env or {})}
    environment.setdefault("USER", "fmadv")  # xLearn aborts without it
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        result = subprocess.run(
            ["/usr/bin/time", "-o", report.name, "-f", "%U %S %M", *command],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment, text=True,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {result.stderr[-2000:]}")
        user, system, peak_kb = report.read().split()[-3:]
    return Usage(float(user) + float(system), float(peak_kb) / 1024)


def libfm_sgd(binary: str, train: Path, test: Path, out: Path, k: int, epochs: int):
    """libFM's SGD for classification, with the learning rate and L2 of its manual."""
    return [binary, "-task", "c", "-train", str(train), "-test", str(test),
            "-dim", f"1,1,{k}", "-iter", str(epochs), "-method", "sgd", "-out", str(out),
            "-init_stdev", "0.1", "-learn_rate", "0.01", "-regular", "0,0,0.01"]  # fmt: skip


def libfm_mcmc(binary: str, train: Path, test: Path, out: Path, k: int, iterations: int):
    """libFM's MCMC (its recommended method): hyperpriors in place of tuning."""
    return [binary, "-task", "c", "-train", str(train), "-test", str(test),
            "-dim", f"1,1,{k}", "-iter", str(iterations), "-method", "mcmc", "-out", str(out),
            "-init_stdev", "0.1"]  # fmt: skip


def xlearn_commands(folder: str, train: Path, test: Path, out: Path, k: int, epochs: int):
    """xLearn's FM (its defaults: AdaGrad, lr 0.2, L2 2e-5, rows normalised), trained
    then predicting; its files take 0/1 labels (:func:`zero_one_copy`)."""
    model, log = out.with_suffix(".xlearn"), str(out.with_suffix(".log"))
    train_command = [str(Path(folder) / "xlearn_train"), str(train), "-s", "1",
                     "-k", str(k), "-e", str(epochs), "--dis-es", "-nthread", "1",
                     "-m", str(model), "--quiet", "-l", log]  # fmt: skip
    predict_command = [str(Path(folder) / "xlearn_predict"), str(test), str(model),
                       "-o", str(out), "-nthread", "1", "-l", log]  # fmt: skip
    return train_command, predict_command


def zero_one_copy(path: Path) -> Path:
    """A copy of a libFM file with labels 0/1 (xLearn's), beside it; xLearn's binary
    cache of an earlier run is removed so that every run parses the text."""
    copy = path.with_suffix(".01" + path.suffix)
    text = path.read_bytes()
    if text.startswith(b"-1 "):
        text = b"0 " + text[3:]
    copy.write_bytes(text.replace(b"\n-1 ", b"\n0 "))
    return copy


def drop_xlearn_cache(*paths: Path) -> None:
    for path in paths:
        Path(str(path) + ".bin").unlink(missing_ok=True)


def scores_of(path: Path) -> np.ndarray:
    return np.loadtxt(path, ndmin=1)


def found(binary: str | None, name: str) -> bool:
    if binary and Path(binary).exists():
        return True
    print(f"{name} not found ({binary or 'no path given'}): its rows are left out")
    return False
