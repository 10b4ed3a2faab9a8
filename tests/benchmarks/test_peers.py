"""rxbus next to its peers: pyee, blinker and a raw reactivex Subject (issue 7, point 5).

Four scenarios, each with a plain-Python floor measured in the same run:

- ``fanout1`` / ``fanout10``: one topic, 1 or 10 handlers; publish ``(topic, data)`` (rxbus
  also publishes a prebuilt event, one per topic made outside the clock: ``rxbus-prebuilt``).
- ``wildcards20``: 20 topics ``app.sNN.changed`` and five pattern subscriptions (``app.*.changed``,
  ``app.s07.*``, ``app.**``, ``app.s03.changed``, ``**``). pyee and blinker have no wildcards,
  so their handlers are connected to every concrete topic a pattern matches (expanded up front,
  which favours them); the raw Subject filters with the compiled pattern; the floor looks up a
  pre-resolved ``dict[topic, handlers]``.
- ``async``: end to end into one ``async def`` handler on the running loop: rxbus ``mode="async"``,
  pyee ``AsyncIOEventEmitter``, ``await signal.send_async``, a Subject whose observer starts a
  task; the floor awaits the handler directly. The clock stops when the handler has run for
  every event.

Every run checks the exact delivery count, so a library (or rxbus) that loses events cannot post
a number. :func:`run_interleaved` runs all libraries round-robin in one process, rotating their
order every round, and reports medians; ``python -m tests.benchmarks.test_peers`` prints the
table in docs/performance.md (ratios to the floor, machine and versions). No timing is asserted.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import pytest

from rxbus.topics import compile_pattern
from tests.conftest import wait_until_async

LIBS = ("floor", "rxbus", "rxbus-prebuilt", "pyee", "blinker", "reactivex")
WILDCARD_TOPICS = tuple(f"app.s{k:02d}.changed" for k in range(20))
WILDCARD_PATTERNS = ("app.*.changed", "app.s07.*", "app.**", "app.s03.changed", "**")


@dataclass(frozen=True)
class Scenario:
    """Which events are published and which patterns are subscribed."""

    name: str
    topics: tuple[str, ...]
    patterns: tuple[str, ...]
    is_async: bool = False

    def events(self, n: int) -> list[tuple[str, dict[str, int]]]:
        return [(self.topics[i % len(self.topics)], {"i": i}) for i in range(n)]

    def expected(self, n: int) -> int:
        """Deliveries ``n`` events must produce: one per matching subscription."""
        preds = [compile_pattern(p) for p in self.patterns]
        return sum(sum(1 for p in preds if p(t)) for t, _ in self.events(n))


SCENARIOS = {
    "fanout1": Scenario("fanout1", ("orders.created",), ("orders.created",)),
    "fanout10": Scenario("fanout10", ("orders.created",), ("orders.created",) * 10),
    "wildcards20": Scenario("wildcards20", WILDCARD_TOPICS, WILDCARD_PATTERNS),
    "async": Scenario("async", ("orders.created",), ("orders.created",), is_async=True),
}


def _expand(pattern: str, topics: tuple[str, ...]) -> list[str]:
    match = compile_pattern(pattern)
    return [t for t in topics if match(t)]


class Counter:
    """Counts handler calls; every library calls the same ``hit``."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def hit(self, *_: Any, **__: Any) -> None:
        self.n += 1

    async def ahit(self, *_: Any, **__: Any) -> None:
        self.n += 1

    def handler(self) -> Callable[..., None]:
        """A new function per subscription: pyee and blinker ignore a handler added twice."""

        def handler(*_: Any, **__: Any) -> None:
            self.n += 1

        return handler


# -- one setup per library: returns a function publishing a batch of events -----------------

Publish = Callable[[list[tuple[str, dict[str, int]]]], Any]


def _setup_sync(lib: str, sc: Scenario, counter: Counter) -> tuple[Publish, Callable[[], Any]]:
    """``(publish_batch, close)`` for a synchronous scenario."""
    handlers = [(p, counter.handler()) for p in sc.patterns]
    if lib == "floor":
        routes = {t: [h for p, h in handlers if compile_pattern(p)(t)] for t in sc.topics}

        def floor(batch: list[tuple[str, dict[str, int]]]) -> None:
            for topic, data in batch:
                for handler in routes[topic]:
                    handler(data)

        return floor, lambda: None
    if lib in ("rxbus", "rxbus-prebuilt"):
        from rxbus import Event, EventBus

        bus = EventBus(name="peers")
        for i, (p, h) in enumerate(handlers):
            bus.subscribe(h, topic=p, name=f"h{i}")
        publish = bus.publish

        def rxbus_(batch: list[tuple[str, dict[str, int]]]) -> None:
            for topic, data in batch:
                publish(topic, data)

        # an event built once per topic, outside the clock: what publish(event) costs
        prebuilt = {t: Event(topic=t, data={"i": 0}) for t in sc.topics}

        def rxbus_prebuilt(batch: list[tuple[str, dict[str, int]]]) -> None:
            for topic, _ in batch:
                publish(prebuilt[topic])

        return (rxbus_ if lib == "rxbus" else rxbus_prebuilt), bus.close
    if lib == "pyee":
        from pyee import EventEmitter

        ee = EventEmitter()
        for p, h in handlers:
            for t in _expand(p, sc.topics):
                ee.add_listener(t, h)
        emit = ee.emit

        def pyee_(batch: list[tuple[str, dict[str, int]]]) -> None:
            for topic, data in batch:
                emit(topic, data)

        return pyee_, lambda: None
    if lib == "blinker":
        from blinker import Namespace

        ns = Namespace()
        for p, h in handlers:
            for t in _expand(p, sc.topics):
                ns.signal(t).connect(h, weak=False)
        signals = {t: ns.signal(t).send for t in sc.topics}

        def blinker_(batch: list[tuple[str, dict[str, int]]]) -> None:
            for topic, data in batch:
                signals[topic](data)

        return blinker_, lambda: None
    if lib == "reactivex":
        from reactivex import operators as rx
        from reactivex.subject import Subject

        subject: Subject[tuple[str, dict[str, int]]] = Subject()
        for p, h in handlers:
            match = compile_pattern(p)
            subject.pipe(rx.filter(lambda item, match=match: match(item[0]))).subscribe(h)
        on_next = subject.on_next

        def reactivex_(batch: list[tuple[str, dict[str, int]]]) -> None:
            for item in batch:
                on_next(item)

        return reactivex_, subject.on_completed
    raise ValueError(f"unknown library {lib!r}; expected one of {LIBS}")


async def _wait_for(counter: Counter, target: int, timeout: float = 30.0) -> None:
    await wait_until_async(lambda: counter.n >= target, timeout, f"{target} deliveries", interval=0)


async def _setup_async(
    lib: str, sc: Scenario, counter: Counter, queue: int
) -> tuple[Callable[[list[tuple[str, dict[str, int]]]], Awaitable[None]], Callable[[], Any]]:
    """``(publish_batch_and_wait, aclose)``, created on the running loop."""
    ahit = counter.ahit
    topic0 = sc.topics[0]

    async def done(batch_len: int, before: int) -> None:
        await _wait_for(counter, before + batch_len)

    if lib == "floor":

        async def floor(batch: list[tuple[str, dict[str, int]]]) -> None:
            for _, data in batch:
                await ahit(data)

        return floor, _noop
    if lib in ("rxbus", "rxbus-prebuilt"):
        from rxbus import Event, EventBus

        bus = EventBus(name="peers-async")
        bus.subscribe(ahit, topic=topic0, mode="async", queue_size=queue, name="h")
        publish = bus.publish
        prebuilt = Event(topic=topic0, data={"i": 0})  # built outside the clock

        async def rxbus_(batch: list[tuple[str, dict[str, int]]]) -> None:
            before = counter.n
            if lib == "rxbus":
                for topic, data in batch:
                    publish(topic, data)
            else:
                for _ in batch:
                    publish(prebuilt)
            await done(len(batch), before)

        return rxbus_, bus.aclose
    if lib == "pyee":
        from pyee.asyncio import AsyncIOEventEmitter

        ee = AsyncIOEventEmitter(loop=asyncio.get_running_loop())
        ee.add_listener(topic0, ahit)
        emit = ee.emit

        async def pyee_(batch: list[tuple[str, dict[str, int]]]) -> None:
            before = counter.n
            for topic, data in batch:
                emit(topic, data)
            await done(len(batch), before)

        return pyee_, _noop
    if lib == "blinker":
        from blinker import Namespace

        signal = Namespace().signal(topic0)
        signal.connect(ahit, weak=False)
        send = signal.send_async

        async def blinker_(batch: list[tuple[str, dict[str, int]]]) -> None:
            for _, data in batch:
                await send(data)

        return blinker_, _noop
    if lib == "reactivex":
        from reactivex.subject import Subject

        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()

        def start(item: tuple[str, dict[str, int]]) -> None:
            task = loop.create_task(ahit(item[1]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        subject: Subject[tuple[str, dict[str, int]]] = Subject()
        subject.subscribe(start)
        on_next = subject.on_next

        async def reactivex_(batch: list[tuple[str, dict[str, int]]]) -> None:
            before = counter.n
            for item in batch:
                on_next(item)
            await done(len(batch), before)

        return reactivex_, subject.on_completed
    raise ValueError(f"unknown library {lib!r}; expected one of {LIBS}")


async def _noop() -> None:
    return None


def run_once(lib: str, sc: Scenario, n: int) -> float:
    """Publish ``n`` events once; return ns per event. Raises if any delivery is missing."""
    counter = Counter()
    batch = sc.events(n)
    expected = sc.expected(n)
    if sc.is_async:

        async def main() -> int:
            go, close = await _setup_async(lib, sc, counter, queue=n + 1)
            t0 = time.perf_counter_ns()
            await go(batch)
            elapsed = time.perf_counter_ns() - t0
            result = close()
            if asyncio.iscoroutine(result):
                await result
            return elapsed

        elapsed = asyncio.run(main())
    else:
        go, close = _setup_sync(lib, sc, counter)
        t0 = time.perf_counter_ns()
        go(batch)
        elapsed = time.perf_counter_ns() - t0
        close()
    if counter.n != expected:
        raise AssertionError(f"{lib} {sc.name}: {counter.n} deliveries, expected {expected}")
    return elapsed / n


def run_interleaved(n: int = 5_000, rounds: int = 5) -> dict[str, dict[str, list[float]]]:
    """Every scenario x library, ``rounds`` times, the library order rotated each round.

    Returns:
        ``{scenario: {lib: [ns per event, one per round]}}``; every run's deliveries verified.
    """
    out: dict[str, dict[str, list[float]]] = {s: {lib: [] for lib in LIBS} for s in SCENARIOS}
    for r in range(rounds):
        order = LIBS[r % len(LIBS) :] + LIBS[: r % len(LIBS)]
        for name, sc in SCENARIOS.items():
            for lib in order:
                out[name][lib].append(run_once(lib, sc, n))
    return out


def versions() -> dict[str, str]:
    """Python, platform and every compared package's version."""
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": f"{_cpu_model()}, {os.cpu_count()} cores",
    }
    import rxbus

    info["rxbus"] = rxbus.__version__
    for pkg in ("pyee", "blinker", "reactivex"):
        try:
            info[pkg] = version(pkg)
        except Exception:  # a source checkout without an installed distribution
            info[pkg] = "source"
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def markdown(results: dict[str, dict[str, list[float]]], n: int, rounds: int) -> str:
    """The table in docs/performance.md: median ns/event of the floor, and each library as a ratio to it."""
    v = versions()
    lines = [
        f"| scenario ({n:,} events, median of {rounds}) | floor ns/event | "
        + " | ".join(lib for lib in LIBS if lib != "floor")
        + " |",
        "|---|---:|" + "---:|" * (len(LIBS) - 1),
    ]
    for name, per_lib in results.items():
        floor = statistics.median(per_lib["floor"])
        cells = [
            f"{statistics.median(per_lib[lib]) / floor:,.1f}x" for lib in LIBS if lib != "floor"
        ]
        lines.append(f"| {name} | {floor:,.0f} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"Python {v['python']} on {v['platform']} ({v['cpu']}); rxbus {v['rxbus']}, "
        f"pyee {v['pyee']}, blinker {v['blinker']}, reactivex {v['reactivex']}. "
        "Lower is better; 1.0x is the plain-Python floor."
    )
    return "\n".join(lines)


# -- tests -----------------------------------------------------------------------------------


def test_interleaved_peer_table(bench: Any) -> None:
    """All libraries round-robin in one run; each delivery count checked; ratios reported."""
    n, rounds = (5_000, 3) if bench.enabled else (300, 1)
    results = bench.benchmark.pedantic(
        run_interleaved, kwargs={"n": n, "rounds": rounds}, rounds=1, iterations=1
    )
    for name, per_lib in results.items():
        assert set(per_lib) == set(LIBS)
        assert all(len(v) == rounds and all(x > 0 for x in v) for v in per_lib.values())
        for lib in LIBS:
            bench.record(f"interleaved_{name}.{lib}", statistics.median(per_lib[lib]))
            if lib != "floor":
                bench.compare(
                    f"peers {name}: {lib} (interleaved)",
                    subject=f"interleaved_{name}.{lib}",
                    floor=f"interleaved_{name}.floor",
                )
    table = markdown(results, n, rounds)
    assert table.count("\n|") == len(SCENARIOS) + 1


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_expected_counts_are_what_the_patterns_imply(scenario: str) -> None:
    """The expected delivery counts are derived, not guessed: check them by hand."""
    assert SCENARIOS["fanout1"].expected(100) == 100
    assert SCENARIOS["fanout10"].expected(100) == 1_000
    # each of 20 topics: app.*.changed, app.**, ** always; s07 and s03 one more each
    assert SCENARIOS["wildcards20"].expected(20) == 20 * 3 + 2
    assert SCENARIOS[scenario].expected(0) == 0


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_peer_scenario(bench: Any, scenario: str, lib: str) -> None:
    """One library on one scenario under pytest-benchmark, grouped with its floor."""
    sc = SCENARIOS[scenario]
    n = 1_000
    counter = Counter()
    batch = sc.events(n)
    if sc.is_async:
        loop = asyncio.new_event_loop()
        try:
            go, close = loop.run_until_complete(_setup_async(lib, sc, counter, queue=n + 1))
            calls = bench.measure(
                f"peers_{scenario}.{lib}", lambda: loop.run_until_complete(go(batch)), ops=n
            )
            result = close()
            if asyncio.iscoroutine(result):
                loop.run_until_complete(result)
        finally:
            loop.close()
    else:
        go, close = _setup_sync(lib, sc, counter)
        calls = bench.measure(f"peers_{scenario}.{lib}", lambda: go(batch), ops=n)
        close()
    assert counter.n == calls * sc.expected(n)
    if lib != "floor":
        bench.compare(
            f"peers {scenario}: {lib} (pytest-benchmark)",
            subject=f"peers_{scenario}.{lib}",
            floor=f"peers_{scenario}.floor",
        )


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    rounds_ = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    print(markdown(run_interleaved(count, rounds_), count, rounds_))
