"""Record every event a bus publishes, and assert on them with a readable failure.

>>> from rxbus import EventBus
>>> from rxbus.recorder import Recorder
>>> bus = EventBus()
>>> rec = Recorder(bus)
>>> _ = bus.publish("orders.placed", {"id": 1, "qty": 2})
>>> [e.topic for e in rec.published]
['orders.placed']
>>> [e.data["id"] for e in rec.assert_published("orders.*", data={"qty": 2}, count=1)]
[1]
>>> _ = bus.close()
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from rxbus.event import Event
from rxbus.topics import compile_pattern

if TYPE_CHECKING:
    from rxbus.consumer import Consumer

__all__ = ["Recorder"]

_SHOWN = 20  # events listed in a failure message


class Recorder:
    """A sync consumer that keeps every event published on ``bus`` (matching ``pattern``).

    It is a consumer like any other (named ``recorder`` in ``metrics()``); :meth:`dispose` it,
    or use it as a context manager, to stop recording.
    """

    def __init__(self, bus: Any, pattern: str = "**", *, name: str = "recorder") -> None:
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self.consumer: Consumer = bus.subscribe(self._record, topic=pattern, name=name)

    def _record(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)

    @property
    def published(self) -> list[Event]:
        """Every event recorded so far, in publish order (a copy)."""
        with self._lock:
            return list(self._events)

    def clear(self) -> None:
        """Forget what was recorded so far."""
        with self._lock:
            self._events.clear()

    def matching(
        self, pattern: str = "**", *, data: Mapping[str, Any] | None = None
    ) -> list[Event]:
        """The recorded events whose topic matches ``pattern`` and whose data contains ``data``.

        ``data`` matches when every key it gives is in ``event.data`` with an equal value
        (other keys of the event are ignored).
        """
        match = compile_pattern(pattern)
        return [
            e
            for e in self.published
            if match(e.topic) and (data is None or not _diff(data, e.data))
        ]

    def assert_published(
        self,
        pattern: str = "**",
        *,
        data: Mapping[str, Any] | None = None,
        count: int | None = None,
    ) -> list[Event]:
        """Assert that events matching ``pattern`` (and ``data``) were published.

        Args:
            pattern: a topic pattern.
            data: keys the event's data must have, with these values.
            count: exactly this many; ``None`` means at least one.

        Returns:
            The matching events.

        Raises:
            AssertionError: listing what was published on the pattern, each with how its data
                differs from ``data``.
        """
        if count is not None and (not isinstance(count, int) or count < 0):
            raise ValueError(f"count must be an int >= 0 or None, got {count!r}")
        found = self.matching(pattern, data=data)
        if (count is None and found) or len(found) == count:
            return found
        raise AssertionError(self._explain(pattern, data, count, found))

    def _explain(
        self,
        pattern: str,
        data: Mapping[str, Any] | None,
        count: int | None,
        found: list[Event],
    ) -> str:
        wanted = "at least 1" if count is None else f"exactly {count}"
        call = f"assert_published({pattern!r}" + (f", data={_show(data)}" if data else "") + ")"
        everything = self.published
        on_topic = self.matching(pattern)
        lines = [
            f"{call}: expected {wanted} matching event(s), found {len(found)}",
            f"{len(everything)} event(s) published, {len(on_topic)} on {pattern!r}:",
        ]
        for i, event in enumerate(on_topic[:_SHOWN], 1):
            diff = _diff(data, event.data) if data is not None else []
            mark = "  match" if not diff else ""
            lines.append(f"  #{i} {event.topic} {_show(event.data)}{mark}")
            lines.extend(f"      {d}" for d in diff)
        if len(on_topic) > _SHOWN:
            lines.append(f"  ... and {len(on_topic) - _SHOWN} more")
        if not on_topic:
            topics = sorted({e.topic for e in everything})
            lines.append(f"  (none; topics published: {topics[:_SHOWN]})")
        return "\n".join(lines)

    def dispose(self) -> None:
        """Stop recording (what was recorded stays)."""
        self.consumer.dispose()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispose()

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)


def _diff(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    """One line per key of ``expected`` that ``actual`` lacks or holds a different value for."""
    out = []
    for key, want in expected.items():
        if key not in actual:
            out.append(f"{key}: expected {_show(want)}, missing")
        elif actual[key] != want:
            out.append(f"{key}: expected {_show(want)}, got {_show(actual[key])}")
    return out


def _show(value: Any) -> str:
    try:
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."
