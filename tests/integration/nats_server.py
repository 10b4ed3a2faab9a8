"""A throwaway ``nats-server -js`` for tests: a free loopback port, a temp store dir, killable.

Never the system NATS on 4222: every test (or benchmark module) gets its own server process,
restartable on the same port and store directory so file-backed streams survive a SIGKILL.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from tests.conftest import free_port, require_binary, wait_until

T = TypeVar("T")

__all__ = ["NatsServer", "js_call", "nats_binary", "running_nats"]


class NatsServer:
    """One ``nats-server`` process with JetStream on 127.0.0.1.

    Args:
        binary: path of ``nats-server``.
        directory: the JetStream store dir and log dir (a restart finds its streams there).
    """

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.monitor_port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log(self) -> Path:
        return self.directory / "nats.log"

    def start(self, timeout: float = 15.0) -> None:
        """Start (or restart, on the same port and store) and wait until JetStream is ready."""
        args = [
            self.binary,
            "-js",
            "-a", "127.0.0.1",
            "-p", str(self.port),
            "-m", str(self.monitor_port),
            "-sd", str(self.directory / "store"),
            "-l", str(self.log),
        ]  # fmt: skip
        self.process = subprocess.Popen(args, cwd=self.directory, stdin=subprocess.DEVNULL)
        self.starts += 1
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        """Poll the monitor's ``/healthz`` (ok once JetStream has recovered its streams)."""
        url = f"http://127.0.0.1:{self.monitor_port}/healthz"

        def healthy() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
                raise RuntimeError(f"nats-server exited with {self.process.returncode}: {tail}")
            try:
                with urllib.request.urlopen(url, timeout=1) as reply:
                    return reply.status == 200
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return False

        wait_until(healthy, timeout, f"nats-server on port {self.port}", interval=0.02)

    def kill(self) -> None:
        """SIGKILL the server (no shutdown, no final flush) and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def js(self, call: Callable[[Any], Awaitable[T]], timeout: float = 10.0) -> T:
        """Run ``await call(jsm)`` on a fresh connection (JetStream manager ``nc.jsm()``)."""
        return js_call(self.url, call, timeout)


def js_call(url: str, call: Callable[[Any], Awaitable[T]], timeout: float = 10.0) -> T:
    """Connect to ``url``, run ``await call(js)`` with a JetStream context, disconnect."""
    import nats

    async def main() -> T:
        nc = await nats.connect(url, allow_reconnect=False, connect_timeout=2)
        try:
            return await call(nc.jetstream(timeout=timeout))
        finally:
            await nc.close()

    return asyncio.run(asyncio.wait_for(main(), timeout + 5))


def nats_binary() -> str:
    """The ``nats-server`` path (Debian puts it in /usr/sbin, off a normal user's PATH); skips,
    or fails under CI, without it."""
    return require_binary("nats-server", "/usr/sbin/nats-server")


@contextmanager
def running_nats(directory: Path) -> Iterator[NatsServer]:
    """A started nats-server in ``directory`` (skips, or fails under CI, without the binary)."""
    server = NatsServer(nats_binary(), directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
