"""The per-client outlet of ``rxbus serve``: bounded, ordered, and every drop counted and placed.

The unit half drives :class:`rxbus.server.outlet.Outlet` with a fake clock and random
operations (hypothesis); the integration half runs a real ``rxbus serve`` with a Socket.IO client
that stops acknowledging, and counts what the server kept, dropped and sent, and its memory.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import socketio
from hypothesis import given, settings
from hypothesis import strategies as st

from rxbus import Overflow
from rxbus.event import Event
from rxbus.server.app import ServerConfig
from rxbus.server.outlet import Gap, Outlet
from tests.conftest import wait_until_async
from tests.integration.serve_process import ServeProcess

DROPPING = [Overflow.DROP_OLDEST, Overflow.DROP_NEWEST, Overflow.LATEST, Overflow.ERROR]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def expand(items: list[Event | Gap]) -> list[tuple[str, str]]:
    """Sent items as ("sent", id) and, per gap, its first and last id with the count."""
    out: list[tuple[str, str]] = []
    for item in items:
        if isinstance(item, Gap):
            out.append(("gap", f"{item.first.id}..{item.last.id}#{item.count}"))
        else:
            out.append(("sent", item.id))
    return out


class TestOutlet:
    @settings(max_examples=200, deadline=None)
    @given(
        policy=st.sampled_from(DROPPING),
        capacity=st.integers(1, 8),
        ops=st.lists(st.one_of(st.just("offer"), st.integers(1, 5)), max_size=80),
    )
    def test_every_event_is_sent_once_or_inside_exactly_one_gap_in_order(
        self, policy: Overflow, capacity: int, ops: list[Any]
    ) -> None:
        """Whatever the interleaving, the sent stream partitions the offered stream in order."""
        outlet = Outlet(capacity, policy, clock=FakeClock())
        offered: list[Event] = []
        stream: list[Event | Gap] = []
        for op in ops:
            if op == "offer":
                event = Event(topic="t", data={"n": len(offered)})
                offered.append(event)
                outlet.offer(event)
            else:
                stream += outlet.take(op)[0]
            assert outlet.queued <= capacity
            counts = outlet.counts()
            assert counts["offered"] == (
                counts["sent"] + counts["dropped"] + counts["queued"] + counts["discarded"]
            )
        stream += outlet.take(10**6)[0]
        position = {e.id: n for n, e in enumerate(offered)}
        cursor = 0
        for item in stream:
            if isinstance(item, Gap):
                start, end = position[item.first.id], position[item.last.id]
                assert (start, end - start + 1) == (cursor, item.count), expand(stream)
                cursor = end + 1
            else:
                assert position[item.id] == cursor, expand(stream)
                cursor += 1
        assert cursor == len(offered)
        assert sum(i.count for i in stream if isinstance(i, Gap)) == outlet.dropped
        assert outlet.failed == (policy is Overflow.ERROR and outlet.dropped > 0)

    def test_drop_oldest_keeps_the_newest_and_one_gap_in_front(self) -> None:
        outlet = Outlet(3, Overflow.DROP_OLDEST, clock=FakeClock())
        events = [Event(topic="t", data={"n": n}) for n in range(10)]
        for event in events:
            outlet.offer(event)
        items, _ = outlet.take(100)
        gap, *kept = items
        assert isinstance(gap, Gap) and (gap.count, gap.first, gap.last) == (
            7,
            events[0],
            events[6],
        )
        assert kept == events[7:]
        assert gap.to_dict()["gap"]["from"] == {
            "id": events[0].id,
            "timestamp": events[0].timestamp.isoformat(),
        }

    def test_take_reports_how_long_the_oldest_event_waited(self) -> None:
        clock = FakeClock()
        outlet = Outlet(10, clock=clock)
        outlet.offer(Event(topic="t"))
        clock.now += 2.5
        outlet.offer(Event(topic="t"))
        assert outlet.oldest_wait() == 2.5
        items, waited = outlet.take(1)
        assert len(items) == 1 and waited == 2.5 and outlet.oldest_wait() == 0.0

    def test_clear_discards_and_counts(self) -> None:
        outlet = Outlet(5)
        for _ in range(4):
            outlet.offer(Event(topic="t"))
        assert outlet.clear() == 4
        assert outlet.counts() == {
            "offered": 4,
            "sent": 0,
            "dropped": 0,
            "queued": 0,
            "discarded": 4,
        }

    @pytest.mark.parametrize(
        ("capacity", "overflow", "message"),
        [
            (0, "drop_oldest", r"page queue size \(--page-queue\) must be an int >= 1, got 0"),
            (10, "block", r"'block' is refused"),
            (10, "sideways", r"overflow must be one of .* got 'sideways'"),
        ],
    )
    def test_bad_settings_get_one_clear_error(
        self, capacity: int, overflow: str, message: str
    ) -> None:
        with pytest.raises(ValueError, match=message):
            ServerConfig(page_queue=capacity, page_overflow=overflow).check()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


@pytest.mark.timeout(180)
def test_a_client_that_stops_acknowledging_costs_bounded_memory(tmp_path: Path) -> None:
    """40,000 events of 2 KB (80 MB) for a client that never acknowledges: the server keeps at
    most --page-queue of them, counts the rest as dropped, and its RSS grows by less than 40 MB.
    Once the client reads again it gets the queued events after one gap with the exact count."""
    page_queue = 1000
    total = 40_000
    with ServeProcess(tmp_path, args=("--page-queue", str(page_queue))) as server:
        assert server.proc is not None
        pid = server.proc.pid

        async def main() -> tuple[int, int, dict[str, Any], list[Any]]:
            client = socketio.AsyncClient(reconnection=False)
            release = asyncio.Event()
            batches: list[dict[str, Any]] = []

            async def on_events(batch: dict[str, Any]) -> None:
                batches.append(batch)
                await release.wait()  # no acknowledgement until released: a page that is stuck

            client.on("events", on_events)
            await client.connect(server.url, wait_timeout=10)
            ack = await client.call("subscribe", {"pattern": "mem.**", "batch": True})
            assert ack["ok"]
            before = rss_kb(pid)
            pad = "x" * 2000
            publisher = socketio.AsyncClient(reconnection=False)
            await publisher.connect(server.url, wait_timeout=10)
            for start in range(0, total, 100):
                body = [
                    Event(topic="mem.load", data={"n": n, "pad": pad}).to_dict()
                    for n in range(start, start + 100)
                ]
                reply = await publisher.call("publish", body, timeout=30)
                assert reply == {"ok": True, "accepted": 100, "duplicates": 0}, reply
            await publisher.disconnect()
            loop = asyncio.get_running_loop()
            after = rss_kb(pid)
            status, raw = await loop.run_in_executor(None, server.get, "/api/stats")
            assert status == 200
            counts = json.loads(raw)["server"]
            release.set()
            want = total - counts["client_dropped"]
            await wait_until_async(
                lambda: sum(1 for b in batches for i in b["events"] if "gap" not in i) >= want,
                30,
                "the queued events to arrive",
                interval=0.05,
            )
            await client.disconnect()
            return before, after, counts, batches

        before, after, counts, batches = asyncio.run(main())
    assert counts["client_queued"] == page_queue
    assert counts["client_sent"] + counts["client_dropped"] + counts["client_queued"] == total
    assert counts["client_dropped"] >= total - page_queue - 1000  # one batch may be in flight
    assert (after - before) < 40 * 1024, f"RSS grew {(after - before) / 1024:.0f} MB"
    items = [i for b in batches for i in b["events"]]
    gaps = [i["gap"] for i in items if "gap" in i]
    assert sum(g["count"] for g in gaps) == counts["client_dropped"]
    received = [i for i in items if "gap" not in i]
    assert len(received) == total - counts["client_dropped"]
    assert received[-1]["data"]["n"] == total - 1


class TestMissed:
    """What a client resuming by ``last_id`` gets: the newest events and an exact gap."""

    @pytest.mark.parametrize("with_store", [False, True], ids=["memory", "sqlite"])
    def test_newest_events_and_the_exact_gap_before_them(
        self, tmp_path: Path, with_store: bool
    ) -> None:
        from rxbus import EventBus
        from rxbus.server.app import RxbusServer
        from rxbus.sinks import SQLiteStore

        with EventBus(history=1000) as bus:
            store = SQLiteStore(tmp_path / "events.sqlite") if with_store else None
            if store is not None:
                bus.subscribe(store, mode="sync", name="store")
            server = RxbusServer(ServerConfig(port=0, store=None), bus=bus, store=store)
            sent = [bus.publish(f"m.t{n % 2}", {"n": n}) for n in range(50)]
            shown, gap = server.missed("m.**", sent[4].id, limit=10)
            assert shown == sent[40:]
            assert gap == {
                "count": 35,
                "from": {"id": sent[5].id, "timestamp": sent[5].timestamp.isoformat()},
                "to": {"id": sent[39].id, "timestamp": sent[39].timestamp.isoformat()},
            }
            odd = [e for e in sent if e.topic == "m.t1"]
            shown, gap = server.missed("m.t1", odd[0].id, limit=30)
            assert (shown, gap) == (odd[1:], None)
            if store is not None:
                assert store.count("m.t1", after=odd[0].id, until=odd[9].id) == 9
                store.close()

    def test_without_a_store_an_id_older_than_memory_is_an_open_gap(self) -> None:
        """The server cannot count what it no longer remembers: it says "at least"."""
        from rxbus import EventBus
        from rxbus.server.app import RxbusServer

        with EventBus(history=20) as bus:
            server = RxbusServer(ServerConfig(port=0, store=None), bus=bus)
            gone = bus.publish("m.x")
            sent = [bus.publish("m.x", {"n": n}) for n in range(30)]
            shown, gap = server.missed("m.x", gone.id, limit=5)
            assert shown == sent[-5:]
            assert gap is not None and gap["at_least"] is True and gap["count"] == 15
            assert gap["from"]["id"] == sent[10].id


@pytest.mark.timeout(120)
def test_overflow_error_disconnects_the_client_that_fell_behind(tmp_path: Path) -> None:
    """--page-overflow error: a client that cannot keep up is disconnected (it resumes by id)."""
    with ServeProcess(tmp_path, args=("--page-queue", "10", "--page-overflow", "error")) as server:

        async def main() -> tuple[list[str], dict[str, Any]]:
            client = socketio.AsyncClient(reconnection=False)
            stuck = asyncio.Event()
            gone = asyncio.Event()
            reasons: list[str] = []

            async def on_events(batch: dict[str, Any]) -> None:
                await stuck.wait()  # never acknowledges

            async def on_disconnect(reason: Any = None) -> None:
                reasons.append(str(reason))
                gone.set()

            client.on("events", on_events)
            client.on("disconnect", on_disconnect)
            await client.connect(server.url, wait_timeout=10)
            assert (await client.call("subscribe", {"pattern": "err.*", "batch": True}))["ok"]
            loop = asyncio.get_running_loop()
            for start in range(0, 100, 20):
                body = [
                    Event(topic="err.x", data={"n": n}).to_dict() for n in range(start, start + 20)
                ]
                status, _ = await loop.run_in_executor(None, server.post, body)
                assert status == 200
            await asyncio.wait_for(gone.wait(), 30)
            status, raw = await loop.run_in_executor(None, server.get, "/api/stats")
            return reasons, json.loads(raw)["server"]

        reasons, counts = asyncio.run(main())
    assert reasons and counts["clients"] == 0
    assert "fell 10 events behind" in server.log()


def test_events_published_from_another_thread_reach_a_page() -> None:
    """The served bus may be published to from any thread; the loop owns the outlets."""
    from rxbus import EventBus
    from rxbus.server.app import RxbusServer

    async def main() -> list[dict[str, Any]]:
        bus = EventBus(name="threads")
        server = RxbusServer(ServerConfig(port=0, store=None), bus=bus)
        await server.start()
        client = socketio.AsyncClient(reconnection=False)
        got: list[dict[str, Any]] = []
        client.on("events", lambda batch: got.extend(batch["events"]))
        try:
            await client.connect(server.url, wait_timeout=10)
            assert (await client.call("subscribe", {"pattern": "th.*", "batch": True}))["ok"]
            loop = asyncio.get_running_loop()
            for n in range(50):
                await loop.run_in_executor(None, lambda n=n: bus.publish("th.x", {"n": n}))
            await wait_until_async(lambda: len(got) >= 50, 10, "50 events", interval=0.02)
            return got
        finally:
            await client.disconnect()
            await server.stop()
            await bus.aclose()

    got = asyncio.run(main())
    assert [e["data"]["n"] for e in got] == list(range(50))
