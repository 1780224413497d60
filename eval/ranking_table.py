"""Ranking FMs against tuned baselines on MovieLens-100K (compare-topk protocol).

Trains the ranking FM (:class:`~fmadv.estimators.ranker.FMRanker` at its defaults) over
several seeds, plain, with gradient noise and adversarially trained (FGSM over all
features, and APR on the embeddings); tunes ALS, BPR and item-kNN on the validation rows
carved out of the training file; and scores every model on the test split under the
compare-topk protocol: relevant = held-out rating >= 4, training pairs left out of every
list, NDCG@k and recall@k averaged over the users with a relevant test item. Popularity
and random rankings are the floors. Last, the top-k lists of one model per variant are
attacked at inference on each user's profile (FGSM on the user's features, moved once
for the whole catalogue against the user's own list), and each list's overlap with its
attacked counterpart is its stability.

Run:  python eval/ranking_table.py --data-dir ../shared/data
Prints Markdown tables; writes fm_runs.csv, fm_summary.csv, baselines.csv,
stability.csv, goals.csv and ranking.md under eval/results/ranking/.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fmadv.attacks import make_attack
from fmadv.data import load_dataset
from fmadv.data.dataset import Splits
from fmadv.estimators.ranker import FMRanker
from fmadv.recommend import Interactions
from fmadv.recommend.baselines import make_baseline
from fmadv.recommend.compare import compare_topk
from fmadv.recommend.fm import FMRecommender
from fmadv.recommend.tuning import relevant_pairs, tune, validation_ndcg
from fmadv.reports import markdown_table

#: Training variants of the ranking FM: FMRanker's defaults plus these parameters.
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "gradient noise": {"grad_noise": 1e-5},
    # The user's features move once for the positive and its negatives (the ranker's
    # threat model); beta and eps chosen on validation (eval/README.md).
    "adversarial FGSM, beta 0.02": {"beta": 0.02, "eps": 0.01, "attack": "fgsm"},
    "adversarial FGSM, beta 0.5": {"beta": 0.5, "eps": 0.003, "attack": "fgsm"},
    "adversarial APR": {"attack": "apr", "eps": 0.5, "beta": 0.5},
}
TUNED = ("als", "bpr", "itemknn")
FLOORS = ("popularity", "random")
SIDE_FEATURES = "genre,gender,age,occupation"
OUT = Path(__file__).resolve().parent / "results" / "ranking"

# Goals the table is read against.
GOAL_NDCG = 0.43
GOAL_NDCG_LOSS = 0.01
GOAL_STABILITY_GAIN = 2.0


@dataclass
class Clock:
    """Wall and CPU seconds (all threads of this process) of a timed block."""

    wall: float = 0.0
    cpu: float = 0.0


@contextmanager
def timed() -> Iterator[Clock]:
    clock = Clock()
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield clock
    finally:
        clock.wall = time.perf_counter() - wall
        clock.cpu = time.process_time() - cpu


def process_cpu_seconds() -> float:
    """User + system CPU seconds of this process and any children it waited for."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def log(message: str) -> None:
    print(message, flush=True)


def spread(values: pd.Series, digits: int = 3) -> str:
    """``mean (min..max)``, or the single value of a one-seed run."""
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ({values.min():.{digits}f}..{values.max():.{digits}f})"


# -- the ranking FMs -----------------------------------------------------------------
def test_metrics(
    recommender: FMRecommender, interactions: Interactions, splits: Splits, k: int
) -> dict[str, float]:
    models = compare_topk({"model": recommender}, interactions, splits.test, k=k).models
    return {"test NDCG": models.at["model", "ndcg"], "test recall": models.at["model", "recall"]}


def fit_rankers(
    splits: Splits,
    variants: Mapping[str, Mapping[str, Any]],
    seeds: Mapping[str, list[int]],
    k: int,
    features: str,
) -> tuple[list[dict[str, Any]], dict[str, FMRecommender]]:
    """Train each variant over its seeds; one row per run, and each variant's
    recommenders in seed order."""
    interactions = Interactions.from_splits(splits)
    rows, recommenders = [], {}
    for name, params in variants.items():
        for seed in seeds[name]:
            with timed() as clock:
                ranker = FMRanker(eval_k=k, random_state=seed, **params)
                ranker.fit(interactions, valid=splits.valid)
            recommender = FMRecommender(ranker, name=name).fit(interactions)
            recommenders.setdefault(name, []).append(recommender)
            history = ranker.history_
            row = {
                "model": name,
                "features": features,
                "seed": seed,
                "valid NDCG": history.best_value,
                **test_metrics(recommender, interactions, splits, k),
                "best epoch": history.best_epoch,
                "epochs run": len(history.records),
                "CPU s": clock.cpu,
                "wall s": clock.wall,
            }
            rows.append(row)
            log(
                f"  {name:<17} {features:<28} seed {seed}: test NDCG {row['test NDCG']:.4f}, "
                f"best epoch {row['best epoch']}/{row['epochs run']}, "
                f"{clock.cpu:.0f} CPU s, {clock.wall:.0f} s"
            )
    return rows, recommenders


def summarise_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (variant, features): means and ranges over the seeds."""
    rows = []
    for (model, features), group in runs.groupby(["model", "features"], sort=False):
        rows.append(
            {
                "model": model,
                "features": features,
                "seeds": len(group),
                "ndcg_mean": group["test NDCG"].mean(),
                "ndcg_min": group["test NDCG"].min(),
                "ndcg_max": group["test NDCG"].max(),
                "recall_mean": group["test recall"].mean(),
                "recall_min": group["test recall"].min(),
                "recall_max": group["test recall"].max(),
                "valid_ndcg_mean": group["valid NDCG"].mean(),
                "best_epochs": ", ".join(str(e) for e in group["best epoch"]),
                "cpu_s_mean": group["CPU s"].mean(),
                "wall_s_mean": group["wall s"].mean(),
            }
        )
    return pd.DataFrame(rows)


def shown_summary(summary: pd.DataFrame, k: int) -> pd.DataFrame:
    """The summary as printed: ``mean (min..max)`` cells."""
    rows = []
    for _, row in summary.iterrows():
        single = row["seeds"] == 1
        rows.append(
            {
                "model": row["model"],
                "features": row["features"],
                "seeds": row["seeds"],
                f"test NDCG@{k}": _range(row, "ndcg", single),
                f"test recall@{k}": _range(row, "recall", single),
                f"valid NDCG@{k}": f"{row['valid_ndcg_mean']:.3f}",
                "best epochs": row["best_epochs"],
                "CPU s / run": f"{row['cpu_s_mean']:.0f}",
                "wall s / run": f"{row['wall_s_mean']:.0f}",
            }
        )
    return pd.DataFrame(rows)


def _range(row: pd.Series, metric: str, single: bool) -> str:
    mean = f"{row[f'{metric}_mean']:.3f}"
    return mean if single else f"{mean} ({row[f'{metric}_min']:.3f}..{row[f'{metric}_max']:.3f})"


# -- the baselines ---------------------------------------------------------------------
def baseline_table(
    splits: Splits, k: int, budget: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Floors, and each learned baseline at its defaults and tuned on validation; the
    shown table and the CSV one."""
    interactions = Interactions.from_splits(splits)
    valid = relevant_pairs(interactions, splits.valid)
    recommenders = {name: make_baseline(name).fit(interactions) for name in FLOORS}
    rows = [
        {"baseline": name, "setting": "", "hyperparameters": "", "points tried": 0,
         "tuning CPU s": 0.0, "tuning wall s": 0.0}
        for name in FLOORS
    ]  # fmt: skip
    for name in TUNED:
        with timed() as clock:
            result = tune(name, interactions, valid, k, budget, seed)
        log(
            f"  {name:<9} tuned on validation: {len(result.trials)} points, "
            f"{clock.cpu:.0f} CPU s, {clock.wall:.0f} s"
        )
        for setting, trial in (("default", result.default), ("tuned", result.best)):
            recommenders[f"{name} {setting}"] = make_baseline(name, **trial.params).fit(
                interactions
            )
            tuned = setting == "tuned"
            rows.append(
                {
                    "baseline": name,
                    "setting": setting,
                    "hyperparameters": result.values(trial),
                    "points tried": len(result.trials) if tuned else 0,
                    "tuning CPU s": clock.cpu if tuned else 0.0,
                    "tuning wall s": clock.wall if tuned else 0.0,
                }
            )
    models = compare_topk(recommenders, interactions, splits.test, k=k).models
    for row, (label, recommender) in zip(rows, recommenders.items(), strict=True):
        row["valid NDCG"] = validation_ndcg(recommender, valid, k)
        row["test NDCG"] = models.at[label, "ndcg"]
        row["test recall"] = models.at[label, "recall"]
    table = pd.DataFrame(rows)
    shown = table.assign(
        **{
            f"valid NDCG@{k}": table["valid NDCG"].map("{:.3f}".format),
            f"test NDCG@{k}": table["test NDCG"].map("{:.3f}".format),
            f"test recall@{k}": table["test recall"].map("{:.3f}".format),
            "points tried": table["points tried"].map(lambda n: str(n) if n else ""),
            "tuning CPU s": table["tuning CPU s"].map(lambda s: f"{s:.1f}" if s else ""),
        }
    )
    columns = ["baseline", "setting", "hyperparameters", f"valid NDCG@{k}", f"test NDCG@{k}",
               f"test recall@{k}", "points tried", "tuning CPU s"]  # fmt: skip
    return shown[columns], table


# -- stability -----------------------------------------------------------------------------
def stability_table(
    recommenders: dict[str, list[FMRecommender]],
    splits: Splits,
    k: int,
    budgets: list[float],
    users: int,
) -> pd.DataFrame:
    """Per variant, mean (and range over the seeds) of the share of the top k kept under
    the profile attack (FGSM on the user's features, against the user's own list)."""
    interactions = Interactions.from_splits(splits)
    attacks = {f"eps={eps:g}": make_attack("fgsm", eps, "all") for eps in budgets}
    kept: dict[tuple[str, str], list[float]] = {}
    for position in range(max(len(models) for models in recommenders.values())):
        present = {name: models[position] for name, models in recommenders.items()
                   if position < len(models)}  # fmt: skip
        models = compare_topk(
            present, interactions, splits.test, k=k, attacks=attacks, stability_users=users
        ).models
        for name in present:
            for label in attacks:
                kept.setdefault((name, label), []).append(models.at[name, f"stability {label}"])
    table = pd.DataFrame({"model": list(recommenders)})
    table["seeds"] = [len(recommenders[name]) for name in recommenders]
    for label in attacks:
        means = np.array([np.mean(kept[name, label]) for name in recommenders])
        table[f"stability@{k} {label}"] = means
        table[f"range {label}"] = [
            f"{min(kept[name, label]):.3f}..{max(kept[name, label]):.3f}" for name in recommenders
        ]
        plain = means[list(recommenders).index("plain")] if "plain" in recommenders else np.nan
        table[f"x plain {label}"] = means / plain
    return table


# -- goals ---------------------------------------------------------------------------------
def goal_table(
    summary: pd.DataFrame, baselines: pd.DataFrame, stability: pd.DataFrame, k: int
) -> pd.DataFrame:
    """Each goal: what was measured and whether it holds."""
    clean = summary[summary["features"] == "none"].set_index("model")
    tuned = baselines[baselines["setting"] == "tuned"]
    best = tuned.loc[tuned["test NDCG"].idxmax()]
    rows = []
    for _, plain in summary[summary["model"] == "plain"].iterrows():
        rows.append(
            {
                "goal": f"plain FM ({plain['features']}) test NDCG@{k} >= {GOAL_NDCG}",
                "measured": f"{plain['ndcg_mean']:.5f} mean, {plain['ndcg_min']:.4f} worst seed",
                "met": _verdict(plain["ndcg_mean"] >= GOAL_NDCG, plain["ndcg_min"] >= GOAL_NDCG),
            }
        )
    if "plain" in clean.index:
        plain = clean.loc["plain"]
        rows.append(
            {
                "goal": f"plain FM above the best tuned baseline ({best['baseline']}, "
                f"{best['test NDCG']:.4f})",
                "measured": f"{plain['ndcg_mean'] - best['test NDCG']:+.4f} mean, "
                f"{plain['ndcg_min'] - best['test NDCG']:+.4f} worst seed",
                "met": _verdict(
                    plain["ndcg_mean"] > best["test NDCG"], plain["ndcg_min"] > best["test NDCG"]
                ),
            }
        )
        stable = stability.set_index("model")
        for name in clean.index:
            if not name.startswith("adversarial"):
                continue
            loss = 1 - clean.at[name, "ndcg_mean"] / plain["ndcg_mean"]
            rows.append(
                {
                    "goal": f"{name}: NDCG within {GOAL_NDCG_LOSS:.0%} of plain",
                    "measured": f"{loss:.1%} lower" if loss >= 0 else f"{-loss:.1%} higher",
                    "met": "yes" if loss <= GOAL_NDCG_LOSS else "no",
                }
            )
            budgets = [
                c.removeprefix("x plain ") for c in stable.columns if c.startswith("x plain")
            ]
            for budget in budgets if name in stable.index else []:
                gain = stable.at[name, f"x plain {budget}"]
                kept = stable[f"stability@{k} {budget}"]
                rows.append(
                    {
                        "goal": f"{name}: stability >= {GOAL_STABILITY_GAIN:g}x plain at {budget}",
                        "measured": f"{gain:.2f}x ({kept[name]:.3f} against {kept['plain']:.3f})",
                        "met": "yes" if gain >= GOAL_STABILITY_GAIN else "no",
                    }
                )
    return pd.DataFrame(rows)


def _verdict(on_mean: bool, on_worst: bool) -> str:
    if on_mean and on_worst:
        return "yes"
    return "on the mean only" if on_mean else "no"


# -- main ------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("FMADV_DATA_DIR"))
    parser.add_argument("--split", default="u1")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="random_state of the plain ranking FM's runs",
    )
    parser.add_argument(
        "--variant-seeds",
        type=int,
        nargs="+",
        default=None,
        help="seeds of the noise and adversarial variants (default: --seeds)",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(VARIANTS),
        choices=list(VARIANTS),
        metavar="VARIANT",
        help=f"FM variants to train, of {list(VARIANTS)}",
    )
    parser.add_argument("--budget", type=float, default=45.0, help="seconds of tuning per baseline")
    parser.add_argument("--tune-seed", type=int, default=0)
    parser.add_argument(
        "--stability-eps", type=float, nargs="+", default=[0.003, 0.01],
        help="budgets of the profile attack on the lists",
    )  # fmt: skip
    parser.add_argument("--stability-users", type=int, default=200)
    parser.add_argument(
        "--side-features",
        nargs="?",
        const=SIDE_FEATURES,
        default=None,
        help=f"also train the FMs with these side features (flag alone: {SIDE_FEATURES})",
    )
    parser.add_argument(
        "--side-variants",
        nargs="+",
        default=["plain"],
        choices=list(VARIANTS),
        metavar="VARIANT",
        help="variants of the side-feature run",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    began = time.perf_counter()
    variant_seeds = args.variant_seeds or args.seeds
    variants = {name: VARIANTS[name] for name in args.variants}
    seeds = {name: args.seeds if name == "plain" else variant_seeds for name in VARIANTS}
    splits = load_dataset("movielens-100k", args.data_dir, split=args.split)
    interactions = Interactions.from_splits(splits)
    relevant = interactions.matrix(splits.test, splits.test.y > 0)
    n_relevant = int((np.diff(relevant.indptr) > 0).sum())
    n_rows = len(np.unique(splits.test.user_ids))
    setup = (
        f"MovieLens-100K {args.split}: NDCG@{args.k} and recall@{args.k} over the {n_relevant} "
        f"users with a relevant test item (of {n_rows} with a test row), training pairs "
        f"filtered. {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads)."
    )
    log(setup)

    log("Ranking FMs:")
    runs, recommenders = fit_rankers(splits, variants, seeds, args.k, "none")
    if args.side_features:
        side = load_dataset(
            "movielens-100k", args.data_dir, split=args.split, side_features=args.side_features
        )
        side_variants = {name: VARIANTS[name] for name in args.side_variants}
        side_runs, _ = fit_rankers(side, side_variants, seeds, args.k, args.side_features)
        runs += side_runs
    runs = pd.DataFrame(runs)
    summary = summarise_runs(runs)

    log("Baselines:")
    with timed() as baseline_clock:
        shown_baselines, baselines = baseline_table(splits, args.k, args.budget, args.tune_seed)

    log("Stability:")
    with timed() as stability_clock:
        stability = stability_table(
            recommenders, splits, args.k, args.stability_eps, args.stability_users
        )
    log(f"  {stability_clock.cpu:.0f} CPU s, {stability_clock.wall:.0f} s")
    goals = goal_table(summary, baselines, stability, args.k)

    wall, cpu = time.perf_counter() - began, process_cpu_seconds()
    sections = [
        "# Ranking FMs against tuned baselines",
        "",
        setup,
        "",
        "## Ranking FM (FMRanker defaults), mean (min..max) over seeds",
        "",
        markdown_table(shown_summary(summary, args.k)),
        "",
        f"## Baselines (tuned on validation, budget {args.budget:g} s, seed {args.tune_seed})",
        "",
        markdown_table(shown_baselines),
        "",
        f"## Top-{args.k} stability under the profile attack (FGSM on the user's features "
        f"against the user's own list; first {args.stability_users} test users), mean "
        "(range) over the seeds",
        "",
        markdown_table(stability, digits=3),
        "",
        "## Goals",
        "",
        markdown_table(goals),
        "",
        f"Whole run: {wall:.0f} s wall, {cpu:.0f} CPU s (baselines {baseline_clock.cpu:.0f} "
        f"CPU s, stability {stability_clock.cpu:.0f} CPU s).",
        "",
    ]
    text = "\n".join(sections)
    print("\n" + text)

    args.out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(args.out / "fm_runs.csv", index=False)
    summary.to_csv(args.out / "fm_summary.csv", index=False)
    baselines.to_csv(args.out / "baselines.csv", index=False)
    stability.to_csv(args.out / "stability.csv", index=False)
    goals.to_csv(args.out / "goals.csv", index=False)
    (args.out / "ranking.md").write_text(text)
    log(f"Wrote {args.out}/{{fm_runs,fm_summary,baselines,stability,goals}}.csv and ranking.md")


if __name__ == "__main__":
    main()
