"""The :class:`Event`: what flows through the bus.

An event is a frozen, slotted dataclass with the fields of the original design::

    >>> e = Event(topic="hook.tool", type="PreToolUse", data={"tool": "Bash"})
    >>> e.topic, e.type, e.data, e.source, e.metadata, e.correlation_id
    ('hook.tool', 'PreToolUse', {'tool': 'Bash'}, '', {}, None)
    >>> Event.from_json(e.to_json()) == e
    True

``id`` is a 30-character string that sorts by creation time (milliseconds since the epoch, then a
per-process node, then a per-process counter), unique across threads and processes. ``timestamp``
is timezone-aware UTC. ``data`` and ``metadata`` are plain dicts of JSON values: events are shared
by every consumer, so treat them as read-only and derive new ones with :meth:`Event.evolve`.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from time import time_ns
from typing import Any

import orjson

from rxbus.errors import PayloadError
from rxbus.topics import validate_topic

__all__ = ["Event", "new_event_id"]

_FIELDS = ("id", "topic", "type", "timestamp", "source", "data", "metadata", "correlation_id")


class _IdSource:
    """Time-ordered unique ids: ``<11 hex ms><7 hex node><12 hex counter>``, 30 characters.

    The node is random per process and drawn again after ``fork``; the counter is an
    ``itertools.count`` (its ``next`` is atomic, so threads never share a value) starting at a
    random point. Within a process ids increase strictly; across processes they sort by the
    millisecond. Formatting a number costs more than the rest of an id, so nothing is formatted
    per id: the ``ms + node`` prefix is cached for the current millisecond, the counter's high
    36 bits for 4,096 ids in a row, and its low 12 bits come from a table. Each cache is one
    ``(key, text)`` tuple, replaced whole, so threads never pair a key with another's text.
    """

    __slots__ = ("counter", "high", "node", "prefix")

    def __init__(self) -> None:
        self.node = ""
        self.counter: itertools.count[int] = itertools.count()
        self.prefix: tuple[int, str] = (-1, "")
        self.high: tuple[int, str] = (-1, "")
        self.reseed()

    def reseed(self) -> None:
        self.node = os.urandom(4).hex()[:7]
        self.counter = itertools.count(int.from_bytes(os.urandom(3), "big"))
        self.prefix = (-1, "")
        self.high = (-1, "")

    def next_id(self) -> str:
        ms = time_ns() // 1_000_000
        cached = self.prefix
        if cached[0] != ms:
            cached = self.prefix = (ms, "%011x%s" % (ms, self.node))
        n = next(self.counter) & 0xFFFFFFFFFFFF
        high = self.high
        if high[0] != n >> 12:
            high = self.high = (n >> 12, "%09x" % (n >> 12))
        return cached[1] + high[1] + _LOW_HEX[n & 0xFFF]


_LOW_HEX = tuple("%03x" % i for i in range(4096))
_ids = _IdSource()
if hasattr(os, "register_at_fork"):  # pragma: no branch - False only on Windows (no fork)
    os.register_at_fork(after_in_child=_ids.reseed)


def new_event_id() -> str:
    """A new unique event id that sorts by creation time."""
    return _ids.next_id()


def _now() -> datetime:
    return datetime.now(UTC)


class _Sized:
    """Holds the serialised size of ``data`` + ``metadata`` once measured, so the bus can enforce
    ``max_event_bytes`` on a prebuilt event without serialising it again. Not a dataclass field:
    it takes no part in equality, repr or serialisation; :attr:`Event.payload_size` fills it on
    first read when a construction path did not."""

    __slots__ = ("_size",)
    _size: int


@dataclass(frozen=True, slots=True, kw_only=True, eq=True)
class Event(_Sized):
    """One event on the bus.

    Args:
        topic: dot-separated topic, e.g. ``"hook.tool"`` (see :mod:`rxbus.topics`).
        type: event type, e.g. ``"PreToolUse"``; defaults to the topic's last segment.
        data: the payload, a dict of JSON values.
        id: unique id, sortable by creation time; generated when omitted.
        timestamp: timezone-aware time of creation; generated (UTC) when omitted.
        source: who produced the event.
        metadata: a dict of JSON values about the event (not its payload).
        correlation_id: ties related events together.

    Raises:
        InvalidTopicError: for a malformed topic.
        PayloadError: for any other field of the wrong type or not JSON-serialisable.
    """

    topic: str
    type: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=new_event_id)
    timestamp: datetime = field(default_factory=_now)
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    correlation_id: str | None = None

    def __post_init__(self) -> None:
        validate_topic(self.topic)
        if self.type is None or self.type == "":
            object.__setattr__(self, "type", self.topic.rpartition(".")[2])
        _check_str("type", self.type)
        _check_str("id", self.id)
        if not self.id:
            raise PayloadError("id must be a non-empty str, got ''")
        _check_str("source", self.source)
        if self.correlation_id is not None:
            _check_str("correlation_id", self.correlation_id)
        object.__setattr__(self, "timestamp", _utc("timestamp", self.timestamp))
        data, data_size = _json_dict("data", self.data)
        metadata, metadata_size = _json_dict("metadata", self.metadata)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "metadata", metadata)
        _set_size(self, data_size + metadata_size)

    # -- the one construction path that skips validation --------------------------------------

    @classmethod
    def _trusted(
        cls,
        topic: str,
        type: str,
        data: dict[str, Any],
        source: str,
        metadata: dict[str, Any],
        correlation_id: str | None,
        size: int | None = None,
        id: str | None = None,
        timestamp: datetime | None = None,
    ) -> Event:
        """Build an event from values already validated (by ``publish``, or before they were
        stored). Every library path that skips ``__init__`` comes through here, so no field (nor
        the cached size) can be forgotten.

        ``id`` and ``timestamp`` are generated when ``None``; ``size`` (of ``data`` +
        ``metadata`` serialised) is measured on first use when ``None``.

        The fields are written into a :class:`_Unfrozen` twin (the same slots, plain attribute
        writes) that then becomes an :class:`Event`: a third of the cost of writing through
        the frozen class's slot descriptors, and this is the publish hot path.
        """
        event = _new(_Unfrozen)
        if size is not None:
            event._size = size
        event.topic = topic
        event.type = type
        event.data = data
        event.id = _ids.next_id() if id is None else id
        event.timestamp = datetime.now(UTC) if timestamp is None else timestamp
        event.source = source
        event.metadata = metadata
        event.correlation_id = correlation_id
        event.__class__ = cls  # type: ignore[assignment]
        return event  # type: ignore[return-value]

    # -- serialisation -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-native dict of every field (the timestamp as an ISO 8601 string)."""
        return {
            "id": self.id,
            "topic": self.topic,
            "type": self.type,
            "timestamp": self.timestamp.isoformat(),
            "source": self.source,
            "data": self.data,
            "metadata": self.metadata,
            "correlation_id": self.correlation_id,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Event:
        """Build an event from :meth:`to_dict` output (or any mapping with the same keys).

        Raises:
            PayloadError: naming a missing, unknown or malformed field.
            InvalidTopicError: for a malformed topic.
        """
        if not isinstance(d, Mapping):
            raise PayloadError(f"an event must be a JSON object, got {type(d).__name__}: {d!r:.80}")
        unknown = set(d) - set(_FIELDS)
        if unknown:
            raise PayloadError(
                f"unknown event field(s) {sorted(map(str, unknown))}; expected some of {list(_FIELDS)}"
            )
        if "topic" not in d:
            raise PayloadError("event field 'topic' is missing")
        kwargs = dict(d)
        ts = kwargs.get("timestamp")
        if isinstance(ts, str):
            try:
                kwargs["timestamp"] = datetime.fromisoformat(ts)
            except ValueError:
                raise PayloadError(
                    f"timestamp {ts!r} is not an ISO 8601 time with a UTC offset"
                ) from None
        for key in ("data", "metadata"):
            if kwargs.get(key) is None:
                kwargs.pop(key, None)
        for key in ("source", "type"):
            if key in kwargs and kwargs[key] is None:
                kwargs.pop(key)
        if "id" in kwargs and kwargs["id"] is None:
            kwargs.pop("id")
        if "timestamp" in kwargs and kwargs["timestamp"] is None:
            kwargs.pop("timestamp")
        return cls(**kwargs)

    def to_json(self) -> bytes:
        """The event as compact JSON bytes (orjson)."""
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_json(cls, raw: bytes | bytearray | memoryview | str) -> Event:
        """Parse JSON produced by :meth:`to_json`.

        Raises:
            PayloadError: for invalid JSON or a malformed event.
        """
        try:
            d = orjson.loads(raw)
        except orjson.JSONDecodeError as err:
            shown = raw[:80] if isinstance(raw, str) else bytes(raw[:80])
            raise PayloadError(f"invalid event JSON ({err}): {shown!r}") from None
        return cls.from_dict(d)

    @property
    def payload_size(self) -> int:
        """Bytes of ``data`` + ``metadata`` serialised with orjson (measured once, then cached)."""
        try:
            return self._size
        except AttributeError:
            size = (json_size("data", self.data) if self.data else 0) + (
                json_size("metadata", self.metadata) if self.metadata else 0
            )
            _set_size(self, size)
            return size

    def evolve(self, **changes: Any) -> Event:
        """A copy with ``changes`` applied (validated like a new event); the id is kept."""
        return dataclasses.replace(self, **changes)


class _Unfrozen(_Sized):
    """:class:`Event`'s slots without its frozen ``__setattr__``: :meth:`Event._trusted` fills
    one, then makes it an ``Event`` (``__class__`` may change between classes whose slots are
    the same, from the same base). Never seen outside ``_trusted``."""

    __slots__ = Event.__slots__
    topic: str
    type: str
    data: dict[str, Any]
    id: str
    timestamp: datetime
    source: str
    metadata: dict[str, Any]
    correlation_id: str | None


_new = object.__new__
_set_size = vars(_Sized)["_size"].__set__


def _check_str(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise PayloadError(f"{name} must be a str, got {type(value).__name__}: {value!r:.80}")


def _utc(name: str, value: object) -> datetime:
    if not isinstance(value, datetime):
        raise PayloadError(f"{name} must be a datetime, got {type(value).__name__}: {value!r:.80}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise PayloadError(f"{name} must be timezone-aware, got naive {value.isoformat()!r}")
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _json_dict(name: str, value: object) -> tuple[dict[str, Any], int]:
    if not isinstance(value, dict):
        if isinstance(value, Mapping):
            value = dict(value)
        else:
            raise PayloadError(
                f"{name} must be a dict of JSON values, got {type(value).__name__}: {value!r:.80}"
            )
    return value, (json_size(name, value) if value else 0)


# Refuse, rather than silently convert, values that would not come back as themselves from
# JSON: datetimes (they return as strings), dataclasses (as dicts), subclasses of str, int,
# dict and list (as the base type). Tuples (returned as lists) and NaN (as null) orjson cannot
# be told to refuse: the README says so.
STRICT_JSON = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def json_size(name: str, value: object) -> int:
    """Serialise ``value`` with orjson and return its size in bytes.

    Raises:
        PayloadError: naming ``name`` and the value orjson could not serialise.
    """
    try:
        return len(orjson.dumps(value, option=STRICT_JSON))
    except TypeError as err:
        raise PayloadError(f"{name} is not JSON-serialisable ({err}): {value!r:.80}") from None
