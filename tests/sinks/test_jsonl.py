"""JsonlSink and read_jsonl against real files: lines, batching, rotation, fsync, torn lines."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from rxbus import DeadLetter, Event
from rxbus.sinks import JsonlSink, read_jsonl
from rxbus.sinks._batch import DEAD_LETTER_TOPIC, StoreError, original_event
from rxbus.sinks.jsonl import TornLineWarning, query_jsonl
from tests.sinks.virtual_clock import VirtualClock


def events(n: int, topic: str = "t.a", start: int = 0) -> list[Event]:
    return [Event(topic=topic, data={"i": i, "pad": "x" * 40}) for i in range(start, start + n)]


class TestWriting:
    def test_one_orjson_line_per_event(self, tmp_path: Path) -> None:
        """Each event is one line holding Event.to_dict()'s fields, parseable on its own."""
        path = tmp_path / "e.jsonl"
        sent = events(3)
        with JsonlSink(path) as sink:
            for e in sent:
                sink.on_next(e)
        lines = path.read_bytes().splitlines()
        assert len(lines) == 3
        assert [Event.from_dict(orjson.loads(line)) for line in lines] == sent

    def test_round_trip_is_exact(self, tmp_path: Path) -> None:
        sent = [
            Event(
                topic="hook.tool",
                type="PreToolUse",
                data={"s": 'é\n"quoted"', "n": [1, 2.5, None]},
                source="claude",
                metadata={"m": True},
                correlation_id="c",
            )
        ]
        with JsonlSink(tmp_path / "e.jsonl") as sink:
            sink.on_next(sent[0])
        assert list(read_jsonl(tmp_path / "e.jsonl")) == sent

    def test_flush_writes_everything_handed_over(self, tmp_path: Path) -> None:
        """After flush(), every event passed to on_next is in the file, in order, in batches."""
        path = tmp_path / "e.jsonl"
        sent = events(20_000)
        with JsonlSink(path, fsync="never") as sink:
            for e in sent:
                sink.on_next(e)
            assert sink.flush(timeout=30)
            assert list(read_jsonl(path)) == sent
            stats = sink.stats
        assert stats["written"] == 20_000
        assert 1 <= stats["batches"] < 2_000
        assert stats["bytes"] == path.stat().st_size

    @pytest.mark.parametrize("policy", ["never", "batch", "always"])
    def test_fsync_policy_counts_synced_events(self, tmp_path: Path, policy: str) -> None:
        """batch and always report every written event as synced; never reports none."""
        with JsonlSink(tmp_path / "e.jsonl", fsync=policy) as sink:  # type: ignore[arg-type]
            for e in events(50):
                sink.on_next(e)
            sink.flush()
            stats = sink.stats
        assert stats["written"] == 50
        assert stats["synced"] == (0 if policy == "never" else 50)
        if policy == "always":
            assert stats["batches"] == 50

    def test_appends_to_an_existing_file(self, tmp_path: Path) -> None:
        path = tmp_path / "e.jsonl"
        first, second = events(3), events(2, start=3)
        for batch in (first, second):
            with JsonlSink(path) as sink:
                for e in batch:
                    sink.on_next(e)
        assert list(read_jsonl(path)) == first + second

    def test_reopening_cuts_off_a_torn_tail(self, tmp_path: Path) -> None:
        """A file left with a partial last line is cut back, so the next line starts clean."""
        path = tmp_path / "e.jsonl"
        first = events(3)
        path.write_bytes(b"".join(e.to_json() + b"\n" for e in first) + b'{"id":"torn","top')
        with pytest.warns(TornLineWarning, match="torn last line"):
            sink = JsonlSink(path)
        later = events(2, start=3)
        with sink:
            for e in later:
                sink.on_next(e)
        assert list(read_jsonl(path)) == first + later

    def test_dead_letters_are_written_as_events(self, tmp_path: Path) -> None:
        failed = Event(topic="mail.send", data={"to": "a@b"})
        with JsonlSink(tmp_path / "dl.jsonl") as sink:
            sink.on_next(DeadLetter.capture(failed, "mailer", RuntimeError("smtp down")))
        [stored] = read_jsonl(tmp_path / "dl.jsonl")
        assert stored.topic == DEAD_LETTER_TOPIC
        assert original_event(stored) == failed

    def test_unsupported_item_is_a_dead_letter_not_an_exception(self, tmp_path: Path) -> None:
        letters: list[DeadLetter] = []
        with JsonlSink(tmp_path / "e.jsonl", dead_letters=letters.append) as sink:
            sink.on_next(42)  # type: ignore[arg-type]
            assert sink.stats["dropped"] == 1
        assert letters[0].event == 42
        assert isinstance(letters[0].error, TypeError)

    def test_after_close_events_are_dead_letters(self, tmp_path: Path) -> None:
        letters: list[DeadLetter] = []
        sink = JsonlSink(tmp_path / "e.jsonl", dead_letters=letters.append)
        sink.on_completed()
        sink.close()
        sink.on_next(Event(topic="t.late"))
        assert len(letters) == 1
        assert "closed" in str(letters[0].error)

    @pytest.mark.parametrize(
        "kwargs", [{"fsync": "often"}, {"max_bytes": 0}, {"rotate_every": 0}, {"keep": -1}]
    )
    def test_bad_settings_raise(self, tmp_path: Path, kwargs) -> None:
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            JsonlSink(tmp_path / "e.jsonl", **kwargs)

    def test_unwritable_path_raises_a_clear_error(self, tmp_path: Path) -> None:
        (tmp_path / "dir.jsonl").mkdir()
        with pytest.raises(StoreError, match=r"cannot open .*dir\.jsonl"):
            JsonlSink(tmp_path / "dir.jsonl")


class TestRotation:
    def test_by_size_keeps_files_under_the_limit_and_loses_nothing(self, tmp_path: Path) -> None:
        path = tmp_path / "e.jsonl"
        sent = events(2_000)
        with JsonlSink(path, max_bytes=20_000, keep=None, max_batch=300) as sink:
            for e in sent:
                sink.on_next(e)
            sink.flush()
            files = sink.files()
            rotations = sink.stats["rotations"]
        assert rotations == len(files) - 1 >= 5
        assert all(f.stat().st_size <= 20_000 for f in files)
        assert files[0].name == "e.jsonl.000001"
        assert list(read_jsonl(path)) == sent

    def test_retention_keeps_the_newest_rotated_files(self, tmp_path: Path) -> None:
        path = tmp_path / "e.jsonl"
        sent = events(2_000)
        with JsonlSink(path, max_bytes=20_000, keep=2) as sink:
            for e in sent:
                sink.on_next(e)
        files = JsonlSink.files(sink)
        assert len(files) == 3  # two rotated files and the active one
        got = list(read_jsonl(path))
        assert got == sent[-len(got) :]  # a contiguous, newest suffix

    def test_by_time(self, tmp_path: Path) -> None:
        """With rotate_every, a non-empty file is rotated once it is that old (virtual time)."""
        path = tmp_path / "e.jsonl"
        clock = VirtualClock(1_000.0)
        with JsonlSink(path, rotate_every=60, clock=clock) as sink:
            sink.on_next(Event(topic="t.a", data={"i": 0}))
            assert sink.flush()  # written at t=1000: the file's age counts from here
            clock.advance(59)
            sink.on_next(Event(topic="t.a", data={"i": 1}))
            assert sink.flush() and sink.stats["rotations"] == 0
            clock.advance(1)
            assert sink.flush() and sink.stats["rotations"] == 1  # due: rotated while idle
            clock.advance(600)  # an empty active file is never rotated
            assert sink.flush() and sink.stats["rotations"] == 1
            sink.on_next(Event(topic="t.a", data={"i": 2}))  # its file's age starts now
            clock.advance(59)
            assert sink.flush() and sink.stats["rotations"] == 1
        rotated, active = sink.files()
        assert [e.data["i"] for e in read_jsonl(rotated)] == [0, 1]
        assert [e.data["i"] for e in read_jsonl(path)] == [0, 1, 2]
        assert [e.data["i"] for e in query_jsonl(active)] == [0, 1, 2]

    def test_failed_rotation_is_counted_and_writing_goes_on(self, tmp_path: Path) -> None:
        """If the rotated name cannot be taken (here a directory sits there), the error is
        counted and events keep going to the active file: nothing is lost."""
        path = tmp_path / "e.jsonl"
        (tmp_path / "e.jsonl.000001").mkdir()
        sent = events(300)
        with JsonlSink(path, max_bytes=5_000, max_batch=10) as sink:
            for e in sent:
                sink.on_next(e)
            sink.flush()
            stats = sink.stats
        assert stats["errors"] >= 1 and stats["rotations"] == 0
        assert stats["written"] == 300
        assert list(read_jsonl(path)) == sent

    def test_a_line_larger_than_max_bytes_gets_its_own_file(self, tmp_path: Path) -> None:
        path = tmp_path / "e.jsonl"
        big = Event(topic="t.big", data={"blob": "y" * 5_000})
        with JsonlSink(path, max_bytes=1_000, keep=None) as sink:
            for e in [*events(2), big, *events(2, start=2)]:
                sink.on_next(e)
        assert [e.topic for e in read_jsonl(path)] == ["t.a", "t.a", "t.big", "t.a", "t.a"]


class TestReading:
    def test_torn_last_line_is_skipped_with_a_warning(self, tmp_path: Path) -> None:
        path = tmp_path / "e.jsonl"
        sent = events(5)
        path.write_bytes(b"".join(e.to_json() + b"\n" for e in sent) + sent[0].to_json()[:30])
        with pytest.warns(TornLineWarning, match=r"e\.jsonl: skipped a torn last line"):
            got = list(read_jsonl(path))
        assert got == sent

    def test_corrupt_middle_line_raises_naming_file_and_line(self, tmp_path: Path) -> None:
        path = tmp_path / "e.jsonl"
        sent = events(3)
        path.write_bytes(sent[0].to_json() + b"\nnot json\n" + sent[1].to_json() + b"\n")
        with pytest.raises(StoreError, match=r"e\.jsonl:2: corrupt JSONL line"):
            list(read_jsonl(path))

    def test_corrupt_middle_line_skipped_on_request(self, tmp_path: Path) -> None:
        path = tmp_path / "e.jsonl"
        sent = events(3)
        body = sent[0].to_json() + b'\n{"topic": "bad..topic"}\n' + sent[1].to_json() + b"\n"
        path.write_bytes(body)
        with pytest.warns(RuntimeWarning, match=":2: corrupt"):
            assert list(read_jsonl(path, errors="skip")) == sent[:2]

    def test_hand_written_lines_are_validated_like_event_from_dict(self, tmp_path: Path) -> None:
        """A full line with another UTC offset is normalised to UTC; a bad topic, a naive time or
        a wrong type is a corrupt line naming the field."""
        good = Event(topic="t.a", data={"k": 1}).to_dict()
        shifted = {**good, "timestamp": "2026-01-01T02:00:00+02:00"}
        path = tmp_path / "hand.jsonl"
        path.write_bytes(orjson.dumps(shifted) + b"\n")
        [event] = read_jsonl(path)
        assert event.timestamp == datetime(2026, 1, 1, tzinfo=UTC)
        assert event.timestamp.tzinfo is UTC
        assert event == Event.from_dict(shifted)
        for bad, message in [
            ({**good, "topic": "t..a"}, "empty segment"),
            ({**good, "timestamp": "2026-01-01T00:00:00"}, "timezone-aware"),
            ({**good, "source": 5}, "source must be a str"),
            ({**good, "data": [1]}, "data must be a dict"),
        ]:
            path.write_bytes(orjson.dumps(bad) + b"\n")
            with pytest.raises(StoreError, match=message):
                list(read_jsonl(path))

    def test_glob_reads_rotated_files_in_order(self, tmp_path: Path) -> None:
        sent = events(600)
        with JsonlSink(tmp_path / "a.jsonl", max_bytes=10_000, keep=None) as sink:
            for e in sent:
                sink.on_next(e)
        assert list(read_jsonl(str(tmp_path / "a.jsonl*"))) == sent

    def test_nothing_there_raises_file_not_found(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError, match="no JSONL file matches"):
            list(read_jsonl(tmp_path / "none.jsonl"))

    def test_query_filters_like_the_sqlite_store(self, tmp_path: Path) -> None:
        base = datetime(2026, 1, 1, tzinfo=UTC)
        sent = [
            Event(topic=t, data={"i": i}, timestamp=base + timedelta(seconds=i))
            for i, t in enumerate(["a.x", "b.x", "a.y", "a.x", "b.y"])
        ]
        with JsonlSink(tmp_path / "q.jsonl") as sink:
            for e in sent:
                sink.on_next(e)
            sink.flush()
            assert [e.data["i"] for e in sink.query("a.*")] == [0, 2, 3]
            assert [e.data["i"] for e in sink.query(since=sent[1].id, until=sent[3].id)] == [
                1,
                2,
                3,
            ]
            got = sink.query(since=sent[1].timestamp, until=sent[4].timestamp, limit=2)
            assert [e.data["i"] for e in got] == [1, 2]
        assert [e.data["i"] for e in query_jsonl(tmp_path / "q.jsonl", after=sent[3].id)] == [4]
        with pytest.raises(ValueError, match="timezone-aware"):
            list(query_jsonl(tmp_path / "q.jsonl", since=datetime(2026, 1, 1)))


def test_sink_works_on_a_file_that_was_deleted_under_it(tmp_path: Path) -> None:
    """Deleting the active file (logrotate without copytruncate) does not crash the writer."""
    path = tmp_path / "e.jsonl"
    with JsonlSink(path) as sink:
        sink.on_next(Event(topic="t.a"))
        sink.flush()
        os.unlink(path)
        sink.on_next(Event(topic="t.a"))
        assert sink.flush()
        assert sink.stats["written"] == 2
        assert sink.stats["errors"] == 0
