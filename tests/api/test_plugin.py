"""The pytest plugin, loaded by its entry point as an installed rxbus would be."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

pytest_plugins = ["pytester"]


def test_the_plugin_is_registered_by_entry_point() -> None:
    [ep] = [ep for ep in entry_points(group="pytest11") if ep.name == "rxbus"]
    assert ep.value == "rxbus.pytest_plugin"


def test_bus_fixture_records_and_closes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_publish(bus, bus_recorder):
            bus.publish("orders.placed", {"id": 1})
            bus_recorder.assert_published("orders.*", data={"id": 1}, count=1)

        def test_closed_after(bus):
            global SEEN
            SEEN = bus

        def test_the_previous_bus_is_closed():
            assert SEEN.closed
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_testbus_fixture_runs_on_virtual_time_and_fails_on_dead_letters(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import rxbus.operators as ops

        def test_batch(testbus):
            got = []
            testbus.subscribe(got.append, ops.batch(seconds=10, max_size=5), mode="thread")
            testbus.publish("a")
            testbus.advance(10)
            assert len(got) == 1 and testbus.now == 10.0
            testbus.assert_published("a", count=1)

        def test_unexpected(testbus):
            testbus.subscribe(lambda e: 1 / 0, mode="thread", name="boom")
            testbus.publish("a")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)  # test_unexpected passes, then fails at teardown
    result.stdout.fnmatch_lines(["*1 unexpected dead letter(s)*", "*boom: ZeroDivisionError*"])


def test_an_unexpected_dead_letter_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        def boom(event):
            raise RuntimeError("handler broke")

        def test_unexpected(bus):
            bus.subscribe(boom, topic="x", name="boom")
            bus.publish("x")

        @pytest.mark.rxbus_allow_dead_letters
        def test_expected(bus):
            bus.subscribe(boom, topic="x", name="boom")
            bus.publish("x")
            assert len(bus.recent_dead_letters()) == 1
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*1 unexpected dead letter(s) on bus 'test:test_unexpected'*",
            "*boom: RuntimeError: handler broke*",
        ]
    )


def test_a_failing_assert_published_shows_the_diff(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_wrong(bus, bus_recorder):
            bus.publish("orders.placed", {"qty": 2})
            bus_recorder.assert_published("orders.*", data={"qty": 3})
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*qty: expected 3, got 2*"])


def test_the_plugin_can_be_disabled(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(bus):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:rxbus")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'bus' not found*"])
