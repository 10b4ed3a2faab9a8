"""Every ```python block of this issue's docs pages runs, and prints the ```text block after it.

Each block runs alone in a fresh interpreter (the pages promise self-contained examples).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.serve_process import ROOT, child_env

PAGES = ("producers.md", "migrating-from-pyee.md", "tracing.md")
BLOCK = re.compile(r"```python\n(.*?)```(?:\s*```text\n(.*?)```)?", re.DOTALL)


def blocks() -> list[tuple[str, str, str | None]]:
    found = []
    for page in PAGES:
        for n, match in enumerate(BLOCK.finditer((ROOT / "docs" / page).read_text())):
            found.append((f"{page}#{n + 1}", match.group(1), match.group(2)))
    return found


@pytest.mark.parametrize(("where", "code", "expected"), blocks(), ids=[b[0] for b in blocks()])
def test_block_runs_and_prints_what_the_page_says(
    where: str, code: str, expected: str | None, tmp_path: Path
) -> None:
    """The block exits 0; when the page shows its output, that is what it prints."""
    env = child_env()
    env.pop("RXBUS_URL", None)
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, f"{where}:\n{result.stderr}"
    if expected is not None:
        assert result.stdout == expected, f"{where} printed:\n{result.stdout}"


def test_every_page_has_a_runnable_block() -> None:
    """Each page of the issue carries at least one example that runs."""
    assert {where.split("#")[0] for where, _, _ in blocks()} == set(PAGES)
