"""``rxbus serve``: a bus behind a Socket.IO server, HTTP ingest and a live dashboard.

Wire protocol (Socket.IO default namespace ``/``; with a token, connect with
``auth={"token": TOKEN}`` and send HTTP requests with ``Authorization: Bearer TOKEN``):

- ``publish``: one event dict (:meth:`rxbus.Event.to_dict`) or a list of them. Ack:
  ``{"ok": true, "accepted": n, "duplicates": m}`` or ``{"ok": false, "error": "one line"}``.
- ``subscribe`` ``{"pattern": "hook.*", "last_id": id or None, "history": 0}``: adds the
  pattern to the client's patterns. Ack ``{"ok": true, "missed": [...], "gap": null}``: with
  ``last_id``, the newest 1,000 events stored after it, oldest first, and when more were missed,
  ``"gap": {"count": n, "from": {"id", "timestamp"}, "to": {...}}`` for the older ones (with
  ``"at_least": true`` when the server, without a store, no longer remembers ``last_id``); with
  ``history``, the latest ``history`` events. Then one ``event`` message per matching event,
  and a ``dropped`` message (a gap) for events the client's bounded queue had to drop.
  Options: ``"batch": true`` (what the dashboard uses) sends ``events`` messages instead,
  ``{"events": [event or {"gap": {...}}, ...], "queued": n, "oldest_wait": s, "waited": s,
  "dropped": n, "patterns": [...]}``, one at a time: the next is sent once the client
  acknowledges this one; such clients also get ``stats`` every second (the server's per-topic
  totals for their patterns, and ``queued``/``oldest_wait``/``dropped``) and the ack carries
  ``"topics"``. ``"replace": true`` first drops the client's other patterns and what was
  queued for them. Each client's queue holds at most ``--page-queue`` events
  (``--page-overflow``: ``drop_oldest`` by default; every drop is counted and told).
  ``unsubscribe`` ``{"pattern": ...}`` removes a pattern.
- ``dead_letters``: ack with the recent dead letters; then one ``dead_letter`` message each.
- ``POST /events``: one event object, a JSON array or JSON Lines; 200
  ``{"accepted": n, "duplicates": m}`` once stored, 4xx ``{"error": "one line"}`` publishing
  nothing. ``GET /events?pattern=&after=&limit=`` history, ``GET /metrics`` Prometheus text,
  ``GET /`` the dashboard.

The server is importable without starting anything (aiohttp and python-socketio load on
first use)::

    from rxbus.server import RxbusServer, ServerConfig
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rxbus._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from rxbus.server.app import NotStored, RxbusServer, ServerConfig

_LAZY = {
    "NotStored": "rxbus.server.app",
    "RxbusServer": "rxbus.server.app",
    "ServerConfig": "rxbus.server.app",
}

__all__ = ["NotStored", "RxbusServer", "ServerConfig"]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
