"""``ConsoleSink``: one readable, colourised line per event, for humans (``rxbus tail`` uses it).

::

    06:51:02.114  build.error   error      ci       {"code":2,"step":"test"}

Time, topic (coloured by its first segment, so related topics share a colour), type, source and
the data as compact JSON, cut to ``max_data`` characters. Dead letters print in red with the
consumer and the error. Text is printed as :class:`rich.text.Text`, never parsed as markup, so
an event containing ``[bold]`` prints literally.
"""

from __future__ import annotations

import zlib
from datetime import datetime
from typing import IO, Any

import orjson

from rxbus.deadletter import DeadLetter
from rxbus.event import Event
from rxbus.metrics import Counter
from rxbus.sinks._base import ClosingSink
from rxbus.sinks._batch import DEAD_LETTER_TOPIC

__all__ = ["ConsoleSink"]

_PALETTE = ("cyan", "green", "magenta", "blue", "yellow", "bright_cyan", "bright_green")


class ConsoleSink(ClosingSink):
    """Print each event as one line.

    Args:
        file: where to print; default ``sys.stdout`` at the time of each print.
        color: ``True`` forces colour, ``False`` disables it, ``None`` colours a terminal only.
        max_data: longest data JSON shown before it is cut with ``…``.
        local_time: show times in the local zone instead of UTC.

    Example::

        bus.subscribe(ConsoleSink(), topic="build.**", mode="thread")
    """

    def __init__(
        self,
        file: IO[str] | None = None,
        *,
        color: bool | None = None,
        max_data: int = 160,
        local_time: bool = False,
    ) -> None:
        from rich.console import Console

        self._console = Console(
            file=file,
            force_terminal=color,
            no_color=color is False,
            highlight=False,
            soft_wrap=True,
            emoji=False,
            markup=False,
        )
        self.max_data = max_data
        self.local_time = local_time
        self._printed = Counter()
        self._errors = Counter()

    def format(self, item: Event | DeadLetter) -> Any:
        """The :class:`rich.text.Text` line for ``item``."""
        from rich.text import Text

        if isinstance(item, DeadLetter):
            failed = item.event
            topic = failed.topic if isinstance(failed, Event) else type(failed).__name__
            return Text.assemble(
                (self._time(item.timestamp), "dim"),
                "  ",
                ("DEAD LETTER", "bold red"),
                "  ",
                (topic, "red"),
                "  ",
                (item.consumer, "bold"),
                "  ",
                (f"{type(item.error).__name__}: {item.error}", "red"),
                f"  attempts={item.attempts}",
            )
        if item.topic == DEAD_LETTER_TOPIC and isinstance(item.data.get("event"), dict):
            failed_topic = str(item.data["event"].get("topic", "?"))
            return Text.assemble(
                (self._time(item.timestamp), "dim"),
                "  ",
                ("DEAD LETTER", "bold red"),
                "  ",
                (failed_topic, "red"),
                "  ",
                (str(item.data.get("consumer", "")), "bold"),
                "  ",
                (str(item.data.get("error", "")), "red"),
                f"  attempts={item.data.get('attempts', 1)}",
            )
        data = orjson.dumps(item.data).decode()
        if len(data) > self.max_data:
            data = data[: self.max_data - 1] + "…"
        colour = _PALETTE[zlib.crc32(item.topic.split(".", 1)[0].encode()) % len(_PALETTE)]
        return Text.assemble(
            (self._time(item.timestamp), "dim"),
            "  ",
            (f"{item.topic:<20}", colour),
            " ",
            (f"{item.type:<12}", "bold"),
            " ",
            (f"{item.source:<8}" if item.source else "", "dim"),
            " " if item.source else "",
            data,
        )

    def _time(self, ts: datetime) -> str:
        if self.local_time:
            ts = ts.astimezone()
        return ts.strftime("%H:%M:%S.") + f"{ts.microsecond // 1000:03d}"

    def on_next(self, item: Event | DeadLetter) -> None:
        """Print one line; a failed print is counted, never raised."""
        try:
            self._console.print(self.format(item))
        except Exception:
            self._errors.increment()
        else:
            self._printed.increment()

    def on_error(self, error: Exception) -> None:
        """Print the upstream error as a last line."""
        from rich.text import Text

        self._console.print(Text(f"stream failed: {type(error).__name__}: {error}", "bold red"))

    def on_completed(self) -> None:
        """Nothing to release: the console's file belongs to the caller."""

    def close(self) -> None:
        """Flush the output; the file itself belongs to the caller."""
        try:
            self._console.file.flush()
        except (AttributeError, ValueError, OSError):
            pass

    @property
    def stats(self) -> dict[str, int]:
        """``printed`` and ``errors``."""
        return {"printed": self._printed.value, "errors": self._errors.value}
