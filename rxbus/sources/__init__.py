"""Sources: inbound adapters that turn another system's messages into bus events.

    from rxbus.sources import redis_stream
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {"redis_stream": "rxbus.sources.redis"}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from rxbus.sources.redis import redis_stream  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rxbus.sources' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
