"""The image commands end to end on real MNIST (skipped without the data)."""

import json

import pytest
from typer.testing import CliRunner

from fmadv.cli import app
from fmadv.estimators.image import METHODS

runner = CliRunner()


@pytest.fixture(scope="module")
def image_model(data_dir_with, tmp_path_factory):
    shared_data_dir = data_dir_with("mnist")
    out = tmp_path_factory.mktemp("img")
    result = runner.invoke(app, [
        "image", "train", "--method", "goodfellow", "--epochs", "2", "--lr", "0.05",
        "--norm", "1.5", "--train-rows", "5000",
        "--data-dir", str(shared_data_dir), "--out", str(out), "--quiet",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["results"]["test"]["correct"] > 0.8
    assert summary["config"]["method"] == "goodfellow"
    return out / "model.safetensors", shared_data_dir


def test_evaluate_reports_every_attack(image_model):
    path, data_dir = image_model
    result = runner.invoke(app, ["image", "evaluate", str(path), "--rows", "300", "--json",
                                 "--eps", "1.5", "--data-dir", str(data_dir),
                                 "--pgd-steps", "5"])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {"clean", "fgsm", "l2", "alpha", "pgd"}
    assert report["clean"]["correct"] > 0.8
    for name in ("fgsm", "l2", "alpha", "pgd"):
        assert report[name]["correct"] <= report["clean"]["correct"]
    assert report["pgd"]["correct"] <= report["l2"]["correct"]


def test_evaluate_transfers_attacks_from_another_model_at_the_stated_norm(image_model, tmp_path):
    path, data_dir = image_model
    other = tmp_path / "other"
    trained = runner.invoke(app, [
        "image", "train", "--epochs", "1", "--lr", "0.05", "--train-rows", "2000",
        "--seed", "1", "--data-dir", str(data_dir), "--out", str(other), "--quiet",
    ])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    result = runner.invoke(app, ["image", "evaluate", str(path), "--rows", "300", "--json",
                                 "--attacks", "l2,fgsm", "--data-dir", str(data_dir),
                                 "--transfer-from", str(other / "model.safetensors")])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {"clean", "l2", "fgsm", "l2, transferred", "fgsm, transferred"}
    # Made against another network, the attack is weaker than made against this one.
    assert report["l2, transferred"]["correct"] >= report["l2"]["correct"]
    # Projected into the pixel box (the default), every attack reaches the model at 1.5.
    for name in ("l2", "fgsm", "l2, transferred"):
        assert report[name]["l2_norm"] == pytest.approx(1.5, abs=1e-3)
    clipped = runner.invoke(app, ["image", "evaluate", str(path), "--rows", "300", "--json",
                                  "--attacks", "fgsm", "--box", "clip",
                                  "--data-dir", str(data_dir)])  # fmt: skip
    assert json.loads(clipped.stdout)["fgsm"]["l2_norm"] < 1.4


def test_curve_writes_csv_and_png(image_model, tmp_path):
    path, data_dir = image_model
    result = runner.invoke(app, ["image", "curve", str(path), "--rows", "200",
                                 "--eps-grid", "0,1,3", "--attacks", "l2,fgsm",
                                 "--out", str(tmp_path), "--data-dir", str(data_dir)])  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "curve.csv").read_text().splitlines()
    assert lines[0] == "attack,eps,accuracy,l2_norm" and len(lines) == 1 + 6
    assert (tmp_path / "curve.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--attacks", "fgsm,teleport"], "unknown image attack"),
        (["--norm", "-1"], "budget"),
        (["--eps", "-1"], "budget"),
    ],
)
def test_bad_evaluate_options(image_model, args, fragment):
    path, data_dir = image_model
    result = runner.invoke(app, ["image", "evaluate", str(path), "--rows", "10",
                                 "--data-dir", str(data_dir), *args])  # fmt: skip
    assert result.exit_code == 2 and fragment in result.stderr


def test_train_rejects_bad_options_before_loading(tmp_path):
    result = runner.invoke(app, ["image", "train", "--goodfellow-weight", "2",
                                 "--out", str(tmp_path / "x")])  # fmt: skip
    assert result.exit_code == 2 and "goodfellow_weight" in result.stderr
    assert not (tmp_path / "x").exists()


def test_the_norm_options_of_earlier_releases_still_work(image_model, tmp_path):
    path, data_dir = image_model
    result = runner.invoke(app, ["image", "curve", str(path), "--rows", "50", "--norms", "0,2",
                                 "--attacks", "alpha", "--out", str(tmp_path),
                                 "--data-dir", str(data_dir)])  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "curve.csv").read_text().splitlines()
    assert len(lines) == 1 + 2 and all(line.startswith("alpha,") for line in lines[1:])


def test_train_methods_come_from_the_registry(tmp_path):
    result = runner.invoke(app, ["image", "train", "--method", "magic",
                                 "--out", str(tmp_path / "x")])  # fmt: skip
    assert result.exit_code == 2
    for name in METHODS:
        assert name in result.output
