"""Parse and validate what clients send: HTTP bodies and Socket.IO ``publish`` payloads.

Everything in a request is validated before anything is published, so a rejected request
changes nothing. Errors carry the HTTP status to answer with and one line naming the bad value.
"""

from __future__ import annotations

from typing import Any

import orjson

from rxbus.errors import InvalidTopicError, PayloadError
from rxbus.event import Event

__all__ = ["Rejected", "TooDeep", "events_from_body", "events_from_payload"]

_NDJSON = ("application/x-ndjson", "application/jsonl", "application/json-lines")

MAX_DEPTH = 254
"""Deepest nesting of an event object (the event itself is level 1): what orjson can write."""

MAX_ID_CHARS = 128
"""Longest event id a client may supply: every id is kept in the server's dedupe memory."""

MAX_FIELD_CHARS = 255
"""Longest ``type``, ``source`` or ``correlation_id`` a client may supply."""

_BOUNDED = (("id", MAX_ID_CHARS), ("type", MAX_FIELD_CHARS), ("source", MAX_FIELD_CHARS))


class Rejected(Exception):
    """A request that must be refused: ``status`` (4xx) and a one-line ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class TooDeep:
    """Stands in for Socket.IO arguments nested too deeply to decode (see ``packet.py``)."""


def events_from_body(body: bytes, content_type: str, max_event_bytes: int) -> list[Event]:
    """Parse an HTTP ingest body: one JSON object, a JSON array of them, or JSON Lines.

    Raises:
        Rejected: 400 for malformed input, 413 for an event larger than ``max_event_bytes``.
    """
    text = body.strip()
    if not text:
        raise Rejected(400, "empty body; expected an event object, a JSON array or JSON Lines")
    if content_type in _NDJSON:
        items = _lines(text)
    else:
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as err:
            if b"\n" in text and text[:1] == b"{":
                items = _lines(text)  # JSON Lines sent without the ndjson content type
            else:
                raise Rejected(400, f"body is not valid JSON ({err})") from None
        else:
            items = value if isinstance(value, list) else [value]
    return [_event(item, i, max_event_bytes) for i, item in enumerate(items)]


def events_from_payload(payload: object, max_event_bytes: int) -> list[Event]:
    """Validate a Socket.IO ``publish`` payload: one event dict or a list of them.

    Raises:
        Rejected: as :func:`events_from_body`.
    """
    if isinstance(payload, TooDeep):
        raise Rejected(
            400, f"payload is nested more than {MAX_DEPTH} levels deep; at most {MAX_DEPTH}"
        )
    items = payload if isinstance(payload, list) else [payload]
    return [_event(item, i, max_event_bytes) for i, item in enumerate(items)]


def _lines(text: bytes) -> list[Any]:
    items = []
    for number, line in enumerate(text.split(b"\n"), start=1):
        line = line.strip()
        if not line:
            continue
        try:
            items.append(orjson.loads(line))
        except orjson.JSONDecodeError as err:
            raise Rejected(400, f"line {number} is not valid JSON ({err})") from None
    return items


def _event(item: object, index: int, max_event_bytes: int) -> Event:
    if not isinstance(item, dict):
        raise Rejected(
            400, f"event {index} must be a JSON object, got {type(item).__name__}: {item!r:.60}"
        )
    _check_bounds(item, index)
    try:
        event = Event.from_dict(item)
    except (InvalidTopicError, PayloadError) as err:
        raise Rejected(400, f"event {index}: {_one_line(err)}") from None
    except TypeError as err:  # e.g. a field of an unhashable or unexpected shape
        raise Rejected(400, f"event {index}: {_one_line(err)}") from None
    size = len(event.to_json())
    if size > max_event_bytes:
        raise Rejected(
            413, f"event {index} ({event.id}) is {size} bytes of JSON; at most {max_event_bytes}"
        )
    return event


def _check_bounds(item: dict[str, Any], index: int) -> None:
    """Refuse oversized short fields and nesting deeper than :data:`MAX_DEPTH`, by name."""
    for name, most in (*_BOUNDED, ("correlation_id", MAX_FIELD_CHARS)):
        value = item.get(name)
        if isinstance(value, str) and len(value) > most:
            raise Rejected(
                400,
                f"event {index}: {name} is {len(value)} characters; at most {most}: {value:.40}...",
            )
    depth = _depth(item, MAX_DEPTH)
    if depth > MAX_DEPTH:
        raise Rejected(
            400, f"event {index} is nested more than {MAX_DEPTH} levels deep; at most {MAX_DEPTH}"
        )


def _depth(value: object, limit: int) -> int:
    """Nesting depth of dicts and lists in ``value``, counting no further than ``limit + 1``.

    Iterative, so a value nested 100,000 levels deep costs no recursion.
    """
    deepest = 0
    stack: list[tuple[dict[str, Any] | list[Any], int]] = (
        [(value, 1)] if isinstance(value, dict | list) else []
    )
    while stack:
        node, level = stack.pop()
        if level > limit:
            return level
        deepest = max(deepest, level)
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                stack.append((child, level + 1))
    return deepest


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:300]
