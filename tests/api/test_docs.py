"""The failure message docs/testing.md shows is the one its example prints (every python block
of every docs page runs in tests/docs/test_docs.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^```python\n(?P<code>.*?)^```", re.S | re.M)


def test_the_failure_shown_in_testing_md_is_the_real_one() -> None:
    """The ```text output under the failing example is what that example prints."""
    text = (ROOT / "docs" / "testing.md").read_text()
    example = next(m.group("code") for m in BLOCK.finditer(text) if "except" in m.group("code"))
    shown = text.split("```text\n", 1)[1].split("```", 1)[0]
    run = subprocess.run(
        [sys.executable, "-c", example], capture_output=True, text=True, timeout=60
    )
    assert run.stdout == shown
