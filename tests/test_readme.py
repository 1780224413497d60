"""The README's Python examples run as written, in order, so they cannot rot.

With the MovieLens copy absent, the one line that loads it loads the synthetic dataset
instead and everything else runs unchanged.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tests.conftest import REPO_ROOT

MOVIELENS = re.compile(r'load_dataset\("movielens-100k"[^)]*\)')


def readme_program() -> str:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    return "\n".join(re.findall(r"```python\n(.*?)```", text, re.S))


def test_the_python_examples_run(tmp_path, monkeypatch):
    program = readme_program()
    assert "FMClassifier" in program and MOVIELENS.search(program)
    data = Path(os.environ.get("FMADV_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
    if (data / "ml-100k").is_dir():
        monkeypatch.setenv("FMADV_DATA_DIR", str(data))
    else:
        program = MOVIELENS.sub('load_dataset("synthetic")', program)
    monkeypatch.chdir(tmp_path)  # the examples write their files here
    namespace: dict = {}
    exec(compile(program, "README.md", "exec"), namespace)
    assert (tmp_path / "fm.safetensors").is_file()
    assert namespace["same"].get_params() == namespace["model"].get_params()
    assert set(namespace["result"].models.index) == {"fm", "als"}
