"""The :class:`EventBus`: an Rx Observer that publishes, and a source of hot streams.

>>> from rxbus import EventBus
>>> bus = EventBus()
>>> got = []
>>> _ = bus.subscribe(got.append, topic="build.*")
>>> _ = bus.publish("build.error", {"code": 2})
>>> _ = bus.publish("hook.tool")
>>> [e.topic for e in got], bus.metrics()["published"]
(['build.error'], 2)
>>> bus.close()
[]
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from time import time as _time
from typing import Any

import orjson
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxbus._log import logger
from rxbus.api import BusApi, prepare_subscription
from rxbus.bus._lifecycle import (
    cancel_then_stop,
    exit_guard,
    in_loop,
    start_loop,
    stop_when_done,
)
from rxbus.bus._replay import ReplayStore, Seam, past
from rxbus.bus._routing import Route, Router
from rxbus.bus._stream import BusStream
from rxbus.consumer import Consumer, Executor, Mode, make_consumer, worker_pool
from rxbus.deadletter import DeadLetter
from rxbus.errors import BusClosedError, PayloadError
from rxbus.event import STRICT_JSON, Event, json_size
from rxbus.metrics import Counter, LatencyRecorder, MetricsRegistry
from rxbus.policies import Overflow
from rxbus.topics import compile_pattern, default_type, known_topic_type, validate_pattern
from rxbus.typed import to_data

__all__ = ["EventBus"]

_trusted = Event._trusted
_dumps = orjson.dumps
_LATENCY_SAMPLE_MASK = 63  # time one publish in 64 per topic
# Past events from the ring, and stored ones created this recently, are remembered at a replay's
# seam to drop their live twin (an event in flight while the replay subscribed).
_SEAM_WINDOW = timedelta(seconds=60)


class _Host:
    """The bus as its consumers see it (:class:`rxbus.consumer.ConsumerHost`)."""

    __slots__ = ("_bus", "executor", "fail", "manual", "timers")

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self.fail = bus._failure
        # a virtual-time TestBus replaces these three (rxbus.testing)
        self.executor: Executor = worker_pool()
        self.timers: abc.SchedulerBase | None = None
        self.manual = False

    @property
    def name(self) -> str:
        return self._bus.name

    @property
    def registry(self) -> MetricsRegistry:
        return self._bus._registry

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._bus.loop

    def report(self, letter: DeadLetter) -> None:
        self._bus._dead_letter(letter)

    def detach(self, consumer: Consumer) -> None:
        self._bus._router.remove(consumer)

    def retire(self, consumer: Consumer) -> None:
        self._bus._retire(consumer)

    def count_retired(self, received: int, dropped: int) -> None:
        self._bus._count_retired(received, dropped)


class EventBus(BusApi, abc.ObserverBase[Event]):
    """An in-process event bus: topics, isolated consumers, dead letters, metrics and replay.

    The bus is an Rx Observer: ``observable.subscribe(bus)`` publishes what the observable
    emits (``on_error`` becomes a dead letter, ``on_completed`` leaves the bus open: a bus
    outlives its sources). :attr:`events` and :meth:`topic` are hot streams, and ``bus.pipe``
    is ``bus.events.pipe``.

    Args:
        name: shown in metrics and logs.
        history: how many recent events the in-memory ring keeps (0 for none).
        max_event_bytes: largest serialised ``data`` + ``metadata`` accepted by ``publish``.
        exit_timeout: seconds a bus still open at interpreter exit drains its queued consumers
            before it reports on stderr what it could not deliver.

    Use as a context manager (``with`` or ``async with``) to close it on exit.
    """

    def __init__(
        self,
        *,
        name: str = "rxbus",
        history: int = 1000,
        max_event_bytes: int = 1_048_576,
        exit_timeout: float = 3.0,
    ) -> None:
        if not isinstance(history, int) or history < 0:
            raise ValueError(f"history must be an int >= 0, got {history!r}")
        if not isinstance(max_event_bytes, int) or max_event_bytes < 1:
            raise ValueError(f"max_event_bytes must be an int >= 1, got {max_event_bytes!r}")
        if not isinstance(exit_timeout, int | float) or exit_timeout < 0:
            raise ValueError(f"exit_timeout must be a number >= 0, got {exit_timeout!r}")
        self.name = name
        self.max_event_bytes = max_event_bytes
        self.exit_timeout = float(exit_timeout)
        self._closed = False
        self._lock = threading.RLock()  # guards subscriptions, route resolution and close
        self._router = Router(self._lock)
        self._routes_get = self._router.routes.get
        self._host = _Host(self)
        self._members: dict[
            str, Consumer | None
        ] = {}  # not yet retired: in metrics, drained on close
        self._ring: deque[Event] = deque(maxlen=history or 1)
        self._ring_append: Callable[[Event], None] = self._ring.append if history else _discard
        self._history = history
        self._retired = {"received": 0, "delivered": 0, "failed": 0, "dropped": 0, "queued": 0}
        self._dead_count = Counter()
        self._recent_dead: deque[Any] = deque(maxlen=1000)  # letters, or their parts
        self._dead_observers: tuple[abc.ObserverBase[DeadLetter], ...] = ()
        self._latency = LatencyRecorder("publish")
        self._registry = MetricsRegistry()
        self._started = time.monotonic()
        self._close_done = threading.Event()
        self._stopping: asyncio.Task[None] | None = None
        self._owned_loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        exit_guard.watch(self)

    # -- publishing ----------------------------------------------------------------------------

    def publish(
        self,
        topic: str | Event,
        data: dict[str, Any] | Any = None,
        *,
        type: str | None = None,
        source: str | None = None,
        metadata: dict[str, Any] | None = None,
        correlation_id: str | None = None,
    ) -> Event:
        """Publish an event and return it.

        Safe from any thread and from inside a running asyncio loop. Never raises because of a
        consumer. When it returns, every ``sync`` consumer it reached has handled the event, or
        was busy in another thread and was handed it (that thread handles it before its own
        ``publish`` returns); ``thread`` and ``async`` consumers have it queued.

        Args:
            topic: the topic, or a prebuilt :class:`Event` (then no other argument is allowed).
            data: the payload, a dict of JSON values, or a pydantic v2 model, msgspec Struct or
                dataclass instance (stored as its JSON-able dict).
            type: defaults to the topic's last segment.
            source, metadata, correlation_id: see :class:`Event`.

        Raises:
            InvalidTopicError: for a malformed topic.
            PayloadError: for a payload that is not JSON-serialisable or exceeds
                ``max_event_bytes``.
            BusClosedError: after :meth:`close`.
        """
        if self._closed:
            raise BusClosedError(f"bus {self.name!r} is closed; publish refused")
        if data is not None and data.__class__ is not dict:
            data = to_data(data)  # a pydantic model, msgspec Struct or dataclass
        if topic.__class__ is str:
            # validation and the default type in one cached lookup for topics seen before
            default = known_topic_type(topic)
            if default is None:
                default = default_type(topic)
            size = 0
            if data is None:
                data = {}
            elif data.__class__ is dict:
                if data:
                    try:
                        size = len(_dumps(data, None, STRICT_JSON))
                    except TypeError:
                        json_size("data", data)  # raises the PayloadError naming the value
            else:
                data = _check_dict("data", data)
                size = json_size("data", data) if data else 0
            if metadata is None:
                metadata = {}
            else:
                metadata = _check_dict("metadata", metadata)
                if metadata:
                    size += json_size("metadata", metadata)
            if size > self.max_event_bytes:
                self._too_large(size)
            if type is None:
                type = default
            elif type.__class__ is not str:
                raise PayloadError(f"type must be a str, got {type!r:.80}")
            if source is None:
                source = ""
            elif source.__class__ is not str:
                raise PayloadError(f"source must be a str, got {source!r:.80}")
            if correlation_id is not None and correlation_id.__class__ is not str:
                raise PayloadError(f"correlation_id must be a str, got {correlation_id!r:.80}")
            event = _trusted(topic, type, data, source, metadata, correlation_id, size)
        elif isinstance(topic, Event):
            event = topic
            if data is not None or type or source or metadata or correlation_id:
                raise TypeError("publish(event) takes no other arguments; use event.evolve()")
            try:
                size = event._size
            except AttributeError:  # a path that left the size to be measured when read
                size = event.payload_size
            if size > self.max_event_bytes:
                self._too_large(size)
        elif isinstance(topic, str):  # a str subclass (a StrEnum member): its plain value
            return self.publish(
                str(topic),
                data,
                type=type,
                source=source,
                metadata=metadata,
                correlation_id=correlation_id,
            )
        else:
            default_type(topic)  # raises InvalidTopicError naming it
            raise AssertionError("unreachable")  # pragma: no cover
        # The ring first: a replay that subscribes after this line finds the event in its ring
        # snapshot. The version read before the routes tells, after the pushes, whether a
        # consumer subscribed meanwhile: it then gets the event from this publisher, so a
        # subscription never misses an event that was in flight while it was made.
        # Bound methods kept on the instance are read into locals before the call: CPython
        # 3.11 cannot specialise a method call through an instance attribute, but it can the
        # attribute read and the call of a builtin (measured: ~600 instructions a publish).
        router = self._router
        version = router.version
        ring_append = self._ring_append
        ring_append(event)
        routes_get = self._routes_get
        route = routes_get(event.topic)
        if route is None:
            route = router.resolve(event.topic)
        if next(route.count) & _LATENCY_SAMPLE_MASK:
            for push in route.pushes:
                push(event)
        else:
            t0 = time.perf_counter_ns()
            for push in route.pushes:
                push(event)
            self._latency.record(time.perf_counter_ns() - t0)
        if router.version != version:
            self._push_late(event, route)
        return event

    def _push_late(self, event: Event, used: Route) -> None:
        """Hand ``event`` to the consumers another thread subscribed while it was being
        published. One this thread subscribed meanwhile (from a consumer handling this very
        event, say) does not get it: a Subject's new observer would not either."""
        me = threading.get_ident()
        for consumer in self._router.resolve(event.topic).consumers:
            if consumer.subscriber_thread != me and consumer not in used.consumers:
                consumer.push(event)

    def _too_large(self, size: int) -> None:
        raise PayloadError(
            f"event payload is {size} bytes serialised; max_event_bytes of bus "
            f"{self.name!r} is {self.max_event_bytes}"
        )

    # -- the Observer side ---------------------------------------------------------------------

    def on_next(self, value: Event) -> None:
        """Publish ``value`` (an :class:`Event`): ``observable.subscribe(bus)`` feeds the bus."""
        if not isinstance(value, Event):
            raise TypeError(
                f"bus {self.name!r} is an observer of rxbus.Event; got "
                f"{type(value).__name__}: {value!r:.80} (map it to an Event first)"
            )
        self.publish(value)

    def on_error(self, error: Exception) -> None:
        """A source feeding the bus failed: a dead letter; the bus stays open."""
        self._dead_letter(DeadLetter.capture(None, f"{self.name}:source", error))

    def on_completed(self) -> None:
        """A source feeding the bus completed: the bus stays open (it outlives its sources)."""

    def pipe(self, *operators: Callable[[Any], Any]) -> Any:
        """``bus.events.pipe(*operators)``."""
        return self.events.pipe(*operators)

    # -- subscribing ---------------------------------------------------------------------------

    def subscribe(
        self,
        sink: Any,
        *operators: Callable[[Observable[Any]], Observable[Any]],
        topic: str = "**",
        mode: Mode = "sync",
        queue_size: int = 10_000,
        overflow: Overflow | str = Overflow.BLOCK,
        name: str | None = None,
        scheduler: abc.SchedulerBase | None = None,
        once: bool = False,
        weak: bool = False,
        model: type | None = None,
        dedicated: bool = False,
    ) -> Consumer:
        """Subscribe ``sink`` to events matching ``topic``, through ``operators``.

        Any reactivex operator composes: the chain sees the events as it would see a
        ``Subject`` fed the same events, and gives the same output.

        Args:
            sink: an observer, a plain callable, or an ``async def`` function (which runs in
                mode ``"async"``).
            operators: Rx operators applied in order, as in ``Observable.pipe``.
            topic: a topic pattern (``"hook.*"``, ``"build.**"``, ``"**"``).
            mode: ``"sync"`` (publisher's thread), ``"thread"`` (the process's bounded worker
                pool, one worker at a time for this consumer, in order) or ``"async"`` (the
                bus's asyncio loop).
            queue_size: bound of the queue of a ``thread`` or ``async`` consumer, and of the
                events handed to a busy ``sync`` one.
            overflow: what a full queue does (:class:`rxbus.Overflow`).
            name: unique name; defaults to the sink's name.
            scheduler: scheduler for time-based operators (default: one timer thread for the
                process); its actions always run serialised with the consumer's events.
            once: deliver one event, then dispose.
            weak: hold ``sink`` weakly; dispose once its object is garbage-collected.
            model: hand the sink ``model`` instances validated from ``event.data``; an event
                that does not validate is a dead letter naming the field.
            dedicated: with ``mode="thread"``, run on a thread of this consumer's own instead
                of the shared pool: for a sink that blocks for long (it would hold a shared
                worker meanwhile).

        Returns:
            The :class:`Consumer`; ``dispose()`` it to unsubscribe.

        Raises:
            InvalidTopicError: for a malformed pattern.
            ValueError: ``dedicated=True`` with a mode other than ``"thread"``.
            BusClosedError: after :meth:`close`.

        Example:
            >>> bus = EventBus()
            >>> c = bus.subscribe(print, topic="cli.*", mode="thread", name="printer")
            >>> c.name
            'printer'
            >>> _ = bus.close()
        """
        validate_pattern(topic)
        overflow = Overflow.parse(overflow)
        target, operators, bind = prepare_subscription(
            sink, operators, once=once, weak=weak, model=model
        )
        with self._lock:
            if self._closed:
                raise BusClosedError(f"bus {self.name!r} is closed; subscribe refused")
            unique = self._unique_name(name or _sink_name(sink))
            self._members[unique] = None  # the name is taken while the consumer is built
        # Built outside the lock: a chain may complete on the bus loop while it is built, and
        # that completion detaches the consumer, which takes the lock.
        try:
            consumer = make_consumer(
                self._host,
                target,
                operators,
                mode=mode,
                pattern=topic,
                queue_size=queue_size,
                overflow=overflow,
                name=unique,
                scheduler=scheduler,
                dedicated=dedicated,
            )
        except BaseException:
            with self._lock:
                del self._members[unique]
            raise
        with self._lock:
            self._members[unique] = consumer
            if not consumer.finished:
                self._router.add(consumer)
        self._api_subscribed(consumer, bind)
        return consumer

    def _unique_name(self, base: str) -> str:
        name, n = base, 1
        while name in self._members:
            n += 1
            name = f"{base}#{n}"
        return name

    def _retire(self, consumer: Consumer) -> None:
        """Fold a disposed consumer's counts into the bus totals and forget it."""
        with self._lock:
            self._router.remove(consumer)
            if self._members.get(consumer.name) is consumer:
                del self._members[consumer.name]
                for key, value in consumer.stats.as_dict().items():
                    if key in self._retired:
                        self._retired[key] += value
                consumer.retired = True

    def _count_retired(self, received: int, dropped: int) -> None:
        """An event refused by a consumer already folded into the totals: count it there too."""
        with self._lock:
            self._retired["received"] += received
            self._retired["dropped"] += dropped

    @property
    def events(self) -> Observable[Event]:
        """A hot stream of every event."""
        return BusStream(self, "**", self._dead_letter)

    def topic(self, pattern: str) -> Observable[Event]:
        """A hot stream of the events whose topic matches ``pattern``.

        Raises:
            InvalidTopicError: for a malformed pattern.
        """
        return BusStream(self, validate_pattern(pattern), self._dead_letter)

    @property
    def consumers(self) -> tuple[Consumer, ...]:
        """The consumers currently subscribed."""
        return self._router.consumers

    # -- dead letters --------------------------------------------------------------------------

    def _failure(self, event: Any, consumer: str, error: BaseException) -> None:
        """A consumer's sink raised for ``event``: the cheap way to a dead letter. With nobody
        watching :attr:`dead_letters`, only its parts are kept, and the :class:`DeadLetter` is
        made when :meth:`recent_dead_letters` is read."""
        if self._dead_observers:
            self._dead_letter(DeadLetter(event, consumer, error))
            return
        self._dead_count.increment()
        self._recent_dead.append((event, consumer, error, _time()))

    def _dead_letter(self, letter: DeadLetter) -> None:
        self._dead_count.increment()
        self._recent_dead.append(letter)
        for observer in self._dead_observers:
            try:
                observer.on_next(letter)
            except Exception:  # a dead-letter observer failing must not recurse
                logger.exception("rxbus: a dead-letter observer raised; ignored")

    @property
    def dead_letters(self) -> Observable[DeadLetter]:
        """A hot stream of :class:`~rxbus.DeadLetter`: every failure, overflow error and event
        left undelivered at close."""

        def subscribe(
            observer: abc.ObserverBase[DeadLetter], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            with self._lock:
                self._dead_observers = (*self._dead_observers, observer)

            def remove() -> None:
                with self._lock:
                    self._dead_observers = tuple(
                        o for o in self._dead_observers if o is not observer
                    )

            return Disposable(remove)

        return Observable(subscribe)

    def recent_dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The most recent dead letters (at most the last 1000), oldest first."""
        kept = list(self._recent_dead)[-limit:] if limit else []
        return [d if d.__class__ is DeadLetter else DeadLetter._from_parts(*d) for d in kept]

    # -- history and replay ----------------------------------------------------------------------

    def history(self, pattern: str = "**", limit: int | None = None) -> list[Event]:
        """Recent events from the in-memory ring matching ``pattern``, oldest first."""
        events = list(self._ring) if self._history else []
        if pattern != "**":
            match = compile_pattern(pattern)
            events = [e for e in events if match(e.topic)]
        if limit is not None:
            events = events[-limit:] if limit else []
        return events

    def replay(
        self,
        pattern: str = "**",
        *,
        store: ReplayStore | None = None,
        since: datetime | str | None = None,
        live: bool = False,
    ) -> Observable[Event]:
        """Past events matching ``pattern``, from the ring or ``store``; then live ones if asked.

        With ``live=True`` the stream continues with events published after the past ones, with
        no gap and no duplicate at the seam: the live subscription starts first and buffers,
        the past is read after it (after ``store.flush()``), and an event seen in both is
        emitted once, in live order.

        Args:
            pattern: topic pattern.
            store: a :class:`ReplayStore`; default the in-memory ring.
            since: only events at or after this time (a datetime, or an event id).
            live: continue with live events.
        """
        validate_pattern(pattern)

        def subscribe(
            observer: abc.ObserverBase[Event], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            if not live:
                for event, _ in past(self.history(pattern), pattern, store, since, self._settle):
                    observer.on_next(event)
                observer.on_completed()
                return Disposable()
            seam = Seam(observer, self._dead_letter)
            consumer = self.subscribe(seam, topic=pattern, name=f"replay:{pattern}")
            seam.name = consumer.name
            recent = datetime.now(UTC) - _SEAM_WINDOW
            ring = self.history(pattern)
            for event, in_ring in past(ring, pattern, store, since, self._settle):
                seam.emit_past(event, remember=in_ring or event.timestamp >= recent)
            seam.go_live()
            return consumer

        return Observable(subscribe)

    def _settle(self, store: ReplayStore, timeout: float = 10.0) -> None:
        """Wait until the consumers whose sink is ``store`` have handled every event they had
        received when the replay's live part started (a busy ``sync`` consumer, or a queued one,
        may still hold some that are neither in the store nor, past ``history``, in the ring)."""
        deadline = time.monotonic() + timeout
        for c in list(self._members.values()):
            if c is None or c.sink is not store or c.runs_here():
                continue
            target = c.received
            while c.processed < target and not c.done and time.monotonic() < deadline:
                time.sleep(0.0005)

    # -- metrics -------------------------------------------------------------------------------

    def metrics(self) -> dict[str, Any]:
        """Counts and latencies, JSON-serialisable.

        Keys: ``name``, ``published``, ``delivered``, ``failed``, ``dropped``, ``queued``,
        ``dead_lettered``, ``topics`` (per topic ``published``), ``consumers`` (per consumer
        stats, plus the sink's own ``stats`` under ``sink``), ``publish_latency_ns`` (sampled
        percentiles), ``measurements`` (from ``rxbus.operators.measure``), ``uptime_s``.
        """
        topics = {t: {"published": n} for t, n in self._router.counts().items()}
        consumers: dict[str, Any] = {}
        totals = dict(self._retired)
        for c in [c for c in list(self._members.values()) if c is not None]:
            stats = c.stats.as_dict()
            for key in totals:
                totals[key] += stats[key]
            entry: dict[str, Any] = {
                "topic": c.pattern,
                "mode": c.mode,
                **stats,
                "queue_size": c.queue_size,
                "overflow": c.overflow.value,
            }
            sink_stats = getattr(c.sink, "stats", None)
            if sink_stats is not None and not callable(sink_stats):
                try:
                    entry["sink"] = {k: v for k, v in dict(sink_stats).items()}
                except (TypeError, ValueError):
                    pass
            consumers[c.name] = entry
        return {
            "name": self.name,
            "published": sum(t["published"] for t in topics.values()),
            "delivered": totals["delivered"],
            "failed": totals["failed"],
            "dropped": totals["dropped"],
            "queued": totals["queued"],
            "dead_lettered": self._dead_count.value,
            "topics": topics,
            "consumers": consumers,
            "publish_latency_ns": self._latency.snapshot(),
            "measurements": self._registry.snapshot(),
            "uptime_s": round(time.monotonic() - self._started, 3),
        }

    # -- the asyncio loop ------------------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop ``async`` consumers run on: the one running where the bus was created, else
        one the bus owns (started on first use, stopped by :meth:`close`)."""
        if self._loop is not None:
            return self._loop
        with self._lock:
            if self._loop is None:
                loop, thread = start_loop(f"rxbus-loop-{self.name}")
                self._owned_loop, self._loop_thread, self._loop = loop, thread, loop
        return self._loop

    # -- shutdown ------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, timeout: float = 5.0) -> list[DeadLetter]:
        """Refuse new publishes, drain every consumer, complete every stream.

        Returns:
            A dead letter for every event that could not be delivered within ``timeout``
            seconds (also counted as ``dropped`` and sent to :attr:`dead_letters`). Empty when
            everything was delivered. A second call waits for the first to finish (up to its
            own ``timeout``) and returns an empty list.

        Called from a ``thread`` consumer's sink, ``close`` cannot wait for that consumer (it
        drains after ``close`` returns) and runs other pooled consumers while it waits for
        them; on the loop the bus owns, it cannot wait for the ``async`` consumers there: they
        drain after it returns.

        Raises:
            RuntimeError: if called on the thread of a running loop the bus does not own while
                ``async`` consumers have work there; use ``await bus.aclose()`` inside the loop.
        """
        with self._lock:
            if self._closed:
                wait = True
            else:
                wait = False
                consumers = tuple(c for c in self._members.values() if c is not None)
                if (
                    self._loop is not None
                    and self._owned_loop is None
                    and in_loop(self._loop)
                    and any(c.mode == "async" for c in consumers)
                ):
                    raise RuntimeError(
                        "close() would block the loop its async consumers run on; "
                        "use 'await bus.aclose()' inside the loop"
                    )
                self._closed = True
        if wait:
            self._close_done.wait(timeout)
            return []
        exit_guard.forget(self)
        deadline = time.monotonic() + timeout
        for c in consumers:
            c.begin_close()
        undelivered: list[DeadLetter] = []
        for c in consumers:
            if c.runs_here():
                continue  # it drains once this call returns to its loop or worker
            if not c.wait_closed(max(0.0, deadline - time.monotonic())):
                undelivered.extend(
                    c.abandon(TimeoutError(f"not delivered within close timeout {timeout}s"))
                )
        self._finish_close(consumers, deadline)
        return undelivered

    async def aclose(self, timeout: float = 5.0) -> list[DeadLetter]:
        """:meth:`close` for code running on the bus's loop: awaits the drain instead of blocking."""
        with self._lock:
            wait = self._closed
            self._closed = True
            consumers = tuple(c for c in self._members.values() if c is not None)
        if wait:
            deadline = time.monotonic() + timeout
            while not self._close_done.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.001)
            return []
        exit_guard.forget(self)
        deadline = time.monotonic() + timeout
        for c in consumers:
            c.begin_close()
        undelivered: list[DeadLetter] = []
        me = asyncio.current_task()
        for c in consumers:
            if (c.runs_here() and c.mode != "async") or (
                me is not None and getattr(c, "task", None) is me
            ):
                continue  # called from this consumer's own sink: it finishes after we return
            while not c.wait_closed(0) and time.monotonic() < deadline:
                await asyncio.sleep(0.001)
            if not c.wait_closed(0):
                undelivered.extend(
                    c.abandon(TimeoutError(f"not delivered within close timeout {timeout}s"))
                )
        self._finish_close(consumers, deadline)
        return undelivered

    def _finish_close(self, consumers: tuple[Consumer, ...], deadline: float) -> None:
        for observer in self._dead_observers:
            try:
                observer.on_completed()
            except Exception:  # one observer failing at completion must not stop the others
                pass
        self._dead_observers = ()
        loop, thread = self._owned_loop, self._loop_thread
        if loop is not None and thread is not None:
            if thread is threading.current_thread():
                # on the owned loop itself: stop it once its consumers have drained
                pending = [c for c in consumers if c.mode == "async" and not c.done]
                self._stopping = loop.create_task(stop_when_done(loop, pending, deadline))
            else:
                # drain tasks close() gave up on are cancelled and let finish before the loop
                # stops, rather than left pending forever
                tasks = [
                    task
                    for c in consumers
                    if (task := getattr(c, "task", None)) is not None and not c.done
                ]
                if tasks:
                    asyncio.run_coroutine_threadsafe(cancel_then_stop(loop, tasks), loop)
                else:
                    loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout=5)
        self._close_done.set()

    def __enter__(self) -> EventBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> EventBus:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<EventBus {self.name!r} {state} consumers={len(self._router.consumers)}>"


def _check_dict(name: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PayloadError(
            f"{name} must be a dict of JSON values, got {value.__class__.__name__}: {value!r:.80}"
        )
    return value


def _discard(_: Event) -> None:
    return None


def _sink_name(sink: Any) -> str:
    name = getattr(sink, "name", None)
    if isinstance(name, str) and name:
        return name
    for attr in ("__qualname__", "__name__"):
        name = getattr(sink, attr, None)
        if isinstance(name, str) and name and name != "<lambda>":
            return name
    bound_self = getattr(sink, "__self__", None)
    if bound_self is not None:
        return f"{type(bound_self).__name__}.{getattr(sink, '__name__', 'call')}"
    return type(sink).__name__ if not callable(sink) or hasattr(sink, "on_next") else "consumer"
