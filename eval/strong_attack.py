"""The blog's FMs under the single FGSM step and under the strongest exact attack
(MovieLens-100K), and adversarial training against each.

    python eval/strong_attack.py --data-dir ../shared/data

The blog's setting (fold u1 with genre, gender, age and occupation; k = 16, hinge loss,
L2 1e-5, Adam 0.01, the epoch chosen on the validation rows carved from u1.base). Four
models: plain, gradient noise (eta 1e-4), trained against the single FGSM step (beta
0.5, alpha 0.003, all features: the blog's), and against the exact worst point of the
segment to that step (``line_search``).

Each is attacked on ``--rows`` test rows (drawn once) with FGSM over all features at
each alpha, three ways: the single step against the hinge loss (the blog's figure; a
row beyond the margin does not move), the exact line search, and the strong attack (per
row the worst of the line search and 20 steps of PGD in the same box). Per model: test
AUC and, per attack and alpha, the flip rate, the adversarial error and the share of
rows the attack turns from wrong to right.
Two seeds, so that differences read against the one between seeds. Writes
``strong_attack.csv`` and ``strong_attack.png`` into ``--out``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import seed_cells, seeded_parser, test_sample, u1

from fmadv.estimators.fm import FMClassifier
from fmadv.evaluation.robustness import STRENGTHS, strongest_scores
from fmadv.losses import hinge
from fmadv.metrics.classification import auc
from fmadv.metrics.robustness import robustness_report
from fmadv.plots import plot_flip_curves

HERE = Path(__file__).resolve().parent
ALPHAS = (0.003, 0.01, 0.03, 0.1)
SHARED = {
    "n_factors": 16, "epochs": 30, "lr": 0.01, "batch_size": 1024, "patience": 3,
    "loss": "hinge", "reg_linear": 1e-5, "reg_factors": 1e-5,
}  # fmt: skip
MODELS = {
    "plain": {},
    "gradient noise": {"grad_noise": 1e-4},
    "single step (0.003)": {"beta": 0.5, "eps": 0.003},
    "line search (0.003)": {"beta": 0.5, "eps": 0.003, "line_search": True},
}


def main() -> None:
    parser = seeded_parser(__doc__, HERE / "results" / "strong_attack")
    parser.add_argument("--rows", type=int, default=5000, help="test rows attacked (drawn once)")
    args = parser.parse_args()
    rows, curves = [], {}
    for seed in args.seeds:
        splits = u1(args.data_dir, seed)
        test = splits.test
        chosen = test_sample(test.n_rows, args.rows)
        X, y = test.X[chosen], test.y[chosen]
        for name, options in MODELS.items():
            started = time.process_time()
            model = FMClassifier(**SHARED, **options, random_state=seed).fit_splits(splits)
            seconds = time.process_time() - started
            test_auc = auc(test.y, model.decision_function(test.X))
            print(f"{name:22s} seed {seed}: AUC {test_auc:.4f}, {seconds:.0f} CPU s", flush=True)
            for strength in STRENGTHS:
                for alpha in ALPHAS:
                    clean, attacked = strongest_scores(
                        model.model_, X, y, model.make_attack, alpha, hinge, strength
                    )  # fmt: skip
                    report = robustness_report(y, clean, attacked)
                    right = np.where(attacked > 0, 1, -1) == y
                    corrected = float(np.mean(right & (np.where(clean > 0, 1, -1) != y)))
                    rows.append({
                        "model": name, "seed": seed, "test_auc": test_auc, "train_cpu_s": seconds,
                        "attack": strength, "alpha": alpha, "corrected": corrected, **report,
                    })  # fmt: skip
                if seed == args.seeds[0] and strength != "line":
                    curves[f"{name}, {strength}"] = [
                        {"eps": r["alpha"], **r} for r in rows[-len(ALPHAS) :]
                    ]
            args.out.mkdir(parents=True, exist_ok=True)  # after every model: partial runs count
            pd.DataFrame(rows).to_csv(args.out / "strong_attack.csv", index=False)
    plot_flip_curves(curves, args.out / "strong_attack.png",
                     title="MovieLens-100K u1: single step (hinge) and strong attack")  # fmt: skip
    print_table(pd.DataFrame(rows))


def print_table(table: pd.DataFrame) -> None:
    """The markdown table of eval/README.md from the rows of ``strong_attack.csv``."""
    print(
        "\n| model | test AUC (seeds) | FGSM alpha (L-inf, in the box) | single step: flipped "
        "/ error / wrong to right | exact line search: error | strong: flipped / error |"
    )
    print("|---|---|---:|---|---:|---|")
    for (name, alpha), group in table.groupby(["model", "alpha"], sort=False):

        def cell(strength: str, column: str, group=group) -> str:
            values = group[group.attack == strength][column]
            return seed_cells(values)

        aucs = cell("single", "test_auc")
        print(f"| {name} | {aucs} | {alpha:g} | {cell('single', 'flip_rate')}; "
              f"{cell('single', 'adversarial_error')}; {cell('single', 'corrected')} | "
              f"{cell('line', 'adversarial_error')} | {cell('strong', 'flip_rate')}; "
              f"{cell('strong', 'adversarial_error')} |")  # fmt: skip


if __name__ == "__main__":
    main()
