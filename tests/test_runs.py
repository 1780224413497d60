"""Run folders from Python: what a run may start over, resume or replace, and what it
records before it trains."""

import json
from pathlib import Path

import pytest

from fmadv.errors import ConfigError
from fmadv.estimators.fm import FMClassifier
from fmadv.runs.data import DataSpec
from fmadv.runs.fm import train_fm
from fmadv.runs.folder import RunFolder, RunInterrupted, changed_settings
from fmadv.runs.image import evaluate_image, image_curve

QUICK = {"epochs": 1, "batch_size": 2048}
SETTINGS = {"lr": 0.01, "epochs": 2, "data": {"dataset": "synthetic", "options": {"seed": 0}}}


def train(out: Path, **options):
    """A quick run on the synthetic data, split by the estimator's seed as the CLI does."""
    estimator = FMClassifier(**{**QUICK, **options.pop("params", {})})
    data = DataSpec(settings={"seed": estimator.random_state})
    return train_fm(estimator, data, out, quiet=True, **options)


def test_a_run_records_its_settings_before_training(tmp_path):
    summary = train(tmp_path / "run", params={"beta": 0.5})
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())
    assert recorded["beta"] == 0.5 and recorded["random_state"] == 0
    assert recorded["data"] == summary["data"] == {"dataset": "synthetic", "options": {"seed": 0}}


def test_a_finished_run_is_kept_unless_overwritten(tmp_path):
    out = tmp_path / "run"
    train(out)
    model = (out / "model.safetensors").read_bytes()
    with pytest.raises(ConfigError, match="holds a finished run.*--out NEW.*--overwrite"):
        train(out, params={"random_state": 1})
    assert (out / "model.safetensors").read_bytes() == model
    train(out, params={"random_state": 1}, overwrite=True)
    assert json.loads((out / "run.json").read_text())["random_state"] == 1
    assert (out / "model.safetensors").read_bytes() != model


def test_overwrite_removes_the_replaced_runs_files(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.start(SETTINGS, overwrite=False)
    folder.checkpoint.write_text("an earlier run's state")
    folder.check_start(SETTINGS, resume=False, overwrite=True)
    folder.start(SETTINGS, overwrite=True)
    assert not folder.checkpoint.exists() and folder.settings.is_file()


def test_resume_refuses_other_settings_naming_each(tmp_path):
    out = tmp_path / "run"
    train(out)
    with pytest.raises(ConfigError) as refused:
        train(out, params={"random_state": 7, "beta": 0.5, "lr": 0.1}, resume=True)
    message = str(refused.value)
    for change in ("lr 0.01 -> 0.1", "beta 0.0 -> 0.5", "random_state 0 -> 7",
                   "data.options.seed 0 -> 7"):  # fmt: skip
        assert change in message, message
    assert str(out) in message and "\n" not in message


def test_resume_takes_more_epochs_another_patience_and_device(tmp_path):
    out = tmp_path / "run"
    train(out)
    summary = train(out, params={"epochs": 2, "patience": 5, "device": "cpu"}, resume=True)
    assert summary["params"]["epochs"] == 2
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_an_unfinished_run_is_resumed_or_replaced_not_restarted(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.start(SETTINGS, overwrite=False)
    folder.checkpoint.write_text("state after epoch 1")
    with pytest.raises(ConfigError, match="unfinished run; --resume continues it"):
        folder.check_start(SETTINGS, resume=False, overwrite=False)
    folder.check_start({**SETTINGS, "epochs": 5}, resume=True, overwrite=False)


def test_out_must_be_a_folder(tmp_path):
    out = tmp_path / "x"
    out.write_text("not a folder")
    with pytest.raises(ConfigError, match=f"--out {out} is a file; give a folder"):
        RunFolder(out).check_start(SETTINGS, resume=False, overwrite=False)


def test_resume_and_overwrite_exclude_each_other(tmp_path):
    with pytest.raises(ConfigError, match="--resume continues .* --overwrite replaces it"):
        RunFolder(tmp_path).check_start(SETTINGS, resume=True, overwrite=True)


def test_changed_settings_skip_what_a_resumed_run_may_change():
    new = {**SETTINGS, "epochs": 9, "patience": 0, "device": "cuda", "lr": 0.1}
    new["data"] = {"dataset": "synthetic", "options": {"seed": 1}}
    assert changed_settings(SETTINGS, new) == ["lr 0.01 -> 0.1", "data.options.seed 0 -> 1"]
    assert changed_settings(SETTINGS, {**SETTINGS, "beta": 0.5}) == ["beta None -> 0.5"]


def test_an_interrupted_run_says_what_its_folder_keeps(tmp_path):
    folder = RunFolder(tmp_path)
    with pytest.raises(RunInterrupted, match="no epoch finished"), folder.training():
        raise KeyboardInterrupt
    folder.checkpoint.write_text("state")
    with pytest.raises(KeyboardInterrupt, match="keeps the checkpoint of the last finished"):
        with folder.training():
            raise KeyboardInterrupt


def test_libfm_runs_record_every_file(tmp_path):
    spec = DataSpec(train_file=tmp_path / "a.libfm", test_file=tmp_path / "c.libfm")
    assert spec.record() == {
        "files": {"train": str(tmp_path / "a.libfm"), "test": str(tmp_path / "c.libfm")}
    }


@pytest.mark.parametrize("rows", [0, -5])
def test_image_evaluations_take_a_positive_number_of_rows(tmp_path, rows):
    # Checked before the model is read: no file is needed to see the error.
    for evaluate in (evaluate_image, image_curve):
        with pytest.raises(ConfigError, match="rows must be an integer >= 1"):
            evaluate(tmp_path / "model.safetensors", rows=rows)
