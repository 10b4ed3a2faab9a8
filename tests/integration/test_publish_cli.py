"""``rxbus publish`` as a shell hook runs it: a fresh process, against a real ``rxbus serve``."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from rxbus.event import Event
from rxbus.spool import Spool
from tests.conftest import free_port
from tests.integration.serve_process import ServeProcess, child_env, rxbus_cmd

pytestmark = pytest.mark.timeout(120)


def publish(
    *args: str, stdin: bytes | None = None, url: str, spool: Path, token: str | None = None
) -> subprocess.CompletedProcess[bytes]:
    # --timeout: the 0.15 s default is a hook's latency bound (test_publish_edges holds it);
    # here a busy machine must not turn a delivery into a spooling the test did not ask for.
    cmd = rxbus_cmd("publish", *args, "--url", url, "--spool", str(spool), "--timeout", "10")
    if token:
        cmd += ["--token", token]
    return subprocess.run(cmd, input=stdin or b"", capture_output=True, env=child_env(), timeout=30)


def down_url() -> str:
    """A loopback URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


class TestServerUp:
    def test_fields_and_data_from_flags(self, tmp_path: Path) -> None:
        with ServeProcess(tmp_path) as server:
            result = publish(
                "hook.tool",
                "--type",
                "PreToolUse",
                "--source",
                "claude",
                "--correlation-id",
                "c-1",
                "--data",
                '{"tool": "Bash", "n": 1}',
                url=server.url,
                spool=server.spool_dir,
            )
            assert result.returncode == 0, result.stderr
            assert result.stdout == b"" and result.stderr == b""
            [event] = [Event.from_dict(d) for d in server.history("hook.tool")]
        assert (event.type, event.source, event.correlation_id) == ("PreToolUse", "claude", "c-1")
        assert event.data == {"tool": "Bash", "n": 1}
        assert not Spool.for_url(server.spool_dir, server.url).pending()

    def test_data_from_stdin_and_defaults(self, tmp_path: Path) -> None:
        with ServeProcess(tmp_path) as server:
            ok = publish(
                "hook.stdin", stdin=b'{"k": [1, 2]}\n', url=server.url, spool=server.spool_dir
            )
            empty = publish("hook.empty", url=server.url, spool=server.spool_dir)
            assert ok.returncode == 0 and empty.returncode == 0, (ok.stderr, empty.stderr)
            [a] = server.history("hook.stdin")
            [b] = server.history("hook.empty")
        assert (a["data"], a["type"], a["source"]) == ({"k": [1, 2]}, "stdin", "")
        assert b["data"] == {}

    def test_token_from_flag(self, tmp_path: Path) -> None:
        with ServeProcess(tmp_path, token="t0k") as server:
            result = publish("tok.ok", url=server.url, spool=server.spool_dir, token="t0k")
            assert result.returncode == 0, result.stderr
            assert [e["topic"] for e in server.history("tok.*")] == ["tok.ok"]


class TestServerDown:
    def test_spools_and_returns_at_once(self, tmp_path: Path) -> None:
        """With no server, the event lands in the spool (with its id) and the exit code is 0."""
        spool, url = tmp_path / "spool", down_url()
        result = publish("down.one", "--data", '{"n": 1}', url=url, spool=spool)
        assert result.returncode == 0 and result.stderr == b""
        [path] = list(Spool.for_url(spool, url).directory.glob("*.json"))
        event = Event.from_json(path.read_bytes())
        assert (event.topic, event.data, path.stem) == ("down.one", {"n": 1}, event.id)

    def test_next_publish_that_reaches_the_server_delivers_the_spool(self, tmp_path: Path) -> None:
        """Events spooled while down arrive, in order and once, with the next publish."""
        server = ServeProcess(tmp_path, args=("--spool", "none"))  # no start-up drain here
        for n in range(5):
            assert (
                publish(
                    "late.ev",
                    "--data",
                    json.dumps({"n": n}),
                    url=server.url,
                    spool=server.spool_dir,
                ).returncode
                == 0
            )
        assert Spool.for_url(server.spool_dir, server.url).pending() == 5
        with server:
            assert server.history("late.*") == []
            assert (
                publish(
                    "late.ev", "--data", '{"n": 5}', url=server.url, spool=server.spool_dir
                ).returncode
                == 0
            )
            got = [e["data"]["n"] for e in server.history("late.*")]
        assert sorted(got) == list(range(6)) and len(got) == 6
        assert Spool.for_url(server.spool_dir, server.url).pending() == 0

    def test_a_resent_spool_file_is_not_duplicated(self, tmp_path: Path) -> None:
        """A spool file delivered twice (e.g. the ack was lost) is stored once."""
        server = ServeProcess(tmp_path)
        spool = Spool.for_url(server.spool_dir, server.url)
        publish("resend.ev", url=server.url, spool=server.spool_dir)
        [path] = list(spool.directory.glob("*.json"))
        copy = tmp_path / "copy.json"
        shutil.copy(path, copy)
        with server:  # start-up drains the spool
            assert spool.pending() == 0
            shutil.copy(copy, spool.directory / path.name)  # the same event spooled again
            assert publish("resend.other", url=server.url, spool=server.spool_dir).returncode == 0
            assert spool.pending() == 0
        ids = [e.id for e in server.stored() if e.topic == "resend.ev"]
        assert ids == [path.stem]


class TestBadInput:
    @pytest.mark.parametrize(
        ("args", "stdin", "needle"),
        [
            (("ok.topic",), b'{"broken": ', "stdin is not valid JSON"),
            (("ok.topic",), b"[1, 2]", "stdin must be a JSON object, got list"),
            (("ok.topic", "--data", "nope"), b"", "--data is not valid JSON"),
            (("bad..topic", "--data", "{}"), b"", "'bad..topic'"),
            (
                ("ok.topic", "--max-bytes", "100", "--data", json.dumps({"x": "y" * 200})),
                b"",
                "at most 100",
            ),
        ],
    )
    def test_one_line_on_stderr_nonzero_exit_nothing_spooled(
        self, tmp_path: Path, args: tuple[str, ...], stdin: bytes, needle: str
    ) -> None:
        spool = tmp_path / "spool"
        result = publish(*args, stdin=stdin, url=down_url(), spool=spool)
        lines = result.stderr.decode().strip().splitlines()
        assert result.returncode == 2
        assert (
            len(lines) == 1 and lines[0].startswith("rxbus publish: error:") and needle in lines[0]
        )
        assert Spool(spool).pending() == 0

    def test_wrong_token_and_oversize_refused_by_the_server(self, tmp_path: Path) -> None:
        """A 4xx is one line and exit 2, and the event is kept: spooled (a wrong token can be
        fixed, then it is delivered) or set aside in rejected/ (bad input), never gone."""
        with ServeProcess(tmp_path, token="right", args=("--max-event-bytes", "500")) as server:
            spool = Spool.for_url(server.spool_dir, server.url)
            wrong = publish("tok.x", url=server.url, spool=server.spool_dir, token="wrong")
            # spooled: the server's own scan of its spool (every 2 s) may already have
            # delivered it, so the count here is not checked; it is delivered once, below
            big = publish(
                "big.x",
                "--data",
                json.dumps({"x": "y" * 600}),
                url=server.url,
                spool=server.spool_dir,
                token="right",
            )
            good = publish("good.x", url=server.url, spool=server.spool_dir, token="right")
            topics = [e["topic"] for e in server.history("**")]
        for result, needle, kept in (
            (wrong, "401", "spooled in"),
            (big, "413", "set aside in"),
        ):
            [line] = result.stderr.decode().strip().splitlines()
            assert result.returncode == 2 and needle in line and kept in line, line
        assert good.returncode == 0
        # the spooled one is delivered once the token is right: by that publish's drain or by
        # the server's own spool scan, whichever comes first, so in either order but once
        assert sorted(topics) == ["good.x", "tok.x"]
        assert spool.pending() == 0
        [rejected] = spool.rejected()
        assert Event.from_json(rejected.read_bytes()).topic == "big.x"

    def test_bad_url(self, tmp_path: Path) -> None:
        result = publish("ok.x", url="ftp://nowhere", spool=tmp_path)
        assert result.returncode == 2 and b"--url must look like" in result.stderr


class TestSpool:
    """The spool on its own: order, batches, stopping, one drainer at a time."""

    def fill(self, directory: Path, count: int) -> tuple[Spool, list[Event]]:
        spool = Spool(directory)
        events = [Event(topic="spool.unit", data={"n": n}) for n in range(count)]
        for event in events:
            spool.append(event.id, event.to_json())
        return spool, events

    def test_batches_in_id_order_within_limits(self, tmp_path: Path) -> None:
        spool, events = self.fill(tmp_path, 12)
        batches: list[list[bytes]] = []
        assert spool.drain(lambda lines: batches.append(lines) or "ok", batch=5) == 12
        assert [len(b) for b in batches] == [5, 5, 2]
        assert [Event.from_json(line).id for b in batches for line in b] == [e.id for e in events]
        assert spool.pending() == 0 and not list(tmp_path.glob(".*.tmp"))

    def test_max_bytes_splits_batches(self, tmp_path: Path) -> None:
        spool, events = self.fill(tmp_path, 6)
        size = len(events[0].to_json())
        batches: list[int] = []
        spool.drain(lambda lines: batches.append(len(lines)) or "ok", max_bytes=size * 2 + 2)
        assert batches == [2, 2, 2]

    def test_retry_keeps_the_rest(self, tmp_path: Path) -> None:
        spool, events = self.fill(tmp_path, 6)
        answers = iter(["ok", "retry"])
        assert spool.drain(lambda lines: next(answers), batch=2) == 2
        remaining = sorted(p.stem for p in tmp_path.glob("*.json"))
        assert remaining == [e.id for e in events[2:]]

    def test_one_drainer_at_a_time(self, tmp_path: Path) -> None:
        spool, _ = self.fill(tmp_path, 3)
        inner: list[int] = []

        def send(lines: list[bytes]) -> str:
            inner.append(Spool(tmp_path).drain(lambda _: "ok"))  # a second drainer meanwhile
            return "ok"

        assert spool.drain(send) == 3
        assert inner == [0]

    def test_limit(self, tmp_path: Path) -> None:
        spool, _ = self.fill(tmp_path, 5)
        assert spool.drain(lambda lines: "ok", limit=2) == 2
        assert spool.pending() == 3

    def test_default_directory_follows_the_environment(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        from rxbus.spool import default_spool_dir

        monkeypatch.setenv("RXBUS_SPOOL", str(tmp_path / "a"))
        assert default_spool_dir() == tmp_path / "a"
        monkeypatch.delenv("RXBUS_SPOOL")
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
        assert default_spool_dir() == tmp_path / "state" / "rxbus" / "spool"


def test_a_failing_server_is_treated_as_down(tmp_path: Path) -> None:
    """A 5xx (here from a bare HTTP server that always fails) spools the event: exit 0."""
    import http.server
    import threading

    class Failing(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Failing)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        result = publish("fail.x", url=url, spool=tmp_path / "spool")
    finally:
        httpd.shutdown()
    assert result.returncode == 0 and result.stderr == b""
    assert Spool.for_url(tmp_path / "spool", url).pending() == 1
