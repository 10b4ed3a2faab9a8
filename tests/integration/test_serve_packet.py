"""The server's Socket.IO packet codec: orjson first, the standard library for what orjson
refuses, and the same wire text either way."""

from __future__ import annotations

import json
import math

import pytest
from socketio import packet

from rxbus.server.ingest import TooDeep
from rxbus.server.packet import _Codec, orjson_packet_class


def test_values_orjson_refuses_still_encode_and_decode() -> None:
    """Integers past 64 bits (orjson refuses to encode them) and NaN (orjson refuses to parse
    it) go through the standard library, so what clients may send and get is unchanged."""
    big = {"n": 2**70}
    assert json.loads(_Codec.dumps(big)) == big
    [nan] = _Codec.loads("[NaN]")
    assert math.isnan(nan)
    assert _Codec.loads(b'{"a":[1,2]}') == {"a": [1, 2]}
    assert _Codec.dumps({"a": [1, "é"]}) == json.dumps(
        {"a": [1, "é"]}, separators=(",", ":"), ensure_ascii=False
    )


def test_packets_encode_as_python_socketio_would() -> None:
    """An event packet encodes to the same text as python-socketio's own packet (modulo
    whitespace, which neither side reads), without looking for binary attachments."""
    cls = orjson_packet_class()
    data = ["events", [{"id": "x", "data": {"n": 1}}]]
    ours = cls(packet.EVENT, data=data, namespace="/").encode()
    theirs = packet.Packet(packet.EVENT, data=data, namespace="/").encode()
    assert json.loads(ours[1:]) == json.loads(theirs[1:]) and ours[0] == theirs[0]
    decoded = cls(encoded_packet=ours)
    assert decoded.data == data and decoded.packet_type == packet.EVENT


def test_an_event_too_deep_to_decode_keeps_its_name_for_the_ack() -> None:
    """Past both decoders' depth the arguments become ``TooDeep`` (the handler refuses them in
    its ack); a packet without an event name to answer still fails to decode."""
    deep = "[" * 100_000 + "]" * 100_000
    name, arg = _Codec.loads(f' [ "publish", {{"data": {deep}}}]')
    assert name == "publish" and isinstance(arg, TooDeep)
    for nameless in (deep, f"[{deep}]", f'{{"publish": {deep}}}'):
        with pytest.raises(RecursionError):
            _Codec.loads(nameless)
