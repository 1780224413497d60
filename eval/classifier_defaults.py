"""How the FM classifier's defaults were chosen: validation AUC of candidate settings.

    python eval/classifier_defaults.py --data-dir ../shared/data

MovieLens-100K fold u1 with user and item one-hot features only (2,625 features); 10% of
u1.base is carved off for validation, the rest (72,000 rows) trains. Every run stops
early on validation AUC and keeps its best epoch, as ``fmadv train`` does.

The sweep is a greedy search in stages on seed 0, once for each loss (hinge, logistic):
each stage varies a few settings around the winner of the stages before it, and its
winner (highest validation AUC) is the next stage's base. Each stage's winner and the
best few settings without weight decay, and the best few "minimal" ones (that change
only the loss and the L2: the cheapest runs), are then trained on three seeds (each
seed carves its own validation split and draws its own initialisation and batch order,
as ``fmadv train --seed`` does). Per loss, the setting with the highest mean validation
AUC among those without weight decay is chosen, and the better of the two losses is the
proposal. Weight decay is swept but cannot be a default: ``TrainConfig.weight_decay`` is
also the image loop's and the ranker's default, and sparse updates refuse it. The best
setting with weight decay and the best minimal setting of each loss (by the same mean)
are reported beside the choice.

Only then is the test split read: for those settings and for today's defaults, with
early stopping and, as a user without validation rows gets it, without (the last epoch,
trained on the same 72,000 rows).

Writes the sweep as CSV (``--out``) and prints markdown tables.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fmadv.data import load_dataset
from fmadv.data.dataset import Splits
from fmadv.estimators.fm import FMClassifier
from fmadv.metrics.classification import classification_report
from fmadv.training.device import use_threads

HERE = Path(__file__).resolve().parent
DATA_DIR = os.environ.get("FMADV_DATA_DIR") or str(HERE.parent.parent / "shared" / "data")

# Every sweep run: up to MAX_EPOCHS, stopping after SWEEP_PATIENCE epochs without a gain
# in validation AUC, the best epoch's weights kept. A patient stop finds each setting's
# best epoch; what patience 3 (today's default) would have kept is read off the history.
MAX_EPOCHS = 100
SWEEP_PATIENCE = 10
LOSSES = ("hinge", "logistic")

# Today's defaults (TrainConfig, FMPenalty, FactorizationMachine), the search's start.
TODAY = {
    "loss": "hinge",
    "lr": 0.01,
    "batch_size": 4096,
    "n_factors": 16,
    "init_std": 0.01,
    "reg_linear": 1e-5,
    "reg_factors": 1e-5,
    "weight_decay": 0.0,
}
SWEEP_KEYS = list(TODAY)
MINIMAL_KEYS = ("loss", "reg_linear", "reg_factors")


def grid(**axes: Iterable[Any]) -> list[dict[str, Any]]:
    """Every combination of the axes' values, as dicts of changes."""
    combos: list[dict[str, Any]] = [{}]
    for name, values in axes.items():
        combos = [{**c, name: v} for c in combos for v in values]
    return combos


# Stage name -> candidate changes to that stage's base. The L2 is a penalty on each
# batch's active rows: the mean over rows of reg_linear * sum w_j^2 + reg_factors *
# sum ||V_j||^2 over the row's features (libFM's per-example regularisation); weight
# decay is Adam's dense one, on every row at every step. The weight decay stage also
# tries it in place of the active-row L2 (today's 1e-5).
STAGES: dict[str, list[dict[str, Any]]] = {
    "L2": [
        {"reg_linear": v, "reg_factors": v}
        for v in (1e-5, 1e-4, 1e-3, 3e-3, 1e-2, 2e-2, 3e-2, 5e-2, 1e-1)
    ],
    "L2 linear / factors": grid(
        reg_factors=[0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04],
        reg_linear=[1e-3, 1e-2, 3e-2],
    ),
    "lr x batch": grid(lr=[0.002, 0.005, 0.01, 0.02], batch_size=[512, 1024, 4096]),
    "factors x init": grid(n_factors=[8, 16, 64], init_std=[0.003, 0.01, 0.03, 0.1]),
    "weight decay": [
        *grid(weight_decay=[0.0, 1e-5, 1e-4, 1e-3]),
        *({"weight_decay": wd, "reg_linear": 1e-5, "reg_factors": 1e-5} for wd in [1e-4, 1e-3]),
    ],
}


def label(config: dict[str, Any]) -> str:
    """The setting in a few words: what differs from today's defaults."""
    parts = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
             for k, v in config.items() if TODAY.get(k) != v]  # fmt: skip
    return ", ".join(parts) or "today's defaults"


def train(splits: Splits, config: dict[str, Any], seed: int, **settings: Any) -> dict[str, Any]:
    """Train on ``splits`` (early stopping on its validation rows unless ``use_valid`` is
    False) and time it."""
    use_valid = settings.pop("use_valid", True)
    wall, cpu = time.perf_counter(), time.process_time()
    model = FMClassifier(**config, **settings, random_state=seed, device="cpu")
    if use_valid:
        model.fit_splits(splits)
    else:
        model.fit(splits.train.X, splits.train.y)
    return {
        "model": model,
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
    }


def stopped_best(curve: list[float], patience: int) -> tuple[int, float]:
    """The (1-based) epoch and value early stopping with ``patience`` would keep."""
    best, best_epoch, waited = -np.inf, 0, 0
    for epoch, value in enumerate(curve, start=1):
        if value > best:
            best, best_epoch, waited = value, epoch, 0
            continue
        waited += 1
        if waited >= patience:
            break
    return best_epoch, best


def sweep_run(splits: Splits, config: dict[str, Any], stage: str) -> dict[str, Any]:
    run = train(splits, config, 0, epochs=MAX_EPOCHS, patience=SWEEP_PATIENCE)
    model = run["model"]
    curve = [record["valid_auc"] for record in model.history_.records]
    p3_epoch, p3_auc = stopped_best(curve, 3)
    return {
        "stage": stage,
        "setting": label(config),
        **config,
        "best_epoch": model.history_.best_epoch,
        "valid_auc": model.history_.best_value,
        "epochs_run": len(curve),
        "p3_epoch": p3_epoch,
        "p3_valid_auc": p3_auc,
        # Mean norm of the factor rows of the kept model: 0 when the L2 has switched
        # the interactions off (the FM is then a linear model).
        "factor_norm": float(model.model_.factors.detach().norm(dim=1).mean()),
        "cpu_s": run["cpu_s"],
        "wall_s": run["wall_s"],
    }


def eligible(config: dict[str, Any]) -> bool:
    """Whether a setting can be the default: no weight decay (see the module's notes)."""
    return config["weight_decay"] == 0


def minimal(config: dict[str, Any]) -> bool:
    """Whether a setting changes nothing but the loss and the L2 of today's defaults."""
    return all(config[k] == TODAY[k] for k in SWEEP_KEYS if k not in MINIMAL_KEYS)


def test_auc(model: FMClassifier, splits: Splits) -> float:
    return classification_report(splits.test.y, model.decision_function(splits.test.X))["auc"]


def valid_auc(model: FMClassifier, splits: Splits) -> float:
    return classification_report(splits.valid.y, model.decision_function(splits.valid.X))["auc"]


def markdown(rows: list[dict[str, Any]], columns: dict[str, str]) -> str:
    """A markdown table of ``rows``: heading -> key (floats with 4 decimals, seconds 1)."""

    def cell(key: str, value: Any) -> str:
        if isinstance(value, float):
            return (
                "" if np.isnan(value) else f"{value:.1f}" if key.endswith("_s") else f"{value:.4f}"
            )
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(cell(k, row.get(k, "")) for k in columns.values()) + " |")
    return "\n".join(lines)


def group_by_setting(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["setting"], []).append(row)
    return groups


def seed_summary(setting: str, group: list[dict[str, Any]], note: str = "") -> dict[str, Any]:
    """One line per setting over its seeds."""
    tests = [r["test_auc"] for r in group if "test_auc" in r]
    patience = group[0]["patience"]
    return {
        "setting": f"**{setting}** ({note})" if note else setting,
        "budget": f"{group[0]['epochs']} / {patience if patience != '' else '-'}",
        "best_epochs": ", ".join(str(r["best_epoch"]) for r in group),
        "valid_auc": float(np.mean([r["valid_auc"] for r in group])),
        "test_auc": float(np.mean(tests)) if tests else np.nan,
        "range": f"{min(tests):.4f}-{max(tests):.4f}" if tests else "",
        "cpu_s": float(np.mean([r["cpu_s"] for r in group])),
        "wall_s": float(np.mean([r["wall_s"] for r in group])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=DATA_DIR)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "classifier_defaults.csv")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--finalists", type=int, default=2,
        help="best settings without weight decay per loss run on every seed, besides each "
        "stage's winner",
    )  # fmt: skip
    parser.add_argument("--epochs", type=int, default=50, help="epochs of the seed runs")
    parser.add_argument("--patience", type=int, default=5, help="patience of the seed runs")
    args = parser.parse_args()
    use_threads(args.threads)

    def load(seed: int) -> Splits:
        return load_dataset("movielens-100k", args.data_dir, split="u1", seed=seed)

    splits = {seed: load(seed) for seed in sorted({0, *args.seeds})}
    train0 = splits[0].train
    print(f"u1: {train0.n_rows} train, {splits[0].valid.n_rows} valid, "
          f"{splits[0].test.n_rows} test rows; {train0.X.shape[1]} features")  # fmt: skip

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    progress = Progress(*columns, TimeElapsedColumn(), transient=True)
    rows: list[dict[str, Any]] = []
    finalists: dict[str, dict[str, Any]] = {}
    with progress:
        chains = progress.add_task("search", total=len(LOSSES) * len(STAGES))
        for loss in LOSSES:
            base = {**TODAY, "loss": loss}
            chain: list[dict[str, Any]] = []
            for stage, changes in STAGES.items():
                task = progress.add_task(f"{loss}: {stage}", total=len(changes))
                stage_rows = []
                for change in changes:
                    stage_rows.append(sweep_run(splits[0], {**base, **change}, stage))
                    progress.advance(task)
                winner = max(stage_rows, key=lambda r: r["valid_auc"])
                base = {k: winner[k] for k in SWEEP_KEYS}
                finalists.setdefault(winner["setting"], winner)
                chain += stage_rows
                progress.remove_task(task)
                progress.advance(chains)
                progress.console.print(
                    f"{loss}, {stage}: best of {len(stage_rows)} is {winner['setting']} "
                    f"(valid AUC {winner['valid_auc']:.4f}, epoch {winner['best_epoch']})"
                )
            # This loss's finalists: its stages' winners, and its best settings that can
            # be defaults (no weight decay) and its best minimal ones.
            for kind in (eligible, minimal):
                best: dict[str, dict[str, Any]] = {}
                for row in sorted(chain, key=lambda r: -r["valid_auc"]):
                    if kind(row):
                        best.setdefault(row["setting"], row)
                for row in list(best.values())[: args.finalists]:
                    finalists.setdefault(row["setting"], row)
            rows += chain

    final_settings = {"epochs": args.epochs, "patience": args.patience}
    seed_rows: list[dict[str, Any]] = []
    models: dict[tuple[str, int], FMClassifier] = {}
    with progress:
        task = progress.add_task("finalists x seeds", total=len(finalists) * len(args.seeds))
        for row in finalists.values():
            config = {k: row[k] for k in SWEEP_KEYS}
            for seed in args.seeds:
                run = train(splits[seed], config, seed, **final_settings)
                model = run["model"]
                models[row["setting"], seed] = model
                seed_rows.append({
                    "stage": "finalist", "setting": row["setting"], **config, "seed": seed,
                    **final_settings, "best_epoch": model.history_.best_epoch,
                    "valid_auc": model.history_.best_value,
                    "epochs_run": len(model.history_.records),
                    "cpu_s": run["cpu_s"], "wall_s": run["wall_s"],
                })  # fmt: skip
                progress.advance(task)
    by_setting = group_by_setting(seed_rows)

    def mean_valid(setting: str) -> float:
        return float(np.mean([r["valid_auc"] for r in by_setting[setting]]))

    def best_of(loss: str, kind) -> str:
        candidates = [s for s, g in by_setting.items() if g[0]["loss"] == loss and kind(g[0])]
        return max(candidates, key=mean_valid) if candidates else ""

    chosen = {loss: best_of(loss, eligible) for loss in LOSSES}
    proposal = max(chosen.values(), key=mean_valid)
    picks = {
        "best with weight decay": {
            loss: best_of(loss, lambda c: not eligible(c)) for loss in LOSSES
        },
        "minimal": {loss: best_of(loss, minimal) for loss in LOSSES},
    }

    # The test split, read for the chosen settings, the other picks, and today's
    # defaults only.
    for setting in {*chosen.values(), *(s for p in picks.values() for s in p.values() if s)}:
        for row in by_setting[setting]:
            row["test_auc"] = test_auc(models[setting, row["seed"]], splits[row["seed"]])
    proposal_config = {k: by_setting[proposal][0][k] for k in SWEEP_KEYS}
    cases = {
        "today's defaults, early stopping": ({}, True),
        "today's defaults, no validation (last epoch)": ({}, False),
        f"proposal, no validation (last of {args.epochs} epochs)": (
            {**proposal_config, "epochs": args.epochs},
            False,
        ),
    }
    baselines: list[dict[str, Any]] = []
    for name, (config, use_valid) in cases.items():
        for seed in args.seeds:
            run = train(splits[seed], config, seed, use_valid=use_valid)
            model = run["model"]
            baselines.append({
                "stage": "baseline", "setting": name, **{**TODAY, **config}, "seed": seed,
                "epochs": model.epochs, "patience": model.patience if use_valid else "",
                "best_epoch": model.history_.best_epoch if use_valid else model.epochs,
                "valid_auc": valid_auc(model, splits[seed]),
                "test_auc": test_auc(model, splits[seed]),
                "epochs_run": len(model.history_.records),
                "cpu_s": run["cpu_s"], "wall_s": run["wall_s"],
            })  # fmt: skip

    everything = rows + seed_rows + baselines
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(k for row in everything for k in row))
    with open(args.out, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=fields)
        writer.writeheader()
        writer.writerows(everything)

    print(f"\n## Sweep (seed 0, up to {MAX_EPOCHS} epochs, patience {SWEEP_PATIENCE})\n")
    print(markdown(rows, {
        "loss": "loss", "stage": "stage", "setting (changes from today's defaults)": "setting",
        "best epoch": "best_epoch", "valid AUC": "valid_auc",
        "patience 3: epoch": "p3_epoch", "patience 3: valid AUC": "p3_valid_auc",
        "mean norm V_j": "factor_norm", "CPU s": "cpu_s",
    }))  # fmt: skip

    notes = {setting: f"chosen, {loss}" for loss, setting in chosen.items()}
    for name, pick in picks.items():
        for loss, setting in pick.items():
            if setting:
                note = f"{name}, {loss}"
                notes[setting] = f"{notes[setting]}; {note}" if setting in notes else note
    notes[proposal] += "; proposal"
    summary = [seed_summary(s, g, notes.get(s, "")) for s, g in by_setting.items()]
    summary += [seed_summary(s, g) for s, g in group_by_setting(baselines).items()]
    print(f"\n## Seeds {', '.join(map(str, args.seeds))}: valid AUC for every finalist, "
          "test AUC for the bold settings and the baselines only\n")  # fmt: skip
    print(markdown(summary, {
        "setting": "setting", "epochs / patience": "budget", "best epochs": "best_epochs",
        "valid AUC mean": "valid_auc", "test AUC mean": "test_auc", "test AUC range": "range",
        "CPU s / run": "cpu_s", "wall s / run": "wall_s",
    }))  # fmt: skip
    print(f"\nproposal: {proposal}  (sweep CSV: {args.out})")


if __name__ == "__main__":
    main()
