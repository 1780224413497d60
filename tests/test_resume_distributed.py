"""Checkpoints, --resume, and data-parallel training on 2 CPU processes (gloo)."""

import os
import subprocess
import sys

import pytest
import torch

from fmadv.errors import ModelFileError
from fmadv.estimators.fm import FMClassifier
from fmadv.estimators.image import ImageTrainConfig, image_loop, train_image_classifier
from tests.fm_helpers import planted_problem
from tests.test_image_training import tiny_images


class Interrupt(Exception):
    """Stands in for a killed process."""


def interrupt_in_epoch(epoch: int):
    seen = {"epochs": 0}

    def on_epoch(record):
        seen["epochs"] = record["epoch"]

    def on_step(done, total):
        if seen["epochs"] == epoch - 1 and done > total // 2:
            raise Interrupt

    return on_step, on_epoch


FM_OPTIONS = {
    "n_factors": 3, "epochs": 4, "batch_size": 256, "lr": 0.05, "beta": 0.5, "eps": 0.05,
    "grad_noise": 0.001, "patience": 3,
}  # fmt: skip


def test_fm_resume_equals_an_uninterrupted_run(tmp_path):
    X, y = planted_problem(n_rows=2000)
    valid = (X[1500:], y[1500:])
    whole = FMClassifier(**FM_OPTIONS).fit(X[:1500], y[:1500], eval_set=valid)

    checkpoint = tmp_path / "checkpoint.safetensors"
    on_step, on_epoch = interrupt_in_epoch(3)
    with pytest.raises(Interrupt):
        FMClassifier(**FM_OPTIONS).fit(X[:1500], y[:1500], eval_set=valid, checkpoint=checkpoint,
                                       on_step=on_step, on_epoch=on_epoch)  # fmt: skip
    assert checkpoint.exists()
    resumed = FMClassifier(**FM_OPTIONS).fit(X[:1500], y[:1500], eval_set=valid,
                                             checkpoint=checkpoint, resume=True)  # fmt: skip
    for name in ("bias", "linear", "factors"):
        assert torch.equal(getattr(resumed.model_, name), getattr(whole.model_, name)), name

    def without_time(records):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in records]

    assert without_time(resumed.history_.records) == without_time(whole.history_.records)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.safetensors"]  # no temp files


def test_image_resume_with_vat(tmp_path):
    data = tiny_images()
    config = ImageTrainConfig(
        model="mlp", method="vat", loop=image_loop(epochs=3, batch_size=50, lr=0.05)
    )
    whole = train_image_classifier(data, config)
    checkpoint = tmp_path / "ckpt.safetensors"
    on_step, on_epoch = interrupt_in_epoch(2)
    with pytest.raises(Interrupt):
        train_image_classifier(
            data, config, checkpoint=checkpoint, on_step=on_step, on_epoch=on_epoch
        )
    resumed = train_image_classifier(data, config, checkpoint=checkpoint, resume=True)
    for a, b in zip(whole.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_foreign_checkpoint_is_refused(tmp_path):
    X, y = planted_problem(n_rows=500)
    checkpoint = tmp_path / "c.safetensors"
    FMClassifier(n_factors=3, epochs=1).fit(X, y, checkpoint=checkpoint)
    with pytest.raises(ModelFileError, match="does not fit"):
        FMClassifier(n_factors=5, epochs=2).fit(X, y, checkpoint=checkpoint, resume=True)


def run(args, **env):
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    command = [sys.executable, *args]
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.parametrize(
    "extra, tolerance",
    [
        # SGD: the two runs differ only in the order of float additions.
        (["--optimizer", "sgd", "--lr", "0.05"], 1e-6),
        # Adam normalises each gradient, so a weight whose gradient is rounding noise
        # takes a full-size step either way: the runs agree to ~1e-3, not to rounding.
        (["--beta", "0.5", "--alpha", "0.01"], 5e-3),
    ],
    ids=["sgd", "adam-adversarial"],
)
def test_two_processes_train_the_single_process_model(tmp_path, extra, tolerance):
    common = [
        "train",
        "--epochs",
        "2",
        "--batch-size",
        "1000",
        "--device",
        "cpu",
        "--quiet",
        *extra,
    ]
    run(["-m", "fmadv", *common, "--out", str(tmp_path / "one")])
    run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "fmadv",
         *common, "--out", str(tmp_path / "two")])  # fmt: skip
    one = FMClassifier.load(tmp_path / "one" / "model.safetensors")
    two = FMClassifier.load(tmp_path / "two" / "model.safetensors")
    for name in ("bias", "linear", "factors"):
        torch.testing.assert_close(getattr(two.model_, name), getattr(one.model_, name),
                                   rtol=0, atol=tolerance)  # fmt: skip
    assert two.history_.records[-1]["valid_auc"] == pytest.approx(
        one.history_.records[-1]["valid_auc"], abs=1e-3
    )
