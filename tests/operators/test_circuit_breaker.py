"""circuit_breaker(handler, failure_threshold, recovery_timeout): closed, open, half-open, closed."""

from __future__ import annotations

import pytest
from reactivex.testing import ReactiveTest, TestScheduler

import rxbus.operators as ops
from rxbus.deadletter import DeadLetter
from rxbus.operators import CircuitOpenError, CircuitState

on_next, on_error, on_completed, subscribe = (
    ReactiveTest.on_next,
    ReactiveTest.on_error,
    ReactiveTest.on_completed,
    ReactiveTest.subscribe,
)


class Service:
    """Fails while ``down``; records the virtual time of every call."""

    def __init__(self, scheduler: TestScheduler) -> None:
        self.scheduler = scheduler
        self.down = True
        self.calls: list[float] = []

    def __call__(self, item: int) -> str:
        self.calls.append(self.scheduler.clock)
        if self.down:
            raise ConnectionError(f"down for {item}")
        return f"ok {item}"


def test_full_cycle_closed_open_half_open_closed(
    scheduler: TestScheduler, letters: list[DeadLetter]
) -> None:
    """Two failures open it; items while open are refused without calling the handler; after
    the recovery timeout one trial call closes it again."""
    service = Service(scheduler)
    changes: list[tuple[CircuitState, CircuitState]] = []
    breaker = ops.circuit_breaker(
        service,
        2,
        10.0,
        dead_letters=letters.append,
        on_state_change=lambda a, b: changes.append((a, b)),
    )
    xs = scheduler.create_hot_observable(
        on_next(210, 1),
        on_next(211, 2),  # second failure: opens at 211
        on_next(212, 3),  # refused
        on_next(220, 4),  # refused (9 s after opening)
        on_next(221, 5),  # half-open trial, service back: closes
        on_next(222, 6),
        on_completed(230),
    )

    def heal(*_: object) -> None:
        service.down = False

    scheduler.schedule_absolute(220.5, heal)
    result = scheduler.start(lambda: xs.pipe(breaker))
    assert result.messages == [on_next(221, "ok 5"), on_next(222, "ok 6"), on_completed(230)]
    assert service.calls == [210, 211, 221, 222]
    assert [(d.event, type(d.error), d.attempts) for d in letters] == [
        (1, ConnectionError, 1),
        (2, ConnectionError, 1),
        (3, CircuitOpenError, 0),
        (4, CircuitOpenError, 0),
    ]
    assert changes == [
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]
    assert breaker.stats == {
        "state": "closed",
        "calls": 4,
        "succeeded": 2,
        "failed": 2,
        "rejected": 2,
        "opened": 1,
    }


def test_failed_trial_reopens_for_another_timeout(scheduler: TestScheduler, letters) -> None:
    """A failing half-open trial opens the circuit again from that moment."""
    service = Service(scheduler)
    breaker = ops.circuit_breaker(service, 1, 5.0, dead_letters=letters.append)
    xs = scheduler.create_hot_observable(
        on_next(210, 1), on_next(215, 2), on_next(219, 3), on_next(220, 4)
    )
    scheduler.start(lambda: xs.pipe(breaker))
    # 210 opens; 215 trial fails, reopens; 219 refused; 220 is the next trial.
    assert service.calls == [210, 215, 220]
    assert breaker.state is CircuitState.OPEN
    assert breaker.stats["opened"] == 3 and breaker.stats["rejected"] == 1


def test_success_resets_consecutive_failures(scheduler: TestScheduler, letters) -> None:
    """Failures must be consecutive: a success in between keeps it closed."""
    flips = iter([True, False, True, False, True])

    def handler(x: int) -> int:
        if next(flips):
            raise OSError(x)
        return x

    breaker = ops.circuit_breaker(handler, 2, 60.0, dead_letters=letters.append)
    xs = scheduler.create_hot_observable(*[on_next(210 + i, i) for i in range(5)])
    result = scheduler.start(lambda: xs.pipe(breaker))
    assert [m.value.value for m in result.messages] == [1, 3]
    assert breaker.state is CircuitState.CLOSED and len(letters) == 3


def test_fallback_handles_refused_items(scheduler: TestScheduler, letters) -> None:
    """While open, the fallback's result is emitted and counted as rejected."""
    service = Service(scheduler)
    breaker = ops.circuit_breaker(
        service, 1, 30.0, fallback=lambda x: f"cached {x}", dead_letters=letters.append
    )
    xs = scheduler.create_hot_observable(on_next(210, 1), on_next(211, 2), on_completed(212))
    result = scheduler.start(lambda: xs.pipe(breaker))
    assert result.messages == [on_next(211, "cached 2"), on_completed(212)]
    assert [d.event for d in letters] == [1]
    assert breaker.stats["rejected"] == 1


def test_failing_fallback_is_dead_lettered(scheduler: TestScheduler, letters) -> None:
    """A fallback that raises makes the item a dead letter; the stream goes on."""
    service = Service(scheduler)

    def fallback(x: int) -> str:
        raise KeyError(x)

    breaker = ops.circuit_breaker(service, 1, 30.0, fallback=fallback, dead_letters=letters.append)
    xs = scheduler.create_hot_observable(on_next(210, 1), on_next(211, 2), on_completed(212))
    result = scheduler.start(lambda: xs.pipe(breaker))
    assert result.messages == [on_completed(212)]
    assert [type(d.error) for d in letters] == [ConnectionError, KeyError]


def test_error_and_dispose(scheduler: TestScheduler) -> None:
    """Source errors pass; disposal unsubscribes."""
    err = RuntimeError("src")
    xs = scheduler.create_hot_observable(on_next(210, 1), on_error(220, err))
    result = scheduler.start(lambda: xs.pipe(ops.circuit_breaker(str, 1, 1.0)))
    assert result.messages == [on_next(210, "1"), on_error(220, err)]
    ys = scheduler.create_hot_observable(on_next(1010, 1), on_next(1030, 2))
    result = scheduler.start(lambda: ys.pipe(ops.circuit_breaker(str, 1, 1.0)), 1000, 1001, 1020)
    assert result.messages == [on_next(1010, "1")]
    assert ys.subscriptions == [subscribe(1001, 1020)]


def test_state_is_shared_across_resubscriptions(scheduler: TestScheduler, letters) -> None:
    """The breaker guards its dependency: a new subscription finds the circuit still open."""
    service = Service(scheduler)
    breaker = ops.circuit_breaker(service, 1, 100.0, dead_letters=letters.append)
    xs = scheduler.create_cold_observable(on_next(10, 1), on_completed(20))
    chain = xs.pipe(breaker)
    chain.subscribe(scheduler=scheduler)
    scheduler.advance_to(50)
    chain.subscribe(scheduler=scheduler)
    scheduler.advance_to(100)
    assert service.calls == [10]
    assert [type(d.error) for d in letters] == [ConnectionError, CircuitOpenError]


@pytest.mark.parametrize(("threshold", "timeout"), [(0, 1.0), (1.5, 1.0), (1, 0), (1, -2)])
def test_bad_arguments(threshold, timeout) -> None:
    """Non-positive thresholds or timeouts fail at once, naming the argument."""
    with pytest.raises(ValueError, match=r"failure_threshold|recovery_timeout"):
        ops.circuit_breaker(str, threshold, timeout)
