"""The README's Python examples run as written, in order, so they cannot rot.

With the MovieLens copy absent, the one line that loads it loads the synthetic dataset
instead and everything else runs unchanged.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from fmadv.data import get_card
from fmadv.data.cache import is_complete
from tests.conftest import REPO_ROOT

MOVIELENS = re.compile(r'load_dataset\("movielens-100k"[^)]*\)')


def readme_program() -> str:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    return "\n".join(re.findall(r"```python\n(.*?)```", text, re.S))


def test_the_python_examples_run(tmp_path, monkeypatch):
    program = readme_program()
    assert "FMClassifier" in program and MOVIELENS.search(program)
    data = Path(os.environ.get("FMADV_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
    if is_complete(get_card("movielens-100k"), data):
        monkeypatch.setenv("FMADV_DATA_DIR", str(data))
    else:
        program = MOVIELENS.sub('load_dataset("synthetic")', program)
    monkeypatch.chdir(tmp_path)  # the examples write their files here
    namespace: dict = {}
    exec(compile(program, "README.md", "exec"), namespace)
    assert (tmp_path / "fm.safetensors").is_file()
    assert namespace["same"].get_params() == namespace["model"].get_params()
    assert set(namespace["result"].models.index) == {"ranker", "als"}


TOUR = re.compile(r"## A short tour\n(.*?)\n### Image classifiers", re.S)


def readme_tour() -> str:
    """The bash blocks of the README's tour, in order (``sh`` blocks need user data)."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = TOUR.search(text).group(1)
    return "\n".join(re.findall(r"```bash\n(.*?)```", section, re.S))


def test_the_tour_runs_top_to_bottom(tmp_path):
    script = readme_tour()
    assert script.count("fmadv train") >= 3 and "compare-topk" in script
    # `fmadv` is this interpreter's, whether or not its script is on the PATH.
    prelude = f'set -euo pipefail\nfmadv() {{ "{sys.executable}" -m fmadv "$@"; }}\n'
    env = {**os.environ, "COLUMNS": "100", "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        ["bash", "-c", prelude + script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for produced in ("runs/adv/model.safetensors", "scores.csv", "runs/compare/report.md"):
        assert (tmp_path / produced).is_file(), produced
    assert "Traceback" not in done.stderr
