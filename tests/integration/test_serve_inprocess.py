"""``RxbusServer`` embedded in the test's own loop: the pieces a subprocess hides.

A real aiohttp server on a real port, driven by real clients; only the process boundary is gone,
so these run fast and show in coverage.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from rxbus.event import Event
from rxbus.server.app import RxbusServer, ServerConfig
from rxbus.spool import Spool
from tests.conftest import wait_until_async

pytestmark = pytest.mark.timeout(60)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def post(url: str, body: Any, **headers: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        async with session.post(url + "/events", data=raw, headers=headers) as response:
            return response.status, await response.json()


def test_without_a_store_history_comes_from_the_bus_ring() -> None:
    """store=None: dedupe in memory, missed events and GET /events from the bus history."""

    async def main() -> None:
        server = RxbusServer(ServerConfig(port=0, store=None))
        await server.start()
        try:
            sent = [Event(topic="ring.a", data={"n": n}) for n in range(4)]
            assert await post(server.url, [e.to_dict() for e in sent]) == (
                200,
                {"accepted": 4, "duplicates": 0},
            )
            assert await post(server.url, sent[0].to_dict()) == (
                200,
                {"accepted": 0, "duplicates": 1},
            )
            assert server.history("ring.*", after=sent[1].id) == sent[2:]
            assert server.history("ring.*", limit=2) == sent[2:]
            # An id the ring no longer holds: fall back to id order (ids sort by time).
            assert server.history("ring.*", after=sent[0].id + "0") == sent[1:]
            client = socketio.AsyncClient(reconnection=False)
            await client.connect(server.url)
            ack = await client.call("subscribe", {"pattern": "ring.a", "last_id": sent[2].id})
            assert [e["id"] for e in ack["missed"]] == [sent[3].id]
            await client.disconnect()
        finally:
            await server.stop()

    run(main())


def test_a_given_bus_gets_every_event_once_and_is_not_closed(tmp_path: Path) -> None:
    """Consumers on a bus handed to the server see each accepted event once."""

    async def main() -> None:
        from rxbus import EventBus

        bus = EventBus(name="given")
        seen: list[str] = []
        bus.subscribe(lambda e: seen.append(e.id), topic="given.**")
        server = RxbusServer(ServerConfig(port=0, store=str(tmp_path / "s.sqlite")), bus=bus)
        await server.start()
        try:
            events = [Event(topic="given.x") for _ in range(3)]
            await server.ingest(events)
            await server.ingest(events[::-1])
            assert seen == [e.id for e in events]
        finally:
            await server.stop()
        assert not bus.closed
        await bus.aclose()

    run(main())


def test_spool_watcher_delivers_events_spooled_while_running(tmp_path: Path) -> None:
    """Events that land in the spool after start-up are picked up by the periodic scan."""

    async def main() -> None:
        spool_dir = tmp_path / "spool"
        server = RxbusServer(
            ServerConfig(port=0, store=str(tmp_path / "s.sqlite"), spool=str(spool_dir))
        )
        await server.start()
        try:
            events = [Event(topic="watch.ev", data={"n": n}) for n in range(3)]
            spool = Spool(spool_dir)
            for event in events:
                spool.append(event.id, event.to_json())
            await wait_until_async(lambda: spool.pending() == 0, 15, "the spool watcher")
            assert server.history("watch.*") == events
        finally:
            await server.stop()

    run(main())


def test_a_bad_spool_file_is_set_aside_and_blocks_nothing(tmp_path: Path) -> None:
    """A corrupt spool file moves to rejected/ (kept, not deleted); the others are delivered."""

    async def main() -> None:
        spool = Spool(tmp_path / "spool")
        good = [Event(topic="aside.ok", data={"n": n}) for n in range(3)]
        for event in good:
            spool.append(event.id, event.to_json())
        spool.append("0000-corrupt", b'{"topic": ')  # sorts first
        spool.append("0001-badtopic", b'{"topic": "bad topic"}')
        server = RxbusServer(ServerConfig(port=0, store=None, spool=str(spool.directory)))
        await server.start()
        try:
            assert spool.pending() == 0
            assert [p.name for p in spool.rejected()] == ["0000-corrupt.json", "0001-badtopic.json"]
            assert server.history("aside.*") == good
        finally:
            await server.stop()

    run(main())


def test_concurrent_requests_with_the_same_ids_publish_each_once(tmp_path: Path) -> None:
    """Twenty clients racing the same 50 ids: the bus sees 50 events."""

    async def main() -> None:
        from rxbus import EventBus

        bus = EventBus(name="race")
        seen: list[str] = []
        lock = threading.Lock()

        def record(event: Event) -> None:
            with lock:
                seen.append(event.id)

        bus.subscribe(record)
        server = RxbusServer(ServerConfig(port=0, store=str(tmp_path / "s.sqlite")), bus=bus)
        await server.start()
        try:
            batch = [Event(topic="race.ev").to_dict() for _ in range(50)]
            replies = await asyncio.gather(*(post(server.url, batch) for _ in range(20)))
            assert {status for status, _ in replies} == {200}
            assert sum(r["accepted"] for _, r in replies) == 50
            assert sum(r["duplicates"] for _, r in replies) == 50 * 19
            assert sorted(seen) == sorted(e["id"] for e in batch)
        finally:
            await server.stop()
            await bus.aclose()

    run(main())


def test_a_store_that_does_not_confirm_gets_no_acknowledgement(tmp_path: Path) -> None:
    """flush() timing out: HTTP 503 and no Socket.IO ack, so senders resend; resends dedupe."""
    from rxbus.sinks import SQLiteStore

    class StuckOnce(SQLiteStore):
        """A store whose disk stalls for the first two flushes (an injected fault)."""

        stalls = 2

        def flush(self, timeout: float = 5.0) -> bool:
            done = super().flush(timeout)
            if self.stalls:
                self.stalls -= 1
                return False
            return done

    async def main() -> None:
        store = StuckOnce(tmp_path / "s.sqlite")
        server = RxbusServer(ServerConfig(port=0), store=store)
        await server.start()
        try:
            event = Event(topic="stuck.http")
            status, reply = await post(server.url, event.to_dict())
            assert status == 503 and "send them again" in reply["error"]
            client = socketio.AsyncClient(reconnection=False)
            await client.connect(server.url)
            other = Event(topic="stuck.sio")
            with pytest.raises(socketio.exceptions.TimeoutError):
                await client.call("publish", other.to_dict(), timeout=1)
            assert await post(server.url, event.to_dict()) == (
                200,
                {"accepted": 0, "duplicates": 1},
            )
            assert await client.call("publish", other.to_dict(), timeout=10) == {
                "ok": True,
                "accepted": 0,
                "duplicates": 1,
            }
            await client.disconnect()
            assert [e.id for e in store.query("stuck.*")] == [event.id, other.id]
        finally:
            await server.stop()
        store.close()

    run(main())


def test_subscribe_bounds_what_a_client_sends() -> None:
    """A huge last_id and an endless list of patterns are refused with a reason, and the
    client's earlier subscriptions keep working."""
    from rxbus.server.app import MAX_CLIENT_PATTERNS
    from rxbus.server.ingest import MAX_ID_CHARS

    async def main() -> None:
        server = RxbusServer(ServerConfig(port=0, store=None))
        await server.start()
        try:
            client = socketio.AsyncClient(reconnection=False)
            await client.connect(server.url)
            ack = await client.call(
                "subscribe", {"pattern": "a.b", "last_id": "x" * 100_000}, timeout=10
            )
            assert ack == {
                "ok": False,
                "error": f"last_id is 100000 characters; at most {MAX_ID_CHARS}",
            }
            for k in range(MAX_CLIENT_PATTERNS):
                assert (await client.call("subscribe", {"pattern": f"p.n{k}"}))["ok"]
            ack = await client.call("subscribe", {"pattern": "p.one-more"})
            assert ack["ok"] is False and "at most 64 patterns" in ack["error"]
            assert (await client.call("subscribe", {"pattern": "p.n0"}))["ok"]  # held already
            await client.disconnect()
        finally:
            await server.stop()

    run(main())
