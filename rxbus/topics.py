"""Topic names and patterns.

A topic is 1..16 dot-separated segments of ``[A-Za-z0-9_-]+``, at most 255 characters:
``hook.tool``, ``build.error``, ``agent.42.step``.

A pattern is a topic whose segments may also be ``*`` (exactly one segment) or ``**`` (zero or
more segments)::

    >>> matches("hook.*", "hook.tool"), matches("hook.*", "hook"), matches("hook.**", "hook")
    (True, False, True)
    >>> matches("*.error", "build.error"), matches("**", "any.topic.at.all")
    (True, True)

Patterns are parsed once and cached; matching walks the segments in time proportional to
pattern length times topic length, whatever the pattern (no regular expression to backtrack). The bus goes further: it resolves every subscribed pattern once per *topic*
(see :class:`rxbus.bus.EventBus`), so publish cost does not grow with patterns that do not match.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

from rxbus.errors import InvalidTopicError

__all__ = [
    "MAX_SEGMENTS",
    "MAX_TOPIC_LENGTH",
    "compile_pattern",
    "default_type",
    "is_wildcard",
    "matches",
    "validate_pattern",
    "validate_topic",
]

MAX_TOPIC_LENGTH = 255
MAX_SEGMENTS = 16

_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_TOPIC = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+){0,%d}" % (MAX_SEGMENTS - 1))

# Topics seen valid before, each with its last segment (an event's default type); bounded so
# a stream of unique topics cannot grow it without limit.
_valid_topics: dict[str, str] = {}
_VALID_CACHE_LIMIT = 65_536


def validate_topic(topic: object) -> str:
    """Return ``topic`` if it is a valid topic, else raise :class:`InvalidTopicError`.

    Raises:
        InvalidTopicError: naming the value and the rule it breaks.
    """
    if not isinstance(topic, str):
        raise InvalidTopicError(f"topic must be a str, got {type(topic).__name__}: {topic!r}")
    if topic in _valid_topics:  # a str seen before
        return topic
    if len(topic) > MAX_TOPIC_LENGTH:
        raise InvalidTopicError(
            f"topic {topic[:40]!r}... is {len(topic)} characters; at most {MAX_TOPIC_LENGTH} allowed"
        )
    if _TOPIC.fullmatch(topic) is None:
        raise InvalidTopicError(_explain(topic, allow_wildcards=False))
    if len(_valid_topics) >= _VALID_CACHE_LIMIT:
        _valid_topics.clear()
    _valid_topics[topic] = topic[topic.rfind(".") + 1 :]
    return topic


def default_type(topic: str) -> str:
    """The last segment of a valid ``topic`` (an event's default type), cached.

    Raises:
        InvalidTopicError: if ``topic`` is not a valid topic.
    """
    last = _valid_topics.get(topic) if isinstance(topic, str) else None
    if last is None:
        validate_topic(topic)
        last = topic[topic.rfind(".") + 1 :]
    return last


def validate_pattern(pattern: object) -> str:
    """Return ``pattern`` if it is a valid topic pattern, else raise :class:`InvalidTopicError`."""
    _compiled(pattern)
    return pattern  # type: ignore[return-value]


def is_wildcard(pattern: str) -> bool:
    """True if ``pattern`` contains ``*`` or ``**`` segments."""
    return "*" in pattern


def compile_pattern(pattern: str) -> Callable[[str], bool]:
    """Compile ``pattern`` into a predicate on topics.

    Raises:
        InvalidTopicError: if ``pattern`` is malformed.
    """
    segments = _compiled(pattern)
    if segments is None:
        return pattern.__eq__
    return lambda topic: _match(segments, topic.split("."))


def matches(pattern: str, topic: str) -> bool:
    """True if ``topic`` matches ``pattern``.

    Args:
        pattern: a topic pattern, e.g. ``"hook.*"`` or ``"build.**"``.
        topic: a concrete topic, e.g. ``"hook.tool"``.

    Raises:
        InvalidTopicError: if ``pattern`` is malformed.
    """
    segments = _compiled(pattern)
    if segments is None:
        return pattern == topic
    return _match(segments, topic.split("."))


def _match(pattern: tuple[str, ...], topic: list[str]) -> bool:
    """Segment matching in O(len(pattern) * len(topic)), whatever the pattern.

    A regular expression with several ``**`` backtracks exponentially on a topic that does not
    match (``a.**.**.**...`` took seconds); this walks the segments once, keeping the set of
    topic positions each pattern prefix can reach.
    """
    reach = {0}
    n = len(topic)
    for segment in pattern:
        if segment == "**":
            reach = set(range(min(reach), n + 1))
        elif segment == "*":
            reach = {i + 1 for i in reach if i < n}
        else:
            reach = {i + 1 for i in reach if i < n and topic[i] == segment}
        if not reach:
            return False
    return n in reach


@lru_cache(maxsize=4096)
def _compiled(pattern: object) -> tuple[str, ...] | None:
    """The segments of a wildcard pattern (runs of ``**`` merged), ``None`` for a literal one."""
    if not isinstance(pattern, str):
        raise InvalidTopicError(
            f"topic pattern must be a str, got {type(pattern).__name__}: {pattern!r}"
        )
    if len(pattern) > MAX_TOPIC_LENGTH:
        raise InvalidTopicError(
            f"topic pattern {pattern[:40]!r}... is {len(pattern)} characters; "
            f"at most {MAX_TOPIC_LENGTH} allowed"
        )
    segments = pattern.split(".")
    if len(segments) > MAX_SEGMENTS or not all(
        s in ("*", "**") or _SEGMENT.fullmatch(s) for s in segments
    ):
        raise InvalidTopicError(_explain(pattern, allow_wildcards=True))
    if "*" not in pattern:
        return None
    merged: list[str] = []
    for segment in segments:
        if not (segment == "**" and merged and merged[-1] == "**"):
            merged.append(segment)
    return tuple(merged)


def _explain(value: str, *, allow_wildcards: bool) -> str:
    kind = "topic pattern" if allow_wildcards else "topic"
    rule = (
        "1..16 dot-separated segments of [A-Za-z0-9_-]+"
        + (", '*' or '**'" if allow_wildcards else "")
        + f", at most {MAX_TOPIC_LENGTH} characters"
    )
    if value == "":
        return f"{kind} must not be empty; expected {rule}"
    segments = value.split(".")
    if len(segments) > MAX_SEGMENTS:
        return f"{kind} {value!r} has {len(segments)} segments; expected {rule}"
    for index, segment in enumerate(segments):
        if allow_wildcards and segment in ("*", "**"):
            continue
        if segment == "":
            return f"{kind} {value!r} has an empty segment at position {index}; expected {rule}"
        if _SEGMENT.fullmatch(segment) is None:
            return f"{kind} {value!r} has an invalid segment {segment!r}; expected {rule}"
    return f"{kind} {value!r} is invalid; expected {rule}"
