"""Compare the top-k lists of several recommenders on the same users and held-out data.

For every model: ranking metrics on the held-out split (per-user arrays, averaged
here), catalogue coverage, novelty, and, for FMs, the overlap of each list with the list
recommended after FGSM on its input rows. For every pair of models: how much their lists
share (overlap, Jaccard, rank-biased overlap, Kendall tau on shared items), their mean
predicted preference under one judge model, and what each model alone suggests (its
exclusive items' held-out hit rate, held-out rating, popularity and genre match).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fmadv.attacks.base import Attack
from fmadv.data.dataset import Dataset
from fmadv.data.interactions import Interactions
from fmadv.errors import ConfigError
from fmadv.io import atomic_write
from fmadv.metrics import ranking, topk
from fmadv.recommend.base import Recommender
from fmadv.reports import markdown_table

MODEL_METRICS = ("precision", "recall", "ndcg", "map", "mrr", "hit_rate", "auc", "novelty")
EXCLUSIVE_METRICS = ("hit_rate", "mean_rating", "popularity", "genre_match")


@dataclass
class Comparison:
    """Everything :func:`compare_topk` measured; :func:`write_report` renders it."""

    k: int
    users: np.ndarray
    lists: dict[str, np.ndarray]
    models: pd.DataFrame
    pairs: pd.DataFrame
    per_user: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    overlaps: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    judge: str | None = None


def _mean(values: np.ndarray) -> float:
    """Mean over the users where a metric is defined; NaN (quietly) where it never is."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def item_genres(interactions: Interactions, field_name: str = "genre") -> np.ndarray | None:
    """(n_items x n_genres) 0/1 genre matrix when the items have a multi-hot genre field."""
    fmap = interactions.feature_map
    if fmap is None or field_name not in interactions.item_fields:
        return None
    return interactions.item_features[:, fmap.field_slice(field_name)].toarray()


def compare_topk(
    recommenders: dict[str, Recommender],
    interactions: Interactions,
    held_out: Dataset,
    k: int = 10,
    judge: str | None = None,
    attacks: dict[str, Attack] | None = None,
    stability_users: int = 200,
    users: np.ndarray | None = None,
) -> Comparison:
    """Rank, measure and compare; every recommender must be fitted on ``interactions``.

    Parameters
    ----------
    recommenders
        Name -> fitted recommender, in report order (pairs follow this order).
    held_out
        Labelled rows not used in training (the test split): +1 rows are the relevant items.
    k
        List length.
    judge
        Name of the FM whose predicted preference scores every list; default: the first FM.
        Each list also gets its own model's mean score ("own preference"), the figure the
        FM blog compares; the judge puts all lists on one scale.
    attacks
        Label -> attack for the stability figures of the FMs: the overlap of each list
        with the list recommended after the attack on the user's profile (see
        :class:`~fmadv.recommend.fm.AttackedFMRecommender`; none: no stability figure).
        Whole-feature edits (:class:`~fmadv.threat.EditThreat`) also give the certified
        share: the users whose top k no such edits can change (exact, see
        :func:`~fmadv.recommend.edits.list_radius`).
    stability_users
        Number of users (the first ones evaluated) whose lists are attacked.
    users
        User indices to evaluate; default: every user with a held-out row.
    """
    if len(recommenders) < 1:
        raise ConfigError("compare at least one model")
    if users is None:
        users = np.unique(interactions.user_index(held_out.user_ids))
    relevant = interactions.relevant(held_out)[users]
    ratings = None
    if held_out.ratings is not None:
        ratings = interactions.matrix(held_out, held_out.ratings)[users]
    seen = interactions.seen[users]
    popularity = np.asarray(interactions.liked.sum(0)).ravel()
    genres = item_genres(interactions)
    profile = None if genres is None else topk.user_genre_profile(interactions.liked[users], genres)

    judges = [name for name, model in recommenders.items() if model.predicts_preference]
    if judge is None and judges:
        judge = judges[0]
    if judge is not None and judge not in recommenders:
        raise ConfigError(f"judge {judge!r} is not among the compared models {list(recommenders)}")
    judge_scores = None if judge is None else recommenders[judge].score(users).numpy()

    lists, per_user, rows = {}, {}, []
    for name, model in recommenders.items():
        ids, _ = model.recommend(users, k=k)
        lists[name] = ids
        scores = model.score(users).numpy()
        report = ranking.ranking_report(
            ids, relevant, k, scores=scores, exclude=seen, item_popularity=popularity
        )
        per_user[name] = {m: report[m] for m in MODEL_METRICS if m in report}
        row = {"model": name, **{m: _mean(v) for m, v in per_user[name].items()}}
        row["coverage"] = float(report["coverage"])
        per_user[name]["own_preference"] = topk.list_mean(ids, scores)
        row["own_preference"] = _mean(per_user[name]["own_preference"])
        if judge_scores is not None:
            per_user[name]["judged_preference"] = topk.list_mean(ids, judge_scores)
            row["judged_preference"] = _mean(per_user[name]["judged_preference"])
        for label, attack in (attacks or {}).items():
            attacked = model.under_attack(attack, k)
            if attacked is not None:  # the share of each clean list the attack leaves
                attacked_ids, _ = attacked.recommend(users[:stability_users], k=k)
                kept = topk.overlap(ids[:stability_users], attacked_ids)
                per_user[name][f"stability {label}"] = kept
                row[f"stability {label}"] = float(kept.mean())
                if hasattr(attacked, "radius"):  # whole-feature edits: exact certificates
                    radius = attacked.radius(users[:stability_users])
                    certified = (radius > attack.budget).astype(float)
                    per_user[name][f"certified {label}"] = certified
                    row[f"certified {label}"] = float(certified.mean())
        rows.append(row)

    pair_rows, overlaps = [], {}
    for a, b in itertools.combinations(recommenders, 2):
        la, lb = lists[a], lists[b]
        overlaps[(a, b)] = topk.overlap(la, lb)
        row = {
            "a": a,
            "b": b,
            "overlap": _mean(overlaps[(a, b)]),
            "jaccard": _mean(topk.jaccard(la, lb)),
            "rbo": _mean(topk.rank_biased_overlap(la, lb)),
            "kendall_tau": _mean(topk.kendall_tau_shared(la, lb)),
        }
        for kind in ("own", "judged"):
            if f"{kind}_preference" not in per_user[a]:
                continue
            pref_a, pref_b = per_user[a][f"{kind}_preference"], per_user[b][f"{kind}_preference"]
            row[f"{kind}_preference_a"] = _mean(pref_a)
            row[f"{kind}_preference_b"] = _mean(pref_b)
            row[f"share_b_lower_{kind}"] = topk.share_lower(pref_b, pref_a)
        only_a, only_b = topk.exclusive_items(la, lb)
        for side, only in (("only_a", only_a), ("only_b", only_b)):
            report = topk.exclusive_report(
                only, relevant, ratings=ratings, item_popularity=popularity,
                item_genres=genres, user_profile=profile,
            )  # fmt: skip
            row[f"{side}_items"] = float(np.mean((only >= 0).sum(1)))
            for metric in EXCLUSIVE_METRICS:
                if metric in report:
                    row[f"{side}_{metric}"] = _mean(report[metric])
        pair_rows.append(row)

    return Comparison(
        k=k,
        users=users,
        lists=lists,
        models=pd.DataFrame(rows).set_index("model"),
        pairs=pd.DataFrame(pair_rows),
        per_user=per_user,
        overlaps=overlaps,
        judge=judge,
    )


def to_markdown(comparison: Comparison, title: str = "Top-k comparison") -> str:
    """The comparison as Markdown: a model table and a pair table."""
    models = comparison.models.reset_index()
    pairs = comparison.pairs
    parts = [
        f"# {title}",
        "",
        f"k = {comparison.k}, {len(comparison.users)} users"
        + (f", preference judged by {comparison.judge}" if comparison.judge else "")
        + ".",
        "",
        "## Models",
        "",
        markdown_table(models),
        "",
        "## Pairs (A, B)",
        "",
        markdown_table(
            pairs[
                [
                    "a",
                    "b",
                    *[c for c in pairs.columns if c not in ("a", "b") and not c.startswith("only")],
                ]
            ]
        ),
        "",
        "## What each model alone suggests",
        "",
        markdown_table(pairs[["a", "b", *[c for c in pairs.columns if c.startswith("only")]]]),
        "",
    ]
    return "\n".join(parts)


def write_report(
    comparison: Comparison, out: str | Path, title: str = "Top-k comparison"
) -> list[Path]:
    """Write report.md, models.csv, pairs.csv, report.json, overlap.png and metrics.png."""
    from fmadv.plots import plot_metric_bars, plot_overlap_histograms

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []

    def save(name: str, write) -> None:
        atomic_write(out / name, write)
        written.append(out / name)

    text = to_markdown(comparison, title)
    save("report.md", lambda t: Path(t).write_text(text))
    save("models.csv", lambda t: comparison.models.to_csv(t))
    save("pairs.csv", lambda t: comparison.pairs.to_csv(t, index=False))
    payload = {
        "k": comparison.k,
        "users": len(comparison.users),
        "judge": comparison.judge,
        "models": comparison.models.reset_index().to_dict(orient="records"),
        "pairs": comparison.pairs.to_dict(orient="records"),
    }
    save("report.json", lambda t: Path(t).write_text(json.dumps(payload, indent=2, default=float)))
    # The plot shows the pairs with the first model (the reference); the CSV has them all.
    reference = comparison.models.index[0]
    shown = {pair: v for pair, v in comparison.overlaps.items() if pair[0] == reference}
    if shown:
        save("overlap.png", lambda t: plot_overlap_histograms(shown, comparison.k, t))
    save("metrics.png", lambda t: plot_metric_bars(comparison.models, t))
    return written
