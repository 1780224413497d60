"""The command line, end to end, through typer's CliRunner."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from fmadv.cli import app
from fmadv.data import write_libfm
from fmadv.estimators.fm import FMClassifier
from fmadv.estimators.ranker import FMRanker
from tests.fm_helpers import planted_problem

runner = CliRunner()
QUICK = ["--epochs", "2", "--batch-size", "512", "--quiet"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_user_error(result, *fragments):
    """Exit code 2, one line on stderr naming the problem, and no traceback."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    message = result.stderr.strip()
    assert message.startswith("error: ") and "\n" not in message, message
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in message, message


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = invoke("train", "--out", out, "--seed", "3", *QUICK)
    assert result.exit_code == 0, result.output
    return out


def test_robustness_under_edits_of_whole_fields(trained, tmp_path):
    out = tmp_path / "edits"
    result = invoke(
        "robustness", trained, "--attack", "flips", "--fields", "segment,category",
        "--budget", "1", "--budget-grid", "0,1,2", "--out", out, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["fields"] == ["segment", "category"] and report["budget"] == 1
    assert [row["budget"] for row in report["curve"]] == [0, 1, 2]
    for row in report["curve"]:
        assert row["flip_rate"] + row["certified_share"] + row["undecided_share"] == pytest.approx(
            1
        )
    assert report["curve"][0]["flip_rate"] == 0
    assert {p.name for p in out.iterdir()} == {
        "robustness.json", "edit_curve.csv", "edit_curve.png",
    }  # fmt: skip
    result = invoke("robustness", trained, "--attack", "flips", "--fields", "colour")
    assert_user_error(result, "edits name fields", "colour", "segment")


def test_training_against_edits(tmp_path):
    out = tmp_path / "edits"
    result = invoke(
        "train", "--beta", "0.5", "--attack", "flips", "--budget", "2", "--edit-fields",
        "segment,category", "--out", out, *QUICK,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = FMClassifier.load(out / "model.safetensors")
    assert saved.attack == "flips" and list(saved.edit_fields) == ["segment", "category"]
    assert "2 edits of segment, category" in saved.describe()
    result = invoke(
        "train", "--beta", "0.5", "--attack", "flips", "--edit-fields", "segment",
        "--certified", "--out", tmp_path / "certified", *QUICK,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert FMClassifier.load(tmp_path / "certified").certified
    result = invoke("train", "--attack", "flips", "--beta", "0.5", "--out", tmp_path / "x")
    assert_user_error(result, "needs the fields")
    # The ranker's adversary is the user: it edits user fields (segment), not item ones.
    ranking = ["train", "--task", "ranking", "--beta", "0.5", "--attack", "flips", *QUICK]
    result = invoke(*ranking, "--edit-fields", "segment", "--out", tmp_path / "rank")
    assert result.exit_code == 0, result.output
    assert FMRanker.load(tmp_path / "rank" / "model.safetensors").edit_fields == ("segment",)
    result = invoke(*ranking, "--edit-fields", "category", "--out", tmp_path / "y")
    assert_user_error(result, "edits user fields", "not category")


def test_push_an_item_into_a_users_list(trained):
    outcomes = [
        invoke("recommend", trained, "--users", "3", "--push", item, "--budget", "2")
        for item in range(12)
    ]
    answered = [r for r in outcomes if r.exit_code == 0]
    assert answered and all("certified: no" in r.stdout for r in answered)
    refused = [r for r in outcomes if r.exit_code != 0]
    assert all("has already seen item" in r.stderr for r in refused)
    result = invoke("recommend", trained, "--users", "3,4", "--push", 1)
    assert_user_error(result, "--push attacks one user")


def test_train_writes_model_log_and_summary(trained):
    assert (trained / "model.safetensors").is_file()
    lines = (trained / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and "valid_auc" in json.loads(lines[0])
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["model"] == "plain"
    assert summary["results"]["test"]["auc"] > 0.75


def test_evaluate_predict_and_robustness_on_the_trained_model(trained, tmp_path):
    result = invoke("evaluate", trained / "model.safetensors", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads((trained / "summary.json").read_text())
    assert json.loads(result.stdout)["test"]["auc"] == pytest.approx(
        summary["results"]["test"]["auc"]
    )

    csv = tmp_path / "rows.csv"
    csv.write_text("user,item,segment,category\n0,0,0,0\n3,7,1,2\n")
    result = invoke("predict", trained / "model.safetensors", csv, "--output", tmp_path / "s.csv")
    assert result.exit_code == 0, result.output
    scores = (tmp_path / "s.csv").read_text().splitlines()
    assert scores[0] == "score,label" and len(scores) == 3

    out = tmp_path / "rob"
    result = invoke(
        "robustness",
        trained / "model.safetensors",
        "--alphas",
        "0,0.01,0.1",
        "--out",
        out,
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [row["eps"] for row in report["curve"]] == [0.0, 0.01, 0.1]
    assert report["curve"][0]["flip_rate"] == 0.0  # alpha = 0 moves nothing
    assert report["curve"][1]["flip_rate"] > 0  # a plain FM flips under all-feature FGSM
    # The strong attack by default, never weaker than the single step printed beside it.
    assert report["strength"] == "strong"
    assert report["adversarial_error"] >= report["single_step_adversarial_error"]
    single = invoke("robustness", trained, "--strength", "single", "--out", out, "--json")
    assert single.exit_code == 0, single.output
    single_report = json.loads(single.stdout)
    assert single_report["adversarial_error"] == report["single_step_adversarial_error"]
    assert {p.name for p in out.iterdir()} == {
        "robustness.json",
        "flip_curve.csv",
        "flip_curve.png",
    }


def test_train_on_libfm_files_and_predict_them(tmp_path):
    X, y = planted_problem(n_rows=800)
    write_libfm(tmp_path / "train.libfm", X[:600], y[:600])
    write_libfm(tmp_path / "test.libfm", X[600:], y[600:])
    out = tmp_path / "run"
    result = invoke(
        "train", "--train", tmp_path / "train.libfm", "--test", tmp_path / "test.libfm",
        "--out", out, "--beta", "0.5", "--alpha", "0.01", *QUICK,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    result = invoke("predict", out / "model.safetensors", tmp_path / "test.libfm")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 201
    result = invoke("evaluate", out / "model.safetensors")
    assert_user_error(result, "--input")


@pytest.mark.parametrize(
    "content, fragments",
    [
        ("1 0:1 3:1\n-1 2:1 x:1\n", ["bad.libfm:2"]),
        ("1 0:1\n7 2:1\n", ["bad.libfm:2", "label"]),
        ("1 0:1\n-1 2:nan\n", ["bad.libfm:2"]),
        ("1 0:1\n-1 2:0.5\n", ["bad.libfm:2", "--allow-real-valued"]),
        ("", ["bad.libfm"]),
    ],
)
def test_bad_training_files_fail_cleanly_and_write_nothing(tmp_path, content, fragments):
    (tmp_path / "bad.libfm").write_text(content)
    before = (tmp_path / "bad.libfm").read_bytes()
    out = tmp_path / "run"
    result = invoke("train", "--train", tmp_path / "bad.libfm", "--out", out, *QUICK)
    assert_user_error(result, *fragments)
    assert not out.exists()
    assert (tmp_path / "bad.libfm").read_bytes() == before


def test_real_valued_rows_train_with_the_flag(tmp_path):
    (tmp_path / "real.libfm").write_text("1 0:0.5 1:1\n-1 2:1 3:0.25\n1 1:2 3:1\n-1 0:1 2:0.5\n")
    out = tmp_path / "run"
    result = invoke(
        "train", "--train", tmp_path / "real.libfm", "--allow-real-valued", "--out", out, *QUICK
    )
    assert result.exit_code == 0, result.output


def test_predict_rejects_unknown_features(trained, tmp_path):
    (tmp_path / "wide.libfm").write_text("1 0:1 999999:1\n")
    result = invoke("predict", trained / "model.safetensors", tmp_path / "wide.libfm")
    assert_user_error(result, "wide.libfm:1", "999999")
    (tmp_path / "rows.csv").write_text("user,item,segment,category\n99999,0,0,0\n")
    result = invoke("predict", trained / "model.safetensors", tmp_path / "rows.csv")
    assert_user_error(result, "99999")


def test_truncated_and_foreign_model_files(trained, tmp_path):
    data = (trained / "model.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:100])
    assert_user_error(invoke("evaluate", tmp_path / "cut.safetensors"), "cut.safetensors")
    (tmp_path / "text.safetensors").write_text("hello")
    assert_user_error(
        invoke("predict", tmp_path / "text.safetensors", "x.libfm"), "text.safetensors"
    )


@pytest.mark.parametrize(
    "options, fragment",
    [
        (["--alpha", "1.5", "--beta", "0.5"], "eps must lie in"),
        (["--eps", "-0.1"], "eps must lie in"),
        (["--beta", "-1"], "beta must be"),
        (["--grad-noise", "-0.5"], "eta must be >= 0"),
        (["--lr", "0"], "lr must be"),
    ],
)
def test_bad_options_fail_before_training(tmp_path, options, fragment):
    out = tmp_path / "run"
    result = invoke("train", "--out", out, *options, *QUICK)
    assert_user_error(result, fragment)
    assert not out.exists()


@pytest.mark.parametrize("option", [["--support", "some"], ["--dataset", "nope"]])
def test_unknown_choices_are_usage_errors(option):
    result = invoke("train", *option)
    assert result.exit_code == 2 and option[1] in result.output


@pytest.mark.parametrize(
    "command, expected",
    [
        (["train"], ["--beta", "--alpha", "--support", "--grad-noise", "--device", "--dataset"]),
        (["evaluate"], ["--input", "--json"]),
        (["predict"], ["INPUT", "--output"]),
        (["robustness"], ["--alphas", "--support"]),
        (["data", "fetch"], ["frappe", "mnist"]),
    ],
)
def test_help_is_complete(command, expected):
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    for fragment in expected:
        assert fragment in result.output


def test_data_commands_on_the_shared_copy(data_dir_with):
    shared_data_dir = data_dir_with("movielens-100k")
    result = invoke("data", "verify", "movielens-100k", "--data-dir", shared_data_dir)
    assert result.exit_code == 0, result.output
    assert result.output.count("ok") == 21
    result = invoke("data", "info", "movielens-100k", "--data-dir", shared_data_dir)
    assert result.exit_code == 0 and "Harper" in result.output
    result = invoke("data", "list", "--data-dir", shared_data_dir)
    assert result.exit_code == 0 and "movielens-100k" in result.output


def test_checksum_mismatch_is_reported(dataset_dir, tmp_path):
    copy = tmp_path / "ml-100k"
    copy.mkdir()
    for source in dataset_dir("movielens-100k").iterdir():
        (copy / source.name).write_bytes(source.read_bytes())
    with open(copy / "u.data", "ab") as handle:
        handle.write(b"1\t1\t5\t0\n")
    result = invoke("data", "verify", "movielens-100k", "--data-dir", tmp_path)
    assert result.exit_code == 1 and "mismatch" in result.output
    out = tmp_path / "run"
    result = invoke("train", "--dataset", "movielens-100k", "--data-dir", tmp_path, "--out", out)
    assert_user_error(result, "u.data")
    assert not out.exists()


def test_train_on_movielens(data_dir_with, tmp_path):
    shared_data_dir = data_dir_with("movielens-100k")
    out = tmp_path / "run"
    result = invoke(
        "train", "--dataset", "movielens-100k", "--data-dir", shared_data_dir,
        "--side-features", "genre,age", "--split", "u1", "--out", out, *QUICK,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["results"]["test"]["auc"] > 0.65
    assert summary["data"]["options"]["split"] == "u1"
    result = invoke("evaluate", out / "model.safetensors", "--data-dir", shared_data_dir, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["test"]["auc"] == pytest.approx(
        summary["results"]["test"]["auc"]
    )
    assert np.isfinite(summary["results"]["valid"]["hinge"])


def test_train_from_a_streamed_log(tmp_path):
    import polars as pl

    from fmadv.data.synthetic import write_synthetic_log

    write_synthetic_log(tmp_path / "all.parquet", 30_000, n_users=300, n_items=200, seed=0)
    rows = pl.read_parquet(tmp_path / "all.parquet")
    rows[:25_000].write_parquet(tmp_path / "train.parquet")
    rows[25_000:].write_csv(tmp_path / "valid.csv")
    out = tmp_path / "run"
    result = invoke(
        "train", "--log", tmp_path / "train.parquet", "--valid-log", tmp_path / "valid.csv",
        "--fields", "user,item,segment,category", "--label", "rating", "--threshold", "4",
        "--epochs", "3", "--batch-size", "2048", "--lr", "0.05", "--out", out, "--quiet",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"] == 25_000 and summary["results"]["valid"]["auc"] > 0.65
    loaded = FMClassifier.load(out / "model.safetensors")
    assert loaded.feature_map_.field_names == ["user", "item", "segment", "category"]
    result = invoke("train", "--log", tmp_path / "train.parquet", "--fields", "user,color",
                    "--label", "rating", "--out", tmp_path / "bad")  # fmt: skip
    assert_user_error(result, "missing column 'color'")
    assert not (tmp_path / "bad").exists()


def test_train_options_are_the_estimators_parameters_with_their_defaults():
    """Every parameter of each task's estimator is a `fmadv train` option of the same
    name; its default is the estimator's (which comes from the component's dataclass),
    or unset where the tasks' defaults differ and the task's estimator fills it in."""
    import inspect

    from fmadv.cli.fm import ESTIMATORS, make_estimator, train

    options = inspect.signature(train).parameters
    renamed = {"random_state": "seed"}
    for task, cls in ESTIMATORS.items():
        defaults = cls().get_params()
        for name, default in defaults.items():
            option = options[renamed.get(name, name)]
            value = getattr(option.default, "value", option.default)
            assert value in (default, None), (task, name, value, default)
        unset = {name: option.default for name, option in options.items()}
        built = make_estimator(task, unset, random_state=0)
        assert built.get_params() == defaults
