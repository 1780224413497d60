"""FMs under whole-feature edits (MovieLens-100K): plain, box-adversarial and
edit-adversarial, flip rates beside certified shares against the number of edits.

    python eval/edit_table.py --data-dir ../shared/data

Fold u1 with genre, gender, age and occupation; the FM classifier at its defaults
(logistic loss), early stopping on the validation rows carved from u1.base. Two
attackers, each with its own edit-adversarial model (trained against the greedy
attack's edits) and certified-margin model (trained on the score moved by the
certificate's bound):

- a user who edits their own profile: the values of gender, age and occupation (b <= 3);
- a seller who edits an item's genres: toggles of the 19 genre features (b <= 5).

Per model and seed: test AUC, and at each budget the greedy attack's flip rate (the
share of test rows whose predicted class b edits change), the certified share (rows no
b edits can change) and the adversarial error against the true labels. Two seeds per
model, so that a difference between models reads against the one between seeds.
Writes ``edit_table.csv`` and one ``edit_curves_*.png`` per attacker into ``--out``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from common import seed_cells, seeded_parser, u1

from fmadv.estimators import FMClassifier
from fmadv.evaluation.edits import edit_curve, edit_threat
from fmadv.metrics.classification import auc
from fmadv.plots import plot_edit_curves

HERE = Path(__file__).resolve().parent
ATTACKERS = {
    "profile (gender, age, occupation)": (("gender", "age", "occupation"), (1, 2, 3)),
    "item genres": (("genre",), (1, 2, 3, 4, 5)),
}


def models(fields: tuple[str, ...]) -> dict[str, dict]:
    return {
        "plain": {},
        "box-adversarial (FGSM 0.003, beta 0.5)": {"beta": 0.5, "eps": 0.003},
        "edit-adversarial (b = 1, beta 0.5)": {
            "beta": 0.5, "attack": "flips", "budget": 1, "edit_fields": fields,
        },
        "certified margin (b = 2, beta 0.5)": {
            "beta": 0.5, "attack": "flips", "budget": 2, "edit_fields": fields,
            "certified": True,
        },
    }  # fmt: skip


def main() -> None:
    args = seeded_parser(__doc__, HERE / "results" / "edits").parse_args()
    rows, curves = [], {}
    for seed in args.seeds:
        splits = u1(args.data_dir, seed)
        test = splits.test
        for attacker, (fields, budgets) in ATTACKERS.items():
            threat = edit_threat(splits.feature_map, fields, 0)
            for name, options in models(fields).items():
                started = time.process_time()
                model = FMClassifier(random_state=seed, **options).fit_splits(splits)
                seconds = time.process_time() - started
                test_auc = auc(test.y, model.decision_function(test.X))
                curve = edit_curve(model.model_, test.X, test.y, threat, budgets)
                if seed == args.seeds[0]:
                    curves[f"{attacker} | {name}"] = curve
                facts = {"attacker": attacker, "model": name, "seed": seed,
                         "test_auc": test_auc, "train_cpu_s": seconds}  # fmt: skip
                rows.extend({**facts, **point} for point in curve)
                print(f"{attacker:34s} {name:40s} seed {seed}: AUC {test_auc:.4f}, "
                      f"flip rate at b=1 {curve[0]['flip_rate']:.3f}")  # fmt: skip
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "edit_table.csv", index=False)
    for attacker in ATTACKERS:
        chosen = {
            label.split(" | ")[1]: curve
            for label, curve in curves.items()
            if label.startswith(attacker)
        }
        plot_edit_curves(chosen, args.out / f"edit_curves_{attacker.split()[0]}.png",
                         title=f"MovieLens-100K u1: edits of the {attacker}")  # fmt: skip
    print()
    print("| attacker | model | test AUC (seeds) | b (whole-feature edits) | flipped by the "
          "greedy attack (seeds) | certified (seeds) | undecided | adversarial error, greedy "
          "attack |")  # fmt: skip
    print("|---|---|---|---:|---|---|---:|---:|")
    for (attacker, name, budget), group in table.groupby(
        ["attacker", "model", "budget"], sort=False
    ):

        def seeds(column: str, group=group) -> str:
            return seed_cells(group[column])

        print(f"| {attacker} | {name} | {seeds('test_auc')} | {budget} | {seeds('flip_rate')} | "
              f"{seeds('certified_share')} | {group['undecided_share'].mean():.3f} | "
              f"{group['adversarial_error'].mean():.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
