"""Run ``rxbus serve`` in a subprocess for tests, and talk to it with the standard library.

    with ServeProcess(tmp_path) as server:
        status, body = server.post({"topic": "hook.tool"})
        assert status == 200 and server.stored()[0].topic == "hook.tool"

The server gets its own store and spool under ``tmp_path``; :meth:`ServeProcess.start` returns
once ``/healthz`` answers, and raises with the server's stderr if it exits instead.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from rxbus.event import Event
from tests.conftest import ROOT, child_env, free_port, wait_until

__all__ = ["ROOT", "ServeProcess", "child_env", "rxbus_cmd"]


def rxbus_cmd(*args: str) -> list[str]:
    """The command line running ``rxbus`` from this checkout with the venv's interpreter."""
    return [sys.executable, "-m", "rxbus", *args]


class ServeProcess:
    """``rxbus serve`` on a free loopback port with a store and spool in ``directory``.

    Args:
        directory: holds ``events.sqlite``, ``spool/`` and the server's log.
        token: passed as ``--token`` (and used by :meth:`post`/:meth:`get` unless overridden).
        port: a fixed port (default: a free one, kept across restarts).
        args: extra command-line arguments.
    """

    measured = True
    """Whether coverage measures the server process (under ``--cov``)."""

    def __init__(
        self,
        directory: Path,
        *,
        token: str | None = None,
        port: int | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.port = port or free_port()
        self.args = args
        self.store_path = self.directory / "events.sqlite"
        self.spool_dir = self.directory / "spool"
        self.log_path = self.directory / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = rxbus_cmd(
            "serve",
            "--port",
            str(self.port),
            "--store",
            str(self.store_path),
            "--spool",
            str(self.spool_dir),
            *self.args,
        )
        if self.token:
            cmd += ["--token", self.token]
        return cmd

    def start(self, timeout: float = 30.0) -> ServeProcess:
        """Start the server and wait until it answers ``/healthz``."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it until it exits
        self.proc = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env(measured=self.measured),
            cwd=ROOT,
        )
        log.close()

        def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"rxbus serve exited with {self.proc.returncode}: {self.log_path.read_text()}"
                )
            try:
                return self.get("/healthz", timeout=0.5)[0] == 200
            except OSError:
                return False

        wait_until(healthy, timeout, f"rxbus serve on {self.url}/healthz", interval=0.05)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Send ``sig`` (SIGTERM: graceful; SIGKILL: crash) and wait for the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(5)
        self.proc = None
        return code

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP ---------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        *,
        token: str | None = "default",
        timeout: float = 10.0,
    ) -> tuple[int, bytes]:
        """One HTTP request; returns ``(status, body)`` for every status, 4xx and 5xx included."""
        headers = dict(headers or {})
        token = self.token if token == "default" else token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.url + path, data=body, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def get(self, path: str, **kw: Any) -> tuple[int, bytes]:
        return self.request("GET", path, **kw)

    def post(
        self,
        payload: Any = None,
        *,
        raw: bytes | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> tuple[int, Any]:
        """POST ``payload`` (as JSON) or ``raw`` bytes to ``/events``; the reply parsed as JSON."""
        body = raw if raw is not None else json.dumps(payload).encode()
        headers = {"Content-Type": content_type, **(headers or {})}
        status, reply = self.request("POST", "/events", body, headers, **kw)
        return status, json.loads(reply)

    def history(self, pattern: str = "**", after: str | None = None) -> list[dict[str, Any]]:
        query = f"/events?pattern={urllib.request.quote(pattern)}&limit=10000"
        if after:
            query += f"&after={after}"
        status, body = self.get(query)
        assert status == 200, body
        return list(json.loads(body))

    def stored(self) -> list[Event]:
        """Every event in the server's SQLite file, read directly (the server may be down)."""
        from rxbus.sinks import SQLiteStore

        store = SQLiteStore(self.store_path, readonly=True)
        try:
            return list(store.query())
        finally:
            store.close()


def kill_quietly(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
