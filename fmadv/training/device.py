"""Device selection (CUDA when there is a GPU, the CPU otherwise, the same code) and the
CPU threads a run uses."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from fmadv.checks import env_integer, integer
from fmadv.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available; ``"cpu"`` and ``"cuda[:i]"`` are taken as asked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; expected auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is available")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device {name!r}; expected auto, cpu or cuda")
    return device


#: Environment variable that sets the CPU threads of the commands and benchmarks.
THREADS_ENV = "FMADV_THREADS"


def available_cpus() -> int:
    """The CPUs this process may run on: its affinity set, capped by a cgroup (v2) CPU
    quota, which a container on a large machine often has and torch does not read."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def default_threads() -> int:
    """``$FMADV_THREADS`` when set, else :func:`available_cpus`."""
    return env_integer(THREADS_ENV, available_cpus())


def use_threads(threads: int | None = None) -> int:
    """Set torch's CPU threads (intra-op) to ``threads``, default :func:`default_threads`;
    returns the number set. torch's own default is the machine's cores, which on a
    shared machine or in a container multiplies the CPU time a run costs."""
    threads = default_threads() if threads is None else integer("threads", threads, 1)
    torch.set_num_threads(threads)
    return threads
