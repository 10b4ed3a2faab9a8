"""Benchmark an operator chain against generated events, next to a plain-Python floor.

:func:`bench_chain` pushes ``n`` prebuilt events through a chain (on a bus consumer in a given
mode, or on a bare reactivex ``Subject``) and returns a :class:`BenchResult` with ns/event,
events/s, latency percentiles and the ratio to a *floor*: a plain ``for`` loop handing the same
events to the same kind of sink, measured in the same run, interleaved with the chain's rounds.
The ratio is what travels between machines; absolute numbers do not.

    >>> from reactivex import operators as rx
    >>> result = bench_chain(rx.filter(lambda e: e.data["i"] % 2 == 0), n=2_000, rounds=1)
    >>> result.delivered
    1000
    >>> result.ratio > 1
    True
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from reactivex import Observable
from reactivex.subject import Subject

from rxbus.event import Event
from rxbus.metrics import percentiles
from rxbus.viz import SvgImage

__all__ = [
    "MODES",
    "BenchResult",
    "bench_chain",
    "results_html",
    "standard_events",
    "standard_suite",
]

Mode = Literal["rx", "sync", "thread", "async"]
MODES: tuple[str, ...] = ("rx", "sync", "thread", "async")
TOPICS = 20
Operator = Callable[[Observable[Any]], Observable[Any]]


def standard_events(n: int, topics: int = TOPICS) -> list[Event]:
    """``n`` small events spread over ``topics`` topics ``bench.t00`` .., types alternating.

    Examples:
        >>> [e.topic for e in standard_events(3)]
        ['bench.t00', 'bench.t01', 'bench.t02']
    """
    return [
        Event(
            topic=f"bench.t{i % topics:02d}",
            type="created" if i % 2 == 0 else "updated",
            data={"i": i, "user": f"u{i % 100}", "amount": i % 1000},
        )
        for i in range(n)
    ]


@dataclass(frozen=True, slots=True)
class BenchResult:
    """What :func:`bench_chain` measured.

    Attributes:
        name: label of the chain.
        mode: ``"rx"`` (bare Subject) or the bus consumer mode.
        n: events pushed per round.
        delivered: items the sink received in a round (a filter or batch changes it).
        ns_per_event: best round's time per input event, from the first push until the
            chain has drained.
        events_per_s: ``1e9 / ns_per_event``.
        floor_ns_per_event: best round of the plain-Python floor, same events, same run.
        ratio: ``ns_per_event / floor_ns_per_event``.
        latency_ns: push-to-sink percentiles (``p50``, ``p90``, ``p99``, ``p99_9``, ``max``) of
            the items traceable to an input event (events keep their id through ``evolve``).
        rounds: timed rounds of the chain (and of the floor).
        round_ns_per_event: every round's ns/event, to judge the noise.
    """

    name: str
    mode: str
    n: int
    delivered: int
    ns_per_event: float
    events_per_s: float
    floor_ns_per_event: float
    ratio: float
    latency_ns: dict[str, float] = field(default_factory=dict)
    rounds: int = 1
    round_ns_per_event: tuple[float, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """A JSON-native dict of every figure."""
        d = asdict(self)
        d["round_ns_per_event"] = list(self.round_ns_per_event)
        return d

    def __str__(self) -> str:
        lat = self.latency_ns
        return (
            f"{self.name} [{self.mode}]: {self.ns_per_event:,.0f} ns/event, "
            f"{self.events_per_s:,.0f} events/s, x{self.ratio:,.1f} floor, "
            f"p50 {lat.get('p50', float('nan')):,.0f} ns, p99 {lat.get('p99', float('nan')):,.0f} ns"
        )

    def plot(self) -> SvgImage:
        """The latency percentiles as an SVG bar chart (log scale: tails are long)."""
        return _latency_plot(self)

    def _repr_svg_(self) -> str:
        return self.plot().svg

    def _repr_html_(self) -> str:
        return results_html([self]) + self.plot().svg


def bench_chain(
    *operators: Operator,
    events: Sequence[Event] | Callable[[int], Event] | None = None,
    n: int = 10_000,
    mode: Mode = "sync",
    rounds: int = 3,
    name: str | None = None,
    topic: str = "**",
    queue_size: int = 10_000,
) -> BenchResult:
    """Run ``operators`` over ``n`` events and measure them against a plain-Python floor.

    Each round builds a fresh chain (and, except in ``"rx"`` mode, a fresh
    :class:`~rxbus.EventBus` with ``history=0`` and one consumer), publishes every event, and
    stops the clock when the chain has drained (the bus closed, or the Subject completed, which
    also flushes batches). Floor and chain rounds alternate so both see the same machine. One
    more, instrumented, round measures latency, so timing calls never slow the timed rounds.

    Args:
        operators: Rx operators, as in ``Observable.pipe``.
        events: the events, or a function ``i -> Event``; default :func:`standard_events`.
            A sequence shorter than ``n`` is cycled. Events are built before timing starts.
        n: events per round (>= 1).
        mode: ``"rx"`` for a bare ``reactivex`` Subject, else the bus consumer mode
            ``"sync"``, ``"thread"`` or ``"async"``.
        rounds: timed rounds; the best is reported, all are kept.
        name: label; defaults to the operators' names.
        topic: the consumer's topic pattern (bus modes).
        queue_size: the consumer's queue bound (``thread``/``async``).

    Returns:
        A :class:`BenchResult`.

    Raises:
        ValueError: for an unknown mode, ``n < 1`` or ``rounds < 1``.

    Examples:
        >>> bench_chain(n=1_000, rounds=1).delivered
        1000
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an int >= 1, got {rounds!r}")
    batch = _events(events, n)
    label = name or (" → ".join(_op_name(op) for op in operators) or "sink only")
    # A bus made on a running loop's thread would run async consumers on that loop, which
    # this blocking benchmark would starve (a notebook cell runs on the kernel's loop).
    return _off_loop(lambda: _run(operators, batch, mode, rounds, label, topic, queue_size))


def _run(
    operators: Sequence[Operator],
    batch: list[Event],
    mode: str,
    rounds: int,
    label: str,
    topic: str,
    queue_size: int,
) -> BenchResult:
    floors: list[float] = []
    chains: list[float] = []
    delivered = 0
    _floor(batch)  # warm-up: first-call costs are not what we measure
    _chain(operators, batch, mode, topic, queue_size, None)
    for _ in range(rounds):
        floors.append(_floor(batch))
        elapsed, delivered = _chain(operators, batch, mode, topic, queue_size, None)
        chains.append(elapsed)
    latencies: list[int] = []
    _chain(operators, batch, mode, topic, queue_size, latencies)
    n = len(batch)
    best = min(chains) / n
    floor = min(floors) / n
    lat = percentiles(latencies, (50, 90, 99, 99.9))
    if latencies:
        lat["max"] = max(latencies)
    return BenchResult(
        name=label,
        mode=mode,
        n=n,
        delivered=delivered,
        ns_per_event=best,
        events_per_s=1e9 / best if best else float("inf"),
        floor_ns_per_event=floor,
        ratio=best / floor if floor else float("inf"),
        latency_ns={k: float(v) for k, v in lat.items()},
        rounds=rounds,
        round_ns_per_event=tuple(c / n for c in chains),
    )


def _floor(batch: list[Event]) -> int:
    """A plain loop handing each event to a counting sink: the least any bus can do."""
    counter = itertools.count()
    sink = _counting_sink(counter)
    t0 = time.perf_counter_ns()
    for event in batch:
        sink(event)
    elapsed = time.perf_counter_ns() - t0
    if next(counter) != len(batch):  # pragma: no cover - a plain loop cannot lose events
        raise AssertionError("floor lost events")
    return elapsed


def _counting_sink(counter: itertools.count[int]) -> Callable[[Any], None]:
    tick = counter.__next__

    def sink(item: Any) -> None:
        tick()

    return sink


def _chain(
    operators: Sequence[Operator],
    batch: list[Event],
    mode: str,
    topic: str,
    queue_size: int,
    latencies: list[int] | None,
) -> tuple[int, int]:
    counter = itertools.count()
    if latencies is None:
        sink = _counting_sink(counter)
        push_times: list[int] = []
    else:
        push_times = [0] * len(batch)
        sink = _tracing_sink(counter, batch, push_times, latencies)
    if mode == "rx":
        subject: Subject[Event] = Subject()
        subject.pipe(*operators).subscribe(sink) if operators else subject.subscribe(sink)
        push: Callable[[Event], Any] = subject.on_next
        finish: Callable[[], Any] = subject.on_completed
    else:
        from rxbus.bus import EventBus

        bus = EventBus(name="bench", history=0)
        consumer = bus.subscribe(
            sink,
            *operators,
            topic=topic,
            mode=mode,  # type: ignore[arg-type]
            queue_size=queue_size,
            name="bench",
        )
        push = bus.publish
        from rxbus.topics import compile_pattern

        wanted = compile_pattern(topic)
        expected = sum(1 for event in batch if wanted(event.topic))

        def finish() -> None:
            # Wait for the queue to empty before closing, so the clock stops when every
            # event has been handled, whatever close() does with its timeout.
            _drained(consumer, expected)
            undelivered = bus.close(timeout=30.0)
            stats = consumer.stats
            if undelivered or stats.received != expected or stats.dropped or stats.queued:
                raise RuntimeError(
                    f"bench lost events in mode {mode!r}: {len(undelivered)} undelivered, "
                    f"stats {stats}"
                )

    if latencies is None:
        t0 = time.perf_counter_ns()
        for event in batch:
            push(event)
        finish()
        elapsed = time.perf_counter_ns() - t0
    else:
        clock = time.perf_counter_ns
        t0 = clock()
        for i, event in enumerate(batch):
            push_times[i] = clock()
            push(event)
        finish()
        elapsed = clock() - t0
    return elapsed, next(counter)


def _drained(consumer: Any, expected: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        stats = consumer.stats
        if stats.received >= expected and stats.queued == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"bench consumer did not drain within {timeout}s: {stats}")
        time.sleep(0.0002)


def _tracing_sink(
    counter: itertools.count[int],
    batch: list[Event],
    push_times: list[int],
    latencies: list[int],
) -> Callable[[Any], None]:
    index = {event.id: i for i, event in enumerate(batch)}
    clock = time.perf_counter_ns
    tick = counter.__next__

    def trace(item: Any, now: int) -> None:
        i = index.get(getattr(item, "id", None))  # type: ignore[arg-type]
        if i is not None:
            latencies.append(now - push_times[i])

    def sink(item: Any) -> None:
        now = clock()
        tick()
        if isinstance(item, list | tuple):
            for element in item:
                trace(element, now)
        else:
            trace(item, now)

    return sink


def _events(events: Sequence[Event] | Callable[[int], Event] | None, n: int) -> list[Event]:
    if events is None:
        return standard_events(n)
    if callable(events):
        return [events(i) for i in range(n)]
    if not events:
        raise ValueError("events is empty; pass at least one Event")
    return list(itertools.islice(itertools.cycle(events), n))


def _op_name(op: Any) -> str:
    name = getattr(op, "__qualname__", None) or type(op).__name__
    # reactivex operators are closures: "filter_.<locals>._filter" -> "filter"
    return str(name).split(".")[0].strip("_")


def _off_loop(fn: Callable[[], BenchResult]) -> BenchResult:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    box: list[BenchResult | BaseException] = []

    def target() -> None:
        try:
            box.append(fn())
        except BaseException as err:  # re-raised in the caller's thread
            box.append(err)

    thread = threading.Thread(target=target, name="rxbus-bench")
    thread.start()
    thread.join()
    outcome = box[0]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


# -- the standard suite ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SuiteCase:
    """One entry of :func:`standard_suite`: a label, a mode and how to build its operators."""

    name: str
    mode: Mode
    operators: Callable[[], tuple[Operator, ...]]


def standard_suite() -> list[SuiteCase]:
    """The chains ``rxbus bench`` runs: the bus alone, filters, transforms, batching, modes.

    Uses :mod:`rxbus.operators` where it is installed, reactivex's own operators otherwise.
    """
    from reactivex import operators as rx

    def even(e: Event) -> bool:
        return e.data["i"] % 2 == 0

    def tagged(e: Event) -> Event:
        return e.evolve(metadata={"seen": True})

    try:
        import rxbus.operators as ops

        where: Callable[[], Operator] = lambda: ops.where(even)  # noqa: E731
        transform: Callable[[], Operator] = lambda: ops.transform(tagged)  # noqa: E731
        batch: Callable[[], Operator] = lambda: ops.batch(1.0, 100)  # noqa: E731
        names = ("where", "transform", "batch(1s, 100)")
    except (ImportError, AttributeError):
        where = lambda: rx.filter(even)  # noqa: E731
        transform = lambda: rx.map(tagged)  # noqa: E731
        batch = lambda: rx.buffer_with_count(100)  # noqa: E731
        names = ("filter", "map", "buffer_with_count(100)")
    return [
        SuiteCase("sink only", "sync", lambda: ()),
        SuiteCase(names[0], "sync", lambda: (where(),)),
        SuiteCase(f"{names[0]} → {names[1]}", "sync", lambda: (where(), transform())),
        SuiteCase(names[2], "sync", lambda: (batch(),)),
        SuiteCase("sink only", "thread", lambda: ()),
        SuiteCase("sink only", "async", lambda: ()),
        SuiteCase("Subject: filter → map", "rx", lambda: (rx.filter(even), rx.map(tagged))),
    ]


def results_html(results: Iterable[BenchResult]) -> str:
    """An HTML table of results: ns/event, events/s, ratio to the floor, p50/p99."""
    from rxbus.viz import _esc

    head = (
        "chain",
        "mode",
        "n",
        "delivered",
        "ns/event",
        "events/s",
        "floor ns/event",
        "x floor",
        "p50 ns",
        "p99 ns",
    )
    cell = "border:1px solid #ddd;padding:2px 8px"
    rows = []
    for r in results:
        values = (
            r.name,
            r.mode,
            f"{r.n:,}",
            f"{r.delivered:,}",
            f"{r.ns_per_event:,.0f}",
            f"{r.events_per_s:,.0f}",
            f"{r.floor_ns_per_event:,.1f}",
            f"{r.ratio:,.1f}",
            f"{r.latency_ns.get('p50', 0):,.0f}",
            f"{r.latency_ns.get('p99', 0):,.0f}",
        )
        rows.append(
            "<tr>" + "".join(f'<td style="{cell}">{_esc(v)}</td>' for v in values) + "</tr>"
        )
    header = "".join(f'<th style="{cell}">{_esc(h)}</th>' for h in head)
    return (
        '<table class="rxbus-bench" style="border-collapse:collapse;font-family:monospace;'
        f'font-size:12px"><tr>{header}</tr>{"".join(rows)}</table>'
    )


def _latency_plot(result: BenchResult) -> SvgImage:
    import math

    from rxbus.viz import _esc

    keys = [k for k in ("p50", "p90", "p99", "p99_9", "max") if k in result.latency_ns]
    width, bar_h, gap, left, top = 520, 22, 8, 60, 34
    height = top + max(1, len(keys)) * (bar_h + gap) + 24
    parts = [
        f'<text x="{left}" y="20" font-size="13" font-weight="bold" font-family="monospace">'
        f"{_esc(result.name)} [{_esc(result.mode)}] latency</text>"
    ]
    if not keys:
        parts.append(
            f'<text x="{left}" y="{top + 14}" font-size="12" font-family="monospace">'
            "no traceable items (the chain emits no events with input ids)</text>"
        )
    values = [max(1.0, result.latency_ns[k]) for k in keys]
    lo = math.log10(min(values, default=1.0)) - 0.3
    hi = math.log10(max(values, default=10.0)) + 0.05
    span = (hi - lo) or 1.0
    plot_w = width - left - 110
    for i, (key, value) in enumerate(zip(keys, values, strict=True)):
        y = top + i * (bar_h + gap)
        w = max(2.0, (math.log10(value) - lo) / span * plot_w)
        parts.append(
            f'<g class="bar" data-key="{key}" data-ns="{value:.0f}">'
            f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" font-size="12" '
            f'font-family="monospace">{key.replace("_", ".")}</text>'
            f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="#0072B2"/>'
            f'<text x="{left + w + 6:.1f}" y="{y + 15}" font-size="12" font-family="monospace">'
            f"{_fmt_ns(value)}</text></g>"
        )
    parts.append(
        f'<text x="{left}" y="{height - 6}" font-size="10" fill="#666" font-family="monospace">'
        f"push-to-sink latency, log scale; n={result.n:,}</text>"
    )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="rxbus-latency" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}"><rect width="100%" height="100%" '
        f'fill="white"/>{"".join(parts)}</svg>'
    )
    return SvgImage(svg, width, height)


def _fmt_ns(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:,.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:,.1f} µs"
    return f"{ns:,.0f} ns"


def summarize(results: Sequence[BenchResult]) -> dict[str, Any]:
    """JSON-native summary: every result plus the median ratio."""
    return {
        "results": [r.as_dict() for r in results],
        "median_ratio": statistics.median(r.ratio for r in results) if results else None,
    }
