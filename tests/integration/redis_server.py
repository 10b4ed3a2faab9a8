"""A throwaway ``redis-server`` for tests: a free loopback port, a temp dir, killable, restartable.

Never the system Redis on 6379: every test gets its own server process.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import free_port, require_binary, wait_until


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1.

    Args:
        binary: path of ``redis-server``.
        directory: its working dir (AOF and logs live there, so a restart finds them).
        aof: turn on the append-only file with ``appendfsync always`` (nothing acknowledged is
            lost when the process is killed).
    """

    def __init__(self, binary: str, directory: Path, *, aof: bool = False) -> None:
        self.binary = binary
        self.directory = directory
        self.aof = aof
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 10.0) -> None:
        """Start (or restart, on the same port and dir) and wait until it answers PING."""
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--daemonize", "no",
            "--logfile", "redis.log",
            "--appendonly", "yes" if self.aof else "no",
        ]  # fmt: skip
        if self.aof:
            args += ["--appendfsync", "always"]
        self.process = subprocess.Popen(args, cwd=self.directory, stdin=subprocess.DEVNULL)
        self.starts += 1
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5, socket_timeout=2)

        def answers() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {log}")
            try:
                return bool(client.ping())
            except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                return False  # ResponseError: LOADING while the AOF is replayed after a restart

        try:
            wait_until(answers, timeout, f"redis-server on port {self.port}", interval=0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL the server (no shutdown, no final save) and reap it."""
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

    def client(self, **kwargs: Any) -> Any:
        import redis

        return redis.Redis.from_url(self.url, **kwargs)


@contextmanager
def running_redis(directory: Path, *, aof: bool = False) -> Iterator[RedisServer]:
    """A started redis-server in ``directory`` (skips, or fails under CI, without the binary)."""
    server = RedisServer(require_binary("redis-server"), directory, aof=aof)
    server.start()
    try:
        yield server
    finally:
        server.stop()
