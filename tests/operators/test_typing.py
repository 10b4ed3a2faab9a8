"""Typing: mypy infers a chain's element type through every operator.

(As with reactivex's own operators, a lambda inside ``pipe(...)`` is not inferred by mypy; the
snippet uses named functions, as the Operators docs page advises.)

mypy cannot follow the editable install's mapping of ``operators/`` to ``rxbus.operators``, so
the test lays the package out as a wheel would (``rxbus/operators`` next to the core modules,
by symlinks) and type-checks a snippet against it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SNIPPET = """
import reactivex
from reactivex import Observable
import rxbus.operators as ops
from rxbus import Event, RetryPolicy

events: Observable[Event] = reactivex.empty()

def is_tool(e: Event) -> bool:
    return e.type == "tool"

def size(e: Event) -> int:
    return len(e.data)

def label(n: int) -> str:
    return str(n)

def event_id(e: Event) -> str:
    return e.id

def positive(n: int) -> bool:
    return n > 0

reveal_type(events.pipe(ops.topic("hook.*"), ops.where(is_tool), ops.transform(size)))
reveal_type(events.pipe(ops.topic("hook.*"), ops.transform(size), ops.batch(1.0, 10)))
reveal_type(events.pipe(
    ops.of_type("PreToolUse"), ops.enrich(host="x"), ops.dedupe(), ops.dedupe(event_id),
    ops.rate_limit(5), ops.measure("m"), ops.backpressure(10),
))
reveal_type(events.pipe(
    ops.transform(size), ops.retry(label, RetryPolicy()), ops.circuit_breaker(str.upper, 3, 1.0),
))
objects: Observable[object] = reactivex.empty()
reveal_type(objects.pipe(ops.of_type(int), ops.where(positive)))
bad = events.pipe(ops.transform(size), ops.where(is_tool))
"""

EXPECTED = [
    "Observable[int]",
    "Observable[list[int]]",
    "Observable[rxbus.event.Event]",
    "Observable[str]",
    "Observable[int]",
]


def wheel_layout(tmp: Path) -> Path:
    """``tmp/site/rxbus`` holding links to the core modules plus ``operators``."""
    pkg = tmp / "site" / "rxbus"
    pkg.mkdir(parents=True)
    for entry in (ROOT / "rxbus").iterdir():
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    (pkg / "operators").symlink_to(ROOT / "operators")
    return tmp / "site"


def test_chains_infer_their_element_types(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each pipe's revealed type is exact, and a type error inside a chain is reported."""
    api = pytest.importorskip("mypy.api")
    monkeypatch.setenv("MYPYPATH", str(wheel_layout(tmp_path)))
    monkeypatch.chdir(tmp_path)
    snippet = tmp_path / "snippet.py"
    snippet.write_text(textwrap.dedent(SNIPPET))
    cache = getattr(request.config, "cache", None)
    cache_dir = cache.mkdir("mypy-operators") if cache is not None else tmp_path / "mypy-cache"
    stdout, stderr, _ = api.run(
        [
            "snippet.py",
            "--follow-imports=silent",
            "--cache-dir",
            str(cache_dir),
            "--config-file",
            "",
        ]
    )
    lines = stdout.splitlines()
    revealed = [ln.split('Revealed type is "')[1].rstrip('"') for ln in lines if "Revealed" in ln]
    assert [r.replace("reactivex.observable.observable.", "") for r in revealed] == EXPECTED, (
        stdout + stderr
    )
    errors = [ln for ln in lines if ": error:" in ln]
    bad_line = (
        textwrap.dedent(SNIPPET)
        .splitlines()
        .index("bad = events.pipe(ops.transform(size), ops.where(is_tool))")
    )
    # The one deliberate mistake: where(is_tool) applied to a stream of int.
    assert len(errors) == 1, stdout
    assert errors[0].startswith(f"snippet.py:{bad_line + 1}:"), stdout
