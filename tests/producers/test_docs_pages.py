"""Every ```python block of this issue's docs pages runs, and prints the ```text block after it.

Each block runs alone in a fresh interpreter (the pages promise self-contained examples). The
logging recipe of producers.md also runs with ``RXBUS_URL`` set, against a real ``rxbus serve``,
so its dashboard branch runs too.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.integration.dashboard_watcher import DashboardWatcher
from tests.integration.serve_process import ROOT, ServeProcess, child_env

PAGES = ("producers.md", "migrating-from-pyee.md", "tracing.md")
BLOCK = re.compile(r"```python\n(.*?)```(?:\s*```text\n(.*?)```)?", re.DOTALL)


def blocks() -> list[tuple[str, str, str | None]]:
    found = []
    for page in PAGES:
        for n, match in enumerate(BLOCK.finditer((ROOT / "docs" / page).read_text())):
            found.append((f"{page}#{n + 1}", match.group(1), match.group(2)))
    return found


def run_block(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=child_env(**env),  # child_env leaves out every RXBUS_ variable not given here
        cwd=cwd,
        timeout=60,
    )


@pytest.mark.parametrize(("where", "code", "expected"), blocks(), ids=[b[0] for b in blocks()])
def test_block_runs_and_prints_what_the_page_says(
    where: str, code: str, expected: str | None, tmp_path: Path
) -> None:
    """The block exits 0; when the page shows its output, that is what it prints."""
    result = run_block(code, tmp_path)
    assert result.returncode == 0, f"{where}:\n{result.stderr}"
    if expected is not None:
        assert result.stdout == expected, f"{where} printed:\n{result.stdout}"


def test_every_page_has_a_runnable_block() -> None:
    """Each page of the issue carries at least one example that runs."""
    assert {where.split("#")[0] for where, _, _ in blocks()} == set(PAGES)


@pytest.mark.timeout(120)
def test_logging_recipe_reaches_a_real_server_and_its_dashboard(tmp_path: Path) -> None:
    """producers.md's recipe with RXBUS_URL set: the root logger's two records reach the JSONL
    file (the page's output) and rxbus serve, whose dashboard subscription is sent each once."""
    [(where, code, expected)] = [b for b in blocks() if "LogHandler(bus" in b[1]]
    assert "RXBUS_URL" in code and "JsonlSink" in code, where
    with (
        ServeProcess(tmp_path / "serve") as server,
        DashboardWatcher(server.url, "log.**") as dashboard,
    ):
        result = run_block(code, tmp_path, RXBUS_URL=server.url)
        assert result.returncode == 0, f"{where}:\n{result.stderr}"
        wait_until(lambda: len(dashboard.received) >= 2, 20, "two log events at the dashboard")
        stored = server.history("log.**")
    assert result.stdout == expected
    expected_events = [("log.shop.orders", "INFO"), ("log.shop.stock", "ERROR")]
    assert [(e["topic"], e["type"]) for e in dashboard.received] == expected_events
    assert [(e["topic"], e["type"]) for e in stored] == expected_events
    assert stored[0]["data"]["amount"] == 42.5
    assert stored[1]["data"]["exception"].endswith("KeyError: 'sku'")
