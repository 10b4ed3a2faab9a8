"""The writer thread behind JsonlSink and SQLiteStore: batching, flush, backpressure, stop."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from rxbus.errors import BufferOverflowError
from rxbus.sinks._batch import BatchWriter, SinkClosedError


class Recorder:
    """A ``write`` that records batches and can be held shut to simulate a stalled disk."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.open = threading.Event()
        self.open.set()
        self.entered = threading.Event()

    def write(self, batch: list[Any]) -> None:
        self.entered.set()
        self.open.wait(30)
        self.batches.append(batch)

    @property
    def items(self) -> list[Any]:
        return [x for b in self.batches for x in b]


def make(recorder: Recorder, failures: list[Any] | None = None, **kwargs: Any) -> BatchWriter:
    def on_failure(batch: list[Any], err: BaseException) -> None:
        (failures if failures is not None else []).append((batch, err))

    return BatchWriter("test", recorder.write, on_failure, **kwargs)


def test_items_are_written_in_order_in_batches() -> None:
    rec = Recorder()
    writer = make(rec, max_batch=100)
    rec.open.clear()
    writer.put(-1)
    assert rec.entered.wait(10)  # the writer holds item -1 while 1,000 more pile up
    for i in range(1_000):
        writer.put(i)
    rec.open.set()
    assert writer.flush(10)
    assert rec.items == [-1, *range(1_000)]
    assert all(len(b) <= 100 for b in rec.batches)
    assert len(rec.batches) <= 1 + 1_000 // 100 + 1
    assert writer.stop() == 0


def test_flush_waits_only_for_items_put_before_it() -> None:
    """flush() returns once earlier items are written, even while the writer is stalled on
    nothing else; with the writer stalled it times out and says so."""
    rec = Recorder()
    writer = make(rec)
    rec.open.clear()
    writer.put("a")
    assert rec.entered.wait(10)
    assert writer.flush(timeout=0.05) is False
    rec.open.set()
    assert writer.flush(timeout=10) is True
    assert rec.items == ["a"]
    writer.stop()


def test_a_failing_write_reports_the_batch_and_the_writer_goes_on() -> None:
    failures: list[Any] = []
    calls = []

    def write(batch: list[Any]) -> None:
        calls.append(list(batch))
        if "bad" in batch:
            raise OSError("disk full")

    writer = BatchWriter("t", write, lambda b, e: failures.append((b, e)), max_batch=1)
    for item in ["ok1", "bad", "ok2"]:
        writer.put(item)
    assert writer.flush(10)
    assert [b for b, _ in failures] == [["bad"]]
    assert calls == [["ok1"], ["bad"], ["ok2"]]
    writer.stop()


def test_full_queue_waits_for_room_then_proceeds() -> None:
    """Backpressure: put() blocks while max_pending items wait and continues once the writer
    makes room, so nothing is refused when the disk only pauses."""
    rec = Recorder()
    writer = make(rec, max_pending=5, put_timeout=10)
    rec.open.clear()
    writer.put(0)
    assert rec.entered.wait(10)
    for i in range(1, 6):
        writer.put(i)  # fills the queue
    released = threading.Timer(0.1, rec.open.set)
    released.start()
    started = time.monotonic()
    writer.put(6)  # waits until the writer drains
    assert time.monotonic() - started > 0.05
    assert writer.flush(10)
    assert rec.items == list(range(7))
    writer.stop()


def test_full_queue_refuses_after_put_timeout() -> None:
    rec = Recorder()
    writer = make(rec, max_pending=3, put_timeout=0.05)
    rec.open.clear()
    writer.put(0)
    assert rec.entered.wait(10)
    for i in range(1, 4):
        writer.put(i)
    with pytest.raises(BufferOverflowError, match=r"test: 3 events waiting .*max_pending=3"):
        writer.put(4)
    rec.open.set()
    assert writer.flush(10)
    assert rec.items == [0, 1, 2, 3]
    writer.stop()


def test_stop_writes_the_queue_and_refuses_later_puts() -> None:
    rec = Recorder()
    writer = make(rec)
    for i in range(100):
        writer.put(i)
    assert writer.stop(timeout=10) == 0
    assert rec.items == list(range(100))
    assert not writer.alive
    with pytest.raises(SinkClosedError, match="closed"):
        writer.put(100)
    assert writer.flush(0.01) is True  # nothing left to wait for


def test_stop_reports_what_it_could_not_write_in_time() -> None:
    rec = Recorder()
    writer = make(rec)
    rec.open.clear()
    writer.put("held")
    assert rec.entered.wait(10)
    writer.put("queued")
    assert writer.stop(timeout=0.05) == 1
    rec.open.set()
