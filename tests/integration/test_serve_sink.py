"""``SocketIOSink`` (the other end of the wire protocol) delivering into ``rxbus serve``."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from rxbus.event import Event
from tests.conftest import wait_until
from tests.integration.serve_process import ServeProcess

pytestmark = pytest.mark.timeout(120)


def test_sink_into_serve_across_a_crash_stores_each_event_once(tmp_path: Path) -> None:
    """The sink resends what the killed server did not acknowledge; serve drops the repeats."""
    from rxbus.sinks import SocketIOSink

    server = ServeProcess(tmp_path, token="sink-token").start()
    events = [Event(topic="sink.ev", data={"n": n}) for n in range(3000)]
    sink = SocketIOSink(server.url, token="sink-token", batch_size=100, ack_timeout=2.0)
    try:
        for event in events[:1500]:
            sink.on_next(event)
        wait_until(lambda: sink.stats["acknowledged"] >= 500, 30, "the first 500 acks")
        server.stop(signal.SIGKILL)  # mid-stream: some batches in flight, unacknowledged
        for event in events[1500:]:
            sink.on_next(event)  # into the outbox while the server is down
        server.start()
        assert sink.flush(timeout=60), sink.stats
    finally:
        sink.close()
        server.stop()
    stored = [e for e in server.stored() if e.topic == "sink.ev"]
    assert len(stored) == len({e.id for e in stored}) == len(events)
    assert {e.id for e in stored} == {e.id for e in events}
