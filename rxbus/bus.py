"""The :class:`EventBus`.

Publishing resolves the event's topic to a tuple of consumers once, caches it, and calls each
consumer's ``push``: a dict lookup and a loop, however many patterns are subscribed. Subscribing
or disposing a consumer clears the cache under the same lock that fills it, so a cache entry is
never computed from a stale subscription list.

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
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

import orjson
import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxbus.api import BusApi, prepare_subscription
from rxbus.consumer import Consumer, Mode
from rxbus.deadletter import DeadLetter
from rxbus.errors import BusClosedError, PayloadError
from rxbus.event import STRICT_JSON, Event, json_size
from rxbus.metrics import Counter, LatencyRecorder, MetricsRegistry
from rxbus.policies import Overflow
from rxbus.topics import (
    _valid_topics,
    compile_pattern,
    default_type,
    validate_pattern,
    validate_topic,
)
from rxbus.typed import to_data

__all__ = ["BusStream", "EventBus", "ReplayStore"]

_ROUTE_CACHE_LIMIT = 16_384
TOPIC_METRICS_LIMIT = 10_000
"""Topics counted one by one in ``metrics()["topics"]``; later new topics share one entry."""
OTHER_TOPICS = "(other topics)"
_topic_types_get = _valid_topics.get
_trusted = Event._trusted
_dumps = orjson.dumps
_LATENCY_SAMPLE_MASK = 63  # time one publish in 64 per topic
# Past events from the ring, and stored ones created this recently, are remembered at a replay's
# seam to drop their live twin (an event in flight while the replay subscribed).
_SEAM_WINDOW = timedelta(seconds=60)


@runtime_checkable
class ReplayStore(Protocol):
    """What :meth:`EventBus.replay` reads past events from (e.g. ``rxbus.sinks.SQLiteStore``).

    ``query`` yields events oldest first. A store that writes asynchronously also has
    ``flush(timeout)``, returning once everything handed to it is queryable.
    """

    def query(
        self,
        pattern: str = "**",
        since: Any = None,
        until: Any = None,
        limit: int | None = None,
    ) -> Iterable[Event]: ...


class _Route:
    """The consumers of one topic, resolved once, and the topic's publish counter."""

    __slots__ = ("increment", "pushes")

    def __init__(self, pushes: tuple[Callable[[Event], None], ...], counter: Counter) -> None:
        self.pushes = pushes
        self.increment = counter.increment


class BusStream(Observable[Event]):
    """A hot stream of the bus's events matching ``pattern``.

    ``pipe`` keeps the operators and ``subscribe`` turns the whole chain into one bus consumer
    (mode ``sync``), so an exception anywhere in the chain becomes a dead letter and the
    subscriber keeps receiving later events, as for :meth:`EventBus.subscribe`.
    """

    def __init__(
        self,
        bus: EventBus,
        pattern: str,
        operators: tuple[Callable[[Observable[Any]], Observable[Any]], ...] = (),
    ) -> None:
        super().__init__()
        self._bus = bus
        self._pattern = pattern
        self._operators = operators

    def pipe(self, *operators: Callable[[Any], Any]) -> Any:
        return BusStream(self._bus, self._pattern, self._operators + tuple(operators))

    def subscribe(
        self,
        on_next: abc.ObserverBase[Any] | Callable[[Any], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
        on_completed: Callable[[], None] | None = None,
        *,
        scheduler: abc.SchedulerBase | None = None,
    ) -> abc.DisposableBase:
        if isinstance(on_next, abc.ObserverBase) or hasattr(on_next, "on_next"):
            observer: Any = on_next
        else:
            observer = reactivex.Observer(on_next, on_error, on_completed)
        return self._bus.subscribe(
            observer, *self._operators, topic=self._pattern, mode="sync", scheduler=scheduler
        )

    def _subscribe_core(
        self, observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        return self.subscribe(observer, scheduler=scheduler)


class EventBus(BusApi):
    """An in-process event bus: topics, isolated consumers, dead letters, metrics and replay.

    Args:
        name: shown in metrics and logs.
        history: how many recent events the in-memory ring keeps (0 for none).
        max_event_bytes: largest serialised ``data`` + ``metadata`` accepted by ``publish``.

    Use as a context manager (``with`` or ``async with``) to close it on exit.
    """

    def __init__(
        self, *, name: str = "rxbus", history: int = 1000, max_event_bytes: int = 1_048_576
    ) -> None:
        if not isinstance(history, int) or history < 0:
            raise ValueError(f"history must be an int >= 0, got {history!r}")
        if not isinstance(max_event_bytes, int) or max_event_bytes < 1:
            raise ValueError(f"max_event_bytes must be an int >= 1, got {max_event_bytes!r}")
        self.name = name
        self.max_event_bytes = max_event_bytes
        self._closed = False
        self._lock = threading.RLock()  # guards subscriptions and route resolution
        self._consumers: tuple[Consumer, ...] = ()  # routed to
        self._members: dict[str, Consumer] = {}  # not yet retired: in metrics, drained on close
        self._matchers: dict[str, Callable[[str], bool]] = {}
        self._routes: dict[str, _Route] = {}
        self._version = 0  # bumped on every change of the subscriptions
        self._topic_counters: dict[str, Counter] = {}
        self._ring: deque[Event] = deque(maxlen=history or 1)
        self._ring_append: Callable[[Event], None] = self._ring.append if history else _discard
        self._history = history
        self._retired = {"received": 0, "delivered": 0, "failed": 0, "dropped": 0, "queued": 0}
        self._dead_count = Counter()
        self._recent_dead: deque[DeadLetter] = deque(maxlen=1000)
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
        consumer.

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
            default = _topic_types_get(topic)
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
                data = self._check_dict("data", data)
                size = json_size("data", data) if data else 0
            if metadata is None:
                metadata = {}
            else:
                metadata = self._check_dict("metadata", metadata)
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
            if event._size > self.max_event_bytes:
                self._too_large(event._size)
        else:
            validate_topic(topic)  # raises InvalidTopicError naming the value
            raise AssertionError("unreachable")  # pragma: no cover
        # The ring first: a replay that subscribes after this line finds the event in its ring
        # snapshot. The version read before the routes tells, after the pushes, whether a
        # consumer subscribed meanwhile: it then gets the event from this publisher, so a
        # subscription never misses an event that was in flight while it was made.
        version = self._version
        self._ring_append(event)
        route = self._routes.get(event.topic)
        if route is None:
            route = self._resolve(event.topic)
        if route.increment() & _LATENCY_SAMPLE_MASK:
            for push in route.pushes:
                push(event)
        else:
            t0 = time.perf_counter_ns()
            for push in route.pushes:
                push(event)
            self._latency.record(time.perf_counter_ns() - t0)
        if self._version != version:
            self._push_late(event, route)
        return event

    def _push_late(self, event: Event, used: _Route) -> None:
        """Hand ``event`` to the consumers subscribed while it was being published."""
        current = self._resolve(event.topic)
        for push in current.pushes:
            if push not in used.pushes:
                push(event)

    @staticmethod
    def _check_dict(name: str, value: object) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise PayloadError(
                f"{name} must be a dict of JSON values, got {value.__class__.__name__}: "
                f"{value!r:.80}"
            )
        return value

    def _too_large(self, size: int) -> None:
        raise PayloadError(
            f"event payload is {size} bytes serialised; max_event_bytes of bus "
            f"{self.name!r} is {self.max_event_bytes}"
        )

    def _resolve(self, topic: str) -> _Route:
        with self._lock:
            route = self._routes.get(topic)
            if route is not None:
                return route
            counter = self._topic_counters.get(topic)
            if counter is None:
                if len(self._topic_counters) < TOPIC_METRICS_LIMIT:
                    counter = self._topic_counters[topic] = Counter()
                else:  # a stream of unique topics must not grow the metrics without bound
                    counter = self._topic_counters.setdefault(OTHER_TOPICS, Counter())
            pushes = tuple(c.push for c in self._consumers if self._matchers[c.pattern](topic))
            route = _Route(pushes, counter)
            if len(self._routes) >= _ROUTE_CACHE_LIMIT:
                self._routes = {}
            self._routes[topic] = route
            return route

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
    ) -> Consumer:
        """Subscribe ``sink`` to events matching ``topic``, through ``operators``.

        Args:
            sink: an observer, a plain callable, or an ``async def`` function (which runs in
                mode ``"async"``).
            operators: Rx operators applied in order, as in ``Observable.pipe``.
            topic: a topic pattern (``"hook.*"``, ``"build.**"``, ``"**"``).
            mode: ``"sync"`` (publisher's thread), ``"thread"`` (own worker thread) or
                ``"async"`` (the bus's asyncio loop).
            queue_size: bound of the queue of a ``thread`` or ``async`` consumer.
            overflow: what a full queue does (:class:`rxbus.Overflow`).
            name: unique name; defaults to the sink's name.
            scheduler: scheduler for time-based operators (default: one that keeps timers on the
                consumer's thread or loop, serialised with its events).
            once: deliver one event, then dispose.
            weak: hold ``sink`` weakly; dispose once its object is garbage-collected.
            model: hand the sink ``model`` instances validated from ``event.data``; an event
                that does not validate is a dead letter naming the field.

        Returns:
            The :class:`Consumer`; ``dispose()`` it to unsubscribe.

        Raises:
            InvalidTopicError: for a malformed pattern.
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
            consumer = Consumer(
                self,
                target,
                operators,
                pattern=topic,
                mode=mode,
                queue_size=queue_size,
                overflow=overflow,
                name=unique,
                scheduler=scheduler,
            )
            if topic not in self._matchers:
                self._matchers[topic] = compile_pattern(topic)
            self._consumers = (*self._consumers, consumer)
            self._members[unique] = consumer
            self._routes = {}
            self._version += 1  # after the routes: see publish
        self._api_subscribed(consumer, bind)
        return consumer

    def _unique_name(self, base: str) -> str:
        name, n = base, 1
        while name in self._members:
            n += 1
            name = f"{base}#{n}"
        return name

    def _detach(self, consumer: Consumer) -> None:
        """Stop routing events to ``consumer`` (it stays in metrics until retired)."""
        with self._lock:
            if consumer in self._consumers:
                self._consumers = tuple(c for c in self._consumers if c is not consumer)
                self._routes = {}
                self._version += 1

    def _retire(self, consumer: Consumer) -> None:
        """Fold a disposed consumer's counts into the bus totals and forget it."""
        with self._lock:
            self._detach(consumer)
            if self._members.get(consumer.name) is consumer:
                del self._members[consumer.name]
                for key, value in consumer.stats.as_dict().items():
                    if key in self._retired:
                        self._retired[key] += value

    @property
    def events(self) -> Observable[Event]:
        """A hot stream of every event."""
        return BusStream(self, "**")

    def topic(self, pattern: str) -> Observable[Event]:
        """A hot stream of the events whose topic matches ``pattern``.

        Raises:
            InvalidTopicError: for a malformed pattern.
        """
        return BusStream(self, validate_pattern(pattern))

    @property
    def consumers(self) -> tuple[Consumer, ...]:
        """The consumers currently subscribed."""
        return self._consumers

    # -- dead letters --------------------------------------------------------------------------

    def _dead_letter(self, letter: DeadLetter) -> None:
        self._dead_count.increment()
        self._recent_dead.append(letter)
        for observer in self._dead_observers:
            try:
                observer.on_next(letter)
            except Exception:  # a dead-letter observer failing must not recurse
                from rxbus._log import logger

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
        letters = list(self._recent_dead)
        return letters[-limit:] if limit else []

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
            return self._replay(observer, pattern, store, since, live)

        return Observable(subscribe)

    def _past(
        self, pattern: str, store: ReplayStore | None, since: Any
    ) -> Iterator[tuple[Event, bool]]:
        """The past as ``(event, in_ring)``: the ring, or the store then the ring events the
        store has not got yet.

        A publisher appends to the ring before it looks up routes, so an event either reached
        a live subscription made earlier or is in the ring snapshot taken after it. A store is
        fed by a consumer, so an event in flight to it may be missing from the query: the ring
        fills that gap. ``in_ring`` events are the ones a live twin can follow.
        """
        ring = _since(self.history(pattern), since)
        if store is None:
            for event in ring:
                yield event, True
            return
        flush = getattr(store, "flush", None)
        if callable(flush):
            flush()
        ring_ids = {e.id for e in ring}
        from_store: set[str] = set()
        for event in store.query(pattern, since=since):
            in_ring = event.id in ring_ids
            if in_ring:
                from_store.add(event.id)
            yield event, in_ring
        for event in ring:
            if event.id not in from_store:
                yield event, True

    def _replay(
        self,
        observer: abc.ObserverBase[Event],
        pattern: str,
        store: ReplayStore | None,
        since: Any,
        live: bool,
    ) -> abc.DisposableBase:
        if not live:
            for event, _ in self._past(pattern, store, since):
                observer.on_next(event)
            observer.on_completed()
            return Disposable()
        seam = _Seam(observer, self._dead_letter)
        consumer = self.subscribe(seam, topic=pattern, name=f"replay:{pattern}")
        seam.name = consumer.name
        recent = datetime.now(UTC) - _SEAM_WINDOW
        for event, in_ring in self._past(pattern, store, since):
            seam.emit_past(event, remember=in_ring or event.timestamp >= recent)
        seam.go_live()
        return consumer

    # -- metrics -------------------------------------------------------------------------------

    def metrics(self) -> dict[str, Any]:
        """Counts and latencies, JSON-serialisable.

        Keys: ``name``, ``published``, ``delivered``, ``failed``, ``dropped``, ``dead_lettered``,
        ``topics`` (per topic ``published``), ``consumers`` (per consumer stats, plus the sink's
        own ``stats`` under ``sink``), ``publish_latency_ns`` (sampled percentiles),
        ``measurements`` (from ``rxbus.operators.measure``), ``uptime_s``.
        """
        topics = {t: {"published": c.value} for t, c in sorted(self._topic_counters.items())}
        consumers: dict[str, Any] = {}
        totals = dict(self._retired)
        for c in list(self._members.values()):
            stats = c.stats.as_dict()
            for key in totals:
                totals[key] += stats[key]
            entry: dict[str, Any] = {
                "topic": c.pattern,
                "mode": c.mode,
                **stats,
                "queue_size": c.queue_size if c.mode != "sync" else None,
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
                loop = asyncio.new_event_loop()
                started = threading.Event()
                thread = threading.Thread(
                    target=_run_loop,
                    args=(loop, started),
                    name=f"rxbus-loop-{self.name}",
                    daemon=True,
                )
                thread.start()
                started.wait()
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

        Called from a consumer's own worker thread, or on the loop the bus owns, ``close``
        cannot wait for the consumers running there: they drain after it returns.

        Raises:
            RuntimeError: if called on the thread of a running loop the bus does not own while
                ``async`` consumers have work there; use ``await bus.aclose()`` inside the loop.
        """
        with self._lock:
            if self._closed:
                wait = True
            else:
                wait = False
                consumers = tuple(self._members.values())
                if (
                    self._loop is not None
                    and self._owned_loop is None
                    and _in_loop(self._loop)
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
        deadline = time.monotonic() + timeout
        for c in consumers:
            c._begin_close()
        undelivered: list[DeadLetter] = []
        for c in consumers:
            if c._runs_here():
                continue  # it drains once this call returns to its loop or worker
            if not c._wait_closed(max(0.0, deadline - time.monotonic())):
                undelivered.extend(
                    c._abandon(TimeoutError(f"not delivered within close timeout {timeout}s"))
                )
        self._finish_close(consumers, deadline)
        return undelivered

    async def aclose(self, timeout: float = 5.0) -> list[DeadLetter]:
        """:meth:`close` for code running on the bus's loop: awaits the drain instead of blocking."""
        with self._lock:
            wait = self._closed
            self._closed = True
            consumers = tuple(self._members.values())
        if wait:
            deadline = time.monotonic() + timeout
            while not self._close_done.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.001)
            return []
        deadline = time.monotonic() + timeout
        for c in consumers:
            c._begin_close()
        undelivered: list[DeadLetter] = []
        me = asyncio.current_task()
        for c in consumers:
            if (c._runs_here() and c.mode != "async") or (me is not None and c._task is me):
                continue  # called from this consumer's own sink: it finishes after we return
            while not c._done.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.001)
            if not c._done.is_set():
                undelivered.extend(
                    c._abandon(TimeoutError(f"not delivered within close timeout {timeout}s"))
                )
        self._finish_close(consumers, deadline)
        return undelivered

    def _finish_close(self, consumers: tuple[Consumer, ...], deadline: float) -> None:
        for observer in self._dead_observers:
            try:
                observer.on_completed()
            except Exception:  # pragma: no cover - an observer failing at completion
                pass
        self._dead_observers = ()
        loop, thread = self._owned_loop, self._loop_thread
        if loop is not None and thread is not None:
            if thread is threading.current_thread():
                # on the owned loop itself: stop it once its consumers have drained
                pending = [c for c in consumers if c.mode == "async" and not c._done.is_set()]
                self._stopping = loop.create_task(_stop_when_done(loop, pending, deadline))
            else:
                # drain tasks close() gave up on are cancelled and let finish before the loop
                # stops, rather than left pending forever
                tasks = [c._task for c in consumers if c._task is not None and not c._done.is_set()]
                if tasks:
                    asyncio.run_coroutine_threadsafe(_cancel_then_stop(loop, tasks), loop)
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

    def _repr_html_(self) -> str:
        from rxbus.viz import bus_html

        return bus_html(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<EventBus {self.name!r} {state} consumers={len(self._consumers)}>"


class _Seam:
    """Joins a replay's past and live parts.

    Live events are buffered until the past is out. An event published around the moment the
    live subscription started can be in both parts; it is emitted once: a past event already
    buffered is skipped, and a buffered event already emitted as past is skipped at the drain.
    """

    def __init__(
        self, observer: abc.ObserverBase[Event], report: Callable[[DeadLetter], None]
    ) -> None:
        self._observer = observer
        self._report = report
        self._lock = threading.Lock()
        self._buffer: list[Event] | None = []
        self._buffered: set[str] = set()
        self._emitted: set[str] = set()
        self.name = "replay"

    def on_next(self, event: Event) -> None:
        with self._lock:
            if self._buffer is not None:
                self._buffer.append(event)
                self._buffered.add(event.id)
                return
            # a publisher that appended to the ring before the snapshot can reach the live
            # path only now, after the drain: its event went out as past already
            if self._emitted and event.id in self._emitted:
                self._emitted.discard(event.id)
                return
        self.emit(event)

    def on_error(self, error: Exception) -> None:
        self._observer.on_error(error)

    def on_completed(self) -> None:
        self.go_live()
        self._observer.on_completed()

    def emit_past(self, event: Event, *, remember: bool) -> None:
        with self._lock:
            if event.id in self._buffered:
                return
            if remember:
                self._emitted.add(event.id)
        self.emit(event)

    def emit(self, event: Event) -> None:
        """Deliver outside the live consumer's own isolation, with the same guarantee."""
        try:
            self._observer.on_next(event)
        except Exception as err:
            self._report(DeadLetter.capture(event, self.name, err))

    def go_live(self) -> None:
        while True:
            with self._lock:
                pending = self._buffer
                if not pending:
                    self._buffer = None
                    self._buffered.clear()
                    return
                self._buffer = []
                emitted = self._emitted
            for event in pending:
                if event.id not in emitted:
                    self.emit(event)


def _since(events: list[Event], since: Any) -> list[Event]:
    if since is None:
        return events
    if isinstance(since, str):
        return [e for e in events if e.id >= since]
    return [e for e in events if e.timestamp >= since]


def _discard(_: Event) -> None:
    return None


def _run_loop(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(started.set)
    try:
        loop.run_forever()
    finally:
        loop.close()


async def _cancel_then_stop(
    loop: asyncio.AbstractEventLoop, tasks: list[asyncio.Task[None]]
) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks, timeout=1)
    loop.stop()


async def _stop_when_done(
    loop: asyncio.AbstractEventLoop, consumers: list[Consumer], deadline: float
) -> None:
    while any(not c._done.is_set() for c in consumers) and time.monotonic() < deadline:
        await asyncio.sleep(0.001)
    loop.stop()


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


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
