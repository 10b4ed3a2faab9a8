"""``rxbus demo`` and ``rxbus --help`` as a user runs them: real processes."""

from __future__ import annotations

import subprocess
import sys

import orjson


def rxbus(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rxbus", *args], capture_output=True, text=True, timeout=120
    )


def test_demo_runs_on_the_embedded_bus_and_accounts_for_every_event() -> None:
    run = rxbus("demo", "--events", "1000")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "5 producer threads published 5,000 events" in out
    for consumer in ("audit-log", "flaky-hooks", "build-batches", "slow-agent-ui", "dashboard"):
        assert consumer in out
    assert "NO" not in out and out.count("yes") == 5
    assert "undelivered at close: 0" in out


def test_demo_json_shows_failures_drops_and_conservation() -> None:
    run = rxbus("demo", "--events", "2000", "--json")
    assert run.returncode == 0, run.stderr
    m = orjson.loads(run.stdout)
    assert m["published"] == 10_000
    c = m["consumers"]
    assert c["audit-log"]["delivered"] == 10_000
    assert c["flaky-hooks"]["failed"] > 0 and c["flaky-hooks"]["failed"] == m["dead_lettered"]
    for entry in c.values():
        assert entry["received"] == (
            entry["delivered"] + entry["failed"] + entry["dropped"] + entry["queued"]
        )


def test_help_is_useful() -> None:
    top = rxbus("--help")
    assert top.returncode == 0 and "demo" in top.stdout
    demo = rxbus("demo", "--help")
    assert demo.returncode == 0 and "--events" in demo.stdout and "No server needed" in demo.stdout


def test_bad_arguments_are_one_line_and_nonzero() -> None:
    run = rxbus("demo", "--events", "0")
    assert run.returncode == 2
    assert run.stderr.strip() == "rxbus demo: error: --events must be >= 1, got 0"
