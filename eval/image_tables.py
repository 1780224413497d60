"""The image papers' tables, side by side with the published figures.

    python eval/image_tables.py huang-mlp    # Huang et al. Table 1: MLP, L2 budget 1.5
    python eval/image_tables.py huang-lenet  # their Table 2 (LeNet) and Figure 1 (curves)
    python eval/image_tables.py lenet-report # the LeNet report: FGSM, standard vs adversarial
    python eval/image_tables.py converge     # the normal MLP trained to 100% training accuracy

``--box`` sets how every attack's step meets the pixel box, in training and evaluation
alike: ``project`` (the default: the stated norm reaches the model wherever the box
leaves room), ``clip`` (earlier releases: the box shortens the step) or ``none`` (the
papers' convention: the stated norm, out of the box where it leads). Every cell gives the
accuracy and, in brackets, the mean L2 norm that reached the model.

Every column is measured on the MNIST test images; every attack is made against the
model in that row, except the fixed sets: one adversarial test set made once with
Adv_Loss from this table's normal network ("fixed"), and one made from a normal network
trained apart with the next seed ("fixed, independent"). PGD (L2, 20 steps, random
start) is the column none of the source papers had. Results go to ``--out`` (default
eval/results/images/), each file named after its box convention.
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

from fmadv.attacks import FGSM, PGD
from fmadv.data.image_prep import load_image_dataset
from fmadv.estimators.image import (
    ImageTrainConfig,
    image_attack,
    image_loop,
    train_image_classifier,
)
from fmadv.evaluation.images import (
    accuracy_curve,
    adversarial_examples,
    attack_report,
    attacked_report,
)
from fmadv.evaluation.predict import predict_logits
from fmadv.metrics.images import confidence_report
from fmadv.plots import plot_accuracy_curves
from fmadv.reports import markdown_table
from fmadv.threat import BOXES
from fmadv.training.callbacks import Callback
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


BOX_WORDS = {"project": "projected into the box", "clip": "clipped", "none": "unclipped"}


def headers(pgd_steps: int) -> dict[str, str]:
    """Column headers that name each attack's strength."""
    return {
        "adv_loss_sign": "Adv_Loss_Sign (single step)",
        "adv_loss": "Adv_Loss (single step)",
        "adv_alpha": "Adv_Alpha (single step)",
        "pgd": f"PGD ({pgd_steps} steps)",
    }


def huang_attacks(eps: float, pgd_steps: int, box: str) -> dict:
    return {
        "adv_loss_sign": image_attack("fgsm", eps, PIXELS, box),
        "adv_loss": image_attack("l2", eps, PIXELS, box),
        "adv_alpha": image_attack("minimal-step", eps, PIXELS, box),
        "pgd": image_attack("pgd", eps, PIXELS, box, norm="l2", steps=pgd_steps),
    }


def train(data, name: str, loop: TrainConfig, callbacks=(), **options):
    started = time.perf_counter()
    classifier = train_image_classifier(
        data, ImageTrainConfig(**options, loop=loop), callbacks=callbacks
    )
    seconds = time.perf_counter() - started
    record = classifier.history.records[-1]
    print(
        f"{name}: {len(classifier.history.records)} epochs, valid accuracy "
        f"{record.get('valid_accuracy', float('nan')):.4f}, {seconds:.0f} s",
        flush=True,
    )
    return classifier


def cells(report: dict) -> dict:
    """Each row kind's accuracy, with the mean L2 norm that reached the model."""
    return {
        name: f"{values['correct']:.3f}"
        + (f" ({values['l2_norm']:.2f})" if name != "clean" else "")
        for name, values in report.items()
    }


def fixed_sets(args, data, normal, test_x, test_y) -> dict[str, torch.Tensor]:
    """Adv_Loss test sets made once: from this table's normal network, and from a normal
    network of the same kind trained apart with the next seed."""
    loop = image_loop(epochs=args.epochs, lr=args.lr, seed=args.seed + 1)
    independent = train(data, "normal, next seed", loop, model=normal.config.model)
    adv_loss = image_attack("l2", args.l2_eps, PIXELS, args.box)
    return {
        "fixed": adversarial_examples(normal.model, test_x, test_y, adv_loss, data.bounds),
        "fixed, independent": adversarial_examples(
            independent.model, test_x, test_y, adv_loss, data.bounds
        ),
    }


def huang_table(args, model: str, methods: dict[str, dict], tag: str) -> dict:
    data = load_image_dataset("mnist", args.data_dir, valid_size=5000, seed=args.seed, scale=256)
    test_x, test_y = data.test_x[: args.rows], data.test_y[: args.rows]
    loop = image_loop(epochs=args.epochs, lr=args.lr, seed=args.seed)
    shared = {"model": model, "eps": args.l2_eps, "box": args.box}
    classifiers = {
        name: train(data, name, loop, **shared, **extra) for name, extra in methods.items()
    }
    fixed = fixed_sets(args, data, classifiers["normal"], test_x, test_y)
    attacks = huang_attacks(args.l2_eps, args.pgd_steps, args.box)
    rows = []
    for name, classifier in classifiers.items():
        report = attack_report(classifier.model, test_x, test_y, attacks, data.bounds)
        for fixed_name, x_fixed in fixed.items():
            report[fixed_name] = attacked_report(classifier.model, test_x, x_fixed, test_y)
        row = {"method": name, **cells(report)}
        published = HUANG_TABLE1.get(name) if model == "mlp" else None
        row["published"] = " / ".join(f"{v:.3f}" for v in published) if published else ""
        rows.append(row)
    columns = ["method", "clean", "fixed", "fixed, independent", *attacks, "published"]
    table = pd.DataFrame(rows)[columns if model == "mlp" else columns[:-1]]
    method = f"method ({BOX_WORDS[args.box]}; L2 {args.l2_eps:g})"
    table = table.rename(columns={**headers(args.pgd_steps), "method": method})
    write(table, args.out, f"{tag}_{args.box}.md", f"{tag}_{args.box}.csv")
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
            lambda eps, n=name: image_attack(n, eps, PIXELS, args.box),
            norms,
            data.bounds,
        )
    frame = pd.DataFrame([{"attack": k, **p} for k, c in curves.items() for p in c])
    args.out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out / f"huang_figure1_lenet_{args.box}.csv", index=False)
    plot_accuracy_curves(
        curves,
        args.out / f"huang_figure1_lenet_{args.box}.png",
        title=f"Normally trained LeNet: accuracy against the L2 norm ({args.box} box)",
    )
    print(frame.pivot(index="eps", columns="attack", values="accuracy").to_string(), flush=True)


def lenet_report(args) -> None:
    data = load_image_dataset(
        "mnist", args.data_dir, valid_size=5000, seed=args.seed, scale=255, subtract_mean=True
    )
    l2_eps = args.eps * math.sqrt(PIXELS)  # the L2 norm of an eps sign step
    loop = image_loop(epochs=args.epochs, lr=args.lr, seed=args.seed)
    # The report's budget is eps per pixel (L-inf). Placed in the box, that sign step is
    # the clipped one; projecting it at the L2 norm of an unclipped one would lengthen it.
    box = "clip" if args.box == "project" else args.box
    shared = {"model": "lenet", "attack": "fgsm", "eps": l2_eps, "box": box}
    classifiers = {
        "standard": train(data, "standard", loop, method="normal", **shared),
        # x_adv from the current model at every step, a = 0.5: Goodfellow et al.'s
        # adversarial training, which the report's figures follow.
        "adversarial": train(data, "adversarial", loop, method="goodfellow", **shared),
        # The whole training set attacked once per epoch with that epoch's starting model.
        "augment per epoch": train(data, "augment per epoch", loop, method="augment", **shared),
    }
    x, y = data.test_x[: args.rows], data.test_y[: args.rows]
    # The report's budget is per pixel (L-inf); in the box a projected sign step is the
    # clipped one, so only "none" differs.
    attacks = {
        "fgsm": FGSM(args.eps, box=args.box),
        "pgd": PGD(args.eps, norm="linf", steps=args.pgd_steps, box=args.box),
    }
    rows = []
    for name, classifier in classifiers.items():
        report = attack_report(classifier.model, x, y, attacks, data.bounds)
        for rows_name, values in report.items():
            published = REPORT[name][0 if rows_name == "clean" else 1] if name in REPORT else None
            rows.append(
                {
                    "training": name,
                    "rows": rows_name,
                    **values,
                    "published correct": published if rows_name != "pgd" else None,
                }
            )
    write(
        pd.DataFrame(rows), args.out, f"lenet_report_{args.box}.md", f"lenet_report_{args.box}.csv"
    )


class TrainingAccuracy(Callback):
    """Records the accuracy on the training images after each epoch and stops the run
    once it reaches ``target`` (the paper trains the normal network to 100%)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, target: float = 1.0):
        self.x, self.y, self.target = x, y, target

    def on_epoch_end(self, state, record) -> bool:
        state.model.eval()
        record["train_accuracy"] = confidence_report(predict_logits(state.model, self.x), self.y)[
            "correct"
        ]
        state.model.train()
        print(f"epoch {state.epoch}: train accuracy {record['train_accuracy']:.5f}", flush=True)
        return record["train_accuracy"] >= self.target


def converge(args) -> None:
    """The normal MLP of Table 1 trained until it classifies every training image, then
    attacked at the L2 budget under every box convention."""
    data = load_image_dataset("mnist", args.data_dir, valid_size=5000, seed=args.seed, scale=256)
    loop = image_loop(epochs=args.max_epochs, lr=args.lr, seed=args.seed)
    stop = TrainingAccuracy(data.train_x, data.train_y)
    normal = train(data, "normal", loop, callbacks=[stop], model="mlp", eps=args.l2_eps)
    history = pd.DataFrame(normal.history.records)
    args.out.mkdir(parents=True, exist_ok=True)
    history.to_csv(args.out / "converge_history.csv", index=False)
    test_x, test_y = data.test_x[: args.rows], data.test_y[: args.rows]
    rows = []
    for box in BOXES:
        attacks = huang_attacks(args.l2_eps, args.pgd_steps, box)
        report = attack_report(normal.model, test_x, test_y, attacks, data.bounds)
        rows.append({"box": box, "epochs": len(history), **cells(report)})
    box_header = f"box (L2 {args.l2_eps:g})"
    table = pd.DataFrame(rows).rename(columns={**headers(args.pgd_steps), "box": box_header})
    write(table, args.out, "converge.md", "converge.csv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", choices=["huang-mlp", "huang-lenet", "lenet-report", "converge"])
    parser.add_argument("--data-dir", default=os.environ.get("FMADV_DATA_DIR"))
    parser.add_argument("--box", choices=BOXES, default="project", help="how steps meet the box")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--max-epochs", type=int, default=100, help="converge: epochs at most")
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
    tables = {
        "huang-mlp": huang_mlp, "huang-lenet": huang_lenet, "lenet-report": lenet_report,
        "converge": converge,
    }  # fmt: skip
    tables[args.table](args)
    print(
        json.dumps(
            {"table": args.table, "box": args.box, "seconds": round(time.perf_counter() - started)}
        )
    )


if __name__ == "__main__":
    main()
