"""``rxbus serve`` against real clients: HTTP ingest, Socket.IO rooms, history, metrics, auth.

Every server here is a real ``rxbus serve`` subprocess with a real SQLite store.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import socketio

from rxbus.event import Event
from rxbus.server.app import ServerConfig, is_loopback
from rxbus.spool import Spool
from tests.conftest import wait_until_async
from tests.integration.serve_process import ServeProcess, child_env, rxbus_cmd

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """One server for the read-mostly tests of this module."""
    with ServeProcess(tmp_path_factory.mktemp("serve")) as proc:
        yield proc


def events(*topics: str, **data: Any) -> list[dict[str, Any]]:
    return [Event(topic=t, data=dict(data)).to_dict() for t in topics]


async def _client(url: str, token: str | None = None) -> tuple[socketio.AsyncClient, list[dict]]:
    client = socketio.AsyncClient(reconnection=False)
    received: list[dict[str, Any]] = []
    client.on("event", received.append)
    await client.connect(url, auth={"token": token} if token else None, wait_timeout=10)
    return client, received


class TestHttpIngest:
    def test_one_event_is_stored_with_its_id(self, server: ServeProcess) -> None:
        """POST one object: 200 with counts, and GET /events gives it back unchanged."""
        event = Event(topic="ingest.one", type="T", source="test", data={"n": 1})
        status, reply = server.post(event.to_dict())
        assert (status, reply) == (200, {"accepted": 1, "duplicates": 0})
        assert [Event.from_dict(d) for d in server.history("ingest.one")] == [event]

    def test_missing_id_and_timestamp_are_filled(self, server: ServeProcess) -> None:
        """An object may omit id and timestamp; the server fills both."""
        status, _ = server.post({"topic": "ingest.bare", "data": {"x": 1}})
        assert status == 200
        [stored] = server.history("ingest.bare")
        assert stored["id"] and stored["timestamp"] and stored["type"] == "bare"

    def test_array_and_json_lines(self, server: ServeProcess) -> None:
        """A JSON array and a JSON Lines body each publish every event, in order."""
        batch = events("ingest.arr", "ingest.arr", "ingest.arr")
        assert server.post(batch) == (200, {"accepted": 3, "duplicates": 0})
        lines = events("ingest.nd", "ingest.nd")
        raw = b"\n".join(json.dumps(e).encode() for e in lines) + b"\n"
        assert server.post(raw=raw, content_type="application/x-ndjson") == (
            200,
            {"accepted": 2, "duplicates": 0},
        )
        assert [e["id"] for e in server.history("ingest.arr")] == [e["id"] for e in batch]
        assert [e["id"] for e in server.history("ingest.nd")] == [e["id"] for e in lines]

    def test_dedupe_by_id_within_and_across_requests(self, server: ServeProcess) -> None:
        """A repeated id is acknowledged as a duplicate and stored once."""
        [a, b] = events("ingest.dup", "ingest.dup")
        assert server.post([a, a, b]) == (200, {"accepted": 2, "duplicates": 1})
        assert server.post([b, a]) == (200, {"accepted": 0, "duplicates": 2})
        assert [e["id"] for e in server.history("ingest.dup")] == [a["id"], b["id"]]

    def test_metrics_are_prometheus_text(self, server: ServeProcess) -> None:
        """/metrics counts published events per topic in the Prometheus text format."""
        server.post(events("metrics.seen", "metrics.seen"))
        status, body = server.get("/metrics")
        text = body.decode()
        assert status == 200
        assert 'rxbus_topic_published_total{topic="metrics.seen"} 2.0' in text
        assert "# TYPE rxbus_published_total counter" in text

    @pytest.mark.parametrize("path", ["/", "/events", "/socket.io/?EIO=4&transport=polling"])
    def test_a_non_loopback_host_name_is_refused(self, server: ServeProcess, path: str) -> None:
        """DNS rebinding: a page at evil.example resolved to 127.0.0.1 gets 403 everywhere."""
        status, body = server.get(path, headers={"Host": f"evil.example:{server.port}"})
        assert status == 403 and "evil.example" in json.loads(body)["error"]
        status, _ = server.post(
            {"topic": "evil.rebind"}, headers={"Host": f"evil.example:{server.port}"}
        )
        assert status == 403
        assert server.history("evil.*") == []
        assert server.get("/healthz", headers={"Host": f"localhost:{server.port}"})[0] == 200

    def test_cross_origin_post_is_refused(self, server: ServeProcess) -> None:
        """A browser page from another origin cannot publish to the loopback server."""
        before = len(server.history("**"))
        status, body = server.request(
            "POST",
            "/events",
            json.dumps({"topic": "evil.post"}).encode(),
            {"Origin": "http://evil.example", "Content-Type": "text/plain"},
        )
        assert status == 403 and "cross-origin" in json.loads(body)["error"]
        assert len(server.history("**")) == before


BAD_BODIES = [
    (b"{not json", "application/json", 400, "not valid JSON"),
    (b"", "application/json", 400, "empty body"),
    (b'{"topic": "bad..topic"}', "application/json", 400, "'bad..topic'"),
    (b'{"topic": "a.b", "colour": "red"}', "application/json", 400, "colour"),
    (b'[{"topic": "a.ok"}, 42]', "application/json", 400, "event 1 must be a JSON object"),
    (b'{"topic": "a.b", "data": [1, 2]}', "application/json", 400, "data"),
    (b'{"topic": "a.b", "timestamp": "2026-01-01T00:00:00"}', "application/json", 400, "timestamp"),
    (b'{"topic": "a.ok"}\n{"topic": ', "application/x-ndjson", 400, "line 2"),
    (
        b'{"topic": "a.b", "data": {"big": "' + b"x" * 70_000 + b'"}}',
        "application/json",
        413,
        "bytes",
    ),
    (
        b"[" + b'{"topic": "a.b"},' * 20_000 + b'{"topic": "a.b"}]',
        "application/json",
        413,
        "max-body",
    ),
]


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """A server with small limits: 64 KiB events, 256 KiB bodies."""
    with ServeProcess(
        tmp_path_factory.mktemp("small"),
        args=("--max-event-bytes", "65536", "--max-body", "262144"),
    ) as proc:
        yield proc


class TestBadRequests:
    @pytest.mark.parametrize(("body", "content_type", "status", "reason"), BAD_BODIES)
    def test_rejected_with_one_line_and_nothing_changes(
        self, small_server: ServeProcess, body: bytes, content_type: str, status: int, reason: str
    ) -> None:
        """Each bad body gets its 4xx and a one-line reason naming the problem; nothing is kept."""
        small_server.post({"topic": "bad.before"})
        before = small_server.history("**")
        got, reply = small_server.post(raw=body, content_type=content_type)
        assert got == status
        assert reason in reply["error"] and "\n" not in reply["error"]
        assert small_server.history("**") == before

    def test_a_bad_event_rejects_its_whole_batch(self, small_server: ServeProcess) -> None:
        """Valid events before the bad one in a batch are not published either."""
        good = events("bad.batch.good")
        status, _ = small_server.post([*good, {"topic": "bad batch"}])
        assert status == 400
        assert small_server.history("bad.batch.**") == []

    def test_bad_history_queries(self, small_server: ServeProcess) -> None:
        for query, reason in (("pattern=a..b", "a..b"), ("limit=zero", "limit")):
            status, body = small_server.get(f"/events?{query}")
            assert status == 400 and reason in json.loads(body)["error"]


class TestToken:
    @pytest.fixture(scope="class")
    @classmethod
    def guarded(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
        with ServeProcess(tmp_path_factory.mktemp("token"), token="s3cret") as proc:
            yield proc

    @pytest.mark.parametrize("path", ["/", "/events", "/metrics", "/static/dashboard.js"])
    @pytest.mark.parametrize("token", [None, "wrong"])
    def test_every_http_request_needs_the_token(
        self, guarded: ServeProcess, path: str, token: str | None
    ) -> None:
        status, body = guarded.get(path, token=token)
        assert status == 401 and "token" in json.loads(body)["error"]

    def test_post_without_token_changes_nothing(self, guarded: ServeProcess) -> None:
        assert guarded.post({"topic": "tok.no"}, token="wrong")[0] == 401
        assert guarded.post({"topic": "tok.yes"}) == (200, {"accepted": 1, "duplicates": 0})
        assert [e["topic"] for e in guarded.history("tok.*")] == ["tok.yes"]

    def test_dashboard_with_token_in_query_sets_a_strict_cookie(
        self, guarded: ServeProcess
    ) -> None:
        """The page is reachable at /?token=T and its assets via an HttpOnly SameSite cookie."""
        import urllib.request

        with urllib.request.urlopen(guarded.url + "/?token=s3cret", timeout=5) as response:
            cookie = response.headers["Set-Cookie"]
            assert response.status == 200
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        status, _ = guarded.get(
            "/static/dashboard.js", token=None, headers={"Cookie": cookie.split(";")[0]}
        )
        assert status == 200

    def test_socketio_connection_needs_the_token(self, guarded: ServeProcess) -> None:
        async def main() -> None:
            for token in (None, "wrong"):
                client = socketio.AsyncClient(reconnection=False)
                with pytest.raises(socketio.exceptions.ConnectionError):
                    await client.connect(
                        guarded.url, auth={"token": token} if token else None, wait_timeout=5
                    )
            client, _ = await _client(guarded.url, "s3cret")
            ack = await client.call("publish", events("tok.sio")[0], timeout=10)
            assert ack == {"ok": True, "accepted": 1, "duplicates": 0}
            await client.disconnect()

        asyncio.run(main())


class TestBind:
    def test_loopback_detection(self) -> None:
        assert all(map(is_loopback, ["127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost"]))
        assert not any(map(is_loopback, ["0.0.0.0", "192.168.1.2", "::", "example.com"]))

    def test_non_loopback_bind_without_token_is_refused(self, tmp_path: Path) -> None:
        """`rxbus serve --host 0.0.0.0` exits with one line naming the address and --token."""
        result = subprocess.run(
            rxbus_cmd("serve", "--host", "0.0.0.0", "--store", str(tmp_path / "s.sqlite")),
            capture_output=True,
            env=child_env(),
            timeout=30,
        )
        assert result.returncode == 2
        [line] = result.stderr.decode().strip().splitlines()
        assert "0.0.0.0" in line and "--token" in line
        assert not (tmp_path / "s.sqlite").exists()

    @pytest.mark.parametrize(
        ("args", "needle"),
        [
            (("--port", "99999"), "--port"),
            (("--max-body", "10"), "--max-body"),
            (("--max-event-bytes", "0"), "--max-event-bytes"),
        ],
    )
    def test_bad_settings_are_one_line(
        self, tmp_path: Path, args: tuple[str, ...], needle: str
    ) -> None:
        result = subprocess.run(
            rxbus_cmd("serve", "--store", "none", *args),
            capture_output=True,
            env=child_env(),
            timeout=30,
        )
        [line] = result.stderr.decode().strip().splitlines()
        assert result.returncode == 2 and needle in line and line.startswith("rxbus serve: error:")

    def test_port_in_use_is_one_line(self, tmp_path: Path) -> None:
        with ServeProcess(tmp_path / "first") as first:
            result = subprocess.run(
                rxbus_cmd("serve", "--port", str(first.port), "--store", "none", "--spool", "none"),
                capture_output=True,
                env=child_env(),
                timeout=30,
            )
        [line] = result.stderr.decode().strip().splitlines()
        assert result.returncode == 2 and "cannot listen" in line and str(first.port) in line

    def test_config_accepts_non_loopback_with_token(self) -> None:
        ServerConfig(host="0.0.0.0", token="t").check()
        with pytest.raises(ValueError, match="without --token"):
            ServerConfig(host="10.0.0.1").check()


class TestSocketIO:
    def test_subscribers_receive_exactly_their_matching_events(self, server: ServeProcess) -> None:
        """Rooms by pattern: each client gets the events its patterns match, once each."""

        async def main() -> None:
            hooks, got_hooks = await _client(server.url)
            both, got_both = await _client(server.url)
            assert (await hooks.call("subscribe", {"pattern": "room.hook.*"}))["ok"]
            for pattern in ("room.hook.*", "room.**"):  # overlapping: still one copy per event
                assert (await both.call("subscribe", {"pattern": pattern}))["ok"]
            sent = events("room.hook.pre", "room.other", "room.hook.post", "room.hook.pre.deep")
            assert server.post(sent[:2])[0] == 200
            ack = await hooks.call("publish", sent[2:], timeout=10)
            assert ack == {"ok": True, "accepted": 2, "duplicates": 0}
            # A marker both clients match, sent last: a stray extra copy of an earlier event
            # would reach a client before it, on the same connection.
            marker = events("room.hook.end")
            assert server.post(marker)[0] == 200
            await wait_until_async(lambda: marker[0]["id"] in {e["id"] for e in got_both})
            await wait_until_async(lambda: marker[0]["id"] in {e["id"] for e in got_hooks})
            assert [e["id"] for e in got_hooks] == [sent[0]["id"], sent[2]["id"], marker[0]["id"]]
            assert [e["id"] for e in got_both] == [e["id"] for e in [*sent, marker[0]]]
            await hooks.disconnect()
            await both.disconnect()

        asyncio.run(main())

    def test_missed_events_by_last_id_and_history(self, server: ServeProcess) -> None:
        """subscribe with last_id returns what came after it; history=n returns the latest n."""
        sent = events(*["missed.a"] * 5, "missed.b")
        assert server.post(sent)[0] == 200

        async def main() -> None:
            client, _ = await _client(server.url)
            ack = await client.call("subscribe", {"pattern": "missed.a", "last_id": sent[1]["id"]})
            assert [e["id"] for e in ack["missed"]] == [e["id"] for e in sent[2:5]]
            ack = await client.call("subscribe", {"pattern": "missed.*", "history": 2})
            assert [e["id"] for e in ack["missed"]] == [sent[4]["id"], sent[5]["id"]]
            await client.disconnect()

        asyncio.run(main())

    def test_unsubscribe_stops_delivery(self, server: ServeProcess) -> None:
        async def main() -> None:
            client, got = await _client(server.url)
            await client.call("subscribe", {"pattern": "unsub.*"})
            server.post(events("unsub.one"))
            await wait_until_async(lambda: len(got) == 1)
            assert (await client.call("unsubscribe", {"pattern": "unsub.*"})) == {"ok": True}
            marker, got_marker = await _client(server.url)
            await marker.call("subscribe", {"pattern": "unsub.*"})
            server.post(events("unsub.two"))
            await wait_until_async(lambda: len(got_marker) == 1)
            assert [e["topic"] for e in got] == ["unsub.one"]
            await client.disconnect()
            await marker.disconnect()

        asyncio.run(main())

    def test_bad_socketio_requests_get_an_error_ack(self, server: ServeProcess) -> None:
        """Bad publish/subscribe payloads are refused in the ack and publish nothing."""

        async def main() -> None:
            client, _ = await _client(server.url)
            before = len(server.history("**"))
            for payload, reason in (
                ({"topic": "bad topic"}, "bad topic"),
                ([{"topic": "sio.ok"}, "nope"], "event 1"),
                ("text", "event 0"),
            ):
                ack = await client.call("publish", payload)
                assert ack["ok"] is False and reason in ack["error"]
            for request, reason in (({"pattern": "a..b"}, "a..b"), ("x", "subscribe takes")):
                ack = await client.call("subscribe", request)
                assert ack["ok"] is False and reason in ack["error"]
            assert len(server.history("**")) == before
            await client.disconnect()

        asyncio.run(main())


class TestRestartAndSpool:
    def test_history_and_dedupe_survive_a_restart(self, tmp_path: Path) -> None:
        """After SIGKILL and restart, stored events are still there and their ids still dedupe."""
        proc = ServeProcess(tmp_path).start()
        sent = events("restart.a", "restart.b")
        assert proc.post(sent)[0] == 200
        proc.stop(signal.SIGKILL)
        proc.start()
        try:
            assert [e["id"] for e in proc.history("restart.*")] == [e["id"] for e in sent]
            assert proc.post(sent) == (200, {"accepted": 0, "duplicates": 2})
        finally:
            proc.stop()
        assert [e.id for e in proc.stored()] == [e["id"] for e in sent]

    def test_serve_delivers_the_spool_at_start_up_without_duplicates(self, tmp_path: Path) -> None:
        """Spooled events reach the store when serve starts; one already stored is not doubled."""
        proc = ServeProcess(tmp_path).start()
        already = Event(topic="spool.sent")
        assert proc.post(already.to_dict())[0] == 200
        proc.stop()
        spool = Spool(proc.spool_dir)
        waiting = [Event(topic="spool.late", data={"n": n}) for n in range(20)]
        for event in [already, *waiting]:
            spool.append(event.id, event.to_json())
        proc.start()
        try:
            assert spool.pending() == 0
            ids = [e["id"] for e in proc.history("spool.**")]
        finally:
            proc.stop()
        assert ids == [already.id] + [e.id for e in waiting]


class TestShutdown:
    def test_sigterm_with_a_connected_client_exits_cleanly(self, tmp_path: Path) -> None:
        """SIGTERM tells Socket.IO clients to go, drains the bus into the store and exits 0."""
        proc = ServeProcess(tmp_path).start()

        async def main() -> int | None:
            client, _ = await _client(proc.url)
            gone = asyncio.Event()
            client.on("disconnect", lambda *_: gone.set())
            await client.call("subscribe", {"pattern": "**"})
            code = await asyncio.to_thread(proc.stop, signal.SIGTERM)
            await asyncio.wait_for(gone.wait(), 10)
            return code

        assert asyncio.run(main()) == 0
        assert proc.log().strip().endswith("rxbus serve: stopped")
