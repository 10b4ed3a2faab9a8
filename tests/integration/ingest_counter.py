"""A minimal real HTTP server that takes ``POST /events`` (JSON Lines) as ``rxbus serve`` does,
and keeps only counts and digests, so a test can push a gigabyte through it without storing it.

    with IngestCounter() as server:
        ... rxbus run --url server.url ...
        assert server.streams["stdout"].lines == expected
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


@dataclass
class StreamTally:
    """What arrived of one output stream: lines, the next expected ``seq``, a digest of the text."""

    lines: int = 0
    batches: int = 0
    next_seq: int = 0
    out_of_order: int = 0
    digest: Any = field(default_factory=hashlib.sha256)


class IngestCounter:
    """``POST /events`` on 127.0.0.1: counts events by topic and tallies ``build.output``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.topics: dict[str, int] = {}
        self.streams: dict[str, StreamTally] = {}
        self.others: list[dict[str, Any]] = []  # every event but output batches, in arrival order
        self.requests = 0
        counter = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                events = [orjson.loads(line) for line in body.splitlines() if line.strip()]
                counter.take(events)
                reply = orjson.dumps({"accepted": len(events), "duplicates": 0})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def take(self, events: list[dict[str, Any]]) -> None:
        with self.lock:
            self.requests += 1
            for event in events:
                topic = event["topic"]
                self.topics[topic] = self.topics.get(topic, 0) + 1
                if topic.endswith(".output"):
                    data = event["data"]
                    tally = self.streams.setdefault(data["stream"], StreamTally())
                    tally.out_of_order += data["seq"] != tally.next_seq
                    tally.next_seq = data["seq"] + 1
                    tally.batches += 1
                    tally.lines += len(data["lines"])
                    if data["lines"]:
                        tally.digest.update("\n".join(data["lines"]).encode() + b"\n")
                else:
                    self.others.append(event)

    def __enter__(self) -> IngestCounter:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
