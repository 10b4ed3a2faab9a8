"""``rxbus serve``: a bus behind a Socket.IO server, HTTP ingest and a live dashboard.

Wire protocol (Socket.IO default namespace ``/``; with a token, connect with
``auth={"token": TOKEN}`` and send HTTP requests with ``Authorization: Bearer TOKEN``):

- ``publish``: one event dict (:meth:`rxbus.Event.to_dict`) or a list of them. Ack:
  ``{"ok": true, "accepted": n, "duplicates": m}`` or ``{"ok": false, "error": "one line"}``.
- ``subscribe`` ``{"pattern": "hook.*", "last_id": id or None, "history": 0}``: joins the
  pattern's room. Ack ``{"ok": true, "missed": [events stored after last_id, oldest first]}``
  (or the latest ``history`` events); then one ``event`` message per matching event.
  ``unsubscribe`` ``{"pattern": ...}`` leaves it.
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
