"""What the recommendation commands do: top-k lists from a saved FM, and the top-k
comparison of FMs and baselines on the data the first FM was trained on."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fmadv.attacks import make_attack
from fmadv.checks import integer
from fmadv.data import Splits, item_titles
from fmadv.errors import ConfigError
from fmadv.estimators.fm import FMClassifier, FMEstimator
from fmadv.io import MODEL_FILE_NAME, atomic_write, model_file
from fmadv.metrics import topk
from fmadv.recommend import Interactions
from fmadv.recommend.baselines import BASELINES, make_baseline
from fmadv.recommend.compare import Comparison, compare_topk, write_report
from fmadv.recommend.edits import profile_threat, push, side_fields
from fmadv.recommend.fm import FMRecommender
from fmadv.recommend.tuning import (
    DEFAULT_BUDGET_SECONDS,
    TuningResult,
    relevant_pairs,
    tuning_table,
)
from fmadv.recommend.tuning import tune as tune_baseline
from fmadv.runs.data import recorded_splits
from fmadv.threat import check_linf_eps

LIST_FORMATS = (".csv", ".parquet", ".json")


def recommend_lists(
    model_path: str | Path,
    users: list[int] | None = None,
    k: int = 10,
    include_seen: bool = False,
    data_dir: Path | None = None,
    device: str = "cpu",
) -> pd.DataFrame:
    """Top-``k`` items of each user (raw ids; default: every user) from a saved FM, one
    row per (user, rank), with item titles where the dataset has them.

    The dataset the model was trained on gives the catalogue and what each user has seen
    (filtered out unless ``include_seen``)."""
    model_path = model_file(model_path)
    model = FMEstimator.load(model_path, device=device)
    dataset, _, splits = recorded_splits(model, data_dir)
    interactions = Interactions.from_splits(splits)
    recommender = FMRecommender(model, model_path.parent.name).fit(interactions)
    raw_users = list(users) if users else list(interactions.users)
    index = interactions.user_index(raw_users)
    ids, scores = recommender.recommend(index, k=k, filter_seen=not include_seen)
    valid = ids.ravel() >= 0
    table = pd.DataFrame(
        {
            "user_id": np.repeat(raw_users, k)[valid],
            "rank": np.tile(np.arange(1, k + 1), len(index))[valid],
            "item_id": interactions.items[ids.ravel()[valid]],
            "score": scores.ravel()[valid],
        }
    )
    titles = item_titles(dataset, data_dir)
    if titles is not None:
        table["title"] = table["item_id"].map(titles)
    return table


def write_lists(table: pd.DataFrame, output: Path) -> None:
    """The lists as CSV, Parquet or JSON, by the file's suffix, written atomically."""
    writers = {
        ".csv": lambda t: table.to_csv(t, index=False),
        ".parquet": lambda t: table.to_parquet(t, index=False),
        ".json": lambda t: table.to_json(t, orient="records", indent=1),
    }
    atomic_write(output, writers[check_list_format(output)])


def check_list_format(output: Path) -> str:
    suffix = output.suffix.lower()
    if suffix not in LIST_FORMATS:
        raise ConfigError(f"--output must end in .csv, .parquet or .json, got {output.name}")
    return suffix


@dataclass
class ComparisonRun:
    """A finished comparison, the dataset it ran on, the files written, and how each
    tuned baseline was tuned (empty without tuning)."""

    comparison: Comparison
    dataset: str
    files: list[Path]
    tuning: dict[str, TuningResult] = field(default_factory=dict)


def compare_models(
    models: list[str],
    out: str | Path = "runs/compare-topk",
    k: int = 10,
    judge: str | None = None,
    eps_grid: tuple[float, ...] = (0.0003, 0.003),
    support: str = "all",
    edit_budgets: tuple[int, ...] | None = None,
    edit_fields: tuple[str, ...] | None = None,
    stability_users: int = 200,
    factors: int = 64,
    seed: int = 0,
    data_dir: Path | None = None,
    tune: bool = False,
    tune_budget: float = DEFAULT_BUDGET_SECONDS,
    seed_control: bool = False,
) -> ComparisonRun:
    """Compare the top-k lists of saved FMs and baselines (``popularity``, ``random``,
    ``als``, ``bpr``, ``itemknn``, in any mix) on the data and split the first FM was
    trained on, and write the report into ``out``.

    Each FM's lists are also attacked with FGSM at each budget of ``eps_grid``, and by
    each number of whole-feature profile edits of ``edit_budgets`` (of the user fields
    ``edit_fields``; default: 1 and 2 edits of every user side field, when the data has
    some), for the stability figures; ``factors`` and ``seed`` configure the learned baselines. With
    ``tune``, each baseline that declares a tuning grid is first tuned for NDCG@k on the
    first FM's validation split (at most ``tune_budget`` seconds each, see
    :func:`fmadv.recommend.tuning.tune`) and compared with the values that won;
    ``tuning.csv`` in ``out`` lists every point tried. With ``seed_control``, each FM is
    trained again with the next seed on the same data (``seed_overlap``: how much of its
    lists the two seeds share), and each pair gets the mean of its FMs' seed overlaps: the
    overlap two models that differ in nothing but chance would have.
    """
    steps = [check_linf_eps(float(e)) for e in eps_grid]
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    loaded, baselines = _load_entries(models)
    records = {name: model.metadata_.get("data") for name, model in loaded.items()}
    first_name, first_model = next(iter(loaded.items()))
    for name, record in records.items():
        if record != records[first_name]:
            raise ConfigError(
                f"{name} and {first_name} were trained on different data or splits: "
                f"{record} != {records[first_name]}"
            )
    dataset, _, splits = recorded_splits(first_model, data_dir)
    interactions = Interactions.from_splits(splits)
    recommenders = {name: FMRecommender(m, name).fit(interactions) for name, m in loaded.items()}
    tuning = {}
    if tune:
        tuning = _tune_baselines(baselines, interactions, splits, k, tune_budget, factors, seed)
    for name in baselines:
        if name in tuning:
            options = tuning[name].best_params
        else:
            options = _accepted(name, {"factors": factors, "random_state": seed})
        recommenders[name] = make_baseline(name, **options).fit(interactions)
    attacks = {f"fgsm {support} {e:g}": make_attack("fgsm", e, support) for e in steps}
    attacks |= _profile_edits(interactions, edit_budgets, edit_fields)
    comparison = compare_topk(
        recommenders, interactions, splits.test, k=k, judge=judge, attacks=attacks,
        stability_users=stability_users,
    )  # fmt: skip
    if seed_control:
        _seed_overlaps(comparison, loaded, splits, interactions)
    title = f"Top-{k} comparison on {dataset}"
    if tuning:
        title += ", baselines tuned on validation"
    files = write_report(comparison, out, title=title)
    if tuning:
        table = tuning_table(tuning)
        atomic_write(Path(out) / "tuning.csv", lambda t: table.to_csv(t, index=False))
        files.append(Path(out) / "tuning.csv")
    return ComparisonRun(comparison, dataset, files, tuning)


def _seed_overlaps(comparison, loaded: dict, splits: Splits, interactions) -> None:
    """Each FM's overlap with itself trained on the next seed, and each pair's baseline."""
    for name, model in loaded.items():
        twin = type(model)(**{**model.get_params(), "random_state": model.random_state + 1})
        twin.fit_splits(splits)
        lists, _ = FMRecommender(twin).fit(interactions).recommend(comparison.users, k=comparison.k)
        seeds = topk.overlap(comparison.lists[name], lists)
        comparison.per_user[name]["seed_overlap"] = seeds
        comparison.models.loc[name, "seed_overlap"] = float(seeds.mean())
    own = comparison.models.get("seed_overlap")
    comparison.pairs["seed_overlap"] = [
        float((own[a] + own[b]) / 2) if a in loaded and b in loaded else float("nan")
        for a, b in zip(comparison.pairs.a, comparison.pairs.b, strict=True)
    ]


def _tune_baselines(
    baselines: list[str],
    interactions: Interactions,
    splits: Splits,
    k: int,
    budget_seconds: float,
    factors: int,
    seed: int,
) -> dict[str, TuningResult]:
    """Tune each baseline that has a grid on the validation split, from the point the
    comparison would use untuned."""
    tunable = [name for name in baselines if BASELINES[name].tuning_grid]
    if not tunable:
        return {}
    valid_relevant = relevant_pairs(interactions, splits.valid)
    results = {}
    for name in tunable:
        untuned = _accepted(name, {"factors": factors})
        results[name] = tune_baseline(
            name, interactions, valid_relevant, k, budget_seconds, seed, defaults=untuned
        )
    return results


def _accepted(name: str, options: dict) -> dict:
    """The options that the baseline ``name`` takes (``factors`` means nothing to
    item-kNN, for one)."""
    accepted = BASELINES[name]._get_param_names()
    return {key: value for key, value in options.items() if key in accepted}


def _load_entries(models: list[str]) -> tuple[dict[str, FMClassifier], list[str]]:
    """FM model files by display name, and baseline names, from the command's list."""
    loaded, baselines = {}, []
    for entry in models:
        if entry in BASELINES:
            baselines.append(entry)
            continue
        if not Path(entry).exists():
            raise ConfigError(
                f"{entry}: neither a model file nor a baseline ({', '.join(BASELINES)})"
            )
        path = model_file(entry)
        name = path.parent.name if path.name == MODEL_FILE_NAME else path.stem
        while name in loaded:
            name += "'"
        loaded[name] = FMEstimator.load(path)
    if not loaded:
        raise ConfigError("give at least one FM model file: it defines the dataset and split")
    return loaded, baselines


def push_item(
    model_path: str | Path,
    user: int,
    item: int,
    k: int = 10,
    budget: int = 3,
    fields: tuple[str, ...] | None = None,
    data_dir: Path | None = None,
    device: str = "cpu",
) -> dict:
    """The fewest whole-feature edits of ``user``'s profile (raw ids; ``fields``,
    default every user side field) that bring ``item`` into their top ``k``: the greedy
    attack's edits, and the certified least number (see
    :func:`fmadv.recommend.edits.push`)."""
    model_path = model_file(model_path)
    model = FMEstimator.load(model_path, device=device)
    _, _, splits = recorded_splits(model, data_dir)
    interactions = Interactions.from_splits(splits)
    recommender = FMRecommender(model, model_path.parent.name).fit(interactions)
    user_index = int(interactions.user_index([user])[0])
    item_index = int(interactions.item_index([item])[0])
    if interactions.seen[user_index, item_index]:
        raise ConfigError(f"user {user} has already seen item {item}: it is never recommended")
    threat = profile_threat(interactions, integer("budget", budget, 1), fields)
    result = push(recommender, user_index, item_index, threat, k)
    fmap = interactions.feature_map
    before = interactions.user_features[user_index].toarray()[0]
    return {
        "user": user, "item": item, "k": k, "budget": budget,
        "edits": result.edits, "at_least": result.at_least,
        "removed": [fmap.feature_name(j) for j in result.changed if before[j]],
        "added": [fmap.feature_name(j) for j in result.changed if not before[j]],
    }  # fmt: skip


def _profile_edits(interactions, budgets, fields) -> dict:
    """{label: edit threat} of the profile-edit stability figures."""
    if budgets is None:
        budgets = (1, 2) if fields or side_fields(interactions) else ()
    return {
        f"{b} profile edit{'s' if b > 1 else ''}": profile_threat(interactions, int(b), fields)
        for b in budgets
    }
