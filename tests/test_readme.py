"""The README's Python snippet runs as written (from a folder holding the repository's configs)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)


@pytest.mark.slow
def test_readme_python_snippet_runs(tmp_path):
    """The first Python block is the complete loop; later blocks are fragments of the sections."""
    index = 0
    (tmp_path / "configs").symlink_to(REPO / "configs")
    script = tmp_path / "snippet.py"
    script.write_text(_python_blocks()[index])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "['image', 'audio'] ['image']" in proc.stdout  # grown model, and the base reached with upto=


@pytest.mark.slow
def test_readme_grow_example_runs(tmp_path):
    """The 'Growing an existing checkpoint' commands, as written."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text[text.index("### Growing an existing checkpoint"):], re.S).group(1)
    (tmp_path / "configs").symlink_to(REPO / "configs")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-e", "-c", block], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "runs" / "child" / "checkpoint").glob("stage-*")) == [
        "stage-03-depth.safetensors"]  # the parent's stages are referenced, not copied
