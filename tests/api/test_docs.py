"""Every ```python block of the issue-13 docs pages runs as written, in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_readme import BLOCK

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["async.md", "typed.md", "testing.md"]


def blocks() -> list[tuple[str, int, str]]:
    found = []
    for page in PAGES:
        text = (ROOT / "docs" / page).read_text()
        for m in BLOCK.finditer(text):
            line = text.count("\n", 0, m.start("code")) + 1
            found.append((page, line, m.group("code")))
    return found


def test_every_page_has_examples() -> None:
    assert {page for page, _, _ in blocks()} == set(PAGES)


@pytest.mark.parametrize(("page", "line", "code"), blocks(), ids=lambda v: str(v)[:12])
def test_docs_block_runs(page: str, line: int, code: str, tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, f"docs/{page} block at line {line} failed:\n{run.stderr[-3000:]}"


def test_the_failure_shown_in_testing_md_is_the_real_one() -> None:
    """The ```text output under the failing example is what that example prints."""
    text = (ROOT / "docs" / "testing.md").read_text()
    example = next(code for page, _, code in blocks() if page == "testing.md" and "except" in code)
    shown = text.split("```text\n", 1)[1].split("```", 1)[0]
    run = subprocess.run(
        [sys.executable, "-c", example], capture_output=True, text=True, timeout=60
    )
    assert run.stdout == shown
