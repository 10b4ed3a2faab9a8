"""The async, decorator and request/reply face of :class:`rxbus.EventBus`.

:class:`BusApi` is a mixin built only on the bus's public API (``publish``, ``subscribe``,
``Consumer.dispose``, ``loop``, ``name``): awaiting one event (:meth:`BusApi.next`,
:meth:`BusApi.wait_for`), iterating a stream (:meth:`BusApi.stream`), registering handlers with a
decorator (:meth:`BusApi.on`), unsubscribing by name, and request/reply.
:func:`prepare_subscription` is what ``subscribe(..., once=, weak=, model=)`` runs on its sink.

    >>> import asyncio
    >>> from rxbus import EventBus
    >>> async def main():
    ...     async with EventBus() as bus:
    ...         waiter = bus.next("build.*")   # subscribed now; await it later
    ...         _ = bus.publish("build.done", {"ok": True})
    ...         return (await waiter).data
    >>> asyncio.run(main())
    {'ok': True}
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from reactivex import operators as rx

from rxbus.errors import BusClosedError, ReplyError
from rxbus.event import Event
from rxbus.policies import Overflow
from rxbus.topics import validate_topic

if TYPE_CHECKING:
    from rxbus.consumer import Consumer
    from rxbus.streams import EventStream

__all__ = ["RELEASE_THREAD", "REPLY_PREFIX", "BusApi", "prepare_subscription"]

F = TypeVar("F", bound=Callable[..., Any])

REPLY_PREFIX = "reply"
"""Replies to a request on topic ``t`` are published on ``reply.t`` (a reserved namespace)."""
_REPLIES_CONSUMER = "replies"
RELEASE_THREAD = "rxbus-release"
"""Name of the threads that dispose consumers whose sink or waiter was garbage-collected."""
_FINISHED_REMEMBERED = 10_000  # correlation ids remembered to explain a late or second reply


_API_STATE_LOCK = threading.Lock()  # creates a bus's _ApiState once


class _ApiState:
    """What the mixin keeps per bus: named consumers and the requests awaiting a reply."""

    def __init__(self) -> None:
        self.lock = threading.RLock()  # subscribe re-enters it while the router is created
        self.named: weakref.WeakValueDictionary[str, Consumer] = weakref.WeakValueDictionary()
        self.pending: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future[Event]]] = {}
        self.finished: OrderedDict[str, str] = OrderedDict()
        self.router: Consumer | None = None

    def finish(self, correlation_id: str, how: str) -> None:
        """Remember how a request ended (called with ``lock`` held)."""
        self.finished[correlation_id] = how
        while len(self.finished) > _FINISHED_REMEMBERED:
            self.finished.popitem(last=False)


class BusApi:
    """Await, iterate, decorate, unsubscribe by name, request and reply (mixed into EventBus).

    Uses only the bus's public API, so it works the same on any bus that provides
    ``publish``, ``subscribe``, ``loop`` and ``name``.
    """

    name: str
    publish: Callable[..., Event]
    subscribe: Callable[..., Consumer]
    _rxbus_api: _ApiState  # made on first use by _api()

    # -- bookkeeping -----------------------------------------------------------------------

    def _api(self) -> _ApiState:
        # A plain attribute, not self.__dict__: on CPython 3.11 reading __dict__ turns the
        # instance's inline attributes into a dict that the interpreter cannot specialise
        # attribute reads on, and every self.x in publish took the slow path.
        try:
            return self._rxbus_api
        except AttributeError:
            with _API_STATE_LOCK:
                try:
                    return self._rxbus_api
                except AttributeError:
                    self._rxbus_api = _ApiState()
                    return self._rxbus_api

    def _api_subscribed(self, consumer: Consumer, bind: Callable[[Consumer], None]) -> None:
        """Called by ``subscribe`` with each new consumer: remember its name, bind its wrapper."""
        state = self._api()
        with state.lock:
            state.named[consumer.name] = consumer
        bind(consumer)

    # -- await one event -------------------------------------------------------------------

    def next(
        self,
        pattern: str = "**",
        *,
        where: Callable[[Event], bool] | None = None,
        timeout: float | None = None,
    ) -> Coroutine[Any, Any, Event]:
        """The next event matching ``pattern`` (and ``where``) published after this call.

        The subscription starts when ``next`` is called, not when it is awaited, so
        ``waiter = bus.next("x"); bus.publish("x"); await waiter`` cannot miss the event. The
        returned coroutine works with ``await``, ``asyncio.create_task`` and ``gather``.

        Args:
            pattern: a topic pattern.
            where: a predicate on the event; an exception it raises is a dead letter.
            timeout: seconds from this call; ``None`` waits for ever.

        Raises:
            TimeoutError: naming the pattern, if nothing matched within ``timeout``.
            RuntimeError: when called with no running asyncio loop (use :meth:`wait_for`).
        """
        _check_timeout(timeout)
        loop = _running_loop("bus.next()", "use bus.wait_for() to block a thread instead")
        future: asyncio.Future[Event] = loop.create_future()
        deadline = None if timeout is None else loop.time() + timeout

        def deliver(event: Event) -> None:
            _resolve(loop, future, event)

        consumer = self._first(pattern, where, deliver, f"next:{pattern}")
        started: list[bool] = []
        waiter = self._await_first(consumer, future, pattern, timeout, deadline, started)
        # never awaited: its consumer goes when the coroutine is collected (once started, the
        # coroutine's own finally disposes it)
        weakref.finalize(waiter, _dispose_unstarted, consumer, started)
        return waiter

    async def _await_first(
        self,
        consumer: Consumer,
        future: asyncio.Future[Event],
        pattern: str,
        timeout: float | None,
        deadline: float | None,
        started: list[bool],
    ) -> Event:
        started.append(True)
        try:
            if deadline is None:
                return await future
            remaining = max(0.0, deadline - asyncio.get_running_loop().time())
            return await asyncio.wait_for(future, remaining)
        except TimeoutError:
            raise TimeoutError(
                f"no event matching {pattern!r} on bus {self.name!r} within {timeout}s"
            ) from None
        finally:
            consumer.dispose()

    def wait_for(
        self,
        pattern: str = "**",
        *,
        where: Callable[[Event], bool] | None = None,
        timeout: float | None = None,
    ) -> Event:
        """Block this thread until an event matching ``pattern`` (and ``where``) is published.

        The blocking twin of :meth:`next`, for scripts and threads. Refuses to run on a thread
        with a running asyncio loop, which it would freeze: ``await bus.next(...)`` there.

        Raises:
            TimeoutError: naming the pattern, if nothing matched within ``timeout``.
            RuntimeError: on a thread running an asyncio loop.
        """
        _check_timeout(timeout)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                "bus.wait_for() would block the asyncio loop running on this thread; "
                "use 'await bus.next(...)' instead"
            )
        got: list[Event] = []
        done = threading.Event()

        def deliver(event: Event) -> None:
            got.append(event)
            done.set()

        consumer = self._first(pattern, where, deliver, f"wait_for:{pattern}")
        try:
            if not done.wait(timeout):
                raise TimeoutError(
                    f"no event matching {pattern!r} on bus {self.name!r} within {timeout}s"
                )
            return got[0]
        finally:
            consumer.dispose()

    def _first(
        self,
        pattern: str,
        where: Callable[[Event], bool] | None,
        deliver: Callable[[Event], None],
        name: str,
    ) -> Consumer:
        """A sync consumer handing the first matching event to ``deliver``, then completing.

        ``take(1)`` completes the chain, so events racing in afterwards are counted as not
        wanted (dropped) by the consumer rather than dead-lettered.
        """
        if where is not None and not callable(where):
            raise TypeError(f"where must be a callable taking an Event, got {where!r:.80}")
        operators = (rx.filter(where), rx.take(1)) if where is not None else (rx.take(1),)
        return self.subscribe(deliver, *operators, topic=pattern, mode="sync", name=name)

    # -- streams ---------------------------------------------------------------------------

    def stream(
        self,
        pattern: str = "**",
        *,
        queue_size: int = 1000,
        overflow: Overflow | str = Overflow.BLOCK,
        name: str | None = None,
    ) -> EventStream:
        """An async iterator of the events matching ``pattern`` published from now on.

        ``async with bus.stream("orders.*") as events: async for event in events: ...``. It is
        an ``async`` consumer like any other (in ``metrics()``, with the bus's ``queue_size``
        and ``overflow`` policies); leaving the ``async with`` (``break``, an exception,
        cancellation) disposes it, and closing the bus ends the iteration once the queued
        events are read. See :class:`rxbus.streams.EventStream`.
        """
        from rxbus.streams import EventStream

        return EventStream(
            self,
            pattern,
            queue_size=queue_size,
            overflow=overflow,
            name=name or f"stream:{pattern}",
        )

    # -- decorators and names --------------------------------------------------------------

    def on(
        self, pattern: str = "**", *operators: Callable[[Any], Any], **options: Any
    ) -> Callable[[F], F]:
        """Decorator: subscribe the function (sync or ``async def``) and return it unchanged.

        ``options`` are :meth:`subscribe`'s (``mode``, ``once``, ``weak``, ``model``,
        ``name``, ...). The consumer's name defaults to the function's qualified name, for
        :meth:`unsubscribe`.
        """

        def register(fn: F) -> F:
            self.subscribe(fn, *operators, topic=pattern, **options)
            return fn

        return register

    def unsubscribe(self, name: str) -> None:
        """Dispose the consumer called ``name``.

        Raises:
            KeyError: naming ``name`` and listing the known consumers.
        """
        state = self._api()
        with state.lock:
            consumer = state.named.pop(name, None)
            known = sorted(state.named.keys())
        if consumer is None:
            raise KeyError(f"no consumer named {name!r} on bus {self.name!r}; known: {known}")
        consumer.dispose()

    # -- request and reply -----------------------------------------------------------------

    async def request(
        self,
        topic: str,
        data: Any = None,
        *,
        timeout: float = 30.0,
        metadata: dict[str, Any] | None = None,
    ) -> Event:
        """Publish a request with a fresh ``correlation_id`` and return the first reply.

        Replies travel on ``reply.<topic>`` (see :meth:`reply`). A second reply to the same
        request, or one arriving after the timeout, is dropped: it becomes a dead letter
        (:class:`~rxbus.errors.ReplyError`) of the consumer ``"replies"``, so it shows in
        ``metrics()["dead_lettered"]`` and in that consumer's ``failed`` count.

        Raises:
            TimeoutError: naming the topic and correlation id, if no reply came in time.
        """
        _check_timeout(timeout)
        reply_topic = validate_topic(f"{REPLY_PREFIX}.{topic}")
        state = self._api()
        self._ensure_router(state)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Event] = loop.create_future()
        correlation_id = uuid.uuid4().hex
        with state.lock:
            state.pending[correlation_id] = (loop, future)
        outcome = "was cancelled"
        try:
            self.publish(
                topic,
                data,
                metadata={**(metadata or {}), "reply_to": reply_topic},
                correlation_id=correlation_id,
            )
            reply = await asyncio.wait_for(future, timeout)
            outcome = "answered"
            return reply
        except TimeoutError:
            outcome = "timed out"
            raise TimeoutError(
                f"no reply to {topic!r} (correlation_id {correlation_id}) on bus "
                f"{self.name!r} within {timeout}s"
            ) from None
        finally:
            with state.lock:
                if state.pending.pop(correlation_id, None) is not None or outcome != "answered":
                    state.finish(correlation_id, outcome)

    def reply(self, request: Event, data: Any = None, **fields: Any) -> Event:
        """Answer ``request`` (an event sent by :meth:`request`): publish ``data`` on its reply
        topic with its ``correlation_id``. Extra ``fields`` go to ``publish``.

        Raises:
            ValueError: if ``request`` has no ``correlation_id`` (it is not a request).
        """
        if not isinstance(request, Event) or request.correlation_id is None:
            raise ValueError(
                f"reply() needs an event sent by bus.request() (with a correlation_id), got "
                f"{request!r:.120}"
            )
        topic = request.metadata.get("reply_to") or f"{REPLY_PREFIX}.{request.topic}"
        return self.publish(topic, data, correlation_id=request.correlation_id, **fields)

    def _ensure_router(self, state: _ApiState) -> None:
        with state.lock:
            if state.router is not None:
                return

            def route(event: Event) -> None:
                cid = event.correlation_id
                with state.lock:
                    entry = state.pending.pop(cid, None) if cid is not None else None
                    if entry is not None:
                        state.finish(cid, "answered")  # type: ignore[arg-type]
                    how = state.finished.get(cid) if cid is not None else None
                if entry is not None:
                    _resolve(entry[0], entry[1], event)
                    return
                if how == "answered":
                    why = "a second reply; the first was delivered"
                elif how is not None:
                    why = f"the request {how}"
                else:
                    why = "no request with this correlation_id is waiting"
                raise ReplyError(f"reply {event.id} on {event.topic!r} dropped: {why} ({cid})")

            state.router = self.subscribe(
                route, topic=f"{REPLY_PREFIX}.**", mode="sync", name=_REPLIES_CONSUMER
            )


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0
    ):
        raise ValueError(f"timeout must be a number of seconds >= 0 or None, got {timeout!r}")


def _running_loop(what: str, hint: str) -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(f"{what} needs a running asyncio loop; {hint}") from None


def _resolve(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Event], event: Event) -> None:
    """Set ``future``'s result from any thread (once; a cancelled future is left alone)."""

    def set_result() -> None:
        if not future.done():
            future.set_result(event)

    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        set_result()
    else:
        loop.call_soon_threadsafe(set_result)


# -- subscribe(..., once=, weak=, model=) ---------------------------------------------------


def prepare_subscription(
    sink: Any,
    operators: tuple[Callable[[Any], Any], ...],
    *,
    once: bool = False,
    weak: bool = False,
    model: type | None = None,
) -> tuple[Any, tuple[Callable[[Any], Any], ...], Callable[[Consumer], None]]:
    """What ``subscribe`` runs for ``once``, ``weak`` and ``model``.

    Returns ``(sink, operators, bind)``: the sink to subscribe (the same object when no option
    is set), the operators with the options' own appended, and ``bind(consumer)`` to call with
    the new consumer.

    - ``model``: each item is validated into ``model`` before the sink sees it; a failure is a
      dead letter naming the field (:class:`~rxbus.errors.ModelValidationError`), and the
      consumer goes on. It runs in the sink wrapper (no operator chain: cheaper), or, with
      ``once``, as a ``map`` before ``take(1)``, so an invalid event does not use up the once.
    - ``once``: ``take(1)`` after everything else, then the consumer is disposed once the
      event has been handled (events racing in meanwhile are counted as not wanted).
    - ``weak``: the sink is held by a weak reference (``WeakMethod`` for bound methods); once
      its object is collected the consumer is disposed, and an event reaching it meanwhile is
      a dead letter rather than a call on a dead object.
    """
    for flag, value in (("once", once), ("weak", weak)):
        if not isinstance(value, bool):
            raise TypeError(f"{flag} must be True or False, got {value!r}")
    if not (once or weak or model is not None):
        return sink, operators, _no_bind
    parse = None
    if model is not None:
        from rxbus.typed import parser

        parse = parser(model)
    if once:
        if parse is not None:
            operators = (*operators, rx.map(parse))
            parse = None
        operators = (*operators, rx.take(1))
    on_next = getattr(sink, "on_next", None)
    target_next = on_next if callable(on_next) else sink
    if not callable(target_next):
        raise TypeError(
            f"sink must be an observer (with on_next) or a callable, got {type(sink).__name__}"
        )
    cls = _AsyncSink if _is_async(target_next) else _Sink
    wrapped = cls(sink, once=once, weak=weak, parse=parse)
    return wrapped, operators, wrapped.bind


def _weak(target: Any, callback: Callable[[Any], None]) -> Callable[[], Any]:
    """A weak reference to ``target`` that calls ``callback`` once it is collected.

    A bound method is referenced through its object (``WeakMethod``; a builtin one such as
    ``items.append`` through ``__self__`` too), since the bound method object itself is made
    afresh at each attribute access and would die at once.

    Raises:
        TypeError: if the object cannot be weakly referenced.
    """
    if inspect.ismethod(target):
        return weakref.WeakMethod(target, callback)
    owner = getattr(target, "__self__", None)
    if inspect.isbuiltin(target) and owner is not None and not inspect.ismodule(owner):
        owner_ref = weakref.ref(owner, callback)
        name = target.__name__

        def bound() -> Any:
            obj = owner_ref()
            return None if obj is None else getattr(obj, name)

        return bound
    return weakref.ref(target, callback)


def _dispose_soon(consumer: Consumer) -> None:
    """Dispose ``consumer`` on a short-lived thread: called from a garbage collection, which
    can run while this thread holds a lock the disposal needs."""
    threading.Thread(target=consumer.dispose, name=RELEASE_THREAD, daemon=True).start()


def _dispose_unstarted(consumer: Consumer, started: list[bool]) -> None:
    if not started:
        _dispose_soon(consumer)


def _no_bind(consumer: Consumer) -> None:
    return None


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object whose __call__ is async
    )


class _Sink:
    """A sink wrapper for ``once``, ``weak`` and ``model``: forwards to the real sink."""

    def __init__(
        self,
        target: Any,
        *,
        once: bool,
        weak: bool,
        parse: Callable[[Any], Any] | None = None,
    ) -> None:
        self._once = once
        self._parse = parse
        self._consumer: Consumer | None = None
        self._released = False
        self._release_asked = False
        self._description = repr(target)[:80]
        if weak:
            callback = self._collected
            try:
                self._ref = _weak(target, callback)
            except TypeError:
                raise TypeError(
                    "weak=True needs a sink that can be weakly referenced (a function, a bound "
                    f"method of a Python class, an observer object), got {self._description}"
                ) from None
        else:
            self._ref = lambda: target

    def bind(self, consumer: Consumer) -> None:
        self._consumer = consumer
        if self._ref() is None:  # collected before the consumer existed
            self._collected(None)
        elif self._release_asked:  # its one event came before subscribe returned
            self._release_when_idle()

    def _on_next(self) -> Callable[[Any], Any]:
        """The real sink's ``on_next`` (or the sink itself, a plain callable)."""
        target = self._ref()
        if target is None:
            raise BusClosedError(
                f"weak subscriber {self._description} was garbage-collected; not delivered"
            )
        on_next = getattr(target, "on_next", None)
        return on_next if callable(on_next) else target

    def on_next(self, item: Any) -> None:
        if self._parse is not None:
            item = self._parse(item)
        self._on_next()(item)

    def on_error(self, error: Exception) -> Any:
        target = self._ref()
        handler = getattr(target, "on_error", None) if target is not None else None
        return handler(error) if callable(handler) else None

    def on_completed(self) -> Any:
        target = self._ref()
        handler = getattr(target, "on_completed", None) if target is not None else None
        result = handler() if callable(handler) else None
        if self._once:
            self._finished_once()
        return result

    def _finished_once(self) -> None:
        self._release_when_idle()

    def _release_when_idle(self) -> None:
        """Dispose the consumer once it holds no more events.

        On a loop (an ``async`` consumer, or a publisher inside a loop) this waits for the
        current event to be counted first; elsewhere it disposes now if nothing is queued,
        and otherwise leaves the consumer to count the rest as not wanted until the bus closes.
        """
        consumer = self._consumer
        if consumer is None:
            self._release_asked = True
            return
        if self._released:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            if consumer.stats.queued == 0:
                self._release()
            return

        def check() -> None:
            if consumer.stats.queued:
                loop.call_soon(check)
            else:
                self._release()

        loop.call_soon(check)

    def _release(self) -> None:
        if self._released or self._consumer is None:
            return
        self._released = True
        self._consumer.dispose()

    def _collected(self, _ref: Any) -> None:
        """The weakly held sink is gone: dispose the consumer."""
        if self._consumer is None or self._released:
            return
        self._released = True
        _dispose_soon(self._consumer)


class _AsyncSink(_Sink):
    """:class:`_Sink` for an ``async def`` sink: the wrapper must be awaitable too."""

    async def on_next(self, item: Any) -> None:  # type: ignore[override]
        try:
            if self._parse is not None:
                item = self._parse(item)
            await self._on_next()(item)
        finally:
            if self._once and self._completed:
                self._release_when_idle()

    _completed = False

    def _finished_once(self) -> None:
        # take(1) completes before the async sink has awaited its event: release after it
        self._completed = True
