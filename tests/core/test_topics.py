"""Topics and patterns, property-tested against a straightforward reference matcher."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxbus import InvalidTopicError
from rxbus.topics import compile_pattern, matches, validate_pattern, validate_topic


def reference_match(pattern: list[str], topic: list[str]) -> bool:
    """Segment-by-segment recursion: the definition, without regular expressions."""
    if not pattern:
        return not topic
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(reference_match(rest, topic[i:]) for i in range(len(topic) + 1))
    if not topic:
        return False
    return (head == "*" or head == topic[0]) and reference_match(rest, topic[1:])


alphabet = st.sampled_from(["a", "b", "c", "hook", "x-1", "Z_9"])
topic_lists = st.lists(alphabet, min_size=1, max_size=6)
pattern_lists = st.lists(alphabet | st.just("*") | st.just("**"), min_size=1, max_size=6)


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("hook.*", "hook.tool", True),
        ("hook.*", "hook", False),
        ("hook.*", "hook.tool.pre", False),
        ("hook.**", "hook", True),
        ("hook.**", "hook.tool", True),
        ("hook.**", "hook.tool.pre", True),
        ("hook.**", "hooks", False),
        ("**", "anything.at.all", True),
        ("*.error", "build.error", True),
        ("*.error", "error", False),
        ("a.**.z", "a.z", True),
        ("a.**.z", "a.b.c.z", True),
        ("hook.tool", "hook.tool", True),
        ("hook.tool", "hook.tools", False),
    ],
)
def test_contract_examples(pattern: str, topic: str, expected: bool) -> None:
    assert matches(pattern, topic) is expected
    assert compile_pattern(pattern)(topic) is expected


@settings(max_examples=2_000, deadline=None)
@given(pattern_lists, topic_lists)
def test_matches_agrees_with_reference(pattern: list[str], topic: list[str]) -> None:
    assert matches(".".join(pattern), ".".join(topic)) == reference_match(pattern, topic)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_validation_accepts_exactly_the_grammar(text: str) -> None:
    segments = text.split(".")
    valid = (
        0 < len(text) <= 255
        and len(segments) <= 16
        and all(s and all(c.isascii() and (c.isalnum() or c in "_-") for c in s) for s in segments)
    )
    if valid:
        assert validate_topic(text) == text
    else:
        with pytest.raises(InvalidTopicError):
            validate_topic(text)


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ("", "must not be empty"),
        ("a..b", "empty segment at position 1"),
        ("a.b!", "invalid segment 'b!'"),
        ("a.***", "invalid segment '***'"),
        (".".join(["a"] * 17), "17 segments"),
        ("a" * 256, "256 characters"),
        (None, "must be a str"),
    ],
)
def test_invalid_patterns_raise_naming_the_value(bad: object, needle: str) -> None:
    with pytest.raises(InvalidTopicError, match=re.escape(needle)):
        validate_pattern(bad)
    with pytest.raises(InvalidTopicError):
        matches(bad, "a")  # type: ignore[arg-type]


def test_wildcards_are_not_valid_topics() -> None:
    with pytest.raises(InvalidTopicError, match="invalid segment"):
        validate_topic("hook.*")


def test_many_double_wildcards_do_not_backtrack() -> None:
    """A pattern of fifteen ``**`` against a topic that does not match answers at once; the
    regex this replaced backtracked for minutes (pytest-timeout would fail this test)."""
    pattern = ".".join(["**"] * 15 + ["x"])
    topic = ".".join(["a"] * 15 + ["b"])
    assert matches(pattern, topic) is False
    assert compile_pattern(pattern)(topic) is False
    assert matches(pattern, ".".join(["a"] * 15 + ["x"])) is True
