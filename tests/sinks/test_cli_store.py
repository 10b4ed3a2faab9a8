"""``rxbus tail`` and ``rxbus replay`` against real stores, a real follower process and a real
``rxbus serve``."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

from rxbus import DeadLetter, Event
from rxbus.cli import main
from rxbus.sinks import JsonlSink, SQLiteStore, read_jsonl
from tests.integration.serve_process import ServeProcess, child_env, rxbus_cmd


def fill(path: Path, events: list[Any]) -> None:
    sink: Any = JsonlSink(path) if path.suffix == ".jsonl" else SQLiteStore(path)
    with sink:
        for e in events:
            sink.on_next(e)


def make_events() -> list[Event]:
    return [
        Event(topic=f"build.{'error' if i % 3 == 0 else 'step'}", data={"i": i}) for i in range(12)
    ]


@pytest.fixture(params=["sqlite", "jsonl"])
def store_path(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, list[Event]]:
    path = tmp_path / ("events.db" if request.param == "sqlite" else "events.jsonl")
    events = make_events()
    fill(path, events)
    return path, events


def json_lines(text: str) -> list[Event]:
    return [Event.from_dict(orjson.loads(line)) for line in text.splitlines() if line.strip()]


class TestTail:
    def test_newest_lines_then_exit(self, store_path, capsys) -> None:
        path, events = store_path
        assert main(["tail", "--store", str(path), "-n", "3", "--no-follow", "--json"]) == 0
        assert json_lines(capsys.readouterr().out) == events[-3:]

    def test_pattern_filters(self, store_path, capsys) -> None:
        path, events = store_path
        assert main(["tail", "build.error", "--store", str(path), "--no-follow", "--json"]) == 0
        assert json_lines(capsys.readouterr().out) == [
            e for e in events if e.topic == "build.error"
        ]

    def test_since(self, store_path, capsys) -> None:
        path, events = store_path
        args = ["tail", "--store", str(path), "--since", events[9].id, "--no-follow", "--json"]
        assert main(args) == 0
        assert json_lines(capsys.readouterr().out) == events[9:]

    def test_text_output_is_one_line_per_event(self, store_path, capsys) -> None:
        path, _ = store_path
        assert (
            main(["tail", "--store", str(path), "-n", "2", "--no-follow", "--color", "never"]) == 0
        )
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 2 and all("build." in line for line in lines)

    @pytest.mark.timeout(60)  # the deadline for the follower's blocking reads
    @pytest.mark.parametrize("suffix", [".db", ".jsonl"])
    def test_follow_prints_new_events_as_they_arrive(self, tmp_path: Path, suffix: str) -> None:
        """A real `rxbus tail` process follows the store while another writer appends (and, for
        JSONL, rotates the file twice); it prints every matching event, once, in order."""
        path = tmp_path / f"live{suffix}"
        first = [Event(topic="app.start", data={"i": -1})]
        fill(path, first)
        follower = subprocess.Popen(
            [*rxbus_cmd("tail", "app.*", "--store", str(path), "--json", "--interval", "0.05")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(),
        )
        try:
            assert follower.stdout is not None
            assert Event.from_json(follower.stdout.readline()) == first[0]
            sink: Any = (
                JsonlSink(path, max_bytes=1_500, keep=None)
                if suffix == ".jsonl"
                else SQLiteStore(path)
            )
            expected, got = [], []
            with sink:
                for i in range(30):
                    e = Event(topic="app.tick" if i % 2 else "other.tick", data={"i": i})
                    sink.on_next(e)
                    if e.topic == "app.tick":
                        expected.append(e)
                    if i % 10 == 9:
                        sink.flush()
                        # The follower prints this burst before the next one is written, so it
                        # follows the store across each rotation (reading blocks until it has).
                        while len(got) < len(expected):
                            got.append(Event.from_json(follower.stdout.readline()))
            assert got == expected
            if suffix == ".jsonl":
                assert len(list(tmp_path.glob("live.jsonl.*"))) >= 2  # it did rotate
        finally:
            follower.terminate()
            follower.wait(timeout=10)


class TestReplay:
    def test_to_stdout_with_pattern_and_times(self, store_path, capsys) -> None:
        path, events = store_path
        since = events[2].timestamp.isoformat()
        until = events[8].timestamp.isoformat()
        args = ["replay", "--store", str(path), "build.error", "--since", since, "--until", until]
        assert main(args) == 0
        out = capsys.readouterr()
        assert json_lines(out.out) == [e for e in events[2:8] if e.topic == "build.error"]
        assert "2 events to stdout" in out.err

    def test_naive_time_is_utc(self, store_path, capsys) -> None:
        path, events = store_path
        naive = events[6].timestamp.replace(tzinfo=None).isoformat()
        assert main(["replay", "--store", str(path), "--since", naive]) == 0
        assert json_lines(capsys.readouterr().out) == events[6:]

    def test_to_another_store(self, store_path, tmp_path: Path, capsys) -> None:
        """JSONL -> SQLite and SQLite -> JSONL copies are exact; a second run adds nothing."""
        path, events = store_path
        target = tmp_path / ("copy.jsonl" if path.suffix == ".db" else "copy.db")
        assert main(["replay", "--store", str(path), "--to", str(target)]) == 0
        if target.suffix == ".db":
            assert main(["replay", "--store", str(path), "--to", str(target)]) == 0
            with SQLiteStore(target, readonly=True) as copy:
                assert copy.query() == events
            assert "written 0, duplicates 12" in capsys.readouterr().err
        else:
            assert list(read_jsonl(target)) == events

    def test_to_a_server_over_http(self, tmp_path: Path, capsys) -> None:
        """Events reach a real `rxbus serve`; replaying again is deduplicated there by id."""
        path = tmp_path / "events.db"
        events = make_events()
        fill(path, events)
        with ServeProcess(tmp_path / "server") as server:
            args = ["replay", "--store", str(path), "--to", server.url, "--batch", "5"]
            assert main(args) == 0
            assert "accepted 12, duplicates 0" in capsys.readouterr().err
            assert main(args) == 0
            assert "accepted 0, duplicates 12" in capsys.readouterr().err
            stored = {e.id: e for e in server.stored()}
        assert all(stored[e.id] == e for e in events)

    @pytest.mark.parametrize(("count", "size"), [(3000, 1024), (200, 50_000)])
    def test_large_replays_with_the_default_batch(
        self, tmp_path: Path, capsys, count: int, size: int
    ) -> None:
        """3,000 events of 1 KB (a 500 KB request) and 200 of 50 KB (past --max-body per 500:
        split by bytes) all arrive; issue 12 found the first refused with a 413."""
        path = tmp_path / "events.db"
        events = [Event(topic="big.replay", data={"i": i, "pad": "p" * size}) for i in range(count)]
        fill(path, events)
        with ServeProcess(tmp_path / "server") as server:
            assert main(["replay", "--store", str(path), "--to", server.url]) == 0
            assert f"accepted {count}, duplicates 0" in capsys.readouterr().err
            assert len(server.stored()) == count

    def test_dead_letters_are_republished_after_a_fix(self, tmp_path: Path, capsys) -> None:
        """Stored dead letters go back to the server as their original events, with new ids
        (the server already deduplicated the old ones) and a pointer to the original."""
        path = tmp_path / "dead.db"
        failed = [Event(topic="mail.send", data={"to": f"u{i}"}) for i in range(3)]
        other = Event(topic="other.fail")
        with SQLiteStore(path) as store:
            store.on_next(Event(topic="mail.send", data={"to": "fine"}))  # not a dead letter
            for e in [*failed, other]:
                store.on_next(DeadLetter.capture(e, "mailer", ConnectionError("smtp down")))
        with ServeProcess(tmp_path / "server") as server:
            args = ["replay", "--store", str(path), "mail.*", "--dead-letters", "--to", server.url]
            assert main(args) == 0
            assert "accepted 3, duplicates 0" in capsys.readouterr().err
            republished = [e for e in server.stored() if e.topic == "mail.send"]
        assert [e.data for e in republished] == [e.data for e in failed]
        assert [e.metadata["replayed_from"] for e in republished] == [e.id for e in failed]
        assert not {e.id for e in republished} & {e.id for e in failed}

    def test_dead_letters_from_jsonl_to_stdout(self, tmp_path: Path, capsys) -> None:
        path = tmp_path / "dead.jsonl"
        failed = Event(topic="mail.send", data={"to": "x"})
        fill(path, [DeadLetter.capture(failed, "mailer", RuntimeError("boom"))])
        assert main(["replay", "--store", str(path), "--dead-letters"]) == 0
        [again] = json_lines(capsys.readouterr().out)
        assert (again.topic, again.data, again.metadata["replayed_from"]) == (
            "mail.send",
            {"to": "x"},
            failed.id,
        )

    def test_unreachable_server_is_one_line(self, store_path, capsys) -> None:
        from tests.conftest import free_port

        path, _ = store_path
        url = f"http://127.0.0.1:{free_port()}"
        assert main(["replay", "--store", str(path), "--to", url]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"rxbus replay: error: cannot reach {url}/events")
        assert "\n" not in err


class TestErrors:
    @pytest.mark.parametrize("command", ["tail", "replay"])
    def test_missing_store(self, tmp_path: Path, capsys, command: str) -> None:
        missing = tmp_path / "nope.db"
        follow = ["--no-follow"] if command == "tail" else []
        assert main([command, "--store", str(missing), *follow]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"rxbus {command}: error: no store at {str(missing)!r}: file not found"

    @pytest.mark.parametrize("command", ["tail", "replay"])
    def test_bad_pattern(self, store_path, capsys, command: str) -> None:
        path, _ = store_path
        assert main([command, "build..x", "--store", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"rxbus {command}: error: topic pattern 'build..x' has an empty")
        assert "\n" not in err

    @pytest.mark.parametrize("option", ["--since", "--until"])
    def test_bad_time(self, store_path, capsys, option: str) -> None:
        path, _ = store_path
        assert main(["replay", "--store", str(path), option, "last tuesday"]) == 2
        err = capsys.readouterr().err.strip()
        assert err == (
            f"rxbus replay: error: {option} 'last tuesday' is not an ISO 8601 time "
            "(e.g. 2026-11-28T06:00:00Z) nor an event id"
        )

    def test_foreign_sqlite_file(self, tmp_path: Path, capsys) -> None:
        path = tmp_path / "app.db"
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE users (name TEXT)")
        conn.commit()
        conn.close()
        assert main(["tail", "--store", str(path), "--no-follow"]) == 2
        assert "is a SQLite database but not an rxbus store" in capsys.readouterr().err

    def test_corrupt_jsonl_line_on_replay(self, tmp_path: Path, capsys) -> None:
        path = tmp_path / "bad.jsonl"
        path.write_bytes(
            Event(topic="a.b").to_json() + b"\n{broken\n" + Event(topic="a.c").to_json() + b"\n"
        )
        assert main(["replay", "--store", str(path)]) == 2
        assert "bad.jsonl:2: corrupt JSONL line" in capsys.readouterr().err

    def test_real_process_exit_code_and_single_line(self, tmp_path: Path) -> None:
        done = subprocess.run(
            rxbus_cmd("replay", "--store", str(tmp_path / "none.db")),
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=60,
        )
        assert done.returncode == 2
        assert done.stderr.strip().count("\n") == 0
        assert "file not found" in done.stderr


def corrupt_sqlite(path: Path, count: int = 3000) -> None:
    """A real store of ``count`` events with garbage written over its middle pages."""
    fill(path, [Event(topic="c.x", data={"i": i, "pad": "p" * 200}) for i in range(count)])
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(size // 3)
        f.write(b"\xde\xad\xbe\xef" * (size // 12))


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        rxbus_cmd(*args), capture_output=True, text=True, env=child_env(), timeout=60
    )


class TestCorruptStores:
    """A damaged or foreign store: one line on stderr and exit 2, as the README promises."""

    @pytest.mark.parametrize(
        "args",
        [
            ("replay",),
            ("replay", "--to", "{tmp}/copy.jsonl"),
            ("tail", "--no-follow", "-n", "100000"),
            ("tail", "c.*", "--no-follow", "--since", "2000-01-01"),
        ],
    )
    def test_corrupt_sqlite_store(self, tmp_path: Path, args: tuple[str, ...]) -> None:
        path = tmp_path / "events.db"
        corrupt_sqlite(path)
        args = tuple(a.replace("{tmp}", str(tmp_path)) for a in args)
        done = run_cli(*args, "--store", str(path))
        [line] = done.stderr.splitlines()
        assert done.returncode == 2, done.stderr
        assert line.startswith(f"rxbus {args[0]}: error: ") and str(path) in line
        assert "corrupt" in line or "malformed" in line or "not an rxbus" in line

    @pytest.mark.parametrize(
        "args", [("tail",), ("tail", "--no-follow"), ("replay",)], ids=" ".join
    )
    def test_a_text_file_that_is_no_store(self, tmp_path: Path, args: tuple[str, ...]) -> None:
        """``--store /etc/passwd``: refused with one line, not 31 warnings and exit 0 (``tail``
        as the issue ran it, following, must not wait for lines either)."""
        path = tmp_path / "passwd"
        path.write_text("".join(f"user{i}:x:{i}:{i}::/home/u{i}:/bin/sh\n" for i in range(31)))
        command = args[0]
        done = run_cli(*args, "--store", str(path))
        [line] = done.stderr.splitlines()
        assert done.returncode == 2 and done.stdout == ""
        assert line.startswith(f"rxbus {command}: error: ") and "not an rxbus" in line
        assert str(path) in line

    def test_tail_of_a_jsonl_store_with_a_corrupt_line(self, tmp_path: Path) -> None:
        path = tmp_path / "bad.jsonl"
        path.write_bytes(
            Event(topic="a.b").to_json() + b"\n{broken\n" + Event(topic="a.c").to_json() + b"\n"
        )
        done = run_cli("tail", "--no-follow", "--store", str(path))
        [line] = done.stderr.splitlines()
        assert done.returncode == 2 and "bad.jsonl:2: corrupt JSONL line" in line
