"""A standalone Socket.IO receiver that speaks rxbus's wire protocol, for tests in a subprocess.

It implements the ``"publish"`` event of the shared wire protocol: the payload is one event dict
or a list of them; the handler's return value is the ack ``{"ok": true, "accepted": n,
"duplicates": m}``. It dedupes by event id and appends every id it receives (duplicates too) to
``--ids-file``, flushed to the kernel before it acks, so what it acknowledged survives SIGKILL;
on start-up it reads that file back, so a restarted receiver still knows every id it has seen.

A batch holding an event whose ``data`` has ``"reject": true`` is refused whole
(``{"ok": false, ...}``) and nothing of it is recorded, as a server rejecting bad input would.

``GET /stats`` returns ``{"unique": n, "received": k, "duplicates": k - n}`` for this process's
lifetime plus what the ids file held at start-up.

Run::

    python tests/integration/sio_receiver.py --port 8765 --ids-file /tmp/ids.txt [--token T]
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import orjson
import socketio
from aiohttp import web
from socketio import packet


class _OrjsonCodec:
    """The ``json`` interface python-socketio packets use, backed by orjson."""

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        return orjson.dumps(obj).decode()

    @staticmethod
    def loads(raw: str | bytes, **_: Any) -> Any:
        return orjson.loads(raw)


class _FastPacket(packet.Packet):
    json = _OrjsonCodec


class Receiver:
    """Dedupes published events by id and records every id in an append-only file."""

    def __init__(self, ids_file: str) -> None:
        self.seen: set[str] = set()
        self.received = 0
        if os.path.exists(ids_file):
            with open(ids_file, encoding="utf-8") as f:
                for line in f:
                    # A SIGKILL can tear the last line; a torn id was never acknowledged.
                    if line.endswith("\n"):
                        self.received += 1
                        self.seen.add(line[:-1])
        self.file = open(ids_file, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the process

    def publish(self, payload: Any) -> dict[str, Any]:
        events = payload if isinstance(payload, list) else [payload]
        ids: list[str] = []
        for item in events:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                return {"ok": False, "error": f"not an event dict with a str id: {item!r:.80}"}
            data = item.get("data")
            if isinstance(data, dict) and data.get("reject") is True:
                return {"ok": False, "error": f"event {item['id']} rejected (data.reject is true)"}
            ids.append(item["id"])
        accepted = duplicates = 0
        for event_id in ids:
            if event_id in self.seen:
                duplicates += 1
            else:
                self.seen.add(event_id)
                accepted += 1
        self.received += len(ids)
        self.file.write("".join(f"{i}\n" for i in ids))
        # Flushed to the kernel before acking: a SIGKILL after this point loses nothing acked.
        self.file.flush()
        return {"ok": True, "accepted": accepted, "duplicates": duplicates}

    def stats(self) -> dict[str, int]:
        return {
            "unique": len(self.seen),
            "received": self.received,
            "duplicates": self.received - len(self.seen),
        }


def build_app(receiver: Receiver, token: str | None) -> web.Application:
    sio = socketio.AsyncServer(
        async_mode="aiohttp", serializer=_FastPacket, max_http_buffer_size=64 * 1024 * 1024
    )

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> bool:
        if token is None:
            return True
        return isinstance(auth, dict) and auth.get("token") == token

    @sio.on("publish")
    async def on_publish(sid: str, payload: Any) -> dict[str, Any]:
        return receiver.publish(payload)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(receiver.stats())

    app = web.Application()
    sio.attach(app)
    app.router.add_get("/stats", stats)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ids-file", required=True)
    parser.add_argument("--token", default=None)
    args = parser.parse_args()
    app = build_app(Receiver(args.ids_file), args.token)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
