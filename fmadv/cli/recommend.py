"""fmadv recommend and compare-topk: parse, one call to fmadv.runs, print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pandas.api.types import is_numeric_dtype
from rich import box
from rich.table import Table

from fmadv.cli.common import (
    DataDir,
    Device,
    Support,
    app,
    console,
    defaults_of,
    number_list,
    number_text,
    threaded,
    user_errors,
)
from fmadv.errors import ConfigError
from fmadv.recommend.tuning import tuning_summary
from fmadv.runs.recommend import (
    check_list_format,
    compare_models,
    push_item,
    recommend_lists,
    write_lists,
)

COMPARE_MODEL_COLUMNS = ("model", "ndcg", "recall", "hit_rate", "auc", "coverage", "novelty",
                         "own_preference")  # fmt: skip
COMPARE_PAIR_COLUMNS = ("a", "b", "overlap", "rbo", "kendall_tau", "share_b_lower_own",
                        "only_a_hit_rate", "only_b_hit_rate")  # fmt: skip
TUNING_HEADERS = {"baseline": "baseline", "default_ndcg": "untuned", "chosen_ndcg": "tuned",
                  "tried": "tried", "chosen": "chosen values"}  # fmt: skip
STABILITY = "stability "  # the prefix of the models' stability columns, one per attack
CERTIFIED = "certified "  # and of their certified shares, one per edit budget
SHOWN_USERS = 20
RECOMMEND, COMPARE = defaults_of(recommend_lists), defaults_of(compare_models)


def _frame_table(frame, title: str, headers: dict[str, str]) -> Table:
    """A rich table of the DataFrame columns that ``headers`` names, under its headers,
    whole at any terminal width: names keep their line, headers wrap at their spaces,
    and what still does not fit folds onto the next line instead of being cut."""
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True)
    for column, header in headers.items():
        numeric = is_numeric_dtype(frame[column])
        table.add_column(header, justify="right" if numeric else "left", overflow="fold",
                         no_wrap=not numeric)  # fmt: skip
    for row in frame[list(headers)].itertuples(index=False):
        table.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))
    return table


def _spaced(columns) -> dict[str, str]:
    """Headers with spaces for underscores, where a narrow column may wrap them."""
    return {column: column.replace("_", " ") for column in columns}


@app.command()
@user_errors
@threaded
def recommend(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help="A model.safetensors file.")],
    users: Annotated[
        str, typer.Option(help="Comma-separated raw user ids; default: every user.")
    ] = "",
    k: Annotated[int, typer.Option("-k", "--k", help="List length.")] = RECOMMEND["k"],
    include_seen: Annotated[
        bool, typer.Option(help="Allow items the user already has in the training data.")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(help="Write the lists to .csv, .parquet or .json; default: print them."),
    ] = None,
    push: Annotated[
        int | None,
        typer.Option(
            metavar="ITEM",
            help="Instead of lists: the fewest edits of the (one) user's profile that bring "
            "this item into the top k, found greedily, and the certified least number.",
        ),
    ] = None,
    budget: Annotated[int, typer.Option(min=1, help="--push: the most edits tried.")] = 3,
    edit_fields: Annotated[
        str | None,
        typer.Option(help="--push: the user fields edited; default: every side field."),
    ] = None,
    data_dir: DataDir = None,
    device: Device = "cpu",
) -> None:
    """Top-k items for users, from a saved FM (the dataset it was trained on gives the
    catalogue, what each user has seen, and item titles when there are some)."""
    if output is not None:
        check_list_format(output)
    try:
        raw_users = [int(u) for u in users.split(",") if u.strip()]
    except ValueError:
        raise ConfigError(f"--users must be comma-separated integer ids, got {users!r}") from None
    if push is not None:
        if len(raw_users) != 1:
            raise ConfigError("--push attacks one user: give --users with one id")
        fields = None if edit_fields is None else tuple(f for f in edit_fields.split(",") if f)
        found = push_item(model_path, raw_users[0], push, k, budget, fields, data_dir, device)
        _print_push(found)
        return
    table = recommend_lists(model_path, raw_users, k, include_seen, data_dir, device)
    n_users = table["user_id"].nunique()
    if output is not None:
        write_lists(table, output)
        console.print(f"{len(table)} recommendations for {n_users} users: {output}")
        return
    first = table["user_id"].drop_duplicates().iloc[:SHOWN_USERS]
    shown = table[table["user_id"].isin(first)]
    rich_table = Table(title=f"top-{k} from {model_path}")
    for column in shown.columns:
        rich_table.add_column(column, justify="left" if column == "title" else "right")
    for row in shown.itertuples(index=False):
        rich_table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    console.print(rich_table)
    if n_users > SHOWN_USERS:
        console.print(f"(first {SHOWN_USERS} of {n_users} users; --output writes them all)")


def _print_push(found: dict) -> None:
    where = f"item {found['item']} into user {found['user']}'s top {found['k']}"
    if found["edits"] is None:
        console.print(f"no {_edits(found['budget'])} found that bring {where}")
    else:
        console.print(f"{_edits(found['edits'])} bring {where}")
        console.print(f"  remove: {', '.join(found['removed']) or '-'}")
        console.print(f"  add:    {', '.join(found['added']) or '-'}")
    bound = found["at_least"]
    if bound > found["budget"]:
        console.print(f"certified: no {_edits(found['budget'])} or fewer can do it")
    else:
        console.print(f"certified: no fewer than {_edits(bound)} can do it")


def _edits(count: int) -> str:
    return f"{count} edit{'' if count == 1 else 's'}"


@app.command("compare-topk")
@user_errors
@threaded
def compare_topk_command(
    models: Annotated[
        list[str],
        typer.Argument(
            metavar="MODELS...",
            help="Model files (.safetensors) and baselines: popularity, random, als, bpr, itemknn.",
        ),
    ],
    k: Annotated[int, typer.Option("-k", "--k", help="List length.")] = COMPARE["k"],
    out: Annotated[
        Path, typer.Option(help="Folder for report.md, CSV, JSON and PNG plots.")
    ] = Path(COMPARE["out"]),
    judge: Annotated[
        str | None,
        typer.Option(help="Model whose predicted preference scores every list; default: first FM."),
    ] = None,
    eps_grid: Annotated[
        str,
        typer.Option(
            "--eps-grid",
            "--alphas",
            help="FGSM budgets of the profile attack on the FMs' lists (comma-separated): "
            "each user's features move once, against the user's own top k.",
        ),
    ] = number_text(COMPARE["eps_grid"]),
    support: Annotated[
        Support,
        typer.Option(
            help="What the profile attack moves: every feature of the user's fields (all), "
            "or only those the user has (active)."
        ),
    ] = COMPARE["support"],
    edit_budgets: Annotated[
        str | None,
        typer.Option(
            help="Numbers of whole-feature profile edits for the stability figure "
            "(comma-separated); default: 1,2 when users have side fields."
        ),
    ] = None,
    edit_fields: Annotated[
        str | None,
        typer.Option(help="User fields the profile edits change; default: every side field."),
    ] = None,
    stability_users: Annotated[
        int, typer.Option(help="Users whose lists are attacked for the stability figure.")
    ] = COMPARE["stability_users"],
    factors: Annotated[
        int, typer.Option(help="Latent factors of the ALS and BPR baselines.")
    ] = COMPARE["factors"],
    seed: Annotated[int, typer.Option(help="Seed of the random and learned baselines.")] = COMPARE[
        "seed"
    ],
    tune: Annotated[
        bool,
        typer.Option(
            "--tune",
            help="First tune each learned baseline for NDCG@k on the first FM's validation "
            "split; writes tuning.csv.",
        ),
    ] = COMPARE["tune"],
    tune_budget: Annotated[
        float,
        typer.Option(
            metavar="SECONDS", help="Tuning time per baseline; its untuned point always runs."
        ),
    ] = COMPARE["tune_budget"],
    seed_control: Annotated[
        bool,
        typer.Option(
            "--seed-control",
            help="Train each FM again with the next seed: the overlap of two seeds, beside "
            "every overlap figure.",
        ),
    ] = COMPARE["seed_control"],
    data_dir: DataDir = None,
) -> None:
    """Compare the top-k lists of FMs and baselines: ranking metrics, overlap, preference
    scores, what each model alone suggests, and stability under attack."""
    run = compare_models(
        models, out, k=k, judge=judge, eps_grid=number_list(eps_grid, "--eps-grid"),
        support=support.value, stability_users=stability_users, factors=factors, seed=seed,
        edit_budgets=None if edit_budgets is None
        else tuple(int(b) for b in number_list(edit_budgets, "--edit-budgets")),
        edit_fields=None if edit_fields is None else tuple(f for f in edit_fields.split(",") if f),
        data_dir=data_dir, tune=tune, tune_budget=tune_budget, seed_control=seed_control,
    )  # fmt: skip
    if run.tuning:
        title = f"baselines tuned on validation NDCG@{k}"
        # One value a line: a baseline's values side by side overflow 80 columns.
        summary = tuning_summary(run.tuning, separator="\n")
        console.print(_frame_table(summary, title, TUNING_HEADERS))
    comparison = run.comparison
    models = comparison.models.reset_index()
    title = f"top-{k} on {run.dataset}: {len(comparison.users)} users"
    console.print(_frame_table(models, title, _spaced(COMPARE_MODEL_COLUMNS)))
    for prefix, title in (
        (STABILITY, f"stability: share of each top-{k} list kept"),
        (CERTIFIED, f"certified: share of top-{k} lists no such edits can change"),
    ):
        columns = [column for column in models.columns if column.startswith(prefix)]
        if columns:
            shown = models.dropna(how="all", subset=columns)
            headers = {"model": "model", **{c: c.removeprefix(prefix) for c in columns}}
            console.print(_frame_table(shown, title, headers))
    pairs = comparison.pairs
    console.print(_frame_table(pairs, "pairs", _spaced(COMPARE_PAIR_COLUMNS)))
    if "seed_overlap" in pairs:
        controlled = pairs.dropna(subset=["seed_overlap"])
        title = f"overlap beside the seed control (two seeds of one FM share that of top {k})"
        headers = _spaced(("a", "b", "overlap", "seed_overlap"))
        console.print(_frame_table(controlled, title, headers))
    console.print("written: " + ", ".join(str(p) for p in run.files))
