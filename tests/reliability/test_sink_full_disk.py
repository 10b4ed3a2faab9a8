"""A disk that fills up under the sinks: every event is either stored or a counted dead letter,
the bus keeps running, and a sink that is not writing to the full disk loses nothing.

The child process lowers its own ``RLIMIT_FSIZE`` to 256 KB, so every write past that size fails
in the kernel (``EFBIG``), as a full disk would; SQLite reports it as "database or disk is full".
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rxbus.sinks import SQLiteStore, read_jsonl

REPO = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, resource, signal, sys
from rxbus import EventBus
from rxbus.sinks import JsonlSink, SQLiteStore

directory = sys.argv[1]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG from write() instead of dying
resource.setrlimit(resource.RLIMIT_FSIZE, (256_000, resource.RLIM_INFINITY))
letters = {"sqlite": [], "jsonl": []}
store = SQLiteStore(f"{directory}/full.db", dead_letters=letters["sqlite"].append, max_batch=200)
jsonl = JsonlSink(f"{directory}/full.jsonl", dead_letters=letters["jsonl"].append, max_batch=200)
memory = []
bus = EventBus()
bus.subscribe(store, name="store")
bus.subscribe(jsonl, name="jsonl")
bus.subscribe(memory.append, name="memory")
N = 5_000
for i in range(N):
    bus.publish("fill.up", {"i": i, "pad": "x" * 200})
store.flush(timeout=30)
jsonl.flush(timeout=30)
metrics = bus.metrics()
undelivered = bus.close()
print(json.dumps({
    "published": N,
    "memory": [e.data["i"] for e in memory],
    "consumers": {k: metrics["consumers"][k] for k in ("store", "jsonl", "memory")},
    "lost": {k: sorted(dl.event.data["i"] for dl in v) for k, v in letters.items()},
    "errors": {k: sorted({str(dl.error) for dl in v}) for k, v in letters.items()},
    "undelivered": len(undelivered),
}))
"""


@pytest.mark.timeout(120)
def test_filling_disk_gives_counted_dead_letters_and_loses_nothing_else(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    n = report["published"]

    # The bus kept running: every consumer got every event; no sink raised into it.
    for name in ("store", "jsonl", "memory"):
        consumer = report["consumers"][name]
        assert consumer["delivered"] == n and consumer["failed"] == 0, name
    assert report["memory"] == list(range(n))
    assert report["undelivered"] == 0

    # SQLite: stored + dead-lettered == published, with the "full" error named.
    with SQLiteStore(tmp_path / "full.db", readonly=True) as store:
        stored = [e.data["i"] for e in store.query()]
    lost = report["lost"]["sqlite"]
    assert lost, "the store never hit the size limit"
    assert sorted(stored + lost) == list(range(n))
    # SQLite words EFBIG as "disk I/O error" (ENOSPC as "database or disk is full").
    assert all(
        e.startswith("cannot store") and "full.db" in e and "disk" in e
        for e in report["errors"]["sqlite"]
    ), report["errors"]["sqlite"]
    sqlite_sink = report["consumers"]["store"]["sink"]
    assert sqlite_sink["errors"] >= 1 and sqlite_sink["written"] == len(stored)

    # JSONL: every line in the file is whole; written + dead-lettered == published.
    written = [e.data["i"] for e in read_jsonl(tmp_path / "full.jsonl")]
    assert (tmp_path / "full.jsonl").stat().st_size <= 256_000
    lost = report["lost"]["jsonl"]
    assert lost
    assert sorted(written + lost) == list(range(n))
    assert any("File too large" in e for e in report["errors"]["jsonl"]), report["errors"]
    assert report["consumers"]["jsonl"]["sink"]["written"] == len(written)
