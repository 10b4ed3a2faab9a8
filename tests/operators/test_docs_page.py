"""The Operators page of the docs has a runnable example per family.

Running the blocks is tests/docs/test_docs.py's job (every python block of every page); this
module checks that the page covers every operator."""

from __future__ import annotations

from pathlib import Path

from tests.docs.markdown import python_blocks

ROOT = Path(__file__).resolve().parents[2]
BLOCKS = [code for _, code in python_blocks(ROOT / "docs" / "operators.md")]


def test_the_page_has_an_example_per_family() -> None:
    """Routing, transforming, grouping, flow control, failure handling, repeats, observing."""
    assert len(BLOCKS) >= 8
    text = "\n".join(BLOCKS)
    for name in (
        "topic", "of_type", "where", "transform", "enrich", "batch", "backpressure",
        "rate_limit", "retry", "circuit_breaker", "dedupe", "measure",
    ):  # fmt: skip
        assert f"ops.{name}(" in text, name
