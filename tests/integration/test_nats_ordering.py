"""What order the NATS bridge keeps: strict with one message in flight, stream order except
redeliveries with more (nats-server #7106)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rxbus import Event
from rxbus.sinks import NatsSink
from rxbus.sources import nats_stream
from tests.conftest import wait_until
from tests.integration.nats_server import NatsServer, running_nats

pytestmark = [pytest.mark.timeout(120)]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    with running_nats(tmp_path) as srv:
        yield srv


def run(server: NatsServer, durable: str, **options: object) -> tuple[list[Event], list[str]]:
    """Publish 20 events, handle them with a handler that fails once on the 4th; return what
    was sent and the ids in the order they were handled successfully."""
    sent = [Event(topic=f"orders.c{i % 3}", data={"i": i}) for i in range(20)]
    with NatsSink(server.url, "ORDERS", create_stream=True) as sink:
        for e in sent:
            sink.on_next(e)
        assert sink.flush(30)
    handled: list[str] = []
    failed_once: set[str] = set()

    def handle(event: Event) -> None:
        if event.id == sent[3].id and event.id not in failed_once:
            failed_once.add(event.id)
            raise RuntimeError("transient")
        handled.append(event.id)

    source = nats_stream(server.url, "ORDERS", durable, nak_delay=0.2, **options)  # type: ignore[arg-type]
    sub = source.subscribe(handle)
    wait_until(lambda: len(handled) == 20, 30, "every event handled")
    sub.dispose()
    assert source.stats["nacked"] == 1
    return sent, handled


def test_one_message_in_flight_keeps_strict_order(server: NatsServer) -> None:
    """With max_ack_pending=1 a failed message blocks the next until it succeeds: the handler
    sees the stream in order, the redelivery included."""
    sent, handled = run(server, "strict", max_ack_pending=1)
    assert handled == [e.id for e in sent]


def test_more_in_flight_keeps_stream_order_except_the_redelivery(server: NatsServer) -> None:
    """With the default max_ack_pending the batch goes on: everything else arrives in stream
    order and the nak-ed message comes back after later ones."""
    sent, handled = run(server, "fast")
    ids = [e.id for e in sent]
    assert handled != ids
    assert [i for i in handled if i != ids[3]] == ids[:3] + ids[4:]
    assert handled.index(ids[3]) > handled.index(ids[4])
