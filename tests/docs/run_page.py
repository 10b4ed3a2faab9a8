"""Run every ```python block of one Markdown page, in order, in one namespace.

``python tests/docs/run_page.py PAGE.md`` exits non-zero at the first block that raises; the
traceback names the page and the line in it, because each block is compiled at its own line.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.docs.markdown import python_blocks


def main(page: str) -> int:
    """Execute the page's blocks; print how many ran."""
    namespace: dict[str, object] = {"__name__": "__main__"}
    blocks = python_blocks(Path(page))
    for line, code in blocks:
        exec(compile("\n" * (line - 1) + code, page, "exec"), namespace)
    print(f"ran {len(blocks)} blocks of {page}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
