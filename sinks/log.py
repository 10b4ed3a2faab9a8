"""``LogSink``: events as structured loguru records, in the application's own handlers.

rxbus's internal diagnostics log under the module name ``rxbus`` and stay silent unless the
application calls ``logger.enable("rxbus")``, as loguru recommends for libraries. A ``LogSink`` is
different: the application asked for these records, so they are emitted under their own name
(``"rxbus_events"`` by default, outside ``rxbus``) and are on unless the application calls
``logger.disable("rxbus_events")``. The sink never adds, removes or reconfigures a handler.
"""

from __future__ import annotations

import builtins
import types
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from rxbus.deadletter import DeadLetter
from rxbus.event import Event
from rxbus.metrics import Counter
from rxbus.sinks._base import ClosingSink, DeadLetterBinding
from rxbus.sinks._batch import as_event, report_failure
from rxbus.topics import compile_pattern

if TYPE_CHECKING:  # pragma: no cover
    pass

__all__ = ["LogSink"]

_CACHE_LIMIT = 4096


def _emit(log: Callable[..., None], level: str | int, message: str, fields: dict[str, Any]) -> None:
    log(level, message, **fields)


class LogSink(ClosingSink, DeadLetterBinding):
    """Log each event as a loguru record whose ``extra`` holds the event's fields.

    ``record["extra"]`` gets ``event_id``, ``topic``, ``type``, ``source``, ``data``,
    ``metadata``, ``correlation_id`` and ``timestamp`` (ISO 8601), so a handler added with
    ``serialize=True`` writes them as JSON, and a format can use ``{extra[topic]}``.

    Args:
        level: level for events no rule below matches.
        topic_levels: topic pattern -> level, first match wins: ``{"build.error": "ERROR",
            "debug.**": "DEBUG"}``.
        type_levels: event type -> level, checked before ``topic_levels``. A dead letter handed
            to ``on_next`` has type ``"DeadLetter"``, logged at ``ERROR`` unless set here.
        message: ``str.format`` template over the same fields.
        logger: the loguru logger to use (e.g. ``logger.bind(app="x")``); default loguru's.
        name: the module name records carry, used by ``logger.enable/disable``.
        dead_letters: called with a :class:`rxbus.DeadLetter` for an event that could not be
            logged (a failing template); default the dead letters of the bus the sink is
            subscribed to, else the ``rxbus`` logger. Always counted.

    Example::

        from loguru import logger
        bus.subscribe(LogSink(topic_levels={"build.error": "ERROR"}))
        bus.dead_letters.subscribe(LogSink().on_next)
    """

    def __init__(
        self,
        *,
        level: str | int = "INFO",
        topic_levels: Mapping[str, str | int] | None = None,
        type_levels: Mapping[str, str | int] | None = None,
        message: str = "{topic} {type} {data}",
        logger: Any = None,
        name: str = "rxbus_events",
        dead_letters: Callable[[DeadLetter], None] | None = None,
    ) -> None:
        if logger is None:
            from loguru import logger
        self._log = logger.log
        self.level = level
        self.message = message
        self.name = name
        self._type_levels: dict[str, str | int] = {"DeadLetter": "ERROR", **(type_levels or {})}
        self._topic_rules = [
            (compile_pattern(pattern), lvl) for pattern, lvl in (topic_levels or {}).items()
        ]
        self._levels: dict[tuple[str, str], str | int] = {}
        # loguru decides whether a record is enabled from the __name__ of the calling frame's
        # module; the emitter runs with its own globals so records carry ``name``, not rxbus's.
        self._emit = types.FunctionType(
            _emit.__code__, {"__name__": name, "__builtins__": builtins}, "_emit"
        )
        self._dead_letters = dead_letters
        self._explicit_dead_letters = dead_letters is not None
        self._logged = Counter()
        self._errors = Counter()

    def level_for(self, event: Event) -> str | int:
        """The level ``event`` is logged at."""
        key = (event.topic, event.type)
        level = self._levels.get(key)
        if level is None:
            level = self._type_levels.get(event.type)
            if level is None:
                level = next((lvl for match, lvl in self._topic_rules if match(event.topic)), None)
            if level is None:
                level = self.level
            if len(self._levels) >= _CACHE_LIMIT:
                self._levels.clear()
            self._levels[key] = level
        return level

    def on_next(self, item: Event | DeadLetter) -> None:
        """Log ``item`` (an event or a dead letter); a failing handler is counted, never raised."""
        try:
            event = item if type(item) is Event else as_event(item)
            fields = {
                "event_id": event.id,
                "topic": event.topic,
                "type": event.type,
                "source": event.source,
                "data": event.data,
                "metadata": event.metadata,
                "correlation_id": event.correlation_id,
                "timestamp": event.timestamp.isoformat(),
            }
            self._emit(self._log, self.level_for(event), self.message, fields)
        except Exception as err:
            self._errors.increment()
            report_failure(self._dead_letters, f"LogSink({self.name})", [item], err)
        else:
            self._logged.increment()

    def on_error(self, error: Exception) -> None:
        """Nothing to release: the handlers belong to the application."""

    def on_completed(self) -> None:
        """Nothing to release: the handlers belong to the application."""

    def close(self) -> None:
        """Nothing to release; here so every sink can be closed the same way."""

    @property
    def stats(self) -> dict[str, int]:
        """``logged`` and ``errors`` (events a handler or the message template failed on)."""
        return {"logged": self._logged.value, "errors": self._errors.value}
