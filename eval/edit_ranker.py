"""The ranking FM under profile edits (MovieLens-100K): plain, box-adversarial and
edit-adversarial rankers, their top-10 lists against the number of edits.

    python eval/edit_ranker.py --data-dir ../shared/data

Fold u1 with genre, gender, age and occupation; the ranking FM at its defaults, the
epoch chosen by NDCG@10 on the validation rows carved from u1.base. The attacker is the
user, who edits gender, age and occupation. Per model and seed: test NDCG@10 and, over
every user with a test item, for b = 1, 2, 3:

- kept: the share of the clean top 10 left after the user's b most harmful edits (the
  attack of ``compare-topk``'s stability columns, the exact worst case of its aim);
- changed: the share of users whose top 10 (or top 1) some b edits change at all, exact
  (:func:`fmadv.recommend.edits.list_radius`), so 1 - changed is the certified share.

Two seeds per model, so that a difference between models reads against the one between
seeds. Writes ``edit_ranker.csv`` and ``edit_ranker.png`` into ``--out``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import seed_cells, seeded_parser, u1

from fmadv.estimators.ranker import FMRanker
from fmadv.metrics.topk import overlap
from fmadv.recommend import Interactions
from fmadv.recommend.edits import list_radius, profile_threat
from fmadv.recommend.fm import FMRecommender

HERE = Path(__file__).resolve().parent
FIELDS = ("gender", "age", "occupation")
BUDGETS = (1, 2, 3)
MODELS = {
    "plain": {},
    "box-adversarial (FGSM 0.003, beta 0.5)": {"beta": 0.5, "eps": 0.003},
    "edit-adversarial (b = 1, beta 0.5)": {
        "beta": 0.5, "attack": "flips", "budget": 1, "edit_fields": FIELDS,
    },
    "certified margin (b = 2, beta 0.5)": {
        "beta": 0.5, "attack": "flips", "budget": 2, "edit_fields": FIELDS, "certified": True,
    },
}  # fmt: skip


def lists_under_edits(recommender, interactions, users) -> list[dict]:
    """Per budget: the kept share of the top 10, and the exact shares of changed lists."""
    clean, _ = recommender.recommend(users, k=10)
    largest = profile_threat(interactions, max(BUDGETS), FIELDS)
    radius_10 = list_radius(recommender, users, largest, 10)
    radius_1 = list_radius(recommender, users, largest, 1)
    points = []
    for budget in BUDGETS:
        attacked = recommender.under_attack(profile_threat(interactions, budget, FIELDS), 10)
        kept = overlap(clean, attacked.recommend(users, k=10)[0])
        points.append({
            "budget": budget, "kept": float(kept.mean()),
            "changed_top10": float((radius_10 <= budget).mean()),
            "changed_top1": float((radius_1 <= budget).mean()),
        })  # fmt: skip
    return points


def plot(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    first = table[table.seed == table.seed.min()]
    for number, (name, group) in enumerate(first.groupby("model", sort=False)):
        colour = f"C{number}"
        left.plot(group.budget, group.kept, marker="o", color=colour, label=name)
        right.plot(group.budget, 1 - group.changed_top10, marker="o", color=colour,
                   label=f"{name}: top 10")  # fmt: skip
        right.plot(group.budget, 1 - group.changed_top1, "--", marker="s", color=colour,
                   label=f"{name}: top 1")  # fmt: skip
    left.set_ylabel("share of the clean top 10 kept")
    right.set_ylabel("share of users whose list is certified")
    for axis in (left, right):
        axis.set_xlabel("edits of gender, age, occupation (b)")
        axis.set_xticks(BUDGETS)
        axis.set_ylim(0, 1.02)
        axis.grid(alpha=0.3)
    left.legend(fontsize=7)
    right.legend(fontsize=6)
    fig.suptitle("MovieLens-100K u1: the ranking FM's lists under profile edits")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    args = seeded_parser(__doc__, HERE / "results" / "edits").parse_args()
    rows = []
    for seed in args.seeds:
        splits = u1(args.data_dir, seed)
        interactions = Interactions.from_splits(splits)
        users = np.unique(interactions.user_index(splits.test.user_ids))
        for name, options in MODELS.items():
            started = time.process_time()
            model = FMRanker(random_state=seed, **options).fit_splits(splits)
            seconds = time.process_time() - started
            ndcg = model.report(splits)["test"]["ndcg@10"]
            recommender = FMRecommender(model, name).fit(interactions)
            points = lists_under_edits(recommender, interactions, users)
            facts = {"model": name, "seed": seed, "test_ndcg": ndcg, "train_cpu_s": seconds}
            rows.extend({**facts, **point} for point in points)
            print(f"{name:40s} seed {seed}: NDCG@10 {ndcg:.4f}, kept at b=1 "
                  f"{points[0]['kept']:.3f}, {seconds:.0f} CPU s", flush=True)  # fmt: skip
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "edit_ranker.csv", index=False)
    plot(table, args.out / "edit_ranker.png")
    print()
    print("| model | test NDCG@10 (seeds) | b | top 10 kept (seeds) | lists changed: top 10 "
          "| top 1 | training CPU s |")  # fmt: skip
    print("|---|---|---:|---|---|---|---:|")
    for (name, budget), group in table.groupby(["model", "budget"], sort=False):

        def seeds(column: str, group=group) -> str:
            return seed_cells(group[column])

        print(f"| {name} | {seeds('test_ndcg')} | {budget} | {seeds('kept')} | "
              f"{seeds('changed_top10')} | {seeds('changed_top1')} | "
              f"{group['train_cpu_s'].mean():.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
