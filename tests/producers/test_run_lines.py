"""How ``rxbus run`` cuts a pipe's bytes into batches of lines, whatever the chunking."""

from __future__ import annotations

import argparse
import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rxbus.cli.run import _Stream


def stream(**options: Any) -> _Stream:
    args = argparse.Namespace(
        max_line=options.get("max_line", 64),
        batch_bytes=options.get("batch_bytes", 200),
        batch_lines=options.get("batch_lines", 7),
        flush=0.5,
    )
    return _Stream("stdout", -1, None, args)


def feed_all(s: _Stream, chunks: list[bytes]) -> list[dict[str, Any]]:
    batches: list[dict[str, Any]] = []
    for n, chunk in enumerate([*chunks, b""]):
        s.feed(chunk, float(n), float(n), batches.append)
    s.flush(batches.append)
    return batches


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 2000), max_size=20))
def test_lines_survive_any_chunking(data: bytes, cuts: list[int]) -> None:
    """Split anywhere (even inside a UTF-8 character): the batches hold the decoded text's lines,
    long ones cut at max_line, in order, with seq 0.. and line numbers that add up."""
    points = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    chunks = [data[a:b] for a, b in itertools.pairwise(points)]
    s = stream()
    batches = feed_all(s, chunks)
    text = data.decode("utf-8", errors="replace")
    expected = text.split("\n")
    if expected and expected[-1] == "":
        expected.pop()
    expected = [p[i : i + 64] for p in expected for i in range(0, len(p) or 1, 64)]
    got = [line for b in batches for line in b["lines"]]
    assert got == expected
    assert [b["seq"] for b in batches] == list(range(len(batches)))
    line = 1
    for b in batches:
        assert b["line"] == line and 1 <= len(b["lines"]) <= 7
        assert b["times"][0][0] == 0
        assert [i for i, _ in b["times"]] == sorted({i for i, _ in b["times"]})
        line += len(b["lines"])
    assert s.line_count == len(expected) and s.byte_count == len(data)


def test_control_characters_split_a_batch_below_the_event_limit() -> None:
    """Text whose JSON escapes grow it past the event limit is sent in several batches."""
    s = stream(max_line=1_000_000, batch_bytes=10_000_000, batch_lines=1_000_000)
    line = "\x01" * 100_000  # 100 kB of text, 600 kB of JSON
    batches = feed_all(s, [(line + "\n").encode() * 4])
    assert [len(b["lines"]) for b in batches] == [1, 1, 1, 1]
    assert all(len(b["times"]) >= 1 and b["times"][0][0] == 0 for b in batches)


def test_long_line_ending_right_after_a_cut() -> None:
    """A 128-character line read as 128 characters then its newline gives two pieces, no more."""
    s = stream()
    batches = feed_all(s, [b"a" * 128, b"\n", b"b\n"])
    assert [line for b in batches for line in b["lines"]] == ["a" * 64, "a" * 64, "b"]
