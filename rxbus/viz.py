"""Pictures of streams and buses for notebooks and docs: pure SVG and HTML text.

- :func:`marbles` draws a :class:`rxbus.testing.Recording` as a marble diagram (one lane per
  stream, a bar for completion, a cross for an error).
- :func:`event_html` and :func:`bus_html` are the rich reprs of :class:`rxbus.Event` and
  :class:`rxbus.EventBus` (every piece of event content is HTML-escaped).
- :func:`live` keeps a notebook display of a bus or stream up to date while events flow.
- :func:`topology` draws producers, topics and consumers of a bus with their counts.

Nothing here needs a browser or a graphviz binary; ``save("x.png")`` alone needs cairosvg.

    >>> import reactivex
    >>> from rxbus.testing import record
    >>> diagram = marbles(record(reactivex.of(1, 2, 3), name="numbers"))
    >>> diagram.svg.startswith("<svg")
    True
"""

from __future__ import annotations

import html
import itertools
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reactivex import Observable, abc
from reactivex.disposable import SerialDisposable

from rxbus.testing import Lane, Recording

if TYPE_CHECKING:  # pragma: no cover
    from rxbus.bus import EventBus
    from rxbus.event import Event

__all__ = [
    "LiveView",
    "MarbleDiagram",
    "SvgImage",
    "Topology",
    "bus_html",
    "event_html",
    "live",
    "marbles",
    "topology",
]

# Okabe-Ito: distinguishable for colour-blind readers.
_PALETTE = (
    "#E69F00",
    "#56B4E9",
    "#009E73",
    "#F0E442",
    "#0072B2",
    "#D55E00",
    "#CC79A7",
    "#999999",
)
_FONT = "font-family:monospace"
_SVG_NS = "http://www.w3.org/2000/svg"


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(1, limit - 1)] + "\u2026"


def _colour(label: str) -> str:
    # crc32, not hash(): the same label gets the same colour in every process.
    return _PALETTE[zlib.crc32(label.encode()) % len(_PALETTE)]


class SvgImage:
    """SVG text that shows itself in Jupyter and saves to ``.svg`` or ``.png``."""

    def __init__(self, svg: str, width: float, height: float) -> None:
        self.svg = svg
        self.width = width
        self.height = height

    def _repr_svg_(self) -> str:
        return self.svg

    def __str__(self) -> str:
        return self.svg

    def save(self, path: str | Path) -> Path:
        """Write the picture to ``path``: SVG text, or a PNG when the name ends in ``.png``.

        Raises:
            ImportError: for a PNG when cairosvg is not installed.
        """
        target = Path(path)
        if target.suffix.lower() == ".png":
            try:
                import cairosvg
            except ImportError as err:  # pragma: no cover - cairosvg is a dev dependency
                raise ImportError("saving a PNG needs cairosvg: pip install cairosvg") from err
            cairosvg.svg2png(bytestring=self.svg.encode(), write_to=str(target), scale=2.0)
        else:
            target.write_text(self.svg, encoding="utf-8")
        return target

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.width:.0f}x{self.height:.0f})"


class MarbleDiagram(SvgImage):
    """A marble diagram: :attr:`svg` text, ``_repr_svg_`` for Jupyter, :meth:`save`."""

    def __init__(self, svg: str, width: float, height: float, lanes: list[str]) -> None:
        super().__init__(svg, width, height)
        self.lanes = lanes


class Topology(SvgImage):
    """Producers, topics and consumers of a bus as an SVG graph."""


# -- marble diagrams ------------------------------------------------------------------------


def default_label(value: Any) -> str:
    """How a marble names its item: an event by its type, a list by its length."""
    from rxbus.deadletter import DeadLetter
    from rxbus.event import Event

    if isinstance(value, Event):
        return value.type
    if isinstance(value, DeadLetter):
        return "DL"
    if isinstance(value, list | tuple):
        return f"[{len(value)}]"
    return str(value)


def _detail(value: Any) -> str:
    from rxbus.deadletter import DeadLetter
    from rxbus.event import Event

    if isinstance(value, Event):
        return f"{value.topic} {value.type} {value.data}"
    if isinstance(value, DeadLetter):
        return (
            f"dead letter from {value.consumer} after {value.attempts} attempt(s): "
            f"{type(value.error).__name__}: {value.error}; item: {_detail(value.event)}"
        )
    return repr(value)


_LANE_H = 56
_R = 13
_NAME_W_MAX = 150
_MIN_GAP = 2 * _R + 4


def marbles(
    recording: Recording | Lane | Iterable[Recording | Lane],
    *,
    label: Callable[[Any], str] | None = None,
    title: str | None = None,
    width: int = 640,
    time_unit: str = "",
) -> MarbleDiagram:
    """Draw recorded streams as a marble diagram, one lane per stream.

    Items are circles (lists, e.g. from ``batch``, are wide boxes) placed by time; items
    closer than a marble's width are spread apart, keeping their order. A lane too crowded for
    that to stay on the time axis draws each burst as one dashed marker counting its items
    (``"120\u00d7"``; hover it for what they were), so the picture keeps its ``width``. A
    vertical bar marks completion, a red cross an error; hover an item for its full value.

    Args:
        recording: a :class:`~rxbus.testing.Recording`, a lane, or a sequence of them
            (every lane of every recording, in order, shares one time axis).
        label: text inside a marble (default :func:`default_label`, cut to 5 characters).
        title: a caption above the lanes.
        width: width of the time axis in pixels (the picture grows if items need room).
        time_unit: appended to the axis tick labels, e.g. ``"s"``.

    Returns:
        A :class:`MarbleDiagram`.

    Examples:
        >>> import reactivex
        >>> from reactivex import operators as rx
        >>> from rxbus.testing import record
        >>> source = reactivex.of(1, 2, 3)
        >>> rec = record({"source": source, "x10": source.pipe(rx.map(lambda x: x * 10))})
        >>> marbles(rec).lanes
        ['source', 'x10']
    """
    lanes = _collect_lanes(recording)
    if not lanes:
        raise ValueError("marbles() needs at least one lane; the recording is empty")
    if width < 100:
        raise ValueError(f"width must be at least 100 pixels, got {width!r}")
    name_of = label or default_label
    notes = [lane.notifications for lane in lanes]
    times = [n.time for lane_notes in notes for n in lane_notes]
    t0 = min(times, default=0.0)
    t1 = max(times, default=1.0)
    span = (t1 - t0) or 1.0

    name_w = min(_NAME_W_MAX, 16 + 7.5 * max(len(lane.name) for lane in lanes))
    left = name_w + 24
    top = 34 if title else 12

    def x_of(t: float) -> float:
        return left + (t - t0) / span * width

    body: list[tuple[Lane, float, list[str]]] = []
    right_most = left + width
    axis_end = left + width + 2 * _R + 4
    for row, (lane, lane_notes) in enumerate(zip(lanes, notes, strict=True)):
        y = top + row * _LANE_H + _LANE_H / 2
        parts, lane_end = _lane_items(lane_notes, y, x_of, name_of, group=False)
        if lane_end > axis_end:
            # Too crowded to spread one by one past the axis: items closer than a group
            # marker become one marker counting them.
            parts, lane_end = _lane_items(lane_notes, y, x_of, name_of, group=True)
        right_most = max(right_most, lane_end)
        body.append((lane, y, parts))

    end = right_most + 12
    out: list[str] = []
    for lane, y, parts in body:
        out.append(
            f'<g class="lane" data-name="{_esc(lane.name)}">'
            f'<text class="lane-name" x="{name_w + 8}" y="{y + 4}" text-anchor="end" '
            f'font-size="12" style="{_FONT}" fill="#333">{_esc(_short(lane.name, 20))}</text>'
            f'<line class="axis" x1="{left - 10}" y1="{y}" x2="{end}" y2="{y}" '
            'stroke="#555" stroke-width="1.5"/>'
            f'<polygon points="{end},{y - 5} {end + 10},{y} {end},{y + 5}" fill="#555"/>'
            + "".join(parts)
            + "</g>"
        )
    axis_y = top + len(lanes) * _LANE_H + 4
    ticks = []
    for t in _nice_ticks(t0, t1):
        x = x_of(t)
        ticks.append(
            f'<line x1="{x:.1f}" y1="{axis_y}" x2="{x:.1f}" y2="{axis_y + 5}" stroke="#888"/>'
            f'<text x="{x:.1f}" y="{axis_y + 17}" text-anchor="middle" font-size="10" '
            f'style="{_FONT}" fill="#666">{_esc(f"{t:g}{time_unit}")}</text>'
        )
    total_w = end + 20
    total_h = axis_y + 26
    caption = (
        f'<text class="title" x="{left}" y="22" font-size="14" font-weight="bold" '
        f'style="{_FONT}" fill="#222">{_esc(title)}</text>'
        if title
        else ""
    )
    svg = (
        f'<svg xmlns="{_SVG_NS}" class="rxbus-marbles" width="{total_w:.0f}" '
        f'height="{total_h:.0f}" viewBox="0 0 {total_w:.0f} {total_h:.0f}">'
        f'<rect width="100%" height="100%" fill="white"/>{caption}'
        + "".join(out)
        + f'<g class="time-axis"><line x1="{left}" y1="{axis_y}" x2="{left + width}" '
        f'y2="{axis_y}" stroke="#888"/>{"".join(ticks)}</g></svg>'
    )
    return MarbleDiagram(svg, total_w, total_h, [lane.name for lane in lanes])


_GROUP_W = 44  # a group marker ("120x") and the least distance between two of them


def _lane_items(
    lane_notes: list[Any],
    y: float,
    x_of: Callable[[float], float],
    name_of: Callable[[Any], str],
    *,
    group: bool,
) -> tuple[list[str], float]:
    """SVG parts of one lane's notifications and the x where the lane's last one ends.

    Items closer than a marble's width are spread apart, keeping their order; with ``group``,
    runs of items within a group marker's width of the run's first one are drawn as one
    marker counting them, so a burst stays on the time axis.
    """
    parts: list[str] = []
    last_x = -1e9
    right_most = -1e9
    pending: list[Any] = []

    def flush_group() -> None:
        nonlocal last_x, right_most
        if not pending:
            return
        if len(pending) == 1:
            place_item(pending[0])
        else:
            labels = [name_of(n.value) for n in pending]
            counts: dict[str, int] = {}
            for text in labels:
                counts[text] = counts.get(text, 0) + 1
            x = max(x_of(pending[0].time) + _GROUP_W / 2 - _R, last_x + _GROUP_W / 2 + _R + 4)
            fill = _colour(_short(labels[0], 5)) if len(counts) == 1 else "#BBBBBB"
            text = _short(f"{len(pending)}\u00d7", 5)
            spread = f"{pending[0].time:g}-{pending[-1].time:g}"
            kinds = ", ".join(f"{k} \u00d7{v}" for k, v in counts.items())
            tip = _esc(_short(f"t={spread}: {len(pending)} items ({kinds})", 300))
            parts.append(
                f'<g class="item group" data-time="{pending[0].time:g}" '
                f'data-count="{len(pending)}"><title>{tip}</title>'
                f'<rect class="marble group" x="{x - _GROUP_W / 2:.1f}" y="{y - _R}" '
                f'width="{_GROUP_W - 4}" height="{2 * _R}" rx="{_R}" fill="{fill}" '
                'stroke="#222" stroke-width="1.5" stroke-dasharray="3 2"/>'
                f'<text x="{x - 2:.1f}" y="{y + 4}" text-anchor="middle" font-size="10" '
                f'style="{_FONT}" fill="{_ink(fill)}">{_esc(text)}</text></g>'
            )
            last_x = x + _GROUP_W / 2 - _R
            right_most = max(right_most, x + _GROUP_W / 2)
        pending.clear()

    def place_item(note: Any) -> None:
        nonlocal last_x, right_most
        x = max(x_of(note.time), last_x + _MIN_GAP)
        text = _short(name_of(note.value), 5)
        box_w = 2 * _R if not isinstance(note.value, list | tuple) else 8 + 8 * len(text)
        x = max(x, last_x + box_w / 2 + _R + 4)
        tip = _esc(f"t={note.time:g}: {_short(_detail(note.value), 300)}")
        fill = _colour(text)
        if isinstance(note.value, list | tuple):
            shape = (
                f'<rect class="marble batch" x="{x - box_w / 2:.1f}" y="{y - _R}" '
                f'width="{box_w:.1f}" height="{2 * _R}" rx="6" fill="{fill}" '
                'stroke="#222" stroke-width="1.5"/>'
            )
        else:
            shape = (
                f'<circle class="marble" cx="{x:.1f}" cy="{y}" r="{_R}" fill="{fill}" '
                'stroke="#222" stroke-width="1.5"/>'
            )
        parts.append(
            f'<g class="item" data-time="{note.time:g}"><title>{tip}</title>{shape}'
            f'<text x="{x:.1f}" y="{y + 4}" text-anchor="middle" '
            f'font-size="{11 if len(text) <= 3 else 9}" '
            f'style="{_FONT}" fill="{_ink(fill)}">{_esc(text)}</text></g>'
        )
        last_x = x + box_w / 2 - _R
        right_most = max(right_most, x + 2 * _R)

    for note in lane_notes:
        if note.kind == "next":
            if group and pending and x_of(note.time) - x_of(pending[0].time) >= _GROUP_W:
                flush_group()
            if group:
                pending.append(note)
            else:
                place_item(note)
            continue
        flush_group()
        x = max(x_of(note.time), last_x + _MIN_GAP)
        if note.kind == "completed":
            parts.append(
                f'<line class="complete" data-time="{note.time:g}" x1="{x:.1f}" '
                f'y1="{y - 16}" x2="{x:.1f}" y2="{y + 16}" stroke="#222" stroke-width="3"/>'
            )
        else:
            tip = _esc(f"t={note.time:g}: {type(note.value).__name__}: {note.value}")
            d = 9
            parts.append(
                f'<g class="error" data-time="{note.time:g}"><title>{tip}</title>'
                f'<line x1="{x - d:.1f}" y1="{y - d}" x2="{x + d:.1f}" y2="{y + d}" '
                'stroke="#C00" stroke-width="3"/>'
                f'<line x1="{x - d:.1f}" y1="{y + d}" x2="{x + d:.1f}" y2="{y - d}" '
                'stroke="#C00" stroke-width="3"/></g>'
            )
        last_x = x
        right_most = max(right_most, x + 2 * _R)
    flush_group()
    return parts, right_most


def _ink(fill: str) -> str:
    return "#fff" if fill in ("#0072B2", "#D55E00") else "#111"


def _nice_ticks(t0: float, t1: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten) covering ``t0..t1``."""
    import math

    span = t1 - t0
    if span <= 0:
        return [t0]
    raw = span / (count - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(t0 / step) * step
    n = int((t1 - first) / step + 1e-9) + 1
    return [round(first + i * step, 12) for i in range(n)]


def _collect_lanes(source: Recording | Lane | Iterable[Recording | Lane]) -> list[Lane]:
    if isinstance(source, Lane):
        return [source]
    if isinstance(source, Recording):
        return source.lanes
    if isinstance(source, str | bytes) or not isinstance(source, Iterable):
        raise TypeError(
            "marbles() needs a Recording, a Lane or a sequence of them, "
            f"got {type(source).__name__}"
        )
    lanes: list[Lane] = []
    for item in source:
        lanes.extend(_collect_lanes(item))
    return lanes


# -- HTML reprs -----------------------------------------------------------------------------

_CARD = (
    "border:1px solid #ccc;border-radius:6px;padding:6px 10px;margin:2px 0;"
    "font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;max-width:720px"
)
_TABLE = "border-collapse:collapse;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px"
_CELL = "border:1px solid #ddd;padding:2px 8px;text-align:left"
_NUM = "border:1px solid #ddd;padding:2px 8px;text-align:right"


def _json_text(value: object, limit: int) -> str:
    import orjson

    try:
        text = orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        text = repr(value)
    return _short(text, limit)


def event_html(event: Event, *, max_chars: int = 2000) -> str:
    """An event as a compact HTML card (the repr Jupyter shows for an :class:`~rxbus.Event`).

    Every field is HTML-escaped; ``data`` and ``metadata`` are shown as JSON, cut at
    ``max_chars`` characters.

    Examples:
        >>> from rxbus import Event
        >>> "&lt;b&gt;" in event_html(Event(topic="t", data={"x": "<b>"}))
        True
    """
    rows = [
        f'<span style="font-weight:bold;color:#0072B2">{_esc(event.topic)}</span> '
        f'<span style="background:#eee;border-radius:3px;padding:0 4px">{_esc(event.type)}</span>'
        f' <span style="color:#888">{_esc(event.timestamp.isoformat())}</span>',
        f'<span style="color:#888">id</span> {_esc(event.id)}'
        + (f' <span style="color:#888">source</span> {_esc(event.source)}' if event.source else "")
        + (
            f' <span style="color:#888">correlation</span> {_esc(event.correlation_id)}'
            if event.correlation_id
            else ""
        ),
    ]
    body = (
        f'<pre style="margin:4px 0;white-space:pre-wrap">{_esc(_json_text(event.data, max_chars))}'
        "</pre>"
    )
    meta = (
        f'<div style="color:#666">metadata {_esc(_json_text(event.metadata, max_chars))}</div>'
        if event.metadata
        else ""
    )
    return f'<div class="rxbus-event" style="{_CARD}">' + "<br>".join(rows) + body + meta + "</div>"


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], cls: str) -> str:
    head = "".join(f'<th style="{_CELL}">{_esc(h)}</th>' for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td style="{_NUM if isinstance(v, int | float) else _CELL}">{_esc(_fmt(v))}</td>'
            for v in row
        )
        + "</tr>"
        for row in rows
    )
    return f'<table class="{cls}" style="{_TABLE}"><tr>{head}</tr>{body}</table>'


_CONSUMER_COLUMNS = (
    "received",
    "delivered",
    "failed",
    "dropped",
    "queued",
    "dead_lettered",
    "queue_size",
)


def metrics_html(metrics: Mapping[str, Any]) -> str:
    """HTML tables of a ``bus.metrics()`` dict: totals, topics, consumers."""
    latency = metrics.get("publish_latency_ns") or {}
    totals = [
        (
            metrics.get("published", 0),
            metrics.get("delivered", 0),
            metrics.get("failed", 0),
            metrics.get("dropped", 0),
            metrics.get("dead_lettered", 0),
            latency.get("p50", "-"),
            latency.get("p99", "-"),
            round(float(metrics.get("uptime_s", 0.0)), 1),
        )
    ]
    parts = [
        f'<div style="font-weight:bold;margin:4px 0">rxbus {_esc(metrics.get("name", ""))}</div>',
        _table(
            (
                "published",
                "delivered",
                "failed",
                "dropped",
                "dead letters",
                "publish p50 ns",
                "publish p99 ns",
                "uptime s",
            ),
            totals,
            "rxbus-totals",
        ),
    ]
    topics = metrics.get("topics") or {}
    parts.append('<div style="margin:6px 0 2px">topics</div>')
    parts.append(
        _table(
            ("topic", "published"),
            [(t, int(v.get("published", 0))) for t, v in sorted(topics.items())],
            "rxbus-topics",
        )
    )
    consumers = metrics.get("consumers") or {}
    parts.append('<div style="margin:6px 0 2px">consumers</div>')
    rows = []
    for name, stats in sorted(consumers.items()):
        sink = stats.get("sink") or {}
        sink_text = " ".join(f"{k}={_fmt(v)}" for k, v in sorted(sink.items()))
        rows.append(
            (
                name,
                stats.get("topic", ""),
                stats.get("mode", ""),
                *(stats.get(c, 0) for c in _CONSUMER_COLUMNS),
                sink_text,
            )
        )
    parts.append(
        _table(
            ("consumer", "topic", "mode", *_CONSUMER_COLUMNS, "sink"),
            rows,
            "rxbus-consumers",
        )
    )
    return '<div class="rxbus-bus">' + "".join(parts) + "</div>"


def bus_html(bus: EventBus) -> str:
    """A bus as HTML tables of its totals, topics and consumers (from ``bus.metrics()``).

    This is the repr Jupyter shows for an :class:`~rxbus.EventBus`; names are HTML-escaped.
    """
    return metrics_html(bus.metrics())


# -- live view ------------------------------------------------------------------------------


class LiveView:
    """A notebook display of a bus or stream that refreshes itself while events flow.

    Use :func:`live` to create one. Events only bump a counter and a short deque on the
    publisher's thread; rendering happens on the scheduler's timer, at most once per
    ``interval`` and only when something changed, so neither publishers nor the kernel's
    loop wait for HTML. ``stop()`` (or leaving a ``with`` block) renders a last time.
    """

    def __init__(
        self,
        source: EventBus | Observable[Any],
        *,
        interval: float = 0.5,
        recent: int = 5,
        scheduler: abc.SchedulerBase | None = None,
        handle: Any = None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        if recent < 0:
            raise ValueError(f"recent must be >= 0, got {recent!r}")
        self._bus = None if isinstance(source, Observable) else source
        stream = source if isinstance(source, Observable) else getattr(source, "events", None)
        if not isinstance(stream, Observable):
            raise TypeError(f"live() needs an EventBus or an Observable, got {source!r:.80}")
        self.interval = interval
        self._lock = threading.Lock()
        self._recent: deque[Any] = deque(maxlen=recent)
        self._count = itertools.count()
        self._seen = 0
        self._dirty = True
        self._ended = ""
        self.updates = 0
        """How many times the display was rendered."""
        if scheduler is None:
            from rxbus.scheduling import default_scheduler

            scheduler = default_scheduler()
        self._scheduler = scheduler
        self._handle = handle if handle is not None else _display_handle(self)
        self._subscription = stream.subscribe(self._on_next, self._on_error, self._on_completed)
        self._stopped = False
        # A self-rearming one-shot timer works on any scheduler (not only periodic ones).
        self._timer = SerialDisposable()
        self._arm()

    @property
    def count(self) -> int:
        """How many items the view has seen."""
        return self._seen

    def _on_next(self, item: Any) -> None:
        self._recent.append(item)
        self._seen = next(self._count) + 1
        self._dirty = True

    def _on_error(self, error: Exception) -> None:
        self._ended = f"stream failed: {type(error).__name__}: {error}"
        self._dirty = True

    def _on_completed(self) -> None:
        self._ended = "stream completed"
        self._dirty = True

    def _arm(self) -> None:
        self._timer.disposable = self._scheduler.schedule_relative(self.interval, self._tick)

    def _tick(self, scheduler: abc.SchedulerBase, state: Any = None) -> None:
        if self._stopped:
            return
        if self._dirty:
            self.refresh()
        self._arm()

    def refresh(self) -> None:
        """Render now and update the display."""
        with self._lock:
            self._dirty = False
            self.updates += 1
            self._handle.update(_Html(self.render()))

    def render(self) -> str:
        """The view's current HTML."""
        parts = [
            f'<div class="rxbus-live" style="font-family:ui-monospace,monospace;font-size:12px">'
            f"<div><b>{_fmt(self._seen)}</b> events seen"
            + (f" &middot; {_esc(self._ended)}" if self._ended else "")
            + "</div>"
        ]
        if self._bus is not None:
            parts.append(bus_html(self._bus))
        recent = list(self._recent)
        if recent:
            parts.append('<div style="margin:6px 0 2px">latest</div>')
            from rxbus.event import Event

            for item in reversed(recent):
                parts.append(
                    event_html(item, max_chars=300)
                    if isinstance(item, Event)
                    else f"<pre>{_esc(_short(repr(item), 300))}</pre>"
                )
        return "".join(parts) + "</div>"

    def _repr_html_(self) -> str:
        return self.render()

    def stop(self) -> None:
        """Stop listening and refreshing, after one last render. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._timer.dispose()
        self._subscription.dispose()
        self.refresh()

    def __enter__(self) -> LiveView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Html:
    """Minimal rich-display object, so a non-IPython handle gets something printable."""

    def __init__(self, text: str) -> None:
        self.text = text

    def _repr_html_(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"<HTML {len(self.text)} chars>"


def _display_handle(view: LiveView) -> Any:
    try:
        from IPython.display import display
    except ImportError as err:
        from rxbus._extras import install_command
        from rxbus.errors import MissingExtraError

        raise MissingExtraError(
            "live() needs the 'notebook' extra (IPython is not installed), or handle= an "
            f"object with an update(obj) method: {install_command('notebook')}",
            name="IPython",
        ) from err
    return display(_Html(view.render()), display_id=True)


def live(
    bus_or_stream: EventBus | Observable[Any],
    *,
    interval: float = 0.5,
    recent: int = 5,
    scheduler: abc.SchedulerBase | None = None,
    handle: Any = None,
) -> LiveView:
    """Show a bus (its metrics tables) or a stream, updated in place while events flow.

    Args:
        bus_or_stream: an :class:`~rxbus.EventBus` or any Observable (e.g. ``bus.topic("x.*")``).
        interval: seconds between refreshes at most (throttle); nothing is rendered while
            no event arrives.
        recent: how many of the latest items to show.
        scheduler: the timer (default: :func:`rxbus.scheduling.default_scheduler`, one thread
            for all rxbus timers).
        handle: where to render: any object with ``update(obj)``; by default a new IPython
            display (``display(..., display_id=True)``).

    Returns:
        A :class:`LiveView`; call ``stop()`` when done.

    Example:
        ``view = rxbus.viz.live(bus)`` in a notebook cell, publish, then ``view.stop()``.
    """
    return LiveView(
        bus_or_stream, interval=interval, recent=recent, scheduler=scheduler, handle=handle
    )


# -- topology -------------------------------------------------------------------------------


def topology(bus: EventBus, *, width: int = 760) -> Topology:
    """Producers, topics and consumers of ``bus`` as SVG, with their counts.

    Topics and consumers come from ``bus.metrics()`` (exact totals); producers are the
    ``source`` of the events still in ``bus.history()`` (counts over that window). A consumer
    is linked to every topic its pattern matches.

    Examples:
        >>> from rxbus import EventBus
        >>> with EventBus() as bus:
        ...     _ = bus.subscribe(lambda e: None, topic="a.*", name="printer")
        ...     _ = bus.publish("a.b", source="cli")
        ...     "printer" in topology(bus).svg
        True
    """
    from rxbus.topics import matches

    metrics = bus.metrics()
    history = bus.history()
    producers: dict[str, int] = {}
    links: dict[tuple[str, str], int] = {}
    for event in history:
        src = event.source or "(no source)"
        producers[src] = producers.get(src, 0) + 1
        links[(src, event.topic)] = links.get((src, event.topic), 0) + 1
    topics = {t: int(v.get("published", 0)) for t, v in (metrics.get("topics") or {}).items()}
    consumers = metrics.get("consumers") or {}
    return _draw_topology(
        producers, topics, consumers, links, matches, width, len(history), metrics
    )


def _draw_topology(
    producers: Mapping[str, int],
    topics: Mapping[str, int],
    consumers: Mapping[str, Mapping[str, Any]],
    links: Mapping[tuple[str, str], int],
    matches: Callable[[str, str], bool],
    width: int,
    window: int,
    metrics: Mapping[str, Any],
) -> Topology:
    node_h, gap, top = 40, 14, 52
    col_w = (width - 40) / 3
    box_w = col_w - 50
    xs = [20.0, 20 + col_w, 20 + 2 * col_w]

    def ys(n: int) -> list[float]:
        return [top + i * (node_h + gap) for i in range(n)]

    p_names = sorted(producers)
    t_names = sorted(topics)
    c_names = sorted(consumers)
    p_y = dict(zip(p_names, ys(len(p_names)), strict=True))
    t_y = dict(zip(t_names, ys(len(t_names)), strict=True))
    c_y = dict(zip(c_names, ys(len(c_names)), strict=True))
    rows = max(len(p_names), len(t_names), len(c_names), 1)
    height = top + rows * (node_h + gap) + 10

    edges: list[str] = []

    def edge(x1: float, y1: float, x2: float, y2: float, count: int | None, cls: str) -> None:
        mid = (x1 + x2) / 2
        edges.append(
            f'<path class="{cls}" d="M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} '
            f'{x2:.1f},{y2:.1f}" fill="none" stroke="#999" stroke-width="1.5"/>'
        )
        if count is not None:
            # Next to the arrow's end: each topic has its own row, so labels do not collide.
            edges.append(
                f'<text x="{x2 - 4:.1f}" y="{y2 - 4:.1f}" text-anchor="end" '
                f'font-size="10" style="{_FONT}" fill="#666">{count:,}</text>'
            )

    for (src, topic), count in sorted(links.items()):
        if topic in t_y:
            edge(
                xs[0] + box_w,
                p_y[src] + node_h / 2,
                xs[1],
                t_y[topic] + node_h / 2,
                count,
                "edge produce",
            )
    for name in c_names:
        pattern = str(consumers[name].get("topic", "**"))
        for topic in t_names:
            try:
                linked = matches(pattern, topic)
            except ValueError:
                linked = False
            if linked:
                edge(
                    xs[1] + box_w,
                    t_y[topic] + node_h / 2,
                    xs[2],
                    c_y[name] + node_h / 2,
                    None,
                    "edge consume",
                )

    def node(
        cls: str, x: float, y: float, name: str, detail: str, fill: str, w: float = box_w
    ) -> str:
        return (
            f'<g class="node {cls}" data-name="{_esc(name)}"><title>{_esc(name)}: '
            f'{_esc(detail)}</title><rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" '
            f'height="{node_h}" rx="7" fill="{fill}" stroke="#333"/>'
            f'<text x="{x + 8:.1f}" y="{y + 16:.1f}" font-size="12" style="{_FONT}" '
            f'font-weight="bold">{_esc(_short(name, int(w / 7.5)))}</text>'
            f'<text x="{x + 8:.1f}" y="{y + 32:.1f}" font-size="10" style="{_FONT}" '
            f'fill="#333">{_esc(_short(detail, int(w / 6.2)))}</text></g>'
        )

    nodes = [
        node("producer", xs[0], p_y[p], p, f"{producers[p]:,} events", "#E8F1FA") for p in p_names
    ]
    nodes += [
        node("topic", xs[1], t_y[t], t, f"{topics[t]:,} published", "#FFF3D6") for t in t_names
    ]
    for name in c_names:
        s = consumers[name]
        detail = (
            f"{s.get('topic', '**')} {int(s.get('delivered', 0)):,} ok "
            f"{int(s.get('failed', 0)):,} failed {int(s.get('dropped', 0)):,} dropped"
        )
        nodes.append(
            node("consumer", xs[2], c_y[name], name, detail, "#E3F4EA", width - xs[2] - 10)
        )
    headers = "".join(
        f'<text x="{x:.1f}" y="24" font-size="13" font-weight="bold" style="{_FONT}">{h}</text>'
        for x, h in zip(
            xs,
            (f"producers (last {window:,} events)", "topics", "consumers"),
            strict=True,
        )
    )
    name = _esc(metrics.get("name", ""))
    svg = (
        f'<svg xmlns="{_SVG_NS}" class="rxbus-topology" data-bus="{name}" width="{width}" '
        f'height="{height:.0f}" viewBox="0 0 {width} {height:.0f}">'
        f'<rect width="100%" height="100%" fill="white"/>{headers}'
        + "".join(edges)
        + "".join(nodes)
        + "</svg>"
    )
    return Topology(svg, width, height)


def _register_reprs() -> None:
    """Give events and buses their notebook pictures. The core never imports this module: it is
    imported by ``rxbus`` when IPython is loaded, or by whoever uses the pictures."""
    from rxbus.bus import EventBus
    from rxbus.event import Event

    Event._repr_html_ = event_html  # type: ignore[attr-defined]
    EventBus._repr_html_ = bus_html  # type: ignore[attr-defined]


_register_reprs()
