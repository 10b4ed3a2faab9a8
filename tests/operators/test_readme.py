"""Every ```python block of docs/readme/operators.md runs as written, in a fresh process."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "readme" / "operators.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_section_has_an_example_per_family() -> None:
    """Routing, transforming, grouping, flow control, failure handling, repeats, observing."""
    assert len(BLOCKS) >= 8
    text = "\n".join(BLOCKS)
    for name in (
        "topic", "of_type", "where", "transform", "enrich", "batch", "backpressure",
        "rate_limit", "retry", "circuit_breaker", "dedupe", "measure",
    ):  # fmt: skip
        assert f"ops.{name}(" in text, name


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_code_block_runs(index: int, tmp_path: Path) -> None:
    """The block exits 0 (its own asserts check what it claims)."""
    script = tmp_path / f"block{index}.py"
    script.write_text(BLOCKS[index], encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"block {index}:\n{BLOCKS[index]}\n{proc.stdout}\n{proc.stderr}"
