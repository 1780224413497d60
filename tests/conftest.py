"""Shared test fixtures."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from fmadv.data import get_card

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


@pytest.fixture(scope="session")
def dataset_dir(shared_data_dir: Path) -> Callable[..., Path]:
    """``dataset_dir(name, *files)``: the folder of the shared copy of dataset ``name``
    (a card name, e.g. ``"movielens-100k"``). The test is skipped when the folder lacks
    one of ``files`` (default: every file the card lists), so a data directory holding
    only some datasets, or part of one, runs the tests it can."""

    def folder_of(name: str, *files: str) -> Path:
        card = get_card(name)
        folder = shared_data_dir / card.folder
        if not folder.is_dir():
            pytest.skip(f"{name} not available (no folder {folder})")
        missing = [f for f in files or card.files if not (folder / f).is_file()]
        if missing:
            shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
            pytest.skip(f"{name} is not complete in {folder} (missing {shown})")
        return folder

    return folder_of


@pytest.fixture(scope="session")
def data_dir_with(shared_data_dir: Path, dataset_dir: Callable[..., Path]) -> Callable[..., Path]:
    """``data_dir_with(name, *files)``: the data directory itself (for ``load_dataset`` and
    ``--data-dir``), skipping the test as :func:`dataset_dir` does."""

    def data_dir(name: str, *files: str) -> Path:
        dataset_dir(name, *files)
        return shared_data_dir

    return data_dir


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
