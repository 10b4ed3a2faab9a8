"""The bounded queue of a consumer: the one place that applies :class:`rxbus.Overflow`."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from rxbus.policies import Overflow

__all__ = ["ACCEPTED", "DROPPED", "OVERFLOWED", "REFUSED", "BoundedQueue"]

ACCEPTED = 0  # the item is queued (older items may have been dropped to make room)
DROPPED = 1  # the item itself was dropped (DROP_NEWEST)
OVERFLOWED = 2  # Overflow.ERROR: the item was dropped and the queue is closed
REFUSED = 3  # the queue was closed while a producer waited for room


class BoundedQueue:
    """A FIFO of items bounded by ``capacity`` under one :class:`Overflow` policy.

    Control items (timer actions, completion) go to :attr:`calls`, which is never bounded and
    never dropped from: only events are subject to the policy. Every method except
    :meth:`close` expects the caller to hold :attr:`lock`.

    The queue counts nothing itself: :meth:`put` returns what happened and how many items it
    dropped, and the consumer that owns it keeps the counts.
    """

    __slots__ = ("blocked", "calls", "capacity", "items", "lock", "not_full", "open", "overflow")

    def __init__(self, capacity: int, overflow: Overflow, lock: threading.Lock | None = None):
        self.capacity = capacity
        self.overflow = overflow
        self.lock = lock if lock is not None else threading.Lock()
        self.not_full = threading.Condition(self.lock)
        self.items: deque[Any] = deque()
        self.calls: deque[Any] = deque()
        self.blocked = 0  # producers waiting for room
        self.open = True

    def put(self, item: Any, can_wait: bool) -> tuple[int, int]:
        """Queue ``item`` under the policy; returns ``(outcome, dropped)``.

        ``can_wait`` is False where waiting could deadlock (the consumer's own thread, a sync
        emitter): ``BLOCK`` then lets the queue go over its bound rather than wait for itself.
        """
        items = self.items
        if len(items) < self.capacity:
            items.append(item)
            return ACCEPTED, 0
        policy = self.overflow
        if policy is Overflow.BLOCK:
            if can_wait:
                self.blocked += 1
                try:
                    while len(items) >= self.capacity and self.open:
                        self.not_full.wait()
                finally:
                    self.blocked -= 1
                if not self.open:
                    return REFUSED, 1
            items.append(item)
            return ACCEPTED, 0
        if policy is Overflow.DROP_OLDEST:
            items.popleft()
            items.append(item)
            return ACCEPTED, 1
        if policy is Overflow.DROP_NEWEST:
            return DROPPED, 1
        if policy is Overflow.LATEST:
            dropped = len(items)
            items.clear()
            items.append(item)
            return ACCEPTED, dropped
        self.open = False  # Overflow.ERROR
        return OVERFLOWED, 1

    def take(self) -> tuple[Any, bool]:
        """The next control item or event: ``(item, is_control)``; ``(None, False)`` if empty."""
        if self.calls:
            return self.calls.popleft(), True
        if self.items:
            item = self.items.popleft()
            if self.blocked:
                self.not_full.notify()
            return item, False
        return None, False

    def clear(self) -> list[Any]:
        """Remove and return every queued event (control items stay)."""
        left = list(self.items)
        self.items.clear()
        self.not_full.notify_all()
        return left

    def close(self) -> None:
        """Refuse producers waiting for room, and any that come later to wait."""
        with self.lock:
            self.open = False
            self.not_full.notify_all()

    def __len__(self) -> int:
        return len(self.items)
