"""Sources: inbound adapters that turn another system's messages into bus events.

from rxbus.sources import redis_stream, nats_stream
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rxbus._lazy import lazy_exports

_LAZY = {"redis_stream": "rxbus.sources.redis", "nats_stream": "rxbus.sources.nats"}

__all__ = ["nats_stream", "redis_stream"]

if TYPE_CHECKING:  # pragma: no cover
    from rxbus.sources.nats import nats_stream
    from rxbus.sources.redis import redis_stream


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
