"""The fenced code blocks of a Markdown file: one home for the README and the docs tests."""

from __future__ import annotations

import re
from pathlib import Path

FENCE = re.compile(r"^```(?P<lang>[^\s`]*)[^\n]*\n(?P<code>.*?)^```\s*$", re.S | re.M)


def fenced_blocks(path: Path) -> list[tuple[str, int, str]]:
    """``(language, first code line (1-based), code)`` for every fenced block of ``path``."""
    text = path.read_text(encoding="utf-8")
    return [
        (m.group("lang"), text.count("\n", 0, m.start("code")) + 1, m.group("code"))
        for m in FENCE.finditer(text)
    ]


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """``(first code line, code)`` of every ```python block of ``path``, in order."""
    return [(line, code) for lang, line, code in fenced_blocks(path) if lang == "python"]
