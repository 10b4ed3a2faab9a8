"""Every ```python block in README.md runs as written, each in a fresh interpreter.

A block preceded by ``<!-- requires: NAME -->`` needs that binary: it is skipped locally
(failed under CI=true) when ``NAME`` is missing, like any other test that needs it. A block
preceded by ``<!-- readme-test: elsewhere (test module) -->`` is a listing that another test
runs with the server it needs; it is not collected here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_binary

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(
    r"(?:<!-- (?:requires: (?P<req>[\w.-]+)|readme-test: (?P<elsewhere>elsewhere)[^>]*) -->"
    r"\s*\n)?```python\n(?P<code>.*?)```",
    re.S,
)


def blocks() -> list[tuple[int, str | None, str]]:
    text = (ROOT / "README.md").read_text()
    found = []
    for m in BLOCK.finditer(text):
        if m.group("elsewhere"):
            continue
        line = text.count("\n", 0, m.start("code")) + 1
        found.append((line, m.group("req"), m.group("code")))
    return found


def test_readme_has_python_examples() -> None:
    assert len(blocks()) >= 3


@pytest.mark.parametrize(("line", "requires", "code"), blocks(), ids=lambda v: str(v)[:12])
def test_readme_block_runs(line: int, requires: str | None, code: str, tmp_path: Path) -> None:
    if requires:
        require_binary(requires)
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, f"README.md block at line {line} failed:\n{run.stderr[-3000:]}"
