"""The server's Socket.IO packets: orjson for encoding, no scan for binary attachments.

At 20,000 events/s a page is sent 20 batches of 1,000 event dicts a second; python-socketio's
default packet encodes them with the standard library's ``json`` and first walks every value
looking for ``bytes`` to send as attachments. The server only ever sends JSON values (event
dicts, counts, gaps), so the walk is skipped and orjson encodes. Incoming packets are decoded
by orjson too, falling back to the standard library for what orjson refuses (``NaN``, integers
past 64 bits), so what clients may send is unchanged. An event whose arguments are nested deeper
than both decoders go reaches its handler as :class:`~rxbus.server.ingest.TooDeep`, which the
handler refuses in its ack.

A subclass handed to ``AsyncServer(serializer=...)``, so no other Socket.IO client or server in
the process is affected (python-socketio's ``json=`` argument patches its shared class).
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from rxbus.server.ingest import TooDeep

__all__ = ["orjson_packet_class"]

_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


class _Codec:
    """The ``json`` interface python-socketio's packets call."""

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        try:
            return orjson.dumps(obj).decode()
        except TypeError:  # a value orjson does not know; the standard library may
            return json.dumps(obj, separators=(",", ":"))

    @staticmethod
    def loads(raw: str | bytes, **_: Any) -> Any:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            try:
                return json.loads(raw)
            except RecursionError:
                # Deeper than either decoder goes (orjson stops at 1,024 levels): undecoded,
                # python-socketio would log a traceback and drop the packet, ack and all.
                return _too_deep(raw)


def _too_deep(raw: str | bytes) -> list[Any]:
    """An event packet's ``[name, ...]`` with its arguments replaced by :class:`TooDeep`, so
    the handler answers the ack with the reason.

    Raises:
        RecursionError: when ``raw`` does not start with an event name (nothing to answer).
    """
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    start = _skip_space(text, 0)
    if text[start : start + 1] == "[":
        try:
            name, _ = _DECODER.raw_decode(text, _skip_space(text, start + 1))
        except ValueError:
            name = None
        if isinstance(name, str):
            return [name, TooDeep()]
    raise RecursionError("Socket.IO packet nested too deeply to decode")


def _skip_space(text: str, at: int) -> int:
    match = _SPACE.match(text, at)
    return match.end() if match else at


def orjson_packet_class() -> type:
    """python-socketio's ``Packet`` with the orjson codec and without the binary scan."""
    from socketio import packet

    return type("_ServerPacket", (packet.Packet,), {"json": _Codec, "uses_binary_events": False})
