"""The suite's one wait helper: a deadline always, and polls that back off unless told not to."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.conftest import POLL_FIRST, POLL_MAX, _pauses, wait_until, wait_until_async


def test_pauses_grow_by_half_from_the_first_to_the_cap() -> None:
    pauses = list(itertools.islice(_pauses(None), 12))
    assert pauses[0] == POLL_FIRST
    assert all(b == min(a * 1.5, POLL_MAX) for a, b in itertools.pairwise(pauses))
    assert pauses[-1] == POLL_MAX  # reached within a dozen polls (about 0.4 s)


def test_a_given_interval_is_kept() -> None:
    assert list(itertools.islice(_pauses(0.02), 5)) == [0.02] * 5


def test_a_condition_that_holds_returns_without_a_pause() -> None:
    calls = []
    assert wait_until(lambda: calls.append(1) or True, 0) is True
    assert calls == [1]


def test_the_deadline_fails_naming_what_was_awaited() -> None:
    with pytest.raises(AssertionError, match=r"timed out after 0\.05s waiting for the moon"):
        wait_until(lambda: False, 0.05, "the moon")


def test_a_raising_predicate_ends_the_wait() -> None:
    def died() -> bool:
        raise RuntimeError("the process died")

    with pytest.raises(RuntimeError, match="the process died"):
        wait_until(died, 10)


def test_the_async_wait_has_the_same_deadline_and_message() -> None:
    async def main() -> None:
        assert await wait_until_async(lambda: True, 0) is True
        with pytest.raises(AssertionError, match=r"timed out after 0\.05s waiting for the tide"):
            await wait_until_async(lambda: False, 0.05, "the tide")

    asyncio.run(main())
