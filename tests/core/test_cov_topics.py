"""Topics: the validation cache, error messages for wildcard patterns, and PatternTrie edges."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxbus import InvalidTopicError
from rxbus.topics import (
    PatternTrie,
    default_type,
    known_topic_type,
    matches,
    validate_pattern,
    validate_topic,
)


class TestValidationCache:
    def test_the_cache_of_valid_topics_starts_again_when_full(self) -> None:
        """After 65,536 distinct valid topics the cache is emptied, and validation still works."""
        first = "cachefill.first"
        validate_topic(first)
        assert known_topic_type(first) == "first"
        for i in range(65_536):
            validate_topic(f"cachefill.t{i}")
        assert known_topic_type(first) is None  # forgotten: the cache started again
        assert validate_topic(first) == first and known_topic_type(first) == "first"
        with pytest.raises(InvalidTopicError):
            validate_topic("cachefill..bad")

    def test_default_type_of_a_known_topic_is_its_last_segment(self) -> None:
        """default_type answers from the cache for a topic validated before, and validates others."""
        validate_topic("agent.42.step")
        assert default_type("agent.42.step") == "step"
        assert default_type("never.seen.before9") == "before9"
        with pytest.raises(InvalidTopicError, match="has an empty segment at position 1"):
            default_type("a..b")


class TestPatternErrors:
    def test_an_empty_segment_after_a_wildcard_is_named(self) -> None:
        """A pattern error skips valid wildcard segments and names the empty one's position."""
        with pytest.raises(
            InvalidTopicError, match=r"'hook\.\*\.\*\*\.' has an empty segment at position 3"
        ):
            validate_pattern("hook.*.**.")

    def test_a_bad_segment_after_a_wildcard_is_named(self) -> None:
        """A pattern error names an invalid segment that follows a wildcard, and lists '*'/'**'."""
        with pytest.raises(
            InvalidTopicError, match=r"invalid segment 'b c'; expected .*'\*' or '\*\*'"
        ):
            validate_pattern("**.b c")


class TestPatternTrie:
    def test_removing_an_unknown_pattern_changes_nothing(self) -> None:
        """remove() of a pattern never added (no such path in the tree) is a no-op."""
        trie = PatternTrie()
        trie.add("a.b", "v")
        trie.remove("a.c.d", "v")
        trie.remove("x.*", "v")
        assert trie.match("a.b") == ["v"]

    def test_removing_a_value_not_under_the_pattern_keeps_the_others(self) -> None:
        """remove() of a value that the pattern does not hold leaves the pattern's values intact."""
        trie = PatternTrie()
        trie.add("a.*", "v")
        trie.remove("a.*", "other")
        assert trie.match("a.x") == ["v"]

    def test_removing_the_last_value_prunes_wildcard_nodes(self) -> None:
        """Removing the only values under '*' and '**' paths leaves a trie that matches nothing."""
        trie = PatternTrie()
        trie.add("a.*.c", "one")
        trie.add("a.**", "two")
        trie.remove("a.*.c", "one")
        trie.remove("a.**", "two")
        assert trie.match("a.b.c") == [] and trie.match("a") == []
        trie.add("a.*.c", "three")  # the pruned path can be rebuilt
        assert trie.match("a.b.c") == ["three"]

    def test_a_pattern_reached_by_two_paths_matches_once(self) -> None:
        """'**.a.**' reaches one node at one position in several ways; its value is found once."""
        trie = PatternTrie()
        trie.add("**.a.**", "v")
        assert trie.match("a.a.a") == ["v"]
        assert matches("**.a.**", "a.a.a")

    def test_merged_double_wildcards_match_like_one(self) -> None:
        """'a.**.**' is stored as 'a.**': it matches 'a' and any topic below it, once."""
        trie = PatternTrie()
        trie.add("a.**.**", "v")
        assert trie.match("a") == ["v"] and trie.match("a.b.c") == ["v"] and trie.match("b") == []


_SEGMENT = st.sampled_from(["a", "b", "c"])
_PATTERN_SEGMENT = st.sampled_from(["a", "b", "c", "*", "**"])


@settings(max_examples=300, deadline=None)
@given(
    patterns=st.lists(
        st.lists(_PATTERN_SEGMENT, min_size=1, max_size=5).map(".".join), max_size=12
    ),
    topics=st.lists(st.lists(_SEGMENT, min_size=1, max_size=6).map(".".join), max_size=12),
)
def test_trie_finds_exactly_what_matches_finds(patterns: list[str], topics: list[str]) -> None:
    """The trie agrees with the reference matcher on any patterns (duplicates, ``**`` runs,
    ``**`` between segments) and topics: every matching subscription once, nothing else."""
    trie = PatternTrie()
    for i, pattern in enumerate(patterns):
        trie.add(pattern, i)
    for topic in topics:
        expected = sorted(i for i, p in enumerate(patterns) if matches(p, topic))
        assert sorted(trie.match(topic)) == expected, (patterns, topic)
