"""A Socket.IO client subscribed to ``rxbus serve`` as the dashboard is: what the page is sent.

Used as a context manager next to a ``ServeProcess``; a test waits with ``wait_until`` for
``watcher.received`` to hold what it expects.
"""

from __future__ import annotations

from typing import Any

import socketio


class DashboardWatcher:
    """Every event the server sends to a subscription of ``pattern``, in order."""

    def __init__(self, url: str, pattern: str) -> None:
        self.url, self.pattern = url, pattern
        self.received: list[dict[str, Any]] = []
        self.client = socketio.Client(reconnection=False)
        self.client.on("event", self.received.append)

    def __enter__(self) -> DashboardWatcher:
        self.client.connect(self.url, wait_timeout=10)
        ack = self.client.call("subscribe", {"pattern": self.pattern, "last_id": None}, timeout=10)
        assert ack["ok"], ack
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
