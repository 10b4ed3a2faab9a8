"""SocketIOSink: events to a Socket.IO server over one connection, acknowledged, never lost.

python-socketio's client raises on ``emit`` while disconnected, drops its send queue when the
connection breaks and forgets pending acknowledgements on reconnect. So this sink keeps its own
outbox: every event stays there until the server acknowledges it, is sent again after a
reconnect or an ack timeout, and the receiving side removes the duplicates that resending can
cause by event id (at-least-once on the wire, exactly-once to the application).

::

    sink = SocketIOSink("http://127.0.0.1:8765")
    bus.subscribe(sink, topic="hook.**", name="socketio")
    ...
    bus.close()          # drains the bus, then the sink flushes its outbox and disconnects

The publisher never waits on the network: ``on_next`` appends to a bounded in-memory outbox and
returns; one background thread per sink runs an asyncio loop with a single python-socketio
connection, a window of emits in flight, batching and the resend logic. With ``spill=path`` the
outbox overflows into SQLite instead of memory, and what is still unacknowledged at ``close()``
is kept there and sent by the next sink opened on the same file.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from loguru import logger

from rxbus._context import dead_letter_target
from rxbus.deadletter import DeadLetter
from rxbus.errors import BufferOverflowError, BusClosedError, DeliveryError
from rxbus.event import Event
from rxbus.policies import Overflow
from rxbus.sinks._base import DeadLetterBinding

__all__ = ["SocketIOSink"]

_RESERVED_EVENTS = frozenset({"connect", "connect_error", "disconnect", "message"})
_OVERFLOWS = (Overflow.ERROR, Overflow.DROP_NEWEST)
# Events per spill row: one INSERT and one orjson call per chunk, not per event, so spilling
# keeps up with a fast publisher.
_SPILL_CHUNK = 1000


class _OrjsonCodec:
    """The ``json`` interface python-socketio packets use, backed by orjson (several times
    faster than the standard library on event dicts)."""

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        return orjson.dumps(obj).decode()

    @staticmethod
    def loads(raw: str | bytes, **_: Any) -> Any:
        return orjson.loads(raw)


def _packet_class() -> type:
    """python-socketio's Packet with orjson and without the binary scan.

    A subclass, so the change is ours alone: python-socketio's ``json=`` argument would instead
    patch its shared Packet class for every client and server in the process. Payloads are JSON
    values (checked before emitting), so the recursive search for ``bytes`` that python-socketio
    runs over every outgoing packet, about half of the sink's CPU time, is skipped.
    """
    from socketio import packet

    return type(
        "_OrjsonPacket", (packet.Packet,), {"json": _OrjsonCodec, "uses_binary_events": False}
    )


def _require_client() -> None:
    """Import python-socketio's asyncio client now, so a missing extra fails at construction
    (and its import time never stalls the sink's loop)."""
    from rxbus._extras import require

    require("serve", "SocketIOSink")


def _setter(flag: asyncio.Event) -> Callable[..., None]:
    """A Socket.IO handler (any arguments) that sets ``flag``."""

    def handler(*_: Any) -> None:
        flag.set()

    return handler


@dataclass(slots=True)
class _Item:
    """One event in the outbox: an Event, or its dict form when read back from the spill file."""

    event: Event | None
    record: dict[str, Any] | None = None  # Event.to_dict() of an event read back from the spill
    chunk: int | None = None  # its spill row, deleted once all of that row's events are settled
    solo: bool = False  # sent alone after its batch was rejected, to find the bad event
    attempts: int = 0  # emits so far

    def as_event(self) -> Event:
        if self.event is None:
            assert self.record is not None
            self.event = Event.from_dict(self.record)
        return self.event

    def as_record(self) -> dict[str, Any]:
        return self.record if self.record is not None else self.as_event().to_dict()


@dataclass(slots=True)
class _Batch:
    items: list[_Item]
    sent_at: float


class SocketIOSink(DeadLetterBinding):
    """Delivers events to a Socket.IO server with acknowledgements and a bounded outbox.

    Each emit carries up to ``batch_size`` payloads as one list (a single payload, not a list,
    when ``batch_size`` is 1); at most ``window`` emits wait for their ack at once. An emit is
    acknowledged by any ack except ``{"ok": false, ...}``; a rejected batch is split and its
    events sent one by one, and an event rejected on its own becomes a dead letter (counted in
    ``rejected``). Unacknowledged events are resent after a reconnect and after ``ack_timeout``.

    Args:
        url: the server, e.g. ``"http://127.0.0.1:8765"``.
        event: the Socket.IO event name to emit.
        namespace: the Socket.IO namespace.
        token: sent as ``auth={"token": token}`` on connect (the rxbus wire protocol).
        payload: ``Event -> JSON value`` shaping what is sent per event; default
            :meth:`Event.to_dict`. Receivers dedupe by id, so keep the id in it. A payload that
            raises or is not JSON-serialisable dead-letters the events of its emit.
        batch_size: events per emit (1 sends one payload per emit, not a list).
        window: emits in flight, awaiting their ack.
        ack_timeout: seconds to wait for an ack before sending the batch again.
        outbox_size: events held in memory (queued, in flight or awaiting ack).
        overflow: what ``on_next`` does when the outbox is full: ``Overflow.ERROR`` raises
            :class:`BufferOverflowError` (inside a bus consumer the event becomes a dead letter),
            ``Overflow.DROP_NEWEST`` drops it. Both count it in ``overflow``.
        spill: a SQLite file; when memory passes half of ``outbox_size`` newer events go there,
            and events still unacknowledged at ``close()`` are kept there for the next sink.
        spill_size: the most events the spill file holds.
        connect_timeout: seconds a connection attempt may take.
        reconnect_delay: first wait before reconnecting (doubles up to ``reconnect_delay_max``).
        reconnect_delay_max: longest wait between connection attempts.
        close_timeout: how long ``on_completed`` waits for the outbox to drain.
        transports: Engine.IO transports; websocket alone skips the polling handshake.
        headers: extra HTTP headers for the connection request.
        name: names the sink's thread and its dead letters.
        dead_letters: receives rejected events; default the dead letters of the bus the sink
            is subscribed to (see :meth:`bind_consumer`), else the ``rxbus`` logger.

    Raises:
        ValueError: naming any argument out of range.
        ImportError: python-socketio or aiohttp is missing (``pip install 'rxbus-events[serve]'``).

    Example::

        sink = SocketIOSink("http://127.0.0.1:8765", token="s3cret", batch_size=100)
        sink.on_next(Event(topic="hook.tool", data={"tool": "Bash"}))
        sink.flush(timeout=5.0)      # True once the server acknowledged everything
        sink.stats["acknowledged"]   # 1
        sink.close()
    """

    def __init__(
        self,
        url: str,
        *,
        event: str = "publish",
        namespace: str = "/",
        token: str | None = None,
        payload: Callable[[Event], Any] | None = None,
        batch_size: int = 256,
        window: int = 8,
        ack_timeout: float = 5.0,
        outbox_size: int = 100_000,
        overflow: Overflow | str = Overflow.ERROR,
        spill: str | Path | None = None,
        spill_size: int = 1_000_000,
        connect_timeout: float = 5.0,
        reconnect_delay: float = 0.05,
        reconnect_delay_max: float = 2.0,
        close_timeout: float = 10.0,
        transports: Iterable[str] = ("websocket",),
        headers: Mapping[str, str] | None = None,
        name: str = "socketio",
        dead_letters: Callable[[DeadLetter], None] | None = None,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(
            ("http://", "https://", "ws://", "wss://")
        ):
            raise ValueError(f"url must be an http(s):// or ws(s):// URL, got {url!r}")
        if not isinstance(event, str) or not event or event in _RESERVED_EVENTS:
            raise ValueError(
                f"event must be a non-empty str other than {sorted(_RESERVED_EVENTS)}, got {event!r}"
            )
        if not isinstance(namespace, str) or not namespace.startswith("/"):
            raise ValueError(f"namespace must be a str starting with '/', got {namespace!r}")
        if payload is not None and not callable(payload):
            raise ValueError(f"payload must be a callable Event -> JSON value, got {payload!r}")
        for arg, value in (
            ("batch_size", batch_size),
            ("window", window),
            ("outbox_size", outbox_size),
            ("spill_size", spill_size),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{arg} must be an int >= 1, got {value!r}")
        for arg, seconds in (
            ("ack_timeout", ack_timeout),
            ("connect_timeout", connect_timeout),
            ("reconnect_delay", reconnect_delay),
            ("reconnect_delay_max", reconnect_delay_max),
            ("close_timeout", close_timeout),
        ):
            if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0:
                raise ValueError(f"{arg} must be a number of seconds > 0, got {seconds!r}")
        policy = Overflow.parse(overflow)
        if policy not in _OVERFLOWS:
            raise ValueError(
                f"overflow must be one of {[o.value for o in _OVERFLOWS]} (a sink never blocks "
                f"its publisher), got {overflow!r}"
            )
        transports = list(transports)
        if not transports or not set(transports) <= {"websocket", "polling"}:
            raise ValueError(f"transports must be 'websocket' and/or 'polling', got {transports!r}")

        self.url = url
        self.event = event
        self.namespace = namespace
        self.name = name
        self._token = token
        self._payload: Callable[[Event], Any] = payload or Event.to_dict
        self._default_payload = payload is None
        self._batch_size = batch_size
        self._window = window
        self._ack_timeout = float(ack_timeout)
        self._outbox_size = outbox_size
        self._overflow = policy
        self._spill_path = Path(spill) if spill is not None else None
        self._spill_size = spill_size
        self._connect_timeout = float(connect_timeout)
        self._reconnect_delay = float(reconnect_delay)
        self._reconnect_delay_max = float(reconnect_delay_max)
        self._close_timeout = float(close_timeout)
        self._transports = transports
        self._headers = dict(headers or {})
        self._dead_letters = dead_letter_target(dead_letters)
        self._explicit_dead_letters = dead_letters is not None
        self.last_error: str | None = None

        # Shared with publishers: guarded by _lock. ``_memory`` counts events held in memory
        # (intake + pending + in flight); ``_spilled`` counts rows in the spill file.
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._intake: deque[Event] = deque()
        self._memory = 0
        self._spilled = 0
        self._closing = False
        # True while the loop will look at the intake without a nudge (it is busy, waiting for
        # acks or disconnected); publishers then skip the cross-thread wake-up, which costs more
        # than the append itself.
        self._wake_scheduled = False
        self._spill_at = outbox_size // 2 if spill is not None else sys.maxsize
        self._spill_nudged = False
        self._counts = dict.fromkeys(
            (
                "sent",
                "acknowledged",
                "resent",
                "rejected",
                "overflow",
                "reconnects",
                "connect_failures",
                "ack_timeouts",
                "server_duplicates",
                "abandoned",
                "spilled_total",
            ),
            0,
        )

        # Owned by the sink's loop thread.
        self._pending: deque[_Item] = deque()
        self._inflight: dict[int, _Batch] = {}
        self._batch_seq = 0
        self._client: Any = None
        self._db: sqlite3.Connection | None = None
        self._spill_cursor = 0  # rows with a larger seq are not loaded into memory yet
        self._spilled_loaded = 0  # spilled events also held in memory (pending or in flight)
        self._chunk_left: dict[int, int] = {}  # loaded spill row -> its events not yet settled
        self._stop_requested = False
        self._left_at_close = 0
        self._closed = threading.Event()

        _require_client()
        if self._spill_path is not None:
            self._open_spill(self._spill_path)
        self._loop = asyncio.new_event_loop()
        self._wake: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rxbus-{name}", daemon=True)
        self._thread.start()
        self._ready.wait()

    # -- observer ------------------------------------------------------------------------------

    def on_next(self, event: Event) -> None:
        """Queue ``event`` for delivery; returns at once.

        Raises:
            BufferOverflowError: the outbox is full and ``overflow`` is ``Overflow.ERROR``.
            BusClosedError: after :meth:`close`.
        """
        with self._lock:
            if self._closing:
                raise BusClosedError(
                    f"SocketIOSink {self.name!r} is closed; event {event.id} refused"
                )
            if self._memory >= self._outbox_size:
                self._counts["overflow"] += 1
                if self._overflow is Overflow.ERROR:
                    raise BufferOverflowError(
                        f"SocketIOSink {self.name!r} outbox is full ({self._outbox_size} events "
                        f"unacknowledged; server {self.url} unreachable?); event {event.id} refused"
                    )
                return
            self._memory += 1
            self._intake.append(event)
            nudge = not self._wake_scheduled
            if self._memory > self._spill_at and not self._spill_nudged:
                self._spill_nudged = nudge = True
            if not nudge:
                return
            self._wake_scheduled = True
        self._loop.call_soon_threadsafe(self._wake_up)

    def on_error(self, error: Exception) -> None:
        """The upstream failed: deliver what is queued, then close."""
        self.close(self._close_timeout)

    def on_completed(self) -> None:
        """The upstream ended: flush the outbox (up to ``close_timeout``), then close."""
        self.close(self._close_timeout)

    # -- public control --------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, int]:
        """Counters, all ints.

        ``sent`` (events emitted, resends included), ``acknowledged``, ``resent``, ``rejected``,
        ``outbox`` (unacknowledged events, memory and spill), ``in_memory``, ``in_flight``,
        ``spilled`` (rows in the spill file now), ``spilled_total`` (events ever moved from
        memory to the spill file), ``overflow``, ``connected`` (0/1), ``reconnects``,
        ``connect_failures``, ``ack_timeouts``, ``server_duplicates`` (as the server's acks
        report them) and ``abandoned`` (unacknowledged at close, without a spill file).
        """
        with self._lock:
            stats = dict(self._counts)
            stats["outbox"] = self._memory + self._spilled_unloaded()
            stats["in_memory"] = self._memory
            stats["spilled"] = self._spilled
        stats["in_flight"] = sum(len(b.items) for b in list(self._inflight.values()))
        client = self._client
        stats["connected"] = int(client is not None and bool(client.connected))
        return stats

    @property
    def connected(self) -> bool:
        """Whether the sink's connection is up right now."""
        client = self._client
        return client is not None and bool(client.connected)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued event is acknowledged; ``True`` if so within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._memory or self._spilled_unloaded():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def close(self, timeout: float = 5.0) -> int:
        """Flush for up to ``timeout`` seconds, disconnect and stop the sink's thread. Idempotent.

        Returns:
            Events still unacknowledged: kept in the spill file when there is one (the next
            sink on it sends them), otherwise lost and counted in ``stats["abandoned"]``.
        """
        with self._lock:
            already = self._closing
            self._closing = True
        if already:
            self._closed.wait()
            return self._left_at_close
        self.flush(timeout)
        self._loop.call_soon_threadsafe(self._request_stop)
        self._thread.join()
        self._closed.set()
        if self._left_at_close and self._spill_path is None:
            logger.warning(
                "SocketIOSink {!r} closed with {} events unacknowledged by {}",
                self.name,
                self._left_at_close,
                self.url,
            )
        return self._left_at_close

    def __enter__(self) -> SocketIOSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(self._close_timeout)

    def __repr__(self) -> str:
        return f"SocketIOSink({self.url!r}, event={self.event!r}, namespace={self.namespace!r})"

    # -- the loop thread ------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._wake = asyncio.Event()
        finally:
            self._ready.set()
        try:
            self._loop.run_until_complete(self._main())
        except Exception as err:  # a bug here must be seen: the outbox stops moving
            self.last_error = f"{type(err).__name__}: {err}"
            logger.exception("SocketIOSink {!r} stopped delivering", self.name)
        finally:
            self._loop.close()

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _request_stop(self) -> None:
        self._stop_requested = True
        self._wake_up()

    async def _main(self) -> None:
        connector = asyncio.ensure_future(self._keep_connected())
        try:
            await self._pump()
        finally:
            connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connector
            self._left_at_close = self._shutdown()

    async def _keep_connected(self) -> None:
        """Connect, wait for the connection to end, put its unacked batches back, repeat."""
        delay = self._reconnect_delay
        ever_connected = False
        while not self._stop_requested:
            connected = await self._connect_once(count_reconnect=ever_connected)
            if connected:
                ever_connected = True
                delay = self._reconnect_delay
                continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._reconnect_delay_max)

    async def _connect_once(self, *, count_reconnect: bool) -> bool:
        """One connection attempt; if it succeeds, return once that connection has ended."""
        import aiohttp
        import socketio

        # A session per attempt, closed here: python-socketio leaves the one it makes itself
        # open when an attempt fails, and a client it collects later closes the one it was given.
        session = aiohttp.ClientSession()
        client = socketio.AsyncClient(
            reconnection=False,  # ours: we must requeue in-flight batches on every break
            serializer=_packet_class(),
            handle_sigint=False,
            request_timeout=self._connect_timeout,
            http_session=session,
        )
        ended = asyncio.Event()
        client.on("disconnect", _setter(ended), namespace=self.namespace)
        try:
            try:
                await client.connect(
                    self.url,
                    headers=self._headers,
                    auth={"token": self._token} if self._token is not None else None,
                    transports=self._transports,
                    namespaces=[self.namespace],
                    wait_timeout=self._connect_timeout,
                )
            except Exception as err:  # any failure to connect is retried, never raised
                self.last_error = f"{type(err).__name__}: {err}"
                with self._lock:
                    self._counts["connect_failures"] += 1
                return False
            with self._lock:
                self._counts["reconnects"] += count_reconnect
            self._client = client
            self._wake_up()
            try:
                await ended.wait()
            finally:
                self._client = None
                self._requeue_inflight()
                self._wake_up()
            return True
        finally:
            with contextlib.suppress(Exception):
                await client.disconnect()
            await session.close()

    def _requeue_inflight(self) -> None:
        """Put every unacknowledged batch back at the front of the queue, oldest first."""
        for seq in sorted(self._inflight, reverse=True):
            self._pending.extendleft(reversed(self._inflight.pop(seq).items))

    async def _pump(self) -> None:
        """Move events from intake to the wire, within the window; resend timed-out batches."""
        assert self._wake is not None
        tick = min(self._ack_timeout / 4, 0.25)
        while not self._stop_requested:
            self._wake.clear()
            with self._lock:
                self._spill_nudged = False
            self._refill()
            self._expire_timed_out()
            client = self._client
            connected = client is not None and client.connected
            if connected:
                await self._send_window(client)
            hungry = connected and len(self._inflight) < self._window
            with self._lock:
                self._wake_scheduled = not hungry
                more = hungry and bool(self._intake)
            if more:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), tick)

    def _refill(self) -> None:
        """Keep order head (pending) < spill file < tail (intake) while filling pending."""
        spill_room = self._spill_size - self._spilled
        if self._db is not None and spill_room > 0 and self._memory > self._outbox_size // 2:
            moved: list[Event] = []
            while self._intake and len(moved) < spill_room:
                moved.append(self._intake.popleft())
            if moved:
                self._spill_write(moved)
        client = self._client
        if client is None or not client.connected:
            return  # nothing to send: leave new events in intake, where they can be spilled
        want = self._batch_size * self._window * 2
        if self._db is not None:
            want = min(want, max(1, self._outbox_size // 4))
        if len(self._pending) >= want:
            return
        if self._spilled_unloaded():
            self._spill_load(want - len(self._pending))
            return
        while self._intake and len(self._pending) < want:
            self._pending.append(_Item(self._intake.popleft()))

    async def _send_window(self, client: Any) -> None:
        while len(self._inflight) < self._window and self._pending and client.connected:
            items: list[_Item] = []
            if self._pending[0].solo:
                items.append(self._pending.popleft())
            else:
                while self._pending and len(items) < self._batch_size and not self._pending[0].solo:
                    items.append(self._pending.popleft())
            try:
                data: Any = [self._payload_of(item) for item in items]
                if not self._default_payload:
                    # Fail here, per batch, rather than inside emit, where an encoding error
                    # would look like a broken connection and be retried for ever.
                    orjson.dumps(data)
            except Exception as err:  # a user payload function failed: those events are dead
                self._reject(items, err)
                continue
            if self._batch_size == 1:
                data = data[0]
            resent = 0
            for item in items:
                resent += item.attempts > 0
                item.attempts += 1
            self._batch_seq += 1
            seq = self._batch_seq
            self._inflight[seq] = _Batch(items, time.monotonic())
            try:
                await client.emit(
                    self.event,
                    data,
                    namespace=self.namespace,
                    callback=lambda *ack, _seq=seq: self._on_ack(_seq, ack),
                )
            except Exception as err:  # the connection broke under us: resent on reconnect
                self.last_error = f"{type(err).__name__}: {err}"
                return
            with self._lock:
                self._counts["sent"] += len(items)
                self._counts["resent"] += resent

    def _payload_of(self, item: _Item) -> Any:
        if item.event is None and self._default_payload:
            return item.record  # already Event.to_dict() form: no round trip through Event
        return self._payload(item.as_event())

    def _on_ack(self, seq: int, ack: tuple[Any, ...]) -> None:
        batch = self._inflight.pop(seq, None)
        if batch is None:  # timed out and requeued already: the resend will be acked
            return
        reply = ack[0] if len(ack) == 1 else None
        if isinstance(reply, dict) and reply.get("ok") is False:
            error = str(reply.get("error", "rejected"))
            if len(batch.items) > 1:
                # Send them one by one, so only the event the server refuses is dead-lettered.
                for item in reversed(batch.items):
                    item.solo = True
                    self._pending.appendleft(item)
            else:
                self._reject(batch.items, DeliveryError(f"server {self.url} rejected it: {error}"))
            self._wake_up()
            return
        with self._lock:
            self._counts["acknowledged"] += len(batch.items)
            if isinstance(reply, dict) and isinstance(reply.get("duplicates"), int):
                self._counts["server_duplicates"] += reply["duplicates"]
        self._settle(batch.items)
        self._wake_up()

    def _reject(self, items: list[_Item], error: Exception) -> None:
        with self._lock:
            self._counts["rejected"] += len(items)
        for item in items:
            self._dead_letters(
                DeadLetter.capture(
                    item.as_event(), self.name, error, attempts=max(1, item.attempts)
                )
            )
        self._settle(items)

    def _settle(self, items: list[_Item]) -> None:
        """Forget acknowledged (or dead-lettered) events: from memory and from the spill file."""
        from_spill = 0
        finished: list[tuple[int]] = []
        for item in items:
            if item.chunk is not None:
                from_spill += 1
                left = self._chunk_left[item.chunk] - 1
                if left:
                    self._chunk_left[item.chunk] = left
                else:
                    del self._chunk_left[item.chunk]
                    finished.append((item.chunk,))
        if finished and self._db is not None:
            self._db.executemany("DELETE FROM outbox_chunks WHERE seq = ?", finished)
            self._db.commit()
        with self._idle:
            self._memory -= len(items)
            self._spilled -= from_spill
            self._spilled_loaded -= from_spill
            if not self._memory and not self._spilled_unloaded():
                self._idle.notify_all()

    def _expire_timed_out(self) -> None:
        now = time.monotonic()
        expired = [s for s, b in self._inflight.items() if now - b.sent_at >= self._ack_timeout]
        if not expired:
            return
        for seq in sorted(expired, reverse=True):
            items = self._inflight.pop(seq).items
            self._pending.extendleft(reversed(items))
        with self._lock:
            self._counts["ack_timeouts"] += len(expired)

    def _shutdown(self) -> int:
        """Keep what is unacknowledged in the spill file, or count it lost."""
        self._requeue_inflight()
        with self._lock:
            left = self._memory + self._spilled_unloaded()
            if self._db is None:
                self._counts["abandoned"] += left
        if self._db is not None:
            # Rows read back and partly acknowledged keep only their unacknowledged events.
            remaining: dict[int, list[dict[str, Any]]] = {seq: [] for seq in self._chunk_left}
            for item in self._pending:
                if item.chunk is not None:
                    remaining[item.chunk].append(item.as_record())
            self._db.executemany(
                "UPDATE outbox_chunks SET n = ?, body = ? WHERE seq = ?",
                [(len(r), orjson.dumps(r), seq) for seq, r in remaining.items()],
            )
            self._spill_write(
                [i.as_event() for i in self._pending if i.chunk is None] + list(self._intake)
            )
            self._intake.clear()
            self._db.close()
            self._db = None
        return left

    # -- spill file ------------------------------------------------------------------------------

    def _spilled_unloaded(self) -> int:
        # Rows not yet loaded into memory; called with _lock held or from the loop thread.
        return self._spilled - self._spilled_loaded

    def _open_spill(self, path: Path) -> None:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level="DEFERRED")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        # One row per chunk of events: ``body`` is a JSON array of Event.to_dict() objects.
        db.execute(
            "CREATE TABLE IF NOT EXISTS outbox_chunks (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "n INTEGER NOT NULL, body BLOB NOT NULL)"
        )
        db.commit()
        self._db = db
        # Left by an earlier sink on this file: sent before anything new.
        total = db.execute("SELECT COALESCE(SUM(n), 0) FROM outbox_chunks").fetchone()[0]
        self._spilled = int(total)
        self._spilled_loaded = 0

    def _spill_write(self, events: list[Event]) -> None:
        assert self._db is not None
        chunks = [events[i : i + _SPILL_CHUNK] for i in range(0, len(events), _SPILL_CHUNK)]
        self._db.executemany(
            "INSERT INTO outbox_chunks (n, body) VALUES (?, ?)",
            [(len(c), orjson.dumps([e.to_dict() for e in c])) for c in chunks],
        )
        self._db.commit()
        with self._lock:
            self._spilled += len(events)
            self._counts["spilled_total"] += len(events)
            self._memory -= len(events)

    def _spill_load(self, limit: int) -> None:
        """Read whole rows, oldest first, until about ``limit`` events are in memory."""
        assert self._db is not None
        loaded = 0
        while loaded < limit:
            row = self._db.execute(
                "SELECT seq, body FROM outbox_chunks WHERE seq > ? ORDER BY seq LIMIT 1",
                (self._spill_cursor,),
            ).fetchone()
            if row is None:
                break
            seq, body = row
            records = orjson.loads(body)
            self._spill_cursor = seq
            if not records:  # emptied by a close while partly acknowledged
                self._db.execute("DELETE FROM outbox_chunks WHERE seq = ?", (seq,))
                self._db.commit()
                continue
            self._chunk_left[seq] = len(records)
            self._pending.extend(_Item(None, record, chunk=seq) for record in records)
            loaded += len(records)
        with self._lock:
            self._spilled_loaded += loaded
            self._memory += loaded
