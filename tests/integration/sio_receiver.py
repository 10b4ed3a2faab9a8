"""A standalone Socket.IO receiver that speaks rxbus's wire protocol, for tests in a subprocess.

It implements the ``"publish"`` event of the shared wire protocol: the payload is one event dict
or a list of them; the handler's return value is the ack ``{"ok": true, "accepted": n,
"duplicates": m}``. It dedupes by event id and appends every id it receives (duplicates too) to
``--ids-file``, flushed to the kernel before it acks, so what it acknowledged survives SIGKILL;
on start-up it reads that file back, so a restarted receiver still knows every id it has seen.

A batch holding an event whose ``data`` has ``"reject": true`` is refused whole
(``{"ok": false, ...}``) and nothing of it is recorded, as a server rejecting bad input would.

``GET /stats`` returns ``{"unique": n, "received": k, "duplicates": k - n}`` for this process's
lifetime plus what the ids file held at start-up, and ``"connections"``: Socket.IO connections
accepted by this process. ``--payloads-file`` also appends every accepted
payload as a JSON line ``{"event", "namespace", "payload"}``, for tests of the payload shape.

Run::

    python tests/integration/sio_receiver.py --port 8765 --ids-file /tmp/ids.txt [--token T]

Tests drive it through :class:`ReceiverProcess`, which needs only the standard library.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, TextIO


class ReceiverProcess:
    """Runs this script in a subprocess and controls it: start, SIGKILL, SIGSTOP/SIGCONT, read ids.

    Args:
        port: loopback port to serve on.
        ids_file: where the receiver appends every id it receives; kept across restarts.
        args: extra command-line arguments (``--token``, ``--event``, ``--namespace``, ...).
    """

    def __init__(self, port: int, ids_file: Path, *args: str) -> None:
        self.port = port
        self.ids_file = ids_file
        self.args = args
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 30.0) -> None:
        """Start the receiver and return once it answers ``GET /stats``."""
        cmd = [sys.executable, __file__, "--port", str(self.port), "--ids-file", str(self.ids_file)]
        self.proc = subprocess.Popen([*cmd, *self.args])
        self.starts += 1
        from tests.conftest import wait_until  # here: this file also runs as the receiver script

        def answers() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"receiver exited with {self.proc.returncode} at start-up")
            try:
                self.stats()
            except OSError:
                return False
            return True

        wait_until(answers, timeout, f"the receiver on port {self.port}", interval=0.02)

    def stats(self) -> dict[str, int]:
        """The receiver's ``/stats``; raises ``OSError`` while it is down."""
        with urllib.request.urlopen(self.url + "/stats", timeout=2) as resp:
            return dict(json.load(resp))

    def kill(self) -> None:
        """SIGKILL the receiver and reap it."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets but answers nothing."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """End the receiver if it runs (idempotent)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=10)

    def ids(self) -> list[str]:
        """Every id received, duplicates included, in arrival order (complete lines only)."""
        if not self.ids_file.exists():
            return []
        text = self.ids_file.read_text(encoding="utf-8")
        return text.split("\n")[:-1]

    def __enter__(self) -> ReceiverProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Receiver:
    """Dedupes published events by id and records every id in an append-only file."""

    def __init__(self, ids_file: str, payloads_file: str | None = None) -> None:
        self.seen: set[str] = set()
        self.received = 0
        self.connections = 0
        if os.path.exists(ids_file):
            with open(ids_file, encoding="utf-8") as f:
                for line in f:
                    # A SIGKILL can tear the last line; a torn id was never acknowledged.
                    if line.endswith("\n"):
                        self.received += 1
                        self.seen.add(line[:-1])
        self.file = open(ids_file, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
        self.payloads: TextIO | None = None
        if payloads_file is not None:
            self.payloads = open(payloads_file, "a", encoding="utf-8")  # noqa: SIM115

    def publish(self, event: str, namespace: str, payload: Any) -> dict[str, Any]:
        """Handle one ``publish`` emit; the return value is its ack."""
        reply = self._accept(payload)
        if self.payloads is not None and reply["ok"]:
            line = {"event": event, "namespace": namespace, "payload": payload}
            self.payloads.write(json.dumps(line) + "\n")
            self.payloads.flush()
        return reply

    def _accept(self, payload: Any) -> dict[str, Any]:
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
            "connections": self.connections,
        }


def build_app(receiver: Receiver, token: str | None, event: str, namespace: str) -> Any:
    """The aiohttp application: Socket.IO on ``/socket.io`` and ``GET /stats``."""
    import orjson
    import socketio
    from aiohttp import web
    from socketio import packet

    class OrjsonCodec:
        @staticmethod
        def dumps(obj: Any, **_: Any) -> str:
            return orjson.dumps(obj).decode()

        @staticmethod
        def loads(raw: str | bytes, **_: Any) -> Any:
            return orjson.loads(raw)

    fast_packet = type(
        "FastPacket", (packet.Packet,), {"json": OrjsonCodec, "uses_binary_events": False}
    )
    sio = socketio.AsyncServer(
        async_mode="aiohttp", serializer=fast_packet, max_http_buffer_size=64 * 1024 * 1024
    )

    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> bool:
        accepted = token is None or (isinstance(auth, dict) and auth.get("token") == token)
        receiver.connections += accepted
        return accepted

    async def on_publish(sid: str, payload: Any) -> dict[str, Any]:
        return receiver.publish(event, namespace, payload)

    sio.on("connect", connect, namespace=namespace)
    sio.on(event, on_publish, namespace=namespace)

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
    parser.add_argument("--event", default="publish")
    parser.add_argument("--namespace", default="/")
    parser.add_argument("--payloads-file", default=None)
    args = parser.parse_args()
    from aiohttp import web

    receiver = Receiver(args.ids_file, args.payloads_file)
    app = build_app(receiver, args.token, args.event, args.namespace)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
