"""The FM blog's robustness table on MovieLens-100K, side by side with its figures.

Trains the blog's three models with the same seed and split (plain FM, FM with gradient
noise, adversarially trained FM with beta = 0.5 and alpha = 0.003), then attacks each
with box-clipped FGSM at alpha = 0.003 over both perturbation supports, as a single step
(the blog's attack) and as the exact line search along it, and draws the flip rate
against alpha under the single step and the strong attack (on ``--curve-rows`` test
rows). Models are saved for the top-k comparison.

Run:  python eval/blog_table.py --data-dir ../shared/data
Writes eval/results/blog_table.{md,csv}, blog_flip_curves.{csv,png}, and models under
eval/out/blog/.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import test_sample

from fmadv.attacks import make_attack
from fmadv.data import load_dataset
from fmadv.estimators.fm import FMClassifier
from fmadv.evaluation.robustness import attacked_scores, flip_curve, line_search_scores
from fmadv.losses import hinge
from fmadv.metrics.classification import classification_report
from fmadv.metrics.robustness import robustness_report
from fmadv.plots import plot_flip_curves

HERE = Path(__file__).parent
# The blog's figures: share of test predictions that flip under its attack.
BLOG_FLIP = {"plain": 0.0825, "gradient noise": 0.0694, "adversarial": 0.0106}
ALPHAS = [0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]


def models(args) -> dict[str, dict]:
    """The models to train: name -> FMClassifier options beyond the shared ones."""
    return {
        "plain": {},
        "gradient noise": {"grad_noise": args.eta},
        "gradient noise, all rows": {"grad_noise": args.eta, "grad_noise_rows": "all"},
        "adversarial": {"beta": 0.5, "eps": 0.003, "support": "all"},
        "adversarial, active support": {
            "beta": 0.5,
            "eps": args.active_alpha,
            "support": "active",
        },
    }


def attacked_hinge(model, X, y, alpha, support) -> float:
    clean, attacked = attacked_scores(
        model.model_, X, y, make_attack("fgsm", alpha, support), hinge
    )
    return float(np.maximum(0, 1 - y * attacked).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("FMADV_DATA_DIR"))
    parser.add_argument("--split", default="u1")
    parser.add_argument("--side-features", default="genre,gender,age,occupation")
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--eta", type=float, default=1e-4, help="gradient noise variance")
    parser.add_argument("--active-alpha", type=float, default=0.1)
    parser.add_argument("--curve-rows", type=int, default=5000, help="test rows of the curves")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--models-out", type=Path, default=HERE / "out" / "blog")
    args = parser.parse_args()

    side = [s for s in args.side_features.split(",") if s]
    options = {"side_features": side, "split": args.split, "seed": args.seed}
    splits = load_dataset("movielens-100k", args.data_dir, **options)
    train, valid, test = splits.train, splits.valid, splits.test
    # The curves' strong attack runs PGD on dense rows: a sample drawn once.
    sample = test_sample(test.n_rows, args.curve_rows)
    X_curve, y_curve = test.X[sample], test.y[sample]
    # The blog's setting: the hinge loss and a light L2 (not fmadv's defaults).
    shared = {
        "n_factors": args.k, "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
        "patience": 3, "random_state": args.seed, "loss": "hinge", "reg_linear": 1e-5,
        "reg_factors": 1e-5,
    }  # fmt: skip
    print(f"MovieLens-100K {args.split}, side features {side or 'none'}: "
          f"{train.n_rows} train / {valid.n_rows} valid / {test.n_rows} test rows, "
          f"{train.n_features} features")  # fmt: skip

    rows, curves = [], {"all": {}, "active": {}}
    for name, extra in models(args).items():
        started = time.perf_counter()
        model = FMClassifier(**shared, **extra)
        model.fit(train.X, train.y, eval_set=(valid.X, valid.y))
        seconds = time.perf_counter() - started
        model.save(
            args.models_out / name.replace(", ", "-").replace(" ", "-") / "model.safetensors",
            feature_map=train.feature_map,
            extra={"data": {"dataset": "movielens-100k", "options": options}},
        )
        clean = classification_report(test.y, model.decision_function(test.X))
        row = {
            "model": name,
            "training": model.describe(),
            "epochs": f"{model.history_.best_epoch}/{len(model.history_.records)}",
            "train_seconds": round(seconds, 1),
            "test_accuracy": clean["accuracy"],
            "test_auc": clean["auc"],
            "blog_flip_rate": BLOG_FLIP.get(name),
        }
        for support in ("all", "active"):

            def fgsm(alpha: float, support: str = support):
                return make_attack("fgsm", alpha, support)

            scores, attacked = attacked_scores(model.model_, test.X, test.y, fgsm(0.003), hinge)
            report = robustness_report(test.y, scores, attacked)
            row[f"flip_rate_{support}"] = report["flip_rate"]
            row[f"adversarial_error_{support}"] = report["adversarial_error"]
            row[f"hinge_attacked_{support}"] = float(np.maximum(0, 1 - test.y * attacked).mean())
            _, worst = line_search_scores(model.model_, test.X, test.y, fgsm, 0.003, hinge)
            searched = robustness_report(test.y, scores, worst)
            row[f"line_search_flip_rate_{support}"] = searched["flip_rate"]
            row[f"line_search_adversarial_error_{support}"] = searched["adversarial_error"]
            for strength in ("single", "strong"):
                curves[support][f"{name}, {strength}"] = flip_curve(
                    model.model_, X_curve, y_curve, fgsm, ALPHAS, hinge, strength
                )
        row["clean_hinge"] = clean["hinge"]
        rows.append(row)
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}))

    args.out.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "blog_table.csv", index=False)
    long = [
        {"support": support, "model": name, **point}
        for support, by_model in curves.items()
        for name, curve in by_model.items()
        for point in curve
    ]
    pd.DataFrame(long).to_csv(args.out / "blog_flip_curves.csv", index=False)
    for support, by_model in curves.items():
        plot_flip_curves(
            by_model,
            args.out / f"blog_flip_curves_{support}.png",
            title=f"MovieLens-100K {args.split}: FGSM over {support} features, single and strong",
        )
    write_markdown(table, args)


def percent(value) -> str:
    return "" if value is None or pd.isna(value) else f"{100 * value:.2f}%"


def write_markdown(table: pd.DataFrame, args) -> None:
    lines = [
        "| model | test acc | test AUC | flip rate (blog) | flip rate, all: single step "
        "| adv. error, all: single step | hinge, all: single step "
        "| flip rate, all: exact line search | adv. error, all: exact line search "
        "| flip rate, active: single step | epochs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for _, r in table.iterrows():
        lines.append(
            f"| {r['model']} | {r['test_accuracy']:.4f} | {r['test_auc']:.4f} "
            f"| {percent(r['blog_flip_rate'])} | {percent(r['flip_rate_all'])} "
            f"| {percent(r['adversarial_error_all'])} | {r['hinge_attacked_all']:.3f} "
            f"(clean {r['clean_hinge']:.3f}) | {percent(r['line_search_flip_rate_all'])} "
            f"| {percent(r['line_search_adversarial_error_all'])} "
            f"| {percent(r['flip_rate_active'])} | {r['epochs']} |"
        )
    (args.out / "blog_table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
