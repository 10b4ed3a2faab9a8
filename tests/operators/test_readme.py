"""The README's Operators section has a runnable example per family.

Running the blocks is tests/test_readme.py's job (every python block of README.md, each in a
fresh process); this module checks that the section covers every operator."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SECTION = README.split("\n## Operators\n", 1)[1].split("\n## ", 1)[0]
BLOCKS = re.findall(r"```python\n(.*?)```", SECTION, flags=re.S)


def test_the_section_has_an_example_per_family() -> None:
    """Routing, transforming, grouping, flow control, failure handling, repeats, observing."""
    assert len(BLOCKS) >= 8
    text = "\n".join(BLOCKS)
    for name in (
        "topic", "of_type", "where", "transform", "enrich", "batch", "backpressure",
        "rate_limit", "retry", "circuit_breaker", "dedupe", "measure",
    ):  # fmt: skip
        assert f"ops.{name}(" in text, name
