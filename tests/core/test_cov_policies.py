"""Overflow.parse and RetryPolicy: what they accept, what they refuse and how they say so."""

from __future__ import annotations

from typing import Any

import pytest

from rxbus import Overflow, RetryPolicy


class TestOverflowParse:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (Overflow.LATEST, Overflow.LATEST),
            ("DROP_OLDEST", Overflow.DROP_OLDEST),
            ("error", Overflow.ERROR),
        ],
    )
    def test_accepts_members_and_names_in_any_case(self, value: Any, expected: Overflow) -> None:
        """parse returns a member unchanged and maps a value string case-insensitively."""
        assert Overflow.parse(value) is expected

    @pytest.mark.parametrize("value", ["sometimes", 3, None])
    def test_refuses_anything_else_listing_the_valid_values(self, value: Any) -> None:
        """parse raises ValueError naming the value and every valid one, for strings and others."""
        with pytest.raises(ValueError, match=r"overflow must be one of \['block'.*got") as info:
            Overflow.parse(value)
        assert repr(value) in str(info.value)


class TestRetryPolicyValidation:
    @pytest.mark.parametrize(
        ("kwargs", "needle"),
        [
            ({"max_attempts": 0}, "max_attempts must be an int >= 1, got 0"),
            ({"max_attempts": 2.5}, "max_attempts must be an int >= 1, got 2.5"),
            ({"initial_delay": -1}, "initial_delay must be >= 0, got -1"),
            ({"max_delay": -0.5}, "max_delay must be >= 0, got -0.5"),
            ({"multiplier": 0.5}, "multiplier must be >= 1, got 0.5"),
            ({"jitter": 1.5}, "jitter must be between 0 and 1, got 1.5"),
            ({"jitter": -0.1}, "jitter must be between 0 and 1, got -0.1"),
        ],
    )
    def test_bad_settings_raise_naming_the_field_and_value(
        self, kwargs: dict[str, Any], needle: str
    ) -> None:
        """Each out-of-range setting raises ValueError naming the field, the rule and the value."""
        with pytest.raises(ValueError, match=needle.replace(".", r"\.")):
            RetryPolicy(**kwargs)

    def test_a_single_exception_type_becomes_a_tuple(self) -> None:
        """retry_on=SomeError is stored as (SomeError,), ready for isinstance checks."""
        assert RetryPolicy(retry_on=KeyError).retry_on == (KeyError,)
        assert RetryPolicy(retry_on=(KeyError, OSError)).retry_on == (KeyError, OSError)


class TestRetryPolicyDelay:
    def test_delays_grow_by_the_multiplier_up_to_the_cap(self) -> None:
        """delay(k) is initial_delay * multiplier**(k-1), capped at max_delay."""
        policy = RetryPolicy(initial_delay=1, multiplier=2, max_delay=5)
        assert [policy.delay(k) for k in (1, 2, 3, 4)] == [1, 2, 4, 5]

    def test_jitter_spreads_the_delay_around_its_centre(self) -> None:
        """With jitter j, random 0 gives (1-j) times the delay, 0.5 the delay, near 1 (1+j) times."""
        policy = RetryPolicy(initial_delay=2, multiplier=1, jitter=0.5)
        assert policy.delay(1, 0.0) == 1.0
        assert policy.delay(1, 0.5) == 2.0
        assert policy.delay(1, 1.0) == 3.0
