"""rxbus: a reactive event bus for Python, built on RxPY.

    >>> from rxbus import EventBus
    >>> with EventBus() as bus:
    ...     seen = []
    ...     consumer = bus.subscribe(seen.append, topic="hook.*")
    ...     _ = bus.publish("hook.tool", {"tool": "Bash"})
    ...     [e.type for e in seen]
    ['tool']

The bus and its consumers are imported on first use, so ``import rxbus`` stays cheap for
short-lived processes such as shell hooks.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from rxbus._lazy import lazy_exports
from rxbus.deadletter import DeadLetter
from rxbus.errors import (
    BufferOverflowError,
    BusClosedError,
    CircuitOpenError,
    DeliveryError,
    InvalidTopicError,
    PayloadError,
    PublishLoopError,
    RxbusError,
)
from rxbus.event import Event
from rxbus.policies import Overflow, RetryPolicy

if TYPE_CHECKING:  # pragma: no cover
    from rxbus.bus import EventBus
    from rxbus.consumer import Consumer, ConsumerStats

_LAZY = {
    "EventBus": "rxbus.bus",
    "Consumer": "rxbus.consumer",
    "ConsumerStats": "rxbus.consumer",
}

__all__ = [
    "BufferOverflowError",
    "BusClosedError",
    "CircuitOpenError",
    "Consumer",
    "ConsumerStats",
    "DeadLetter",
    "DeliveryError",
    "Event",
    "EventBus",
    "InvalidTopicError",
    "Overflow",
    "PayloadError",
    "PublishLoopError",
    "RetryPolicy",
    "RxbusError",
]
__version__ = "0.1.0"


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())

if "IPython" in sys.modules:  # in a notebook: the pictures register their reprs themselves
    import rxbus.viz  # noqa: F401
