"""The ``rxbus serve`` application: an EventBus behind Socket.IO, HTTP ingest and a dashboard.

Events arrive by HTTP (``POST /events``) or Socket.IO (``publish``), are validated as a whole
request, deduplicated by id, published on the bus, stored, and only then acknowledged; a bus
consumer offers each one to the bounded outlet (:class:`rxbus.server.outlet.Outlet`) of every
client whose pattern matches its topic, and one task per client sends what is queued: in
acknowledged batches to a page that asked for them (so a slow page is never sent more than one
batch ahead, and its heartbeats never wait behind a backlog), else one message per event. See
the wire protocol in :mod:`rxbus.server`.

    >>> import asyncio
    >>> async def main():
    ...     server = RxbusServer(ServerConfig(port=0, store=None))
    ...     await server.start()
    ...     try:
    ...         return server.url.startswith("http://127.0.0.1:")
    ...     finally:
    ...         await server.stop()
    >>> asyncio.run(main())
    True
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from rxbus._extras import install_command, require
from rxbus.deadletter import DeadLetter
from rxbus.event import Event
from rxbus.policies import Overflow
from rxbus.server.ingest import MAX_ID_CHARS, Rejected, events_from_body, events_from_payload
from rxbus.server.outlet import Gap, Outlet
from rxbus.server.packet import orjson_packet_class
from rxbus.topics import compile_pattern, validate_pattern

if TYPE_CHECKING:  # pragma: no cover
    from rxbus.spool import Outcome

try:
    import socketio
    from aiohttp import web
except ImportError:
    require("serve", "rxbus.server")  # raises the error naming the extra to install
    raise

__all__ = ["NotStored", "RxbusServer", "ServerConfig", "is_loopback"]

log = logging.getLogger("rxbus.server")

STATIC = Path(__file__).with_name("static")
_SPOOL_INTERVAL = 2.0  # seconds between scans of the local spool while serving
_DEAD_ROOM = ":dead_letters"  # pattern rooms are "p:<pattern>"; ":" never starts one
_MAX_MISSED = 1000  # most events a subscribe ack carries; older missed ones become a gap
_BATCH = 1000  # most events in one "events" message to a page
_STATS_INTERVAL = 1.0  # seconds between "stats" messages to pages
_DEAD_QUEUE = 1000  # dead letters waiting to be broadcast; more are counted, not queued
_PAGE = 100  # events read per step of GET /events
MAX_CLIENT_PATTERNS = 64  # patterns one Socket.IO client may hold at once


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """How ``rxbus serve`` runs.

    Args:
        host: interface to bind; a non-loopback address needs ``token``.
        port: TCP port (0 picks a free one; see :attr:`RxbusServer.url`).
        token: when set, every HTTP request and Socket.IO connection must present it.
        store: SQLite file for history and cross-restart dedupe; None keeps only memory.
        max_body: largest HTTP body or Socket.IO message accepted, in bytes.
        max_event_bytes: largest single event (its JSON), in bytes.
        spool: directory of events spooled by ``rxbus publish`` to deliver; None for none.
        history: events the bus keeps in memory for clients when there is no store.
        dedupe_ids: most event ids remembered in memory for dedupe (older ones are looked up
            in the store).
        page_queue: most events queued for one client that reads slower than events arrive.
        page_overflow: what a client's full queue does (an :class:`rxbus.Overflow` or its
            name; ``block`` is refused): the drops are counted and told to that client.
    """

    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    store: str | None = None
    max_body: int = 4 * 1024 * 1024
    max_event_bytes: int = 1_048_576
    spool: str | None = None
    history: int = 1000
    dedupe_ids: int = 1_000_000
    page_queue: int = 10_000
    page_overflow: Overflow | str = Overflow.DROP_OLDEST

    def check(self) -> None:
        """Refuse unsafe or impossible settings.

        Raises:
            ValueError: naming the setting, e.g. a non-loopback host without a token.
        """
        if not is_loopback(self.host) and not self.token:
            raise ValueError(
                f"refusing to bind {self.host!r} without --token: anyone on the network could "
                "publish; bind 127.0.0.1 or pass --token"
            )
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port (--port) must be 0..65535, got {self.port}")
        if self.max_body < 1024:
            raise ValueError(
                f"max body (--max-body) must be at least 1024 bytes, got {self.max_body}"
            )
        if self.max_event_bytes < 1:
            raise ValueError(
                f"max event bytes (--max-event-bytes) must be >= 1, got {self.max_event_bytes}"
            )
        Outlet(self.page_queue, self.page_overflow)  # raises naming a bad size or policy


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class NotStored(Exception):
    """The store did not confirm an ingest in time: the request is answered 503 (no ack)."""


class _SeenIds:
    """Event ids accepted so far, oldest evicted first once ``capacity`` is reached."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: dict[str, None] = {}

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, event_id: str) -> None:
        ids = self._ids
        ids[event_id] = None
        if len(ids) > self.capacity:
            del ids[next(iter(ids))]


class RxbusServer:
    """The server behind ``rxbus serve``; start it inside a running asyncio loop.

    Args:
        config: see :class:`ServerConfig`.
        bus: the bus to serve (default: a new ``EventBus``); extra consumers may be attached to
            it before :meth:`start`. The server closes a bus it created, never one it was given.
        store: a store object with ``query``/``flush``/``close`` (default: ``SQLiteStore`` at
            ``config.store``, or none).
    """

    def __init__(self, config: ServerConfig, *, bus: Any = None, store: Any = None) -> None:
        config.check()
        self.config = config
        self._own_bus = bus is None
        self._bus = bus
        self._store = store
        self._own_store = store is None
        self._seen = _SeenIds(config.dedupe_ids)
        self._matchers: dict[str, Callable[[str], bool]] = {}
        self._clients: dict[str, _Client] = {}
        self._clients_by_topic: dict[str, list[_Client]] = {}
        self._dead_outbox: asyncio.Queue[DeadLetter] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self.dead_letters_unsent = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._ingest_lock: asyncio.Lock | None = None
        self._runner: web.AppRunner | None = None
        self._port = config.port
        self.accepted = 0
        self.duplicates = 0
        self.rejected = 0
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp",
            max_http_buffer_size=config.max_body,
            serializer=orjson_packet_class(),
            logger=False,
            engineio_logger=False,
        )
        self.app = self._build_app()

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def bus(self) -> Any:
        """The served :class:`rxbus.EventBus` (created by :meth:`start` unless given)."""
        return self._bus

    @property
    def url(self) -> str:
        """``http://host:port`` the server listens on."""
        host = self.config.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self._port}"

    async def start(self) -> None:
        """Open the store, deliver the spool, then listen.

        Raises:
            OSError: if the address is in use.
        """
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._dead_outbox = asyncio.Queue(_DEAD_QUEUE)
        self._ingest_lock = asyncio.Lock()
        if self._store is None and self.config.store:
            from rxbus.sinks import SQLiteStore

            Path(self.config.store).parent.mkdir(parents=True, exist_ok=True)
            self._store = SQLiteStore(self.config.store)
        if self._bus is None:
            from rxbus import EventBus

            self._bus = EventBus(
                name="rxbus-serve",
                history=self.config.history,
                max_event_bytes=self.config.max_event_bytes,
            )
        if self._store is not None:
            self._bus.subscribe(self._store, mode="sync", name="store")
        self._bus.subscribe(self._on_bus_event, mode="sync", name="socketio-broadcast")
        self._dead_subscription = self._bus.dead_letters.subscribe(
            lambda letter: loop.call_soon_threadsafe(self._queue_dead_letter, letter)
        )
        self._tasks.append(asyncio.create_task(self._broadcast_dead_letters()))
        self._tasks.append(asyncio.create_task(self._send_stats()))
        if self.config.spool:
            await self.drain_spool()
            self._tasks.append(asyncio.create_task(self._watch_spool()))
        # Open connections get half a second to finish once clients are told to go; a request cut
        # off gets no reply, so its sender keeps (spools) and resends it, deduped by id.
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or ()
        if sockets:
            self._port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening, drain the bus into the store, close what the server owns."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        pumps = [client.pump for client in self._clients.values() if client.pump is not None]
        for task in [*self._tasks, *pumps]:
            task.cancel()
        await asyncio.gather(*self._tasks, *pumps, return_exceptions=True)
        self._tasks.clear()
        dead = getattr(self, "_dead_subscription", None)
        if dead is not None:
            dead.dispose()
        if self._own_bus and self._bus is not None:
            await self._bus.aclose()
        if self._own_store and self._store is not None:
            store = self._store
            await asyncio.get_running_loop().run_in_executor(None, store.close)

    # -- ingest: validate all, dedupe, publish, store, then acknowledge -----------------------

    async def ingest(self, events: list[Event]) -> tuple[int, int]:
        """Publish the events not seen before and wait until they are stored.

        Returns:
            ``(accepted, duplicates)``.
        """
        assert self._ingest_lock is not None, "start() the server first"
        loop = asyncio.get_running_loop()
        async with self._ingest_lock:
            # One request at a time between the dedupe check and the publish, so two requests
            # carrying the same id cannot both pass the check.
            fresh = await loop.run_in_executor(None, self._unseen, events)
            publish = self._bus.publish
            for event in fresh:
                publish(event)
                self._seen.add(event.id)
        # Duplicates wait too: their first copy may still be on its way to the store, and the
        # sender deletes its spooled copy once we answer.
        if events and self._store is not None:
            stored = await loop.run_in_executor(None, self._store.flush)
            if stored is False:
                # Not acknowledged, so the sender keeps the events and sends them again; the
                # resend is answered (as duplicates) once the store has caught up.
                raise NotStored("the store did not confirm the events in time; send them again")
        duplicates = len(events) - len(fresh)
        self.accepted += len(fresh)
        self.duplicates += duplicates
        return len(fresh), duplicates

    def _unseen(self, events: list[Event]) -> list[Event]:
        """The events whose id is neither remembered nor stored (nor repeated in ``events``)."""
        fresh: list[Event] = []
        ids: set[str] = set()
        get = getattr(self._store, "get", None)
        for event in events:
            if event.id in ids or event.id in self._seen:
                continue
            # An id from before a restart is found in the store, not in memory.
            if get is not None and get(event.id) is not None:
                self._seen.add(event.id)
                continue
            ids.add(event.id)
            fresh.append(event)
        return fresh

    async def drain_spool(self) -> int:
        """Deliver the events ``rxbus publish`` spooled for this server while it was down.

        Only the spools of this server's own addresses (``127.0.0.1``/``localhost``/its host, at
        its port) are read, plus spool files from before spools were kept per destination. An
        entry that cannot be read is quarantined with a warning; it never stops the server.

        Returns:
            How many spooled events were handed over (duplicates included).
        """
        from rxbus.spool import Spool

        if not self.config.spool:
            return 0
        root = self.config.spool
        hosts = dict.fromkeys(("127.0.0.1", "localhost", self.config.host))
        spools = [Spool(root)]
        if self._port:
            spools += [Spool.for_url(root, f"http://{h}:{self._port}") for h in hosts if h]
        loop = asyncio.get_running_loop()

        def drain(spool: Spool) -> int:
            def send(lines: list[bytes]) -> Outcome:
                try:
                    events = events_from_body(
                        b"\n".join(lines), "application/x-ndjson", self.config.max_event_bytes
                    )
                except Rejected as err:
                    if len(lines) == 1:
                        log.warning("spool %s: event set aside: %s", spool.directory, err.message)
                    return "rejected"
                asyncio.run_coroutine_threadsafe(self.ingest(events), loop).result()
                return "ok"

            if not spool.pending():
                return 0
            return spool.drain(send, warn=log.warning)

        delivered = 0
        for spool in spools:
            try:
                # The spool blocks on file I/O and flock: run it off the loop, which ingests.
                delivered += await loop.run_in_executor(None, drain, spool)
            except OSError as err:
                log.warning("spool %s cannot be read (%s); will retry", spool.directory, err)
        return delivered

    async def _watch_spool(self) -> None:
        while True:
            await asyncio.sleep(_SPOOL_INTERVAL)
            try:
                await self.drain_spool()
            except Exception:  # pragma: no cover - a bad spool must not stop the server
                log.exception("draining the spool failed; will retry")

    # -- broadcast: one bounded outlet and one sending task per client -----------------------

    def _on_bus_event(self, event: Event) -> None:
        # The server publishes on its loop; anything else that publishes on the bus (another
        # thread) hands the event over to the loop, which owns the outlets.
        if threading.get_ident() == self._loop_thread:
            self._fan_out(event)
        else:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._fan_out, event)

    def _fan_out(self, event: Event) -> None:
        for client in self._clients_for(event.topic):
            outlet = client.outlet
            outlet.offer(event)
            client.wake.set()

    def _clients_for(self, topic: str) -> list[_Client]:
        clients = self._clients_by_topic.get(topic)
        if clients is None:
            matchers = self._matchers
            clients = [
                c for c in self._clients.values() if any(matchers[p](topic) for p in c.patterns)
            ]
            if len(self._clients_by_topic) > 16_384:
                self._clients_by_topic.clear()
            self._clients_by_topic[topic] = clients
        return clients

    async def _pump(self, client: _Client) -> None:
        """Send what the client's outlet holds: acknowledged batches, or one event at a time."""
        outlet = client.outlet
        loop = asyncio.get_running_loop()
        while True:
            await client.wake.wait()
            client.wake.clear()
            if outlet.failed:
                # --page-overflow error: the client resumes from its last id when it reconnects.
                log.warning(
                    "client %s fell %d events behind (page overflow 'error'): disconnecting it",
                    client.sid,
                    outlet.capacity,
                )
                await self.sio.disconnect(client.sid)
                return
            while len(outlet):
                items, waited = outlet.take(_BATCH if client.batch else 100)
                try:
                    if client.batch:
                        acked: asyncio.Future[None] = loop.create_future()

                        def done(*_: Any, acked: asyncio.Future[None] = acked) -> None:
                            if not acked.done():
                                acked.set_result(None)

                        payload = {
                            "events": [item.to_dict() for item in items],
                            "waited": round(waited, 3),
                            **self._lag(client),
                        }
                        await self.sio.emit("events", payload, to=client.sid, callback=done)
                        # One batch in flight: the rest waits here, bounded, until the page
                        # has taken this one, so pings are never queued behind a backlog.
                        await acked
                    else:
                        for item in items:
                            if isinstance(item, Gap):
                                await self.sio.emit("dropped", item.to_dict()["gap"], to=client.sid)
                            else:
                                await self.sio.emit("event", item.to_dict(), to=client.sid)
                        await asyncio.sleep(0)  # let ingest run between chunks
                except Exception:  # pragma: no cover - one client's failure must not stop others
                    log.exception("sending to client %s failed", client.sid)

    def _lag(self, client: _Client) -> dict[str, Any]:
        outlet = client.outlet
        return {
            "queued": outlet.queued,
            "oldest_wait": round(outlet.oldest_wait(), 3),
            "dropped": outlet.dropped,
            "patterns": sorted(client.patterns),
        }

    async def _send_stats(self) -> None:
        """Every second, tell each page the server's totals for its topics and how far behind."""
        while True:
            await asyncio.sleep(_STATS_INTERVAL)
            pages = [c for c in self._clients.values() if c.batch and c.patterns]
            if not pages:
                continue
            try:
                totals = self._topic_totals()
                for client in pages:
                    await self.sio.emit(
                        "stats",
                        {"topics": self._matching(totals, client.patterns), **self._lag(client)},
                        to=client.sid,
                    )
            except Exception:  # pragma: no cover - stats must not stop the server
                log.exception("sending stats failed")

    def _topic_totals(self) -> dict[str, int]:
        topics = self._bus.metrics().get("topics", {})
        return {t: int(c.get("published", 0)) for t, c in topics.items()}

    def _matching(self, totals: dict[str, int], patterns: set[str]) -> dict[str, int]:
        matchers = [self._matchers[p] for p in patterns if p in self._matchers]
        out: dict[str, int] = {}
        for topic, count in totals.items():
            try:
                if any(match(topic) for match in matchers):
                    out[topic] = count
            except ValueError:  # the bus's shared entry for topics past its limit
                continue
        return out

    def _queue_dead_letter(self, letter: DeadLetter) -> None:
        assert self._dead_outbox is not None
        try:
            self._dead_outbox.put_nowait(letter)
        except asyncio.QueueFull:
            self.dead_letters_unsent += 1  # still in bus.recent_dead_letters() and the logs

    async def _broadcast_dead_letters(self) -> None:
        assert self._dead_outbox is not None
        outbox = self._dead_outbox
        while True:
            letter = await outbox.get()
            try:
                await self.sio.emit("dead_letter", _dead_letter_dict(letter), to=_DEAD_ROOM)
            except Exception:  # pragma: no cover - one client's failure must not stop others
                log.exception("broadcast of a dead letter failed")

    def _join(self, client: _Client, pattern: str) -> None:
        if pattern in client.patterns:
            return
        client.patterns.add(pattern)
        if pattern not in self._matchers:
            self._matchers[pattern] = compile_pattern(pattern)
        self._clients_by_topic.clear()

    def _leave(self, client: _Client, pattern: str) -> None:
        if pattern not in client.patterns:
            return
        client.patterns.discard(pattern)
        if not any(pattern in c.patterns for c in self._clients.values()):
            self._matchers.pop(pattern, None)
        self._clients_by_topic.clear()

    # -- history -----------------------------------------------------------------------------

    def history(
        self, pattern: str, after: str | None = None, limit: int = _MAX_MISSED
    ) -> list[Event]:
        """Events matching ``pattern`` that arrived after event ``after``, else the latest.

        Oldest first; at most ``limit``. Reads the store when there is one (arrival order, so an
        event delivered late from a spool still counts as after ``after``), else the bus's
        in-memory ring.
        """
        if self._store is not None:
            if after:
                return list(self._store.query(pattern, after=after, limit=limit))
            return list(self._store.latest(pattern, limit))
        events = self._bus.history(pattern)
        if after:
            for index, event in enumerate(events):
                if event.id == after:
                    return events[index + 1 : index + 1 + limit]
            return [e for e in events if e.id > after][:limit]
        return events[-limit:] if limit else []

    # -- the HTTP and Socket.IO surface ------------------------------------------------------

    def _build_app(self) -> web.Application:
        # The body limit is enforced by our own handler (to answer with a JSON reason); the
        # framework's limit sits just above it as a backstop.
        app = web.Application(
            client_max_size=self.config.max_body + 1,
            middlewares=[self._guard],
        )
        app.router.add_get("/", self._index)
        app.router.add_get("/healthz", self._health)
        app.router.add_post("/events", self._post_events)
        app.router.add_get("/events", self._get_events)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/api/stats", self._stats)
        app.router.add_static("/static/", STATIC, show_index=False, follow_symlinks=False)
        self.sio.attach(app)
        app.on_shutdown.append(self._close_clients)
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("publish", self._on_publish)
        self.sio.on("subscribe", self._on_subscribe)
        self.sio.on("unsubscribe", self._on_unsubscribe)
        self.sio.on("dead_letters", self._on_dead_letters)
        return app

    async def _close_clients(self, app: web.Application) -> None:
        # Runs after the listener has closed: a WebSocket would otherwise hold the shutdown
        # open until its timeout, and a client told to go cannot come back here.
        await self.sio.shutdown()
        if self.sio.eio.sockets:  # engineio cannot disconnect an empty set
            await self.sio.eio.disconnect()
        # engineio leaves each socket's ping timer sleeping (up to 25 s) untracked; cancel ours
        # so a loop closed right after stop() has no pending task left behind.
        for task in asyncio.all_tasks():
            frame = getattr(task.get_coro(), "cr_frame", None)
            owner = frame.f_locals.get("self") if frame is not None else None
            if getattr(owner, "server", None) is self.sio.eio:
                task.cancel()

    @web.middleware
    async def _guard(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        """Token, origin and body-size checks shared by every HTTP route."""
        if not self.config.token and not _loopback_host(request.host):
            # Without a token only loopback names may be used, so a site that rebinds its DNS
            # name to 127.0.0.1 cannot reach the server from a browser.
            return _error(403, f"Host {request.host[:100]!r} refused: use 127.0.0.1 or localhost")
        origin = request.headers.get("Origin")
        if origin and origin != f"{request.scheme}://{request.host}":
            # A page from another site may POST to a loopback server; only our own page may.
            return _error(403, f"cross-origin request from {origin[:100]!r} refused")
        # Socket.IO authenticates in its connect handler (browsers cannot set headers on a
        # WebSocket); everything else needs the bearer token (or the dashboard cookie).
        if (
            self.config.token
            and not request.path.startswith("/socket.io/")
            and not self._token_ok(request)
        ):
            return _error(401, "missing or wrong token; send 'Authorization: Bearer TOKEN'")
        try:
            response = await handler(request)
        except Rejected as err:
            self.rejected += 1
            return _error(err.status, err.message)
        except NotStored as err:
            return _error(503, str(err))
        except web.HTTPException as err:
            if err.status >= 400:
                return _error(err.status, err.reason)
            raise
        if self.config.token and request.path == "/" and "token" in request.query:
            response.set_cookie(
                "rxbus_token",
                self.config.token,
                httponly=True,
                samesite="Strict",
                path="/",
            )
        return response

    def _token_ok(self, request: web.Request) -> bool:
        token = self.config.token or ""
        header = request.headers.get("Authorization", "")
        candidates = [
            header[7:] if header.startswith("Bearer ") else "",
            request.query.get("token", ""),
            request.cookies.get("rxbus_token", ""),
        ]
        return any(c and hmac.compare_digest(c.encode(), token.encode()) for c in candidates)

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers=_PAGE_HEADERS)

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "accepted": self.accepted})

    async def _post_events(self, request: web.Request) -> web.Response:
        max_body = self.config.max_body
        length = request.content_length
        if length is not None and length > max_body:
            raise Rejected(413, f"body is {length} bytes; at most {max_body} (--max-body)")
        # content.read(n) returns what is buffered so far, not n bytes: read until the end.
        body = bytearray()
        while len(body) <= max_body:
            chunk = await request.content.read(max_body + 1 - len(body))
            if not chunk:
                break
            body += chunk
        if len(body) > max_body:
            raise Rejected(413, f"body exceeds {max_body} bytes (--max-body)")
        events = events_from_body(bytes(body), request.content_type, self.config.max_event_bytes)
        accepted, duplicates = await self.ingest(events)
        return web.json_response({"accepted": accepted, "duplicates": duplicates})

    async def _get_events(self, request: web.Request) -> web.StreamResponse:
        """History as a JSON array, written a page at a time so memory stays bounded."""
        pattern = request.query.get("pattern", "**")
        after = request.query.get("after") or None
        try:
            validate_pattern(pattern)
        except ValueError as err:
            raise Rejected(400, str(err)) from None
        if after is not None and len(after) > MAX_ID_CHARS:
            raise Rejected(400, f"after is {len(after)} characters; at most {MAX_ID_CHARS}")
        limit_text = request.query.get("limit", str(_MAX_MISSED))
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 10_000:
            raise Rejected(400, f"limit must be an integer 1..10000, got {limit_text[:40]!r}")
        loop = asyncio.get_running_loop()
        pages = _HistoryPages(self, pattern, after, int(limit_text))
        page = await loop.run_in_executor(None, pages.next)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        separator = b"["
        while page:
            chunk = bytearray()
            for event in page:
                # One line at a time into one buffer: orjson's results kept alive until a join
                # hold many times their size.
                chunk += separator
                chunk += event.to_json()
                separator = b","
            await response.write(chunk)
            page = await loop.run_in_executor(None, pages.next)
        await response.write(b"]" if separator == b"," else b"[]")
        await response.write_eof()
        return response

    async def _metrics(self, request: web.Request) -> web.Response:
        from rxbus.server.metrics import render_prometheus

        try:
            text = render_prometheus(self._bus.metrics(), self._server_counts())
        except ImportError:
            raise Rejected(
                501, f"prometheus_client is not installed: {install_command('prometheus')}"
            ) from None
        return web.Response(body=text, content_type="text/plain", charset="utf-8")

    async def _stats(self, request: web.Request) -> web.Response:
        stats = self._bus.metrics()
        stats["server"] = self._server_counts()
        return web.json_response(stats, dumps=_dumps)

    def _server_counts(self) -> dict[str, int]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "clients": len(self._clients),
            "client_sent": sum(c.outlet.sent for c in self._clients.values()),
            "client_dropped": sum(c.outlet.dropped for c in self._clients.values()),
            "client_queued": sum(c.outlet.queued for c in self._clients.values()),
        }

    # Socket.IO handlers. Each returns its acknowledgement.

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        if self.config.token:
            given = auth.get("token") if isinstance(auth, dict) else None
            if not isinstance(given, str) or not hmac.compare_digest(
                given.encode(), self.config.token.encode()
            ):
                raise socketio.exceptions.ConnectionRefusedError("missing or wrong token")
        client = _Client(sid, Outlet(self.config.page_queue, self.config.page_overflow))
        self._clients[sid] = client
        client.pump = asyncio.create_task(self._pump(client))

    async def _on_disconnect(self, sid: str, *_: Any) -> None:
        client = self._clients.pop(sid, None)
        if client is None:
            return
        for pattern in list(client.patterns):
            self._leave(client, pattern)
        if client.pump is not None:
            client.pump.cancel()

    async def _on_publish(self, sid: str, payload: Any = None) -> Any:
        try:
            events = events_from_payload(payload, self.config.max_event_bytes)
        except Rejected as err:
            self.rejected += 1
            return {"ok": False, "error": err.message}
        try:
            accepted, duplicates = await self.ingest(events)
        except NotStored as err:
            log.warning("publish from %s not acknowledged: %s", sid, err)
            return self.sio.not_handled  # no ack: the sender resends after its ack timeout
        return {"ok": True, "accepted": accepted, "duplicates": duplicates}

    async def _on_subscribe(self, sid: str, request: Any = None) -> dict[str, Any]:
        client = self._clients.get(sid)
        if not isinstance(request, dict) or client is None:
            return {"ok": False, "error": "subscribe takes {'pattern': ..., 'last_id': ...}"}
        pattern = request.get("pattern", "**")
        last_id = request.get("last_id")
        history = request.get("history", 0)
        batch = request.get("batch", False)
        replace = request.get("replace", False)
        try:
            validate_pattern(pattern)
        except ValueError as err:
            return {"ok": False, "error": str(err)}
        if last_id is not None and not isinstance(last_id, str):
            return {"ok": False, "error": f"last_id must be a string or null, got {last_id!r:.60}"}
        if last_id is not None and len(last_id) > MAX_ID_CHARS:
            return {
                "ok": False,
                "error": f"last_id is {len(last_id)} characters; at most {MAX_ID_CHARS}",
            }
        if pattern not in client.patterns and len(client.patterns) >= MAX_CLIENT_PATTERNS:
            return {
                "ok": False,
                "error": f"a client subscribes to at most {MAX_CLIENT_PATTERNS} patterns at once",
            }
        if not isinstance(history, int) or not 0 <= history <= _MAX_MISSED:
            return {"ok": False, "error": f"history must be 0..{_MAX_MISSED}, got {history!r:.60}"}
        for name, flag in (("batch", batch), ("replace", replace)):
            if not isinstance(flag, bool):
                return {"ok": False, "error": f"{name} must be true or false, got {flag!r:.60}"}
        if batch:
            client.batch = True
        if replace:
            # The page changed its filter: what was queued for the old one is not wanted.
            for old in list(client.patterns):
                self._leave(client, old)
            client.outlet.clear()
        # Join before reading the past: an event published in between then arrives twice
        # (the client drops it by id) rather than not at all.
        self._join(client, pattern)
        reply: dict[str, Any] = {"ok": True, "missed": [], "gap": None}
        if client.batch:
            reply["topics"] = self._matching(self._topic_totals(), {pattern})
        if last_id is None and not history:
            return reply
        loop = asyncio.get_running_loop()
        limit = _MAX_MISSED if last_id else history
        missed, gap = await loop.run_in_executor(None, lambda: self.missed(pattern, last_id, limit))
        reply["missed"] = [e.to_dict() for e in missed]
        reply["gap"] = gap
        return reply

    def missed(
        self, pattern: str, last_id: str | None, limit: int = _MAX_MISSED
    ) -> tuple[list[Event], dict[str, Any] | None]:
        """The newest ``limit`` events after ``last_id``, and a gap for the older ones.

        A client resuming after a reconnect gets every missed event it can show, and for the
        rest an exact count with the first and last of them, never a silent cut.

        Returns:
            The events, oldest first, and None or ``{"count", "from", "to"}`` (plus
            ``"at_least": true`` when the server no longer remembers where ``last_id`` was:
            no store and an id older than the in-memory history).
        """
        store = self._store
        if store is not None:
            store.flush()  # an event published before the client joined is read from the store
            if last_id is None:
                return list(store.latest(pattern, limit)), None
            total = store.count(pattern, after=last_id)
            if total <= limit:
                return list(store.query(pattern, after=last_id, limit=limit)), None
            shown = list(store.latest(pattern, limit))
            [first] = store.query(pattern, after=last_id, limit=1)
            last = store.latest(pattern, 2, until=shown[0].id)[0]
            count = store.count(pattern, after=last_id, until=last.id)
            return shown, _gap(count, first, last)
        events = self._bus.history(pattern)
        if last_id is None:
            return events[-limit:] if limit else [], None
        ids = [e.id for e in events]
        lost_older = last_id not in ids
        after = (
            [e for e in events if e.id > last_id]
            if lost_older
            else events[ids.index(last_id) + 1 :]
        )
        skipped, shown = after[:-limit], after[-limit:]
        if not skipped and not lost_older:
            return shown, None
        if not skipped:
            first = shown[0] if shown else None
            gap: dict[str, Any] = {"count": 0, "at_least": True}
            if first is not None:
                gap["to"] = {"id": first.id, "timestamp": first.timestamp.isoformat()}
            return shown, gap
        gap = _gap(len(skipped), skipped[0], skipped[-1])
        if lost_older:
            gap["at_least"] = True
        return shown, gap

    async def _on_unsubscribe(self, sid: str, request: Any = None) -> dict[str, Any]:
        pattern = request.get("pattern") if isinstance(request, dict) else None
        if not isinstance(pattern, str):
            return {"ok": False, "error": "unsubscribe takes {'pattern': ...}"}
        client = self._clients.get(sid)
        if client is not None:
            self._leave(client, pattern)
        return {"ok": True}

    async def _on_dead_letters(self, sid: str, request: Any = None) -> dict[str, Any]:
        await self.sio.enter_room(sid, _DEAD_ROOM)
        letters = self._bus.recent_dead_letters(100)
        return {"ok": True, "dead_letters": [_dead_letter_dict(d) for d in letters]}


_PAGE_HEADERS = {
    # The page renders event content with textContent only; the policy is a second wall.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class _Client:
    """One Socket.IO connection: its patterns, its outlet and the task that empties it."""

    __slots__ = ("batch", "outlet", "patterns", "pump", "sid", "wake")

    def __init__(self, sid: str, outlet: Outlet) -> None:
        self.sid = sid
        self.outlet = outlet
        self.patterns: set[str] = set()
        self.batch = False
        self.wake = asyncio.Event()
        self.pump: asyncio.Task[None] | None = None


def _gap(count: int, first: Event, last: Event) -> dict[str, Any]:
    gap = Gap(first)
    gap.count, gap.last = count, last
    return dict(gap.to_dict()["gap"])


class _HistoryPages:
    """``GET /events`` read in pages of :data:`_PAGE` events, oldest first.

    With ``after`` it reads forward from that event; without, it first walks back ``limit``
    events to find where to start (keeping only ids), then reads forward, so no more than a page
    of events is held at once.
    """

    def __init__(self, server: RxbusServer, pattern: str, after: str | None, limit: int) -> None:
        self.server = server
        self.store = server._store
        self.pattern = pattern
        self.left = limit
        self.cursor = after
        self.ring: list[Event] | None = None
        self.started = after is not None

    def next(self) -> list[Event]:
        """The next page; empty when done."""
        if not self.started:
            self.started = True
            self._start()
        if self.left <= 0:
            return []
        size = min(_PAGE, self.left)
        if self.ring is not None:
            page, self.ring = self.ring[:size], self.ring[size:]
        elif self.store is None:
            page = self.server.history(self.pattern, self.cursor, size)
        elif self.cursor is None:
            page = list(self.store.query(self.pattern, limit=size))
        else:
            page = list(self.store.query(self.pattern, after=self.cursor, limit=size))
        if page:
            self.cursor = page[-1].id
        self.left = self.left - len(page) if len(page) == size else 0
        return page

    def _start(self) -> None:
        """Find the oldest of the newest ``limit`` events: read after the one before it."""
        if self.store is None:
            # The bus's ring is in memory already: page through its newest ``limit`` events.
            self.ring = self.server.bus.history(self.pattern)[-self.left :]
            self.left = len(self.ring)
            return
        store = self.store
        found = 0
        until: str | None = None
        while found < self.left:
            want = min(_PAGE, self.left - found)
            page = [
                e.id for e in store.latest(self.pattern, want + (1 if until else 0), until=until)
            ]
            if until:
                page = page[:-1]  # ``until`` is inclusive: that event is counted already
            if not page:
                break
            found += len(page)
            until = page[0]
        self.left = found
        if until is not None:
            before = store.latest(self.pattern, 2, until=until)
            self.cursor = before[0].id if len(before) == 2 else None


def _loopback_host(host_header: str) -> bool:
    """True if an HTTP Host header names a loopback address (with or without a port)."""
    host = host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header
    if host.startswith("["):
        host = host[1 : host.find("]")]
    return is_loopback(host)


def _dead_letter_dict(letter: DeadLetter) -> dict[str, Any]:
    d = letter.to_dict()
    d.pop("traceback", None)  # the dashboard shows the error line; tracebacks stay in logs
    return d


def _dumps(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _error(status: int, message: str) -> web.Response:
    line = " ".join(str(message).split())[:300]
    return web.json_response({"error": line}, status=status)
