"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """Folder of real dataset copies: ``$FMADV_DATA_DIR``, else ``../shared/data`` beside
    the repository; the test is skipped when neither exists."""
    env = os.environ.get("FMADV_DATA_DIR")
    folder = Path(env) if env else REPO_ROOT.parent / "shared" / "data"
    if not folder.is_dir():
        pytest.skip(f"real datasets not available ({folder}); set FMADV_DATA_DIR to run")
    return folder


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for modules of tiny tensors: a second thread only adds
    synchronisation, which costs more than the ops themselves on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# The small synthetic catalogue every recommender's contract tests run on.
from tests.recommender_contract import interactions  # noqa: E402, F401
