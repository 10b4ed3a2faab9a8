"""One client's outbound queue in ``rxbus serve``: bounded, taken in batches, drops told.

A page that reads slower than events arrive must cost the server bounded memory and must learn
what it did not get. :class:`Outlet` holds at most ``capacity`` events; when full it applies the
bus's :class:`rxbus.Overflow` policy, and every dropped event is folded into a :class:`Gap` kept
at the place in the stream where the events were, so the client is told "n events not shown,
from ... to ..." in order. Nothing leaves without being counted::

    offered == sent + dropped + queued + discarded

    >>> from rxbus import Event, Overflow
    >>> outlet = Outlet(2, Overflow.DROP_OLDEST)
    >>> for n in range(5):
    ...     _ = outlet.offer(Event(topic="t", data={"n": n}))
    >>> items, _ = outlet.take(10)
    >>> [item.count if isinstance(item, Gap) else item.data["n"] for item in items]
    [3, 3, 4]
    >>> (outlet.offered, outlet.sent, outlet.dropped, outlet.queued)
    (5, 2, 3, 0)
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from rxbus.event import Event
from rxbus.policies import Overflow

__all__ = ["Gap", "Outlet"]


class Gap:
    """Consecutive events a client will not get: how many, and the first and last of them."""

    __slots__ = ("count", "first", "last")

    def __init__(self, event: Event) -> None:
        self.count = 1
        self.first = event
        self.last = event

    def add_before(self, other: Gap | Event) -> None:
        """Fold in events that came just before this gap."""
        if isinstance(other, Gap):
            self.count += other.count
            self.first = other.first
        else:
            self.count += 1
            self.first = other

    def add_after(self, other: Gap | Event) -> None:
        """Fold in events that came just after this gap."""
        if isinstance(other, Gap):
            self.count += other.count
            self.last = other.last
        else:
            self.count += 1
            self.last = other

    def to_dict(self) -> dict[str, Any]:
        """``{"gap": {"count": n, "from": {"id", "timestamp"}, "to": {...}}}`` for the wire."""
        return {
            "gap": {
                "count": self.count,
                "from": {"id": self.first.id, "timestamp": self.first.timestamp.isoformat()},
                "to": {"id": self.last.id, "timestamp": self.last.timestamp.isoformat()},
            }
        }

    def __repr__(self) -> str:
        return f"Gap(count={self.count}, first={self.first.id!r}, last={self.last.id!r})"


class Outlet:
    """A bounded queue of events (and gaps) waiting to be sent to one client.

    Args:
        capacity: most events held (gaps are not counted: there is at most one per drop run).
        overflow: what a full outlet does with a new event. ``BLOCK`` is refused: a slow page
            must never slow the publishers. ``ERROR`` drops the event and sets :attr:`failed`;
            the server then disconnects the client, which resumes by its last id.
        clock: seconds, monotonic; how long events wait is measured with it.

    Raises:
        ValueError: for a capacity below 1 or the ``BLOCK`` policy, naming the value.
    """

    def __init__(
        self,
        capacity: int,
        overflow: Overflow | str = Overflow.DROP_OLDEST,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(
                f"page queue size (--page-queue) must be an int >= 1, got {capacity!r}"
            )
        policy = Overflow.parse(overflow)
        if policy is Overflow.BLOCK:
            raise ValueError(
                "page overflow (--page-overflow) 'block' is refused: a slow page would hold up every publisher; "
                "use drop_oldest, drop_newest, latest or error"
            )
        self.capacity = capacity
        self.overflow = policy
        self._clock = clock
        # Events are queued with the time they were queued: (event, seconds).
        self._items: deque[tuple[Event, float] | Gap] = deque()
        self.queued = 0
        self.offered = 0
        self.sent = 0
        self.dropped = 0
        self.discarded = 0
        self.failed = False

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, event: Event) -> bool:
        """Queue ``event``; True if it was queued, False if the policy dropped it instead."""
        self.offered += 1
        items = self._items
        if self.queued < self.capacity:
            items.append((event, self._clock()))
            self.queued += 1
            return True
        self.dropped += 1
        policy = self.overflow
        if policy is Overflow.DROP_OLDEST or policy is Overflow.LATEST:
            if policy is Overflow.DROP_OLDEST:
                self._drop_oldest()
            else:
                self._drop_all()
            items.append((event, self._clock()))
            self.queued += 1
            return True
        # DROP_NEWEST and ERROR: the new event is the one not sent.
        if policy is Overflow.ERROR:
            self.failed = True
        tail = items[-1] if items else None
        if isinstance(tail, Gap):
            tail.add_after(event)
        else:
            items.append(Gap(event))
        return False

    def _drop_oldest(self) -> None:
        items = self._items
        head = items.popleft()
        if isinstance(head, Gap):
            oldest, _ = items.popleft()  # type: ignore[misc]  # a gap is followed by an event
            head.add_after(oldest)
            items.appendleft(head)
        else:
            items.appendleft(Gap(head[0]))
        # The event dropped was counted in offer(); it is no longer queued.
        self.queued -= 1

    def _drop_all(self) -> None:
        items = self._items
        gap: Gap | None = None
        for item in items:
            part = item if isinstance(item, Gap) else item[0]
            if gap is None:
                gap = part if isinstance(part, Gap) else Gap(part)
            else:
                gap.add_after(part)
        items.clear()
        if gap is not None:
            items.append(gap)
        # offer() counted the new event as the drop; the queued ones are drops as well, except
        # that one of them was already the new event's count.
        self.dropped += self.queued - 1
        self.queued = 0

    def take(self, max_events: int) -> tuple[list[Event | Gap], float]:
        """Remove up to ``max_events`` events (and the gaps among them), oldest first.

        Returns:
            The items, and how long the oldest event among them waited, in seconds (0 if none).
        """
        items = self._items
        out: list[Event | Gap] = []
        taken = 0
        waited = 0.0
        while items and taken < max_events:
            item = items.popleft()
            if isinstance(item, Gap):
                out.append(item)
                continue
            event, queued_at = item
            if not taken:
                waited = self._clock() - queued_at
            out.append(event)
            taken += 1
        self.queued -= taken
        self.sent += taken
        return out, waited

    def oldest_wait(self) -> float:
        """Seconds the oldest queued event has waited (0 when none is queued)."""
        for item in self._items:
            if not isinstance(item, Gap):
                return self._clock() - item[1]
        return 0.0

    def clear(self) -> int:
        """Discard everything queued (the client changed what it wants); returns how many."""
        discarded = self.queued
        self.discarded += discarded
        self.queued = 0
        self._items.clear()
        return discarded

    def counts(self) -> dict[str, int]:
        """``offered``, ``sent``, ``dropped``, ``queued`` and ``discarded``."""
        return {
            "offered": self.offered,
            "sent": self.sent,
            "dropped": self.dropped,
            "queued": self.queued,
            "discarded": self.discarded,
        }
