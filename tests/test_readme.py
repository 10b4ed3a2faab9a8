"""README.md is short, opens with the two Quick start commands, and its Python runs.

Every ```python block runs as written, each in a fresh interpreter. The manual lives in docs/
(tests/docs/test_docs.py runs its examples and builds the site).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.markdown import fenced_blocks, python_blocks

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_readme_is_at_most_8_kb() -> None:
    """A front page, not a manual: the anchors' READMEs are 0.7 to 9.5 KB."""
    assert README.stat().st_size <= 8 * 1024


def test_readme_opens_with_the_two_quick_start_commands() -> None:
    """The first section is Quick start, and its one shell block is `make demo`, `make test`."""
    text = README.read_text(encoding="utf-8")
    sections = re.findall(r"^## (.+)$", text, flags=re.M)
    assert sections[0] == "Quick start"
    quick = text.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", quick, flags=re.S)
    assert block.split("\n")[:-1] == ["make demo", "make test"]


def test_readme_has_install_hello_world_and_docs_links() -> None:
    """pip install with the free distribution name, an extras table, links into docs/."""
    from rxbus._extras import DIST_NAME

    text = README.read_text(encoding="utf-8")
    assert f"pip install {DIST_NAME}\n" in text
    assert "| extra |" in text
    (hello,) = python_blocks(README)
    assert len(hello[1].strip().splitlines()) == 4
    for target in re.findall(r"\]\(((?:docs/)?[\w./-]+\.md)\)", text):
        assert (ROOT / target).is_file(), target


def test_readme_has_no_python_under_another_fence() -> None:
    assert [lang for lang, _, _ in fenced_blocks(README) if lang in {"py", "pycon"}] == []


@pytest.mark.parametrize(("line", "code"), python_blocks(README), ids=lambda v: str(v)[:12])
def test_readme_block_runs(line: int, code: str, tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, f"README.md block at line {line} failed:\n{run.stderr[-3000:]}"
    if "hook.tool" in code:
        assert run.stdout == "hook.tool {'tool': 'Bash'}\n"
