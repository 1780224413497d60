"""What the commands tell the user: the refusals that keep a run from being lost or mixed
with another, one-line errors for bad options, what a Ctrl-C leaves and how to go on,
help that matches the defaults, and output that fits an 80-column terminal."""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from fmadv.cli import app
from fmadv.runs.progress import epoch_line
from tests.test_cli import assert_user_error

runner = CliRunner()
QUICK = ["--epochs", "1", "--batch-size", "2048", "--quiet"]


def invoke(*args, **options):
    return runner.invoke(app, [str(a) for a in args], **options)


def fmadv(*args, columns: int = 80, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m fmadv ARGS`` in a terminal of ``columns`` columns (output to a pipe)."""
    environment = {**os.environ, "COLUMNS": str(columns)}
    command = [sys.executable, "-m", "fmadv", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=environment,
                          timeout=timeout)  # fmt: skip


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished")
    result = invoke("train", "--out", out, *QUICK)
    assert result.exit_code == 0, result.output
    return out


# -- a run folder holds one run -----------------------------------------------------


def test_a_finished_run_is_refused_before_any_data_is_read(finished, tmp_path):
    before = {path.name: path.read_bytes() for path in finished.iterdir()}
    # A dataset that is not there: the refusal comes first, so it names the folder.
    for command in (["train", "--dataset", "movielens-100k"], ["image", "train"]):
        result = invoke(*command, "--out", finished, "--data-dir", tmp_path / "none", "--quiet")
        assert_user_error(result, f"{finished} holds a finished run", "--out NEW", "--overwrite")
    assert {path.name: path.read_bytes() for path in finished.iterdir()} == before


def test_overwrite_replaces_a_finished_run(tmp_path):
    out = tmp_path / "run"
    assert invoke("train", "--out", out, *QUICK).exit_code == 0
    result = invoke("train", "--out", out, "--seed", "4", "--overwrite", *QUICK)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "run.json").read_text())["random_state"] == 4
    assert json.loads((out / "summary.json").read_text())["params"]["random_state"] == 4


def test_resume_refuses_other_settings_and_takes_more_epochs(tmp_path):
    out = tmp_path / "run"
    assert invoke("train", "--out", out, *QUICK).exit_code == 0
    result = invoke("train", "--out", out, "--resume", "--seed", "7", "--beta", "0.5",
                    "--lr", "0.1", *QUICK)  # fmt: skip
    assert_user_error(result, str(out), "lr 0.01 -> 0.1", "beta 0.0 -> 0.5",
                      "random_state 0 -> 7", "data.options.seed 0 -> 7")  # fmt: skip
    result = invoke("train", "--out", out, "--resume", "--epochs", "2", "--patience", "1",
                    "--device", "cpu", "--batch-size", "2048", "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_an_image_run_resumes_only_with_its_settings(data_dir_with, tmp_path):
    data_dir = data_dir_with("mnist")
    out = tmp_path / "run"
    common = ["image", "train", "--train-rows", "500", "--valid-size", "100", "--batch-size",
              "100", "--data-dir", data_dir, "--out", out, "--quiet"]  # fmt: skip
    assert invoke(*common, "--epochs", "1").exit_code == 0
    result = invoke(*common, "--epochs", "2", "--seed", "3", "--method", "lwa", "--resume")
    assert_user_error(result, "method normal -> lwa", "seed 0 -> 3")
    assert "epochs" not in result.stderr
    assert invoke(*common, "--epochs", "2", "--resume").exit_code == 0


def test_out_that_is_a_file(tmp_path):
    (tmp_path / "x").write_text("a file")
    for command in (["train"], ["image", "train"]):
        result = invoke(*command, "--out", tmp_path / "x", "--quiet")
        assert_user_error(result, f"--out {tmp_path / 'x'} is a file; give a folder")


# -- options out of range are one-line errors ---------------------------------------


@pytest.mark.parametrize(
    "option, fragment",
    [
        (["--k", "0"], "n_factors must be an integer >= 1, got 0"),
        (["--n-factors", "-1"], "n_factors must be an integer >= 1, got -1"),
        (["--init-std", "0"], "init_std must be a positive number"),
    ],
)
def test_bad_factor_options_are_user_errors(tmp_path, option, fragment):
    out = tmp_path / "run"
    assert_user_error(invoke("train", "--out", out, *option, *QUICK), fragment)
    assert not out.exists()


@pytest.mark.parametrize("command", ["evaluate", "curve"])
@pytest.mark.parametrize("rows", ["0", "-5"])
def test_image_evaluations_take_a_positive_number_of_rows(tmp_path, command, rows):
    result = invoke("image", command, tmp_path / "model.safetensors", "--rows", rows)
    assert_user_error(result, f"rows must be an integer >= 1, got {rows}")


# -- Ctrl-C -------------------------------------------------------------------------


def test_ctrl_c_keeps_the_checkpoint_and_prints_the_command_that_resumes(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--epochs", "1000", "--patience", "0", "--batch-size", "2048",
            "--out", str(out), "--quiet"]  # fmt: skip
    # SIGINT as a terminal sends it (a shell may have left it ignored for this process).
    process = subprocess.Popen(
        [sys.executable, "-m", "fmadv", *args], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        while not (out / "checkpoint.safetensors").exists():
            assert process.poll() is None, process.communicate()
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    message = stderr.strip()
    assert "\n" not in message and "Traceback" not in message, message
    assert message == (
        f"interrupted: {out} keeps the checkpoint of the last finished epoch; "
        f"resume with: {shlex.join(['fmadv', *args, '--resume'])}"
    )
    assert not (out / "model.safetensors").exists()
    epochs_done = len((out / "metrics.jsonl").read_text().splitlines())
    result = invoke(*args[:1], *args[3:], "--epochs", epochs_done + 1, "--resume")
    assert result.exit_code == 0, result.output
    assert (out / "model.safetensors").is_file()


# -- output at 80 columns -----------------------------------------------------------


def test_epoch_lines_fit_80_columns():
    record = {"epoch": 999, "train_loss": 12.3456, "valid_auc": 0.9, "valid_accuracy": 0.9,
              "valid_hinge": 12.3456, "seconds": 1234.5}  # fmt: skip
    assert len(epoch_line(record)) <= 80


def test_training_output_at_80_columns_leaves_no_bar(tmp_path):
    out = tmp_path / "run"
    # A high rate overfits fast: early stopping ends the run long before epoch 30.
    result = fmadv("train", "--epochs", "30", "--patience", "1", "--lr", "0.1", "--out", out)
    assert result.returncode == 0, result.stderr
    epochs = len((out / "metrics.jsonl").read_text().splitlines())
    assert epochs < 30
    lines = result.stdout.splitlines()
    epoch_lines = [line for line in lines if re.fullmatch(r"epoch +\d+  loss .*\ds", line)]
    assert len(epoch_lines) == epochs, result.stdout
    assert "/30" not in result.stdout and " rows" not in result.stdout  # no progress bar
    assert all(len(line) <= 80 for line in lines) and "…" not in result.stdout


def test_compare_topk_tables_are_whole_at_80_columns(tmp_path):
    models = []
    for name, extra in (("ml-plain-model", []), ("ml-adversarial", ["--beta", "0.5"])):
        result = invoke("train", "--out", tmp_path / name, *QUICK, *extra)
        assert result.exit_code == 0, result.output
        models.append(tmp_path / name / "model.safetensors")
    result = fmadv("compare-topk", *models, "popularity", "random", "--stability-users", "20",
                   "--seed-control",
                   "--out", tmp_path / "cmp")  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "…" not in text and all(len(line) <= 80 for line in text.splitlines()), text
    for name in ("ml-plain-model", "ml-adversarial", "popularity", "random", "fgsm all 0.003"):
        assert name in text, text
    assert "stability" in text and "preference" in text and "only b" in text


# -- help and data commands say what the commands do ---------------------------------


def help_text(*command: str) -> str:
    """The help of a command with its box drawing and line breaks taken out."""
    result = invoke(*command, "--help", env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())


@pytest.mark.parametrize(
    "command",
    [["evaluate"], ["predict"], ["robustness"], ["recommend"], ["image", "evaluate"],
     ["image", "curve"]],
)  # fmt: skip
def test_device_help_of_the_model_commands_matches_their_default(command):
    text = help_text(*command)
    assert "Where to run the model: cpu, cuda, or auto (CUDA when available)." in text
    assert "[default: cpu]" in text


@pytest.mark.parametrize("command", [["train"], ["image", "train"]])
def test_device_help_of_the_training_commands_matches_their_default(command):
    text = help_text(*command)
    assert "Where to train: auto (CUDA when available), cpu or cuda. [default: auto]" in text


def test_each_train_command_offers_only_the_datasets_it_trains_on():
    fm, image = help_text("train"), help_text("image", "train")
    assert "mnist" not in fm and "cifar10" not in fm and "synthetic" in fm
    assert "mnist" in image and "cifar10" in image and "synthetic" not in image
    result = invoke("train", "--dataset", "mnist")
    assert result.exit_code == 2 and "'mnist' is not one of" in result.output


@pytest.mark.parametrize("command", ["verify", "fetch"])
def test_data_commands_on_the_generated_dataset_say_there_are_no_files(command):
    result = invoke("data", command, "synthetic")
    assert result.exit_code == 0, result.output
    assert (
        result.output.strip() == f"synthetic is generated in memory: it has no files to {command}"
    )
