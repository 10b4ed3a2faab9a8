"""SocketIOSink benchmarks, each next to its floor in the same run (issue 5, point 1).

Against one real receiver subprocess (tests/integration/sio_receiver.py) for the whole module:

- throughput: ``BATCH`` events through ``SocketIOSink`` until all are acknowledged, vs two raw
  python-socketio floors: ``Client.emit`` per event with no ack (what the seed did; the round
  ends when the receiver has counted them all), and one ``Client.call`` carrying the whole batch
  as a list (the transport's floor: one message, one ack, the same orjson codec).
- publisher cost: ``sink.on_next`` while the server is unreachable (the outbox grows) vs a plain
  ``list.append``.

Every round checks delivery (receiver counts, sink stats), so a broken sink cannot post a fast
number; no timing is asserted. Run measured: ``pytest tests/benchmarks/test_socketio.py
--benchmark-only``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rxbus import Event
from rxbus.sinks import SocketIOSink
from tests.benchmarks.conftest import Recorder
from tests.conftest import free_port, wait_until
from tests.integration.sio_receiver import ReceiverProcess

BATCH = 5_000  # events per throughput round, for the sink and both floors
ON_NEXT_BATCH = 10_000  # calls per publisher-cost round

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReceiverProcess]:
    path: Path = tmp_path_factory.mktemp("sio") / "ids.txt"
    with ReceiverProcess(free_port(), path) as proc:
        yield proc


def batch_of_dicts() -> list[dict[str, Any]]:
    return [Event(topic="bench.sio", data={"i": i}).to_dict() for i in range(BATCH)]


def batch_of_events() -> list[Event]:
    return [Event(topic="bench.sio", data={"i": i}) for i in range(BATCH)]


def wait_received(receiver: ReceiverProcess, target: int, timeout: float = 60.0) -> None:
    wait_until(
        lambda: receiver.stats()["received"] >= target,
        timeout,
        f"the receiver to count {target} events",
        interval=0.002,
    )


def test_throughput_floor_raw_emit_per_event(bench: Recorder, receiver: ReceiverProcess) -> None:
    """Floor: python-socketio ``Client.emit`` per event, no acks (nothing would survive a break)."""
    import socketio

    client = socketio.Client(handle_sigint=False)
    client.connect(receiver.url, transports=["websocket"])
    try:

        def round_() -> None:
            target = receiver.stats()["received"] + BATCH
            for d in batch_of_dicts():
                client.emit("publish", d)
            wait_received(receiver, target)

        calls = bench.measure("sio_throughput.floor_emit", round_, ops=BATCH)
    finally:
        client.disconnect()
    assert calls >= 1


def test_throughput_floor_raw_call_one_list(bench: Recorder, receiver: ReceiverProcess) -> None:
    """Floor: the whole batch as one list in one ``Client.call`` (one message, one ack)."""
    import socketio

    from rxbus.sinks.socketio import _packet_class

    client = socketio.Client(handle_sigint=False, serializer=_packet_class())
    client.connect(receiver.url, transports=["websocket"])
    replies: list[Any] = []
    try:
        calls = bench.measure(
            "sio_throughput.floor_call",
            lambda: replies.append(client.call("publish", batch_of_dicts(), timeout=60)),
            ops=BATCH,
        )
    finally:
        client.disconnect()
    assert len(replies) == calls
    assert all(r == {"ok": True, "accepted": BATCH, "duplicates": 0} for r in replies)


def test_throughput_sink(bench: Recorder, receiver: ReceiverProcess) -> None:
    """SocketIOSink: BATCH on_next calls, then flush() until every event is acknowledged."""
    sink = SocketIOSink(receiver.url)
    try:

        def round_() -> None:
            for event in batch_of_events():
                sink.on_next(event)
            assert sink.flush(timeout=60)

        calls = bench.measure("sio_throughput.sink", round_, ops=BATCH)
        stats = sink.stats
    finally:
        sink.close()
    assert stats["acknowledged"] == calls * BATCH
    assert stats["outbox"] == 0
    bench.compare(
        "SocketIOSink acked vs raw emit per event (no acks)",
        subject="sio_throughput.sink",
        floor="sio_throughput.floor_emit",
    )
    bench.compare(
        "SocketIOSink acked vs one raw call of the batch",
        subject="sio_throughput.sink",
        floor="sio_throughput.floor_call",
    )


def test_on_next_floor_list_append(bench: Recorder) -> None:
    """Floor: handing an event to a plain list."""
    event = Event(topic="bench.sio")
    box: list[Event] = []

    def round_() -> None:
        append = box.append
        for _ in range(ON_NEXT_BATCH):
            append(event)

    calls = bench.measure("sio_on_next.floor", round_, ops=ON_NEXT_BATCH)
    assert len(box) == calls * ON_NEXT_BATCH


def test_on_next_while_server_down(bench: Recorder) -> None:
    """``on_next`` never waits on the network: its cost with the server unreachable."""
    event = Event(topic="bench.sio")
    sink = SocketIOSink(f"http://127.0.0.1:{free_port()}", outbox_size=50_000_000)
    try:

        def round_() -> None:
            on_next = sink.on_next
            for _ in range(ON_NEXT_BATCH):
                on_next(event)

        calls = bench.measure("sio_on_next.sink", round_, ops=ON_NEXT_BATCH)
        stats = sink.stats
    finally:
        sink.close(timeout=0.01)
    assert stats["outbox"] == calls * ON_NEXT_BATCH
    assert stats["overflow"] == 0
    bench.compare(
        "SocketIOSink.on_next (server down) vs list.append",
        subject="sio_on_next.sink",
        floor="sio_on_next.floor",
    )
