"""Every exception rxbus raises on purpose.

Messages name the offending value and say what would be valid, so a log line alone is enough to
fix the call that failed.
"""

from __future__ import annotations

__all__ = [
    "BufferOverflowError",
    "BusClosedError",
    "CircuitOpenError",
    "DeliveryError",
    "InvalidTopicError",
    "MissingExtraError",
    "ModelValidationError",
    "PayloadError",
    "PublishLoopError",
    "PyeeError",
    "ReplyError",
    "RxbusError",
    "SinkClosedError",
    "StoreError",
]


class RxbusError(Exception):
    """Base class of every rxbus error."""


class InvalidTopicError(RxbusError, ValueError):
    """A topic or topic pattern is malformed.

    A topic is 1..16 dot-separated segments of ``[A-Za-z0-9_-]+``, at most 255 characters; a
    pattern may also use ``*`` (one segment) and ``**`` (zero or more segments).
    """


class PayloadError(RxbusError, ValueError):
    """An event field cannot be carried: not JSON-serialisable, of the wrong type, or too large."""


class ModelValidationError(PayloadError):
    """An event's ``data`` does not validate as the model a consumer asked for (``model=``).

    Attributes:
        model: the model class.
        fields: the dotted paths of the fields that failed, in the validator's order.
    """

    def __init__(self, message: str, *, model: type, fields: tuple[str, ...]) -> None:
        super().__init__(message)
        self.model = model
        self.fields = fields


class ReplyError(RxbusError, LookupError):
    """A reply reached no waiting request: a second reply, a late one, or an unknown id."""


class BusClosedError(RxbusError, RuntimeError):
    """The bus was closed; it accepts no more events or subscriptions."""


class BufferOverflowError(RxbusError, RuntimeError):
    """A bounded consumer queue was full and its overflow policy is ``Overflow.ERROR``."""


class CircuitOpenError(RxbusError, RuntimeError):
    """An item was not handled because its circuit breaker is open."""


class DeliveryError(RxbusError, RuntimeError):
    """A downstream system (a server, a broker) refused an event a sink tried to deliver."""


class StoreError(RxbusError, ValueError):
    """A store or log file cannot be used: not ours, corrupt, or written by a newer rxbus."""


class SinkClosedError(RxbusError, RuntimeError):
    """An event reached a sink after it was closed."""


class PublishLoopError(RxbusError, RuntimeError):
    """An event went round busy consumers too many times (a consumer, or a ring of them, that
    publishes to itself without end); it is dropped with this as its dead letter's error."""


class PyeeError(RxbusError):
    """An ``error`` event was emitted on a :mod:`rxbus.compat` emitter with no ``error`` listener
    and a value that is not an exception (pyee's ``PyeeError``)."""


class MissingExtraError(RxbusError, ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""
