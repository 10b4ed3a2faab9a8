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
from collections.abc import Callable, Iterable
from functools import lru_cache

from rxbus.errors import InvalidTopicError

# Not ``typing.TYPE_CHECKING``: ``rxbus publish`` in a shell hook must not pay for typing.
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

__all__ = [
    "MAX_SEGMENTS",
    "MAX_TOPIC_LENGTH",
    "PatternTrie",
    "compile_pattern",
    "default_type",
    "is_wildcard",
    "known_topic_type",
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

known_topic_type = _valid_topics.get
"""The default type (last segment) of a topic already validated, else ``None``: one dict
lookup, for the publish path."""


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
    # called only for a value the grammar refused: one of its segments is at fault
    index, segment = next(
        (i, seg)
        for i, seg in enumerate(segments)
        if not (allow_wildcards and seg in ("*", "**")) and _SEGMENT.fullmatch(seg) is None
    )
    if segment == "":
        return f"{kind} {value!r} has an empty segment at position {index}; expected {rule}"
    return f"{kind} {value!r} has an invalid segment {segment!r}; expected {rule}"


class _Node:
    __slots__ = ("children", "double", "loops", "single", "values")

    def __init__(self, loops: bool = False) -> None:
        self.children: dict[str, _Node] = {}
        self.single: _Node | None = None  # the "*" child
        self.double: _Node | None = None  # the "**" child
        self.values: list[Any] = []
        self.loops = loops  # a "**" node: it takes any segment and stays where it is


class PatternTrie:
    """Subscribed patterns in a tree of segments, like the NATS server's sublist.

    :meth:`match` finds the values of every pattern matching a topic by walking the topic's
    segments down the tree, so its cost grows with the topic's depth and the wildcards on its
    path, not with the number of patterns subscribed. A node is live at most once per segment,
    so patterns with many ``**`` cannot make it exponential.

        >>> trie = PatternTrie()
        >>> trie.add("hook.*", "a"); trie.add("hook.**", "b"); trie.add("build.error", "c")
        >>> sorted(trie.match("hook.tool")), trie.match("hook"), trie.match("cli.run")
        (['a', 'b'], ['b'], [])
    """

    __slots__ = ("_root",)

    def __init__(self) -> None:
        self._root = _Node()

    def add(self, pattern: str, value: Any) -> None:
        """Subscribe ``value`` under ``pattern`` (validated)."""
        node = self._root
        for segment in _segments(pattern):
            node = _child(node, segment)
        node.values.append(value)

    def remove(self, pattern: str, value: Any) -> None:
        """Remove one ``value`` under ``pattern``, pruning nodes left empty."""
        path = [self._root]
        segments = _segments(pattern)
        for segment in segments:
            nxt = _step(path[-1], segment)
            if nxt is None:
                return
            path.append(nxt)
        values = path[-1].values
        for i, v in enumerate(values):
            if v is value:
                del values[i]
                break
        for depth in range(len(segments), 0, -1):
            node = path[depth]
            if node.values or node.children or node.single or node.double:
                break
            parent, segment = path[depth - 1], segments[depth - 1]
            if segment == "*":
                parent.single = None
            elif segment == "**":
                parent.double = None
            else:
                del parent.children[segment]

    def match(self, topic: str) -> list[Any]:
        """The values of every pattern that matches ``topic``, each pattern's once.

        The tree is run as an automaton, one set of live nodes per segment: a segment moves a
        node to its child of that name and to its ``*`` child; a ``**`` node (reached without
        taking a segment) also stays live on every segment, as ``**`` takes zero or more.
        """
        live = _with_doubles((self._root,))
        for segment in topic.split("."):
            step = []
            for node in live:
                child = node.children.get(segment)
                if child is not None:
                    step.append(child)
                if node.single is not None:
                    step.append(node.single)
                if node.loops:
                    step.append(node)
            if not step:
                return []
            live = _with_doubles(step)
        found: list[Any] = []
        for node in live:
            found.extend(node.values)
        return found


def _with_doubles(nodes: Iterable[_Node]) -> dict[_Node, None]:
    """``nodes`` and the ``**`` children they reach without taking a segment, each once, in
    order (a dict as an ordered set)."""
    live: dict[_Node, None] = {}
    for node in nodes:
        while node is not None and node not in live:
            live[node] = None
            node = node.double  # type: ignore[assignment]
    return live


def _segments(pattern: str) -> list[str]:
    compiled = _compiled(pattern)
    return pattern.split(".") if compiled is None else list(compiled)


def _child(node: _Node, segment: str) -> _Node:
    if segment == "*":
        if node.single is None:
            node.single = _Node()
        return node.single
    if segment == "**":
        if node.double is None:
            node.double = _Node(loops=True)
        return node.double
    child = node.children.get(segment)
    if child is None:
        child = node.children[segment] = _Node()
    return child


def _step(node: _Node, segment: str) -> _Node | None:
    if segment == "*":
        return node.single
    if segment == "**":
        return node.double
    return node.children.get(segment)
