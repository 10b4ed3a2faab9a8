"""Run every ```python block of one Markdown page, in order, in one namespace.

``python tests/docs/run_page.py PAGE.md`` exits non-zero at the first block that raises; the
traceback names the page and the line in it, because each block is compiled at its own line.
The repository is not put on ``sys.path``: the blocks see what a user's program sees.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def _python_blocks(page: Path) -> list[tuple[int, str]]:
    spec = importlib.util.spec_from_file_location(
        "_docs_markdown", Path(__file__).with_name("markdown.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.python_blocks(page))


def main(page: str) -> int:
    """Execute the page's blocks; print how many ran."""
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
    namespace: dict[str, object] = {"__name__": "__main__"}
    blocks = _python_blocks(Path(page))
    for line, code in blocks:
        exec(compile("\n" * (line - 1) + code, page, "exec"), namespace)
    print(f"ran {len(blocks)} blocks of {page}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
