"""pyee's ``EventEmitter`` and ``AsyncIOEventEmitter``, backed by an :class:`~rxbus.EventBus`.

Code written for pyee migrates by changing one import::

    from pyee import EventEmitter                 # before
    from rxbus.compat import EventEmitter         # after

    >>> ee = EventEmitter()
    >>> @ee.on("data")
    ... def handler(value):
    ...     print("got", value)
    >>> ee.emit("data", 42)
    got 42
    True
    >>> [(e.topic, e.type, e.data) for e in ee.bus.history("ee.**")]
    [('ee.new_listener', 'new_listener', {'args': ['data', '<function handler>'], 'kwargs': {}}), ('ee.data', 'data', {'args': [42], 'kwargs': {}})]

Every ``emit`` publishes an event on topic ``<prefix>.<event name>`` (type: the event name,
data: ``{"args": [...], "kwargs": {...}}``, values JSON cannot carry shown by their ``repr``),
and one ``sync`` consumer of the emitter calls the listeners with the original Python objects,
in the emitting thread, in the order they were added, as pyee does. So the bus's other consumers
see the emitter's events (topics, sinks, the dashboard, replay), its metrics count them, and a
listener that raises is a dead letter. Events published on the emitter's topics by anyone else
(``rxbus publish ee.data --data '{"args": [1]}'`` through ``rxbus serve``) reach the listeners
too. The differences from pyee are listed in ``docs/migrating-from-pyee.md``.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

import orjson

from rxbus.errors import PayloadError, PyeeError
from rxbus.event import Event
from rxbus.producers import topic_for
from rxbus.topics import validate_topic

if TYPE_CHECKING:  # pragma: no cover
    from rxbus.bus import EventBus
    from rxbus.consumer import Consumer

__all__ = ["AsyncIOEventEmitter", "EventEmitter", "PyeeError"]

Handler = TypeVar("Handler", bound=Callable[..., Any])


class EventEmitter:
    """pyee's ``EventEmitter`` API on an :class:`~rxbus.EventBus`.

    Args:
        bus: the bus to publish on; default a new bus owned by this emitter (see :attr:`bus`).
        prefix: the first segment(s) of the emitter's topics.

    Raises:
        InvalidTopicError: for a ``prefix`` that is not a valid topic.
    """

    def __init__(self, bus: EventBus | None = None, *, prefix: str = "ee") -> None:
        validate_topic(prefix)
        if bus is None:
            from rxbus.bus import EventBus

            bus = EventBus(name=f"pyee-{prefix}")
        self.bus: EventBus = bus
        """The bus behind the emitter: its topics, dead letters, metrics and replay."""
        self.prefix = prefix
        self._events: dict[Any, OrderedDict[Callable[..., Any], Callable[..., Any]]] = {}
        self._lock = threading.Lock()
        self._topics: dict[Any, str] = {}
        # The Python objects of emits in flight, by event id: the event itself carries JSON.
        self._calls: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {}
        self._raised: dict[str, BaseException] = {}
        # An emit from inside a listener runs its listeners at once, as pyee does; the bus still
        # gets the event, and the consumer skips it when it comes round.
        self._inside = threading.local()
        self._skip: set[str] = set()
        self.consumer: Consumer = bus.subscribe(
            self._dispatch, topic=f"{prefix}.**", name=f"pyee-{prefix}"
        )
        """The bus consumer that calls the listeners."""

    # -- registering -------------------------------------------------------------------------

    @overload
    def on(self, event: Any) -> Callable[[Handler], Handler]: ...
    @overload
    def on(self, event: Any, f: Handler) -> Handler: ...

    def on(self, event: Any, f: Handler | None = None) -> Handler | Callable[[Handler], Handler]:
        """Add ``f`` as a listener of ``event``; without ``f``, a decorator doing so.

        Returns ``f`` (or the decorator, which returns the function unchanged).
        """
        if f is None:
            return self.listens_to(event)
        return self.add_listener(event, f)

    def listens_to(self, event: Any) -> Callable[[Handler], Handler]:
        """A decorator adding the decorated function as a listener of ``event``."""

        def on(f: Handler) -> Handler:
            self._add_event_handler(event, f, f)
            return f

        return on

    def add_listener(self, event: Any, f: Handler) -> Handler:
        """Add ``f`` as a listener of ``event`` and return it."""
        self._add_event_handler(event, f, f)
        return f

    def once(self, event: Any, f: Callable[..., Any] | None = None) -> Callable[..., Any]:
        """As :meth:`on`, but the listener is removed before its first call."""

        def wrapper(f: Callable[..., Any]) -> Callable[..., Any]:
            def g(*args: Any, **kwargs: Any) -> Any:
                with self._lock:
                    if event in self._events and f in self._events[event]:
                        self._remove_listener(event, f)
                    else:
                        return None  # removed meanwhile (or called by a concurrent emit)
                return f(*args, **kwargs)

            self._add_event_handler(event, f, g)
            return f

        return wrapper if f is None else wrapper(f)

    def _add_event_handler(self, event: Any, key: Callable[..., Any], call: Any) -> None:
        # "new_listener" fires before the listener is added, so it never sees itself.
        self.emit("new_listener", event, key)
        with self._lock:
            self._events.setdefault(event, OrderedDict())[key] = call

    def _remove_listener(self, event: Any, f: Callable[..., Any]) -> None:
        if event in self._events:
            self._events[event].pop(f)
            if not self._events[event]:
                del self._events[event]

    def remove_listener(self, event: Any, f: Callable[..., Any]) -> None:
        """Remove the listener ``f`` of ``event``.

        Raises:
            KeyError: if ``f`` is not a listener of ``event`` (as pyee).
        """
        with self._lock:
            self._remove_listener(event, f)

    def remove_all_listeners(self, event: Any = None) -> None:
        """Remove every listener of ``event``, or of every event when ``event`` is None."""
        with self._lock:
            if event is not None:
                self._events[event] = OrderedDict()
            else:
                self._events = {}

    def listeners(self, event: Any) -> list[Callable[..., Any]]:
        """A copy of the list of ``event``'s listeners, in the order they were added."""
        return list(self._events.get(event, OrderedDict()).keys())

    def event_names(self) -> set[Any]:
        """The events that have (or had, until ``remove_all_listeners(event)``) listeners."""
        return set(self._events.keys())

    # -- emitting ----------------------------------------------------------------------------

    def emit(self, event: Any, *args: Any, **kwargs: Any) -> bool:
        """Publish ``event`` on the bus and call its listeners with ``args`` and ``kwargs``.

        Returns:
            True when ``event`` had listeners.

        Raises:
            BaseException: what a listener raised (the remaining listeners are not called, and
                the failure is also a dead letter of :attr:`consumer`); for an ``error`` event
                without listeners, its exception argument, else :class:`PyeeError`.
            BusClosedError: when the bus is closed.
        """
        message = self._event(event, args, kwargs)
        key = message.id
        if getattr(self._inside, "depth", 0):
            return self._emit_nested(event, message, args, kwargs)
        self._calls[key] = (args, kwargs)
        try:
            try:
                self.bus.publish(message)
            except PayloadError:  # too large for the bus: the listeners still get it all
                self.bus.publish(message.evolve(data={"omitted_bytes": message.payload_size}))
            handled = self._calls.pop(key, None) is None  # popped by the dispatcher
        finally:
            self._calls.pop(key, None)
        raised = self._raised.pop(key, None)
        if raised is not None:
            raise raised
        if not handled:
            self._emit_handle_potential_error(event, args[0] if args else None)
        return handled

    def _emit_nested(
        self, name: Any, message: Event, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> bool:
        """``emit`` from inside a listener: the bus consumer is busy with the outer event (it
        would get this one after), so the listeners run here and now, as in pyee."""
        self._skip.add(message.id)
        try:
            try:
                self.bus.publish(message)
            except PayloadError:
                self.bus.publish(message.evolve(data={"omitted_bytes": message.payload_size}))
        except BaseException:
            self._skip.discard(message.id)
            raise
        with self._lock:
            funcs = list(self._events.get(name, OrderedDict()).values())
        if not funcs:
            self._emit_handle_potential_error(name, args[0] if args else None)
            return False
        for f in funcs:
            self._emit_run(f, args, kwargs)
        return True

    def _event(self, name: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Event:
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = topic_for(self.prefix, str(name))
        data = {"args": list(args), "kwargs": kwargs}
        try:
            return Event(topic=topic, type=str(name), data=data)
        except ValueError:  # values JSON cannot carry travel as their repr
            return Event(topic=topic, type=str(name), data=_printable(data))

    def _dispatch(self, event: Event) -> None:
        """The consumer's sink: call the listeners of ``event.type`` in order."""
        if event.id in self._skip:  # its listeners ran in the emit that published it
            self._skip.discard(event.id)
            return
        inside = self._inside
        inside.depth = getattr(inside, "depth", 0) + 1
        try:
            self._dispatch_call(event)
        finally:
            inside.depth -= 1

    def _dispatch_call(self, event: Event) -> None:
        call = self._calls.pop(event.id, None)
        if call is None:  # published by someone else: arguments from the event's data
            name: Any = event.type
            args, kwargs = _arguments(event.data)
        else:
            args, kwargs = call
            name = _name_of(self._events, event.type)
        with self._lock:
            funcs = list(self._events.get(name, OrderedDict()).values())
        if not funcs:
            if call is not None:
                self._calls[event.id] = call  # not handled: tell emit
            return
        try:
            for f in funcs:
                self._emit_run(f, args, kwargs)
        except BaseException as err:
            if call is not None:
                self._raised[event.id] = err
            raise

    def _emit_run(
        self, f: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        f(*args, **kwargs)

    def _emit_handle_potential_error(self, event: Any, error: Any) -> None:
        if event == "error":
            if isinstance(error, Exception):
                raise error
            raise PyeeError(f"Uncaught, unspecified 'error' event: {error}")

    # -- pickling, as pyee allows ------------------------------------------------------------

    def __getstate__(self) -> Mapping[str, Any]:
        """Only the listeners and the prefix: a bus holds threads and locks."""
        return {"prefix": self.prefix, "_events": self._events}

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        """A copy on a new bus of its own, with the same listeners."""
        self.__init__(prefix=state["prefix"])  # type: ignore[misc]
        self._events = dict(state["_events"])


class AsyncIOEventEmitter(EventEmitter):
    """pyee's ``AsyncIOEventEmitter``: coroutine listeners run as tasks, errors go to ``error``.

    Every exception a listener raises, and every exception a coroutine listener ends with, is
    emitted as an ``error`` event (and raised from ``emit`` when nothing listens to ``error``,
    as pyee does).

    Args:
        loop: the loop tasks are created on (default: the running loop at ``emit``).
        bus: as for :class:`EventEmitter`.
        prefix: as for :class:`EventEmitter`.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        bus: EventBus | None = None,
        prefix: str = "ee",
    ) -> None:
        super().__init__(bus, prefix=prefix)
        self._loop = loop
        self._waiting: set[asyncio.Future[Any]] = set()

    def _emit_run(
        self, f: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        try:
            result: Any = f(*args, **kwargs)
        except Exception as exc:
            self.emit("error", exc)
            return
        if asyncio.iscoroutine(result):
            fut: asyncio.Future[Any] = asyncio.ensure_future(result, loop=self._loop)
        elif isinstance(result, asyncio.Future):
            fut = result
        else:
            return

        def done(f: asyncio.Future[Any]) -> None:
            self._waiting.discard(f)
            if f.cancelled():
                return
            exc = f.exception()
            if exc:
                self.emit("error", exc)

        fut.add_done_callback(done)
        self._waiting.add(fut)

    async def wait_for_complete(self) -> None:
        """Wait until every task started by a coroutine listener has finished."""
        if self._waiting:
            await asyncio.wait(self._waiting)

    def cancel(self) -> None:
        """Cancel every task started by a coroutine listener."""
        for fut in self._waiting:
            if not fut.done():
                fut.cancel()
        self._waiting.clear()

    @property
    def complete(self) -> bool:
        """True when no task started by a coroutine listener is pending."""
        return not self._waiting

    def __getstate__(self) -> Mapping[str, Any]:
        return {"prefix": self.prefix, "_events": self._events}

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        AsyncIOEventEmitter.__init__(self, prefix=state["prefix"])
        self._events = dict(state["_events"])


def _name_of(events: Mapping[Any, Any], type_: str) -> Any:
    """The registered event whose ``str`` is ``type_`` (a non-str event name, such as an enum)."""
    if type_ in events:
        return type_
    for name in list(events):
        if str(name) == type_:
            return name
    return type_


def _arguments(data: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Listener arguments from an event published by someone else: ``{"args", "kwargs"}``,
    else the data dict as the one argument."""
    args, kwargs = data.get("args"), data.get("kwargs")
    if (
        set(data) <= {"args", "kwargs"}
        and isinstance(args, list | None)
        and isinstance(kwargs, dict | None)
    ):
        return tuple(args or ()), dict(kwargs or {})
    return (dict(data),), {}


def _printable(value: Any) -> Any:
    """``value`` with every part orjson cannot serialise replaced by its ``repr`` (cut to 200)."""
    try:
        orjson.dumps(value)
        return value
    except TypeError:
        pass
    if isinstance(value, dict):
        return {str(k): _printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(v) for v in value]
    text = repr(value)
    if callable(value) and getattr(value, "__qualname__", None):
        text = f"<function {value.__qualname__}>"
    return text[:200]
