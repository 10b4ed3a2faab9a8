"""History and replay: the past from the ring or a store, joined to live events at a seam."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, runtime_checkable

from reactivex import abc

from rxbus.deadletter import DeadLetter
from rxbus.event import Event

__all__ = ["ReplayStore", "Seam", "past"]


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


def past(
    ring: list[Event],
    pattern: str,
    store: ReplayStore | None,
    since: Any,
    settle: Callable[[ReplayStore], None],
) -> Iterator[tuple[Event, bool]]:
    """The past as ``(event, in_ring)``: the ring, or the store then the ring events the store
    has not got yet.

    A publisher appends to the ring before it looks up routes, so an event either reached a
    live subscription made earlier or is in the ring snapshot taken after it. A store is fed by
    a consumer, so an event in flight to it may be missing from the query: the ring fills that
    gap. ``in_ring`` events are the ones a live twin can follow. ``settle(store)`` first waits
    for the consumers feeding the store to hand it what they had received.
    """
    ring = _since(ring, since)
    if store is None:
        for event in ring:
            yield event, True
        return
    settle(store)
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


class Seam:
    """Joins a replay's past and live parts.

    Live events are buffered until the past is out. An event published around the moment the
    live subscription started can be in both parts; it is emitted once, as past (in its place
    in the past's order), and skipped when the buffer drains or when it arrives live later.

    Emitting it in its past place keeps each producer's order: the past holds a prefix of each
    producer's events and the buffer the rest, so a past event must never wait for the drain
    (a later past event of the same producer would overtake it).
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

    def on_completed(self) -> None:
        self.go_live()
        self._observer.on_completed()

    def emit_past(self, event: Event, *, remember: bool) -> None:
        """Emit a past event; ``remember`` it (or an event already buffered live) so that its
        live copy is skipped."""
        with self._lock:
            if remember or event.id in self._buffered:
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
