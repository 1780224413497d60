"""The image papers' tables, side by side with the published figures.

    python eval/image_tables.py huang-mlp    # Huang et al. Table 1: MLP, L2 budget 1.5
    python eval/image_tables.py huang-lenet  # their Table 2 (LeNet) and Figure 1 (curves)
    python eval/image_tables.py lenet-report # the LeNet report: FGSM, standard vs adversarial

Every column is measured on the 10,000 MNIST test images; every attack is made against
the model in that row, except "fixed": the adversarial test set made once from the
normally trained network with Adv_Loss. PGD (L2, 20 steps, random start) is the column
none of the source papers had. Results go to ``--out`` (default eval/results/images/).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import pandas as pd
import torch

from fmadv.attacks import FGSM
from fmadv.data.image_prep import load_image_dataset
from fmadv.estimators.image import (
    ImageTrainConfig,
    image_attack,
    image_loop,
    train_image_classifier,
)
from fmadv.evaluation.images import accuracy_curve, adversarial_examples, attack_report
from fmadv.plots import plot_accuracy_curves
from fmadv.reports import markdown_table
from fmadv.training.loop import TrainConfig

HERE = Path(__file__).parent
PIXELS = 784

# Huang et al. (2015), Table 1: Validation, Fixed, Adv_Loss_Sign, Adv_Loss, Adv_Alpha.
HUANG_TABLE1 = {
    "normal": (0.980, 0.314, 0.193, 0.091, 0.078),
    "goodfellow": (0.987, 0.938, 0.923, 0.713, 0.701),
    "lwa": (0.987, 0.962, 0.935, 0.860, 0.857),
}
# The LeNet report: share correct, clean and under FGSM.
REPORT = {"standard": (0.9858, 0.0496), "adversarial": (0.9840, 0.8328)}


def huang_attacks(eps: float, pgd_steps: int) -> dict:
    return {
        "adv_loss_sign": image_attack("fgsm", eps, PIXELS),
        "adv_loss": image_attack("l2", eps, PIXELS),
        "adv_alpha": image_attack("minimal-step", eps, PIXELS),
        "pgd": image_attack("pgd", eps, PIXELS, norm="l2", steps=pgd_steps),
    }


def train(data, name: str, loop: TrainConfig, **options):
    started = time.perf_counter()
    classifier = train_image_classifier(data, ImageTrainConfig(**options, loop=loop))
    seconds = time.perf_counter() - started
    record = classifier.history.records[-1]
    print(
        f"{name}: {len(classifier.history.records)} epochs, valid accuracy "
        f"{record.get('valid_accuracy', float('nan')):.4f}, {seconds:.0f} s",
        flush=True,
    )
    return classifier


def huang_table(args, model: str, methods: dict[str, dict], tag: str) -> dict:
    data = load_image_dataset("mnist", args.data_dir, valid_size=5000, seed=args.seed, scale=256)
    test_x, test_y = data.test_x[: args.rows], data.test_y[: args.rows]
    loop = image_loop(epochs=args.epochs, lr=args.lr, seed=args.seed)
    shared = {"model": model, "eps": args.l2_eps}
    classifiers = {
        name: train(data, name, loop, **shared, **extra) for name, extra in methods.items()
    }
    # The fixed set: made once from the normal network with Adv_Loss.
    fixed = adversarial_examples(
        classifiers["normal"].model,
        test_x,
        test_y,
        image_attack("l2", args.l2_eps, PIXELS),
        data.bounds,
    )
    rows = []
    for name, classifier in classifiers.items():
        report = attack_report(
            classifier.model,
            test_x,
            test_y,
            huang_attacks(args.l2_eps, args.pgd_steps),
            data.bounds,
            fixed,
        )
        row = {"method": name, **{k: v["correct"] for k, v in report.items()}}
        published = HUANG_TABLE1.get(name) if model == "mlp" else None
        row["published"] = " / ".join(f"{v:.3f}" for v in published) if published else ""
        rows.append(row)
    table = pd.DataFrame(rows)
    write(table, args.out, f"{tag}.md", f"{tag}.csv")
    return classifiers


def write(table: pd.DataFrame, out: Path, md_name: str, csv_name: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / csv_name, index=False)
    text = markdown_table(table)
    (out / md_name).write_text(text + "\n")
    print(text, flush=True)


def huang_mlp(args) -> None:
    huang_table(
        args,
        "mlp",
        {
            "normal": {"method": "normal"},
            "dropout": {"method": "dropout", "dropout": 0.5},
            "goodfellow": {"method": "goodfellow", "attack": "fgsm", "goodfellow_weight": 0.5},
            "lwa": {"method": "lwa", "attack": "l2"},
            "lwa_rep": {"method": "lwa-rep", "attack": "l2", "rep_eps": args.l2_eps},
        },
        "huang_table1_mlp",
    )


def huang_lenet(args) -> None:
    classifiers = huang_table(
        args,
        "lenet",
        {
            "normal": {"method": "normal"},
            "lwa": {"method": "lwa", "attack": "l2"},
        },
        "huang_table2_lenet",
    )
    data = load_image_dataset("mnist", args.data_dir, valid_size=5000, seed=args.seed, scale=256)
    x, y = data.test_x[: args.curve_rows], data.test_y[: args.curve_rows]
    norms = [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4]
    curves = {}
    attacks = (("Adv_Loss_Sign", "fgsm"), ("Adv_Loss", "l2"), ("Adv_Alpha", "minimal-step"))
    for label, name in attacks:
        curves[label] = accuracy_curve(
            classifiers["normal"].model,
            x,
            y,
            lambda eps, n=name: image_attack(n, eps, PIXELS),
            norms,
            data.bounds,
        )
    frame = pd.DataFrame([{"attack": k, **p} for k, c in curves.items() for p in c])
    args.out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out / "huang_figure1_lenet.csv", index=False)
    plot_accuracy_curves(
        curves,
        args.out / "huang_figure1_lenet.png",
        title="Normally trained LeNet: accuracy against the L2 norm",
    )
    print(frame.pivot(index="eps", columns="attack", values="accuracy").to_string(), flush=True)


def lenet_report(args) -> None:
    data = load_image_dataset(
        "mnist", args.data_dir, valid_size=5000, seed=args.seed, scale=255, subtract_mean=True
    )
    l2_eps = args.eps * math.sqrt(PIXELS)  # the L2 norm of an eps sign step
    loop = image_loop(epochs=args.epochs, lr=args.lr, seed=args.seed)
    shared = {"model": "lenet", "attack": "fgsm", "eps": l2_eps}
    classifiers = {
        "standard": train(data, "standard", loop, method="normal", **shared),
        # x_adv from the current model at every step, a = 0.5: Goodfellow et al.'s
        # adversarial training, which the report's figures follow.
        "adversarial": train(data, "adversarial", loop, method="goodfellow", **shared),
        # The whole training set attacked once per epoch with that epoch's starting model.
        "augment per epoch": train(data, "augment per epoch", loop, method="augment", **shared),
    }
    x, y = data.test_x[: args.rows], data.test_y[: args.rows]
    attacks = {
        "fgsm": FGSM(args.eps),
        "pgd": image_attack("pgd", l2_eps, PIXELS, norm="linf", steps=args.pgd_steps),
    }
    rows = []
    for name, classifier in classifiers.items():
        report = attack_report(classifier.model, x, y, attacks, data.bounds)
        for rows_name, values in report.items():
            rows.append(
                {
                    "training": name,
                    "rows": rows_name,
                    **values,
                    "published correct": REPORT[name][0 if rows_name == "clean" else 1]
                    if rows_name != "pgd" and name in REPORT
                    else float("nan"),
                }
            )
    write(pd.DataFrame(rows), args.out, "lenet_report.md", "lenet_report.csv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", choices=["huang-mlp", "huang-lenet", "lenet-report"])
    parser.add_argument("--data-dir", default=os.environ.get("FMADV_DATA_DIR"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument(
        "--l2-eps", "--budget", type=float, default=1.5, help="L2 norm of the attacks (Huang's c)"
    )
    parser.add_argument("--eps", type=float, default=0.25, help="FGSM L-inf step (report)")
    parser.add_argument("--pgd-steps", type=int, default=20)
    parser.add_argument("--rows", type=int, default=10_000, help="test images evaluated")
    parser.add_argument("--curve-rows", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "images")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    {"huang-mlp": huang_mlp, "huang-lenet": huang_lenet, "lenet-report": lenet_report}[args.table](
        args
    )
    print(json.dumps({"table": args.table, "seconds": round(time.perf_counter() - started)}))


if __name__ == "__main__":
    main()
