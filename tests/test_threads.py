"""CPU threads: the commands' --threads and $FMADV_THREADS, and the default."""

from __future__ import annotations

import os

import pytest
import torch
import typer.main
from typer.testing import CliRunner

from fmadv.cli import app
from fmadv.errors import ConfigError
from fmadv.training import device
from fmadv.training.device import THREADS_ENV, available_cpus, default_threads, use_threads

COMPUTING = ["train", "evaluate", "predict", "robustness", "recommend", "compare-topk",
             "image train", "image evaluate", "image curve"]  # fmt: skip


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("command", COMPUTING)
def test_every_computing_command_takes_threads(command):
    result = CliRunner().invoke(app, [*command.split(), "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "--threads" in result.output
    # Adding the option keeps every other option as declared (names, help).
    click_command = typer.main.get_command(app)
    for name in command.split():
        click_command = click_command.commands[name]
    options = [p for p in click_command.params if p.param_type_name == "option"]
    assert all(option.help for option in options), [o.name for o in options if not o.help]


def test_threads_are_set_before_the_command_runs(tmp_path, monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    args = ["train", "--epochs", "1", "--out", str(tmp_path / "run"), "--quiet"]
    result = CliRunner().invoke(app, [*args, "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == 1


def test_the_environment_sets_them_and_a_bad_value_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "1")
    assert default_threads() == 1
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "missing")])
    assert torch.get_num_threads() == 1  # set, then the missing model is reported
    assert result.exit_code == 2
    monkeypatch.setenv(THREADS_ENV, "many")
    with pytest.raises(ConfigError, match=THREADS_ENV):
        default_threads()
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    with pytest.raises(ConfigError, match="threads"):
        use_threads(0)


def test_the_default_is_the_cpus_this_process_may_use(monkeypatch, tmp_path):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert default_threads() == available_cpus() <= len(os.sched_getaffinity(0))
    # A container's CPU quota caps it: 150000 / 100000 is 1.5 CPUs, so 2 threads.
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")
    real_path = device.Path
    monkeypatch.setattr(
        device, "Path", lambda p: quota if p == "/sys/fs/cgroup/cpu.max" else real_path(p)
    )
    assert available_cpus() == min(2, len(os.sched_getaffinity(0)))
