"""``fsync="always"``: an event is on disk when ``on_next`` returns (issue 12, item 5).

A child process publishes through a bus into the sink and prints each event's id once
``publish`` (and so the sink's ``on_next``) has returned; the parent SIGKILLs it mid-stream and
then finds every printed id in the file. Group commit: events from many threads share fsyncs.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rxbus.event import Event
from rxbus.sinks import JsonlSink, SQLiteStore, read_jsonl
from tests.integration.serve_process import ROOT, child_env

pytestmark = pytest.mark.timeout(120)

CHILD = """
import sys
from rxbus import EventBus
from rxbus.sinks import JsonlSink, SQLiteStore

kind, path = sys.argv[1], sys.argv[2]
sink = JsonlSink(path, fsync="always") if kind == "jsonl" else SQLiteStore(path, fsync="always")
bus = EventBus(name="durable")
bus.subscribe(sink)
n = 0
while True:
    event = bus.publish("durable.ev", {"n": n, "pad": "x" * 200})
    sys.stdout.write(event.id + "\\n")
    sys.stdout.flush()
    n += 1
"""


def stored_ids(kind: str, path: Path) -> set[str]:
    if kind == "jsonl":
        return {e.id for e in read_jsonl(path)}
    with SQLiteStore(path, readonly=True) as store:
        return {e.id for e in store.query()}


@pytest.mark.parametrize("kind", ["jsonl", "sqlite"])
@pytest.mark.parametrize("after", [50, 400])
def test_every_event_a_publisher_saw_accepted_survives_sigkill(
    tmp_path: Path, kind: str, after: int
) -> None:
    path = tmp_path / ("events.jsonl" if kind == "jsonl" else "events.db")
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, kind, str(path)],
        stdout=subprocess.PIPE,
        env=child_env(),
        cwd=ROOT,
    )
    assert proc.stdout is not None
    printed: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while len(printed) < after and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            printed.append(line.decode().strip())
        assert len(printed) >= after, f"child printed {len(printed)} ids (exit {proc.poll()})"
        proc.send_signal(signal.SIGKILL)
        # Ids printed after we stopped reading were accepted too: they must be on disk as well.
        printed += [line.decode().strip() for line in proc.stdout.read().splitlines() if line]
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    complete = [i for i in printed if len(i) == 30]  # the very last line may be cut off
    missing = set(complete) - stored_ids(kind, path)
    assert not missing, f"{len(missing)} of {len(complete)} accepted events lost"


@pytest.mark.parametrize("kind", ["jsonl", "sqlite"])
def test_threads_share_fsyncs_and_every_event_is_synced(tmp_path: Path, kind: str) -> None:
    """Eight threads publishing at once: every event durable on return, fewer fsyncs than events."""
    path = tmp_path / ("events.jsonl" if kind == "jsonl" else "events.db")
    sink: JsonlSink | SQLiteStore = (
        JsonlSink(path, fsync="always") if kind == "jsonl" else SQLiteStore(path, fsync="always")
    )
    returned: list[str] = []
    lock = threading.Lock()
    gate = threading.Barrier(8)

    def publisher(k: int) -> None:
        gate.wait()
        for n in range(100):
            event = Event(topic="group.ev", data={"k": k, "n": n})
            sink.on_next(event)
            with lock:
                returned.append(event.id)

    threads = [threading.Thread(target=publisher, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with sink:
        stats = sink.stats
        assert stored_ids(kind, path) >= set(returned) and len(returned) == 800
        assert stats["batches"] < 800  # group commit: one fsync for every event waiting
        assert stats["errors"] == 0 and stats["pending"] == 0
        if kind == "jsonl":
            assert stats["synced"] == 800
