"""Producers: application logs as bus events.

:class:`LogHandler` is a :class:`logging.Handler` and :func:`loguru_sink` a loguru sink; both
publish each record as an event on topic ``<topic_prefix>.<logger name>`` with the level name as
its type::

    >>> import logging
    >>> from rxbus import EventBus
    >>> bus = EventBus()
    >>> handler = LogHandler(bus)
    >>> log = logging.getLogger("shop.orders")
    >>> log.addHandler(handler)
    >>> log.warning("stock low: %s", "apples", extra={"sku": 42})
    >>> event = bus.history("log.**")[-1]
    >>> event.topic, event.type, event.data["message"], event.data["sku"]
    ('log.shop.orders', 'WARNING', 'stock low: apples', 42)
    >>> log.removeHandler(handler)
    >>> _ = bus.close()

Logging must never fail the code that logs, so neither producer raises: a record the bus
refuses (closed bus, payload too large) is counted in ``stats["dropped"]``. Records of rxbus's
own loggers (``rxbus`` and below) are skipped, and so is a record logged while the same thread is
already publishing one (a ``sync`` consumer that logs): both counted in ``stats["suppressed"]``,
so a handler on the root logger cannot feed itself forever.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from rxbus.topics import MAX_SEGMENTS, MAX_TOPIC_LENGTH, validate_topic

if TYPE_CHECKING:  # pragma: no cover
    from rxbus.bus import EventBus

__all__ = ["LogHandler", "LoguruSink", "loguru_sink", "topic_for"]

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("x", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
# Keys the producers set themselves; an ``extra`` field of the same name is kept under "extra_".
_OWN_KEYS = ("message", "level", "logger", "module", "line", "function", "created", "exception")
_TOPIC_CACHE_LIMIT = 4096


class _Publisher:
    """What both producers share: topic naming, the payload, counting, the re-entry guard."""

    def __init__(self, bus: EventBus, topic_prefix: str, source: str) -> None:
        validate_topic(topic_prefix)
        self.bus = bus
        self.topic_prefix = topic_prefix
        self.source = source
        self._topics: dict[str, str] = {}
        self._local = threading.local()
        self._lock = threading.Lock()
        self._counts = {"published": 0, "dropped": 0, "suppressed": 0}
        self.last_error: BaseException | None = None

    @property
    def stats(self) -> dict[str, int]:
        """``published``, ``dropped`` (the bus refused) and ``suppressed`` (rxbus's own records,
        or records logged from inside a publish of this producer)."""
        with self._lock:
            return dict(self._counts)

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def topic_for(self, logger_name: str) -> str:
        """``<prefix>.<logger name>``, cached per name."""
        topic = self._topics.get(logger_name)
        if topic is None:
            topic = topic_for(self.topic_prefix, logger_name or "root")
            if len(self._topics) >= _TOPIC_CACHE_LIMIT:
                self._topics.clear()
            self._topics[logger_name] = topic
        return topic

    def publish(self, logger_name: str, level: str, data: dict[str, Any]) -> None:
        """Publish one record; never raises (a refusal is counted)."""
        if getattr(self._local, "inside", False) or _is_rxbus(logger_name):
            self._count("suppressed")
            return
        self._local.inside = True
        try:
            self.bus.publish(self.topic_for(logger_name), data, type=level, source=self.source)
        except Exception as err:  # the bus refused: closed, too large, ...
            self.last_error = err
            self._count("dropped")
        else:
            self._count("published")
        finally:
            self._local.inside = False


def topic_for(prefix: str, name: str) -> str:
    """``prefix.name`` as a valid topic: characters outside ``[A-Za-z0-9_-]`` become ``_``,
    empty segments are left out, and the result is cut to 16 segments and 255 characters.

    ``prefix`` must be a valid topic already.

        >>> topic_for("log", "my app..v2"), topic_for("ee", ""), topic_for("ee", "user:login")
        ('log.my_app.v2', 'ee._', 'ee.user_login')
    """
    segments = []
    for part in name.split("."):
        cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "_" for c in part)
        if cleaned:
            segments.append(cleaned)
    room = MAX_SEGMENTS - (prefix.count(".") + 1)
    topic = ".".join([prefix, *(segments[:room] or ["_"])])
    return topic[:MAX_TOPIC_LENGTH].rstrip(".")


def _is_rxbus(name: str) -> bool:
    return name == "rxbus" or name.startswith("rxbus.")


def _add_extra(data: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """Copy the ``extra`` fields that orjson can serialise; name the others in ``unserialisable``."""
    skipped = []
    for key, value in extra.items():
        if not isinstance(key, str):
            continue
        try:
            orjson.dumps(value)
        except TypeError:
            skipped.append(key)
            continue
        data[f"extra_{key}" if key in _OWN_KEYS else key] = value
    if skipped:
        data["unserialisable"] = sorted(skipped)


class LogHandler(logging.Handler):
    """A :class:`logging.Handler` that publishes each record on the bus.

    Topic ``<topic_prefix>.<logger name>`` (``log.root`` for the root logger), type the level
    name (``"WARNING"``), data: ``message``, ``level``, ``logger``, ``module``, ``line``,
    ``function``, ``created`` (ISO 8601 UTC), ``exception`` (the formatted traceback or None),
    and every ``extra=`` field that serialises to JSON (the names of those that do not are listed
    in ``unserialisable``).

    Args:
        bus: the bus to publish on.
        topic_prefix: the first segment(s) of every topic.
        level: the least severe level handled.
        source: the events' ``source`` (default ``"logging"``).

    Raises:
        InvalidTopicError: for a ``topic_prefix`` that is not a valid topic.

    Example:
        >>> import logging
        >>> from rxbus import EventBus
        >>> bus = EventBus()
        >>> logging.getLogger().addHandler(LogHandler(bus, level=logging.WARNING))
    """

    def __init__(
        self,
        bus: EventBus,
        topic_prefix: str = "log",
        level: int | str = logging.NOTSET,
        *,
        source: str = "logging",
    ) -> None:
        super().__init__(level)
        self._publisher = _Publisher(bus, topic_prefix, source)

    @property
    def stats(self) -> dict[str, int]:
        """``published``, ``dropped`` and ``suppressed`` record counts."""
        return self._publisher.stats

    @property
    def last_error(self) -> BaseException | None:
        """Why the bus refused the last dropped record."""
        return self._publisher.last_error

    def handle(self, record: logging.LogRecord) -> logging.LogRecord | bool:  # type: ignore[override]
        """Filter and emit ``record`` without taking the handler's lock.

        ``logging.Handler.handle`` holds a lock around ``emit``. Publishing is thread-safe
        already, and holding that lock while a publish waits for room in a consumer's queue
        would deadlock with a ``thread`` consumer that logs through this handler.
        """
        rv = self.filter(record)
        if isinstance(rv, logging.LogRecord):  # Python 3.12+: a filter may return a new record
            record = rv
        if rv:
            self.emit(record)
        return rv

    def emit(self, record: logging.LogRecord) -> None:
        """Publish ``record``; never raises."""
        try:
            data = self._payload(record)
        except Exception as err:  # a broken record must not break the caller
            self._publisher.last_error = err
            self._publisher._count("dropped")
            return
        self._publisher.publish(record.name, record.levelname, data)

    def _payload(self, record: logging.LogRecord) -> dict[str, Any]:
        try:
            message = record.getMessage()
        except Exception as err:  # bad %-arguments: keep what there is
            message = f"{record.msg!s} (args {record.args!r:.200} did not format: {err})"
        exception = None
        if record.exc_info and record.exc_info[0] is not None:
            exception = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            exception = record.exc_text
        data: dict[str, Any] = {
            "message": message,
            "level": record.levelname,
            "logger": record.name,
            "module": record.module,
            "line": record.lineno,
            "function": record.funcName,
            "created": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "exception": exception,
        }
        _add_extra(data, {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS})
        return data


class LoguruSink:
    """A loguru sink publishing each record on the bus, with the fields of :class:`LogHandler`.

    Made by :func:`loguru_sink`; loguru calls it with each formatted message. The record's
    ``extra`` (from ``logger.bind`` or keyword arguments) becomes data fields.
    """

    def __init__(self, bus: EventBus, topic_prefix: str = "log", *, source: str = "loguru") -> None:
        self._publisher = _Publisher(bus, topic_prefix, source)
        self.__name__ = f"rxbus-loguru-{topic_prefix}"

    @property
    def stats(self) -> dict[str, int]:
        """``published``, ``dropped`` and ``suppressed`` record counts."""
        return self._publisher.stats

    def __call__(self, message: Any) -> None:
        """Publish ``message.record``; never raises."""
        try:
            record = message.record
            name = record["name"] or "root"
            level = record["level"].name
            exception = None
            if record["exception"] is not None:
                kind, value, tb = record["exception"]
                exception = "".join(traceback.format_exception(kind, value, tb)).rstrip()
            data: dict[str, Any] = {
                "message": record["message"],
                "level": level,
                "logger": name,
                "module": record["module"],
                "line": record["line"],
                "function": record["function"],
                "created": record["time"].astimezone(UTC).isoformat(),
                "exception": exception,
            }
            _add_extra(data, record["extra"])
        except Exception as err:
            self._publisher.last_error = err
            self._publisher._count("dropped")
            return
        self._publisher.publish(name, level, data)


def loguru_sink(bus: EventBus, topic_prefix: str = "log", *, source: str = "loguru") -> LoguruSink:
    """A loguru sink that publishes each record as ``<topic_prefix>.<module name>``.

    Example::

        from loguru import logger

        bus = EventBus()
        logger.add(loguru_sink(bus), level="INFO")
        logger.bind(order=7).info("paid")  # -> event log.<module>, type INFO, data["order"] == 7

    Records logged by rxbus's own modules (loguru names them ``rxbus...``) are suppressed.
    """
    return LoguruSink(bus, topic_prefix, source=source)
