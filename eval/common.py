"""What the MovieLens evaluation scripts share: fold u1 with the side features, the
arguments of a script run over several seeds, one sample of test rows, and the
"seed 0 / seed 1" cells of their tables."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from fmadv.data import load_dataset
from fmadv.data.movielens import SIDE_FEATURES


def seeded_parser(doc: str, out: Path, seeds: Sequence[int] = (0, 1)) -> argparse.ArgumentParser:
    """A parser with ``--data-dir``, ``--seeds`` and ``--out``, described by ``doc``'s
    first line."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("FMADV_DATA_DIR"))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(seeds))
    parser.add_argument("--out", type=Path, default=out)
    return parser


def u1(data_dir, seed: int = 0, side: Iterable[str] = SIDE_FEATURES):
    """MovieLens-100K fold u1 with the ``side`` features, validation carved with ``seed``."""
    return load_dataset("movielens-100k", data_dir, split="u1", side_features=list(side), seed=seed)


def test_sample(n_rows: int, size: int) -> np.ndarray:
    """``size`` of ``n_rows`` row indices, sorted, drawn once (the same for every seed)."""
    return np.sort(np.random.default_rng(0).permutation(n_rows)[:size])


def seed_cells(values: Iterable[float], digits: int = 3) -> str:
    """One figure per seed, "0.123 / 0.456"."""
    return " / ".join(f"{v:.{digits}f}" for v in values)
