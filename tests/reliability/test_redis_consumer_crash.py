"""A consumer SIGKILLed mid-stream: its group peer claims the pending work; nothing is lost.

One producer process and two consumer processes in one group, 100,000 events. Every handled
event id is appended to a per-consumer file the moment the handler runs, so the files are the
ground truth of what was handled, including by the consumer that was killed.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import child_env, wait_until
from tests.integration.redis_server import RedisServer, running_redis

pytestmark = [pytest.mark.needs_redis, pytest.mark.slow, pytest.mark.timeout(180)]

COUNT = 100_000


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as srv:
        yield srv


def spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.redis_workers", *args],
        env=child_env(measured=False),  # see child_env
        stdin=subprocess.DEVNULL,
    )


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_killed_consumer_work_is_claimed_and_every_event_handled(
    server: RedisServer, tmp_path: Path
) -> None:
    """SIGKILL one of two consumers mid-stream: the other claims its pending entries, every
    one of 100,000 events is handled, and only the killed consumer's in-flight batch is
    handled twice."""
    client = server.client()
    handled_a, handled_b = tmp_path / "a.ids", tmp_path / "b.ids"
    common = (server.url, "load", "workers")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        producer = spawn("produce", server.url, "load", str(COUNT), str(tmp_path / "sent.json"))
        procs.append(producer)
        # The consumers join once the producer is half-way, so the stream has a backlog and a
        # consumer is in the middle of a full batch when it is killed.
        wait_until(lambda: client.xlen("load") >= 50_000, 60, "the producer to be half-way")
        # a stops inside its handler after its 20,250th event, mid-way through a 500-entry
        # read: it holds handled but unacknowledged entries and the rest of its batch. b claims
        # entries idle for 5 s, longer than the test needs from the hold to the kill.
        opts = ("--claim-idle", "5")
        a = spawn("consume", *common, "a", str(handled_a), *opts, "--hold-at", "20250")
        b = spawn("consume", *common, "b", str(handled_b), *opts)
        procs += [a, b]
        held = tmp_path / "a.ids.held"
        wait_until(held.exists, 60, "consumer a to hold mid-batch")
        # What a holds and has not acknowledged: its in-flight work, which dies with it.
        pending_a = client.xpending_range("load", "workers", "-", "+", 10_000, consumername="a")
        a.send_signal(signal.SIGKILL)
        a.wait(10)
        killed_at = len(lines(handled_a))
        in_flight = set()
        for p in pending_a:
            entry = client.xrange("load", p["message_id"], p["message_id"])
            in_flight.add(entry[0][1][b"id"].decode())

        assert producer.wait(90) == 0
        sent = orjson.loads((tmp_path / "sent.json").read_bytes())
        ids = sent["ids"]
        assert len(set(ids)) == COUNT
        assert sent["stats"]["written"] == COUNT

        expected = set(ids)

        def all_handled() -> bool:
            return set(lines(handled_a)) | set(lines(handled_b)) >= expected

        wait_until(all_handled, 90, "every event to be handled", interval=0.2)
        wait_until(
            lambda: client.xpending("load", "workers")["pending"] == 0, 30, "no pending entries"
        )
        b.send_signal(signal.SIGTERM)
        assert b.wait(30) == 0
        stats_b: dict[str, Any] = orjson.loads((tmp_path / "b.ids.stats").read_bytes())
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        client.close()

    by_a, by_b = lines(handled_a), lines(handled_b)
    seen = Counter(by_a) + Counter(by_b)
    twice = {i for i, n in seen.items() if n > 1}
    lost = expected - set(seen)
    report = {
        "events": COUNT,
        "handled_unique": len(set(seen)),
        "handled_by_a_before_kill": killed_at,
        "handled_by_b": len(by_b),
        "a_pending_at_kill": len(pending_a),
        "claimed_by_b": stats_b["claimed"],
        "handled_twice": len(twice),
        "skipped_as_duplicates_by_b": stats_b["duplicates"],
        "lost": len(lost),
    }
    print("\nredis consumer-crash report:", report)
    assert killed_at == 20_250  # the kill was mid-stream, where a held
    assert lost == set()
    assert len(pending_a) > 0  # a died holding work ...
    assert stats_b["claimed"] >= len(pending_a)  # ... and b claimed all of it
    assert len(by_b) == len(set(by_b))  # b itself never handled an event twice
    # An event is handled twice only if a handled it and died before acknowledging it.
    assert twice <= in_flight
    assert len(twice) <= 100  # at most one ack batch (ack_batch=100)
