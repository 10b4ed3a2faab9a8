"""``rxbus serve``'s HTTP edges under what a careless client or an attacker sends (issue 12).

A real aiohttp server on a real loopback port, in the test's own loop: large bodies up to the
limit, JSON nested up to 100,000 levels, oversized client strings, and a history reply larger
than memory should hold.
"""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rxbus.event import Event
from rxbus.server.app import RxbusServer, ServerConfig

pytestmark = pytest.mark.timeout(120)

MAX_BODY = 4 * 1024 * 1024


async def post(url: str, body: bytes, **headers: str) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/events", data=body, headers=headers) as response,
    ):
        return response.status, await response.json()


def serve(coro_fn: Any, tmp_path: Path | None = None, **config: Any) -> Any:
    """Run ``coro_fn(server)`` against a started server, stopping it afterwards."""

    async def main() -> Any:
        store = str(tmp_path / "s.sqlite") if tmp_path is not None else None
        server = RxbusServer(ServerConfig(port=0, store=store, **config))
        await server.start()
        try:
            return await coro_fn(server)
        finally:
            await server.stop()

    return asyncio.run(main())


def event_of_size(size: int) -> bytes:
    """One event whose JSON is exactly ``size`` bytes."""
    event = Event(topic="big.body", data={"x": ""})
    pad = size - len(event.to_json())
    return Event(
        topic="big.body", id=event.id, timestamp=event.timestamp, data={"x": "y" * pad}
    ).to_json()


class TestLargeBodies:
    @pytest.mark.parametrize("size", [1024, 64 * 1024, 300_000, 900_000, 1_048_576])
    def test_one_event_up_to_the_event_limit_is_accepted(self, size: int) -> None:
        """Bodies larger than what aiohttp buffers at once are read whole, not refused."""
        body = event_of_size(size)
        assert len(body) == size

        async def check(server: RxbusServer) -> None:
            assert await post(server.url, body) == (200, {"accepted": 1, "duplicates": 0})
            [stored] = server.history("big.*")
            assert stored.to_json() == body

        serve(check)

    def test_a_body_of_exactly_max_body_is_accepted_and_one_byte_more_refused(self) -> None:
        """JSON Lines of 1 KB events filling --max-body to the byte; one more byte is a 413."""
        line = event_of_size(1023)
        count = MAX_BODY // 1024
        events = [Event.from_json(line).evolve(id=f"e{n:08d}") for n in range(count)]
        lines = [e.to_json() for e in events]
        body = b"\n".join(lines) + b"\n"
        body += b" " * (MAX_BODY - len(body))  # whitespace padding: still valid JSON Lines
        assert len(body) == MAX_BODY

        async def check(server: RxbusServer) -> None:
            ndjson = {"Content-Type": "application/x-ndjson"}
            assert await post(server.url, body, **ndjson) == (
                200,
                {"accepted": count, "duplicates": 0},
            )
            status, reply = await post(server.url, body + b" ", **ndjson)
            assert status == 413 and str(MAX_BODY) in reply["error"]

        serve(check)


def nested(depth: int) -> bytes:
    return b'{"topic": "deep.x", "data": {"x": ' + b"[" * depth + b"]" * depth + b"}}"


class TestDeepNesting:
    @pytest.mark.parametrize("depth", [253, 254, 300, 980, 1000, 1024, 1025, 5000, 100_000])
    def test_deep_json_is_a_400_naming_the_depth(self, depth: int) -> None:
        """Too deep to carry: 400 with the reason, never a 500; the server keeps serving."""

        async def check(server: RxbusServer) -> None:
            status, reply = await post(server.url, nested(depth))
            assert status == 400, reply
            assert "deep" in reply["error"] or "depth" in reply["error"]
            assert await post(server.url, Event(topic="after.deep").to_json()) == (
                200,
                {"accepted": 1, "duplicates": 0},
            )

        serve(check)

    def test_shallow_enough_json_is_accepted(self) -> None:
        async def check(server: RxbusServer) -> None:
            assert (await post(server.url, nested(200)))[0] == 200

        serve(check)

    @pytest.mark.parametrize("depth", [300, 990, 1025, 5000, 100_000])
    def test_socketio_publish_of_deep_json_gets_an_error_ack(self, depth: int) -> None:
        """Over Socket.IO the same payload gets ``{"ok": false, ...}``, not silence.

        The packet is sent as raw text, so neither side needs a higher recursion limit (an
        in-process client that raised it raised it for the server too, hiding that payloads
        deeper than orjson's 1,024 levels were dropped without an ack)."""
        payload = b'{"topic": "deep.x", "data": {"x": ' + b"[" * depth + b"]" * depth + b"}}"

        async def check(server: RxbusServer) -> None:
            deep, after = await sio_publish_raw(
                server.url, [payload, Event(topic="after.deep").to_json()]
            )
            assert deep["ok"] is False and "deep" in deep["error"], deep
            assert after == {"ok": True, "accepted": 1, "duplicates": 0}

        serve(check)


async def sio_publish_raw(url: str, payloads: list[bytes]) -> list[Any]:
    """Send each payload as a Socket.IO ``publish`` with an ack id, over a raw WebSocket;
    return the acks in order (within 10 s each)."""
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url + "/socket.io/?EIO=4&transport=websocket") as ws,
    ):
        assert (await ws.receive_str(timeout=10)).startswith("0")  # Engine.IO open
        await ws.send_str("40")  # connect to the default namespace
        assert (await ws.receive_str(timeout=10)).startswith("40")
        acks = []
        for ack_id, payload in enumerate(payloads, start=1):
            await ws.send_str(f'42{ack_id}["publish",' + payload.decode() + "]")
            async with asyncio.timeout(10):  # other packets (stats, pings) may come first
                while True:
                    text = await ws.receive_str()
                    if text == "2":  # Engine.IO ping
                        await ws.send_str("3")
                    elif text.startswith(f"43{ack_id}["):
                        acks.append(json.loads(text[len(f"43{ack_id}") :])[0])
                        break
        return acks


class TestClientStrings:
    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("id", "i" * 129),
            ("type", "t" * 256),
            ("source", "s" * 256),
            ("correlation_id", "c" * 256),
        ],
    )
    def test_oversized_strings_are_refused_by_name(self, field: str, value: str) -> None:
        """Ids and other short fields are bounded: the dedupe memory holds a million ids."""

        async def check(server: RxbusServer) -> None:
            body = json.dumps({"topic": "str.x", field: value}).encode()
            status, reply = await post(server.url, body)
            assert status == 400 and field in reply["error"] and str(len(value)) in reply["error"]
            assert server.history("str.*") == []

        serve(check)

    def test_an_oversized_after_is_refused(self) -> None:
        async def check(server: RxbusServer) -> None:
            async with (
                aiohttp.ClientSession() as session,
                session.get(server.url + "/events", params={"after": "a" * 300}) as response,
            ):
                assert response.status == 400
                assert "after" in (await response.json())["error"]

        serve(check)


class TestHistoryReply:
    def test_get_events_streams_instead_of_building_the_reply(self, tmp_path: Path) -> None:
        """A 20 MB reply is written in pages: the server's peak allocation stays far below it."""
        events = [Event(topic="hist.big", data={"x": "y" * 20_000, "n": n}) for n in range(1000)]

        async def check(server: RxbusServer) -> None:
            for k in range(0, len(events), 100):
                body = b"\n".join(e.to_json() for e in events[k : k + 100])
                ndjson = {"Content-Type": "application/x-ndjson"}
                assert (await post(server.url, body, **ndjson))[0] == 200
            for query, expected in (
                ({"limit": "10000"}, events),
                ({"limit": "10"}, events[-10:]),
                ({"after": events[989].id, "limit": "5"}, events[990:995]),
                ({"pattern": "other.*"}, []),
            ):
                reply_file = tmp_path / "reply.json"
                async with aiohttp.ClientSession() as session:
                    tracemalloc.start()
                    try:
                        async with session.get(server.url + "/events", params=query) as response:
                            assert response.status == 200
                            with reply_file.open("wb") as out:
                                async for chunk in response.content.iter_any():
                                    out.write(chunk)
                        peak = tracemalloc.get_traced_memory()[1]
                    finally:
                        tracemalloc.stop()
                reply = json.loads(reply_file.read_bytes())
                assert [d["data"]["n"] for d in reply] == [e.data["n"] for e in expected]
                # the whole reply is 20 MB: a server holding it (or its events) peaks above half
                assert peak < 10_000_000, peak

        serve(check, tmp_path)

    def test_history_without_a_store_pages_the_ring(self) -> None:
        async def check(server: RxbusServer) -> None:
            sent = [Event(topic="ring.x", data={"n": n}) for n in range(250)]
            assert (await post(server.url, json.dumps([e.to_dict() for e in sent]).encode()))[
                0
            ] == 200
            async with aiohttp.ClientSession() as session:
                for params, expected in (
                    ({"limit": "1000"}, sent),
                    ({"limit": "3"}, sent[-3:]),
                    ({"after": sent[100].id, "limit": "2"}, sent[101:103]),
                ):
                    async with session.get(server.url + "/events", params=params) as response:
                        got = await response.json()
                    assert [d["id"] for d in got] == [e.id for e in expected]

        serve(check)
