"""Parse and validate what clients send: HTTP bodies and Socket.IO ``publish`` payloads.

Everything in a request is validated before anything is published, so a rejected request
changes nothing. Errors carry the HTTP status to answer with and one line naming the bad value.
"""

from __future__ import annotations

from typing import Any

import orjson

from rxbus.errors import InvalidTopicError, PayloadError
from rxbus.event import Event

__all__ = ["Rejected", "events_from_body", "events_from_payload"]

_NDJSON = ("application/x-ndjson", "application/jsonl", "application/json-lines")


class Rejected(Exception):
    """A request that must be refused: ``status`` (4xx) and a one-line ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:300]
