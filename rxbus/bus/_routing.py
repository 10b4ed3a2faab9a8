"""Routing: from a topic to the consumers whose pattern matches it.

A topic is resolved once against a :class:`~rxbus.topics.PatternTrie` of the subscribed
patterns (cost: the topic's depth, not the number of patterns), and the result is cached per
topic: publishing to a topic seen before is one dict lookup and a loop over its consumers.
Subscribing or disposing clears the cache under the lock that fills it, so an entry is never
computed from a stale subscription list.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from operator import attrgetter
from typing import Any

from rxbus.consumer import Consumer
from rxbus.metrics import Counter
from rxbus.topics import PatternTrie

__all__ = ["OTHER_TOPICS", "ROUTE_CACHE_LIMIT", "TOPIC_METRICS_LIMIT", "Route", "Router"]

ROUTE_CACHE_LIMIT = 16_384
"""Topics whose consumers are cached; past it the cache starts again (memory stays bounded)."""
TOPIC_METRICS_LIMIT = 10_000
"""Topics counted one by one in ``metrics()["topics"]``; later new topics share one entry."""
OTHER_TOPICS = "(other topics)"


class Route:
    """The consumers of one topic, resolved once, and the topic's publish counter."""

    __slots__ = ("consumers", "count", "pushes")

    def __init__(self, consumers: tuple[Consumer, ...], counter: Counter) -> None:
        self.consumers = consumers
        self.pushes: tuple[Callable[[Any], None], ...] = tuple([c.push for c in consumers])
        self.count = counter.count  # next(route.count) counts a publish


class Router:
    """Subscribed consumers, their patterns in a trie, and the per-topic route cache.

    ``routes`` (one dict for the router's life, cleared in place) and ``version`` are read
    without the lock on the publish path; everything that changes them holds ``lock``.
    """

    def __init__(self, lock: threading.RLock) -> None:
        self.lock = lock
        self.routes: dict[str, Route] = {}
        self.version = 0  # bumped on every change of the subscriptions
        self.consumers: tuple[Consumer, ...] = ()
        self._trie = PatternTrie()
        self._counters: dict[str, Counter] = {}
        self._seq = 0

    def add(self, consumer: Consumer) -> None:
        with self.lock:
            self._seq += 1
            consumer.seq = self._seq
            consumer.subscriber_thread = threading.get_ident()
            self._trie.add(consumer.pattern, consumer)
            self.consumers = (*self.consumers, consumer)
            self.routes.clear()
            self.version += 1  # after the routes: see EventBus.publish

    def remove(self, consumer: Consumer) -> None:
        with self.lock:
            if consumer in self.consumers:
                self.consumers = tuple(c for c in self.consumers if c is not consumer)
                self._trie.remove(consumer.pattern, consumer)
                self.routes.clear()
                self.version += 1

    def resolve(self, topic: str) -> Route:
        """The route of ``topic``, from the cache or resolved now and cached."""
        with self.lock:
            route = self.routes.get(topic)
            if route is not None:
                return route
            counter = self._counters.get(topic)
            if counter is None:
                if len(self._counters) < TOPIC_METRICS_LIMIT:
                    counter = self._counters[topic] = Counter()
                else:  # a stream of unique topics must not grow the metrics without bound
                    counter = self._counters.setdefault(OTHER_TOPICS, Counter())
            matched = self._trie.match(topic)
            matched.sort(key=_by_seq)
            route = Route(tuple(matched), counter)
            if len(self.routes) >= ROUTE_CACHE_LIMIT:
                self.routes.clear()
            self.routes[topic] = route
            return route

    def counts(self) -> dict[str, int]:
        """Events published per topic, sorted by topic."""
        return {t: c.value for t, c in sorted(self._counters.items())}


_by_seq = attrgetter("seq")  # routes keep the subscription order
