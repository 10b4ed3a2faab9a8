"""The docs site: every ```python block of every page runs, and the site builds strictly.

Each page runs in a fresh interpreter (a fresh namespace), its blocks in order in one namespace,
in a temporary working directory. Nothing is skipped: a listing that needs a server is fenced
as ```bash or ```text, never as Python that is not run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import unmeasured
from tests.docs.markdown import fenced_blocks, python_blocks

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
RUNNER = Path(__file__).with_name("run_page.py")
# Fences a reader would take for Python: only ```python is executed, so no other spelling.
PYTHON_ALIASES = {"py", "python3", "pycon", "ipython", "py3"}


def pages_with_code() -> list[Path]:
    return [page for page in PAGES if python_blocks(page)]


def test_the_docs_have_runnable_examples() -> None:
    """Getting started, concepts, operators and sinks all show code that runs."""
    names = {p.relative_to(DOCS).as_posix() for p in pages_with_code()}
    assert {"getting-started.md", "concepts.md", "operators.md", "sinks.md"} <= names
    assert sum(len(python_blocks(p)) for p in PAGES) >= 25


def test_no_python_block_hides_under_another_name() -> None:
    """A Python example is fenced ```python (and so runs); none is left out as ```py."""
    hidden = [
        f"{page.relative_to(ROOT)}:{line}"
        for page in PAGES
        for lang, line, _ in fenced_blocks(page)
        if lang.lower() in PYTHON_ALIASES
    ]
    assert hidden == []


@pytest.mark.timeout(300)
@pytest.mark.parametrize("page", pages_with_code(), ids=lambda p: p.relative_to(DOCS).as_posix())
def test_page_examples_run(page: Path, tmp_path: Path) -> None:
    """The page's blocks run top to bottom, as a reader would paste them."""
    run = subprocess.run(
        [sys.executable, str(RUNNER), str(page)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert run.returncode == 0, f"{page.relative_to(ROOT)} failed:\n{run.stderr[-4000:]}"
    assert f"ran {len(python_blocks(page))} blocks" in run.stderr


@pytest.mark.timeout(300)
def test_site_builds_strictly(tmp_path: Path) -> None:
    """``mkdocs build --strict``: no broken link or anchor, no page outside the nav, the API
    reference collected from the docstrings."""
    # unmeasured: mkdocstrings imports rxbus for its docstrings and runs none of it
    env = unmeasured({**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for anchor in (
        "rxbus.bus.EventBus.publish", "operators.batch", "sinks.sqlite.SQLiteStore",
        "sinks.socketio.SocketIOSink", "rxbus.sources.redis.redis_stream", "rxbus.testing",
    ):  # fmt: skip
        assert f'id="{anchor}"' in api, anchor
    changelog = (tmp_path / "site" / "changelog" / "index.html").read_text()
    assert "Unreleased" in changelog


def test_logsink_example_prints_each_record_once(tmp_path: Path) -> None:
    """The LogSink example writes exactly the lines the page shows after it, once each."""
    blocks = fenced_blocks(DOCS / "sinks.md")
    index = next(i for i, (lang, _, code) in enumerate(blocks) if "LogSink(" in code)
    (_, _, code), (lang, _, shown) = blocks[index], blocks[index + 1]
    assert lang == "text"
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert (run.stdout, run.stderr) == (shown, "")


def test_cli_reference_lists_every_option() -> None:
    """docs/cli.md has a section per sub-command naming each of its options."""
    from rxbus.cli import build_parser

    text = (DOCS / "cli.md").read_text()
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name, command in sub.choices.items():
        if f"## `rxbus {name}`" not in text:
            missing.append(name)
        for action in command._actions:
            missing += [f"{name} {opt}" for opt in action.option_strings if opt not in text]
    assert missing == []
