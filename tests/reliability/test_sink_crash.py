"""A process writing events is SIGKILLed mid-stream: what it reported as fsynced reads back intact.

The child writes events ``{"i": 0, 1, 2, ...}`` through a real ``JsonlSink`` (rotating every
~64 KB) or ``SQLiteStore`` with ``fsync="batch"``; after each ``flush()`` returns it prints how
many events are durable. The parent kills it with SIGKILL while it keeps writing, then reads the
files back: every event below the last printed count must be there, intact, once, in order, and
what follows it must be a gapless continuation (a torn last line may be skipped, nothing else).
Then a new writer reopens the same file and appends; nothing before or after is lost.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from rxbus import Event
from rxbus.sinks import JsonlSink, SQLiteStore, read_jsonl

REPO = Path(__file__).resolve().parents[2]

CHILD = r"""
import sys, threading, time
from rxbus import Event
from rxbus.sinks import JsonlSink, SQLiteStore

kind, path = sys.argv[1], sys.argv[2]
if kind == "jsonl":
    sink = JsonlSink(path, fsync="batch", max_bytes=64_000, keep=None)
else:
    sink = SQLiteStore(path, fsync="batch")
handed = reported = 0

def report():
    # Every event below `n` was handed over before flush() started, so once flush() returns
    # they are written and fsynced. The main thread keeps writing meanwhile.
    global reported
    while True:
        n = handed
        if sink.flush(timeout=30):
            reported = n
            print(n, flush=True)
        time.sleep(0.005)

threading.Thread(target=report, daemon=True).start()
while True:
    for _ in range(100):
        sink.on_next(Event(topic="crash.test", data={"i": handed, "pad": "x" * 100}))
        handed += 1
    while handed - reported > 20_000:  # stay a bounded distance ahead of the disk
        time.sleep(0.001)
"""

REPORTS_BEFORE_KILL = 6


def run_and_kill(kind: str, path: Path) -> int:
    """Start the writer, SIGKILL it after some durable reports; return the last durable count."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, kind, str(path)],
        stdout=subprocess.PIPE,
        cwd=REPO,
        text=True,
    )
    durable = 0
    try:
        assert child.stdout is not None
        for _ in range(REPORTS_BEFORE_KILL):
            line = child.stdout.readline()
            assert line, f"writer exited early with code {child.poll()}"
            durable = int(line)
        # Kill while it is still writing, at a random point of its write cycle.
        time.sleep(random.uniform(0, 0.02))
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        # Reports printed before the kill landed also count as durable.
        for line in child.stdout:
            durable = int(line)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    return durable


def assert_prefix(numbers: list[int], durable: int) -> None:
    assert len(numbers) >= durable, f"only {len(numbers)} of {durable} durable events read back"
    assert numbers == list(range(len(numbers))), "events out of order, duplicated or missing"


@pytest.mark.timeout(120)
def test_jsonl_writer_killed_mid_stream(tmp_path: Path) -> None:
    path = tmp_path / "crash.jsonl"
    durable = run_and_kill("jsonl", path)
    assert durable > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a torn last line is allowed (and skipped)
        events = list(read_jsonl(path))
    assert len(list(path.parent.glob("crash.jsonl.*"))) >= 1  # it rotated before the crash
    assert all(e.data["pad"] == "x" * 100 for e in events)
    assert_prefix([e.data["i"] for e in events], durable)

    # A new writer on the same file appends after whatever survived.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sink = JsonlSink(path, max_bytes=64_000, keep=None)
    with sink:
        for i in range(len(events), len(events) + 50):
            sink.on_next(Event(topic="crash.test", data={"i": i, "pad": "x" * 100}))
    after = [e.data["i"] for e in read_jsonl(path)]
    assert after == list(range(len(events) + 50))


@pytest.mark.timeout(120)
def test_sqlite_writer_killed_mid_stream(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    durable = run_and_kill("sqlite", path)
    assert durable > 0
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with SQLiteStore(path) as store:
        events = store.query()
        assert all(e.data["pad"] == "x" * 100 for e in events)
        assert_prefix([e.data["i"] for e in events], durable)
        # The store keeps working after the crash.
        extra = [Event(topic="crash.after", data={"i": n}) for n in range(50)]
        for e in extra:
            store.on_next(e)
        store.flush()
        assert store.query("crash.after") == extra
        assert store.count("crash.test") == len(events)
