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

from rxbus._lazy import lazy_exports
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

# Not ``typing.TYPE_CHECKING``: importing typing costs a shell hook ~4 ms (mypy reads the name).
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from rxbus.bus import EventBus
    from rxbus.consumer import Consumer, ConsumerStats
    from rxbus.deadletter import DeadLetter
    from rxbus.event import Event
    from rxbus.policies import Overflow, RetryPolicy

# Even Event is loaded on first use: ``rxbus publish`` in a shell hook builds its event
# without the dataclass machinery, and pays only for what it uses.
_LAZY = {
    "EventBus": "rxbus.bus",
    "Consumer": "rxbus.consumer",
    "ConsumerStats": "rxbus.consumer",
    "DeadLetter": "rxbus.deadletter",
    "Event": "rxbus.event",
    "Overflow": "rxbus.policies",
    "RetryPolicy": "rxbus.policies",
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
