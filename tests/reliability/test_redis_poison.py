"""A poison event ends in the dead-letter stream with its delivery count; the rest flows on."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rxbus import Event
from rxbus.sources import redis_stream
from tests.conftest import child_env, wait_until
from tests.integration.redis_server import RedisServer, running_redis

pytestmark = [pytest.mark.needs_redis, pytest.mark.timeout(120)]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as srv:
        yield srv


def write(client: Any, stream: str, events: list[Event]) -> None:
    for e in events:
        client.xadd(stream, {"id": e.id, "topic": e.topic, "event": e.to_json()})


def test_an_event_that_always_fails_is_dead_lettered_with_its_count(server: RedisServer) -> None:
    """A handler raising on one event: it is retried max_deliveries times, then moved to
    '<stream>:dead' with deliveries = max_deliveries + 1, and the original is acked."""
    client = server.client()
    events = [Event(topic="orders.created", data={"i": i}) for i in range(10)]
    poison = events[4] = Event(topic="orders.created", data={"i": 4, "poison": True})
    write(client, "orders", events)
    attempts: list[str] = []
    handled: list[str] = []

    def handle(event: Event) -> None:
        attempts.append(event.id)
        if event.data.get("poison"):
            raise ValueError("cannot parse this order")
        handled.append(event.id)

    source = redis_stream(
        server.url,
        "orders",
        "billing",
        "worker-1",
        block=0.05,
        claim_idle=0.1,
        claim_interval=0.05,
        max_deliveries=3,
    )
    sub = source.subscribe(handle)
    wait_until(lambda: client.exists("orders:dead") == 1, 30, "the dead-letter stream")
    wait_until(lambda: client.xpending("orders", "billing")["pending"] == 0, 10, "no pending")
    sub.dispose()

    ((_, letter),) = client.xrange("orders:dead")
    assert letter[b"id"].decode() == poison.id
    assert Event.from_json(letter[b"event"]) == poison
    assert int(letter[b"deliveries"]) == 4
    assert letter[b"group"] == b"billing"
    assert letter[b"stream"] == b"orders"
    assert b"max_deliveries=3" in letter[b"reason"]
    assert attempts.count(poison.id) == 3  # tried max_deliveries times, never a 4th
    assert sorted(handled) == sorted(e.id for e in events if e is not poison)
    assert source.stats["dead_lettered"] == 1
    assert source.stats["failed"] == 3
    client.close()


def test_an_event_that_crashes_its_process_is_dead_lettered(
    server: RedisServer, tmp_path: Path
) -> None:
    """A poison event that kills the consumer process each time: every restart re-reads it
    first (delivery count + 1), and past max_deliveries it goes to the dead-letter stream."""
    client = server.client()
    events = [Event(topic="orders.created", data={"i": i}) for i in range(5)]
    poison = Event(topic="orders.poison", data={"i": 99})
    write(client, "orders", [*events[:2], poison, *events[2:]])
    handled_file = tmp_path / "handled.ids"
    cmd = [
        sys.executable, "-m", "tests.reliability.redis_workers", "consume",
        server.url, "orders", "billing", "worker-1", str(handled_file),
        "--crash-on-topic", "orders.poison", "--max-deliveries", "2", "--claim-idle", "3600",
    ]  # fmt: skip
    exits = []
    for _ in range(3):  # deliveries 1 and 2 crash the process; the 3rd start dead-letters it
        proc = subprocess.Popen(cmd, env=child_env(), stdin=subprocess.DEVNULL)
        try:
            code = proc.wait(30) if len(exits) < 2 else None
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            wait_until(lambda: client.exists("orders:dead") == 1, 30, "the dead-letter stream")
            wait_until(lambda: client.xpending("orders", "billing")["pending"] == 0, 10, "acks")
            proc.terminate()
            assert proc.wait(30) == 0
        exits.append(code)
    assert exits == [3, 3, None]  # crashed twice, then dead-lettered it and lived on
    ((_, letter),) = client.xrange("orders:dead")
    assert letter[b"id"].decode() == poison.id
    assert int(letter[b"deliveries"]) == 3
    handled = handled_file.read_text().split()
    assert sorted(set(handled)) == sorted(e.id for e in events)
    client.close()
