"""Fixtures and helpers shared by every test folder.

``require_binary("redis-server")`` skips with a reason on a laptop that lacks the binary, and
fails under ``CI=true``, where .ci/run must have installed it. ``wait_until`` is the one way a
test waits for real threads, processes or servers: a condition and a deadline, never a bare sleep.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_binary(name: str, *alternatives: str) -> str:
    """The path of the first of ``name``/``alternatives`` on PATH; skip (fail in CI) if none."""
    for candidate in (name, *alternatives):
        path = shutil.which(candidate)
        if path:
            return path
    message = f"{name!r} is not installed (needed by this test; .ci/run installs it)"
    if IN_CI:
        pytest.fail(f"CI=true: {message}")
    pytest.skip(message)


ROOT = Path(__file__).resolve().parent.parent


def unmeasured(env: dict[str, str]) -> dict[str, str]:
    """``env`` without the variables that make coverage start in a Python subprocess: for tools
    that run none of rxbus's code worth measuring (pip, build, mkdocs, Jupyter) or that other
    tests measure, started with coverage only because the suite runs under ``--cov``."""
    return {k: v for k, v in env.items() if not k.startswith(("COV_", "COVERAGE_"))}


@pytest.fixture(scope="module")
def unmeasured_children() -> Iterator[None]:
    """Every subprocess a module starts runs without coverage (``os.environ`` through
    :func:`unmeasured` for the module's tests): ``pytestmark =
    pytest.mark.usefixtures("unmeasured_children")``."""
    with pytest.MonkeyPatch.context() as patch:
        for name in set(os.environ) - set(unmeasured(dict(os.environ))):
            patch.delenv(name)
        yield


def child_env(*, measured: bool = True, **extra: str) -> dict[str, str]:
    """The environment for subprocesses that run this checkout's code (``rxbus`` commands,
    worker scripts): this checkout first on PYTHONPATH, no stray ``RXBUS_`` settings, ``extra``.

    ``measured=False`` leaves coverage out of the child (under ``--cov`` it roughly doubles a
    short process's start-up and a busy one's work): for processes started by the hundred, or
    pushing 100,000 events and then SIGKILLed (a killed process writes no coverage data
    anyway), whose code paths other tests measure.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("RXBUS_")}
    if not measured:
        env = unmeasured(env)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bound and released; the OS will not hand it out at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


POLL_FIRST = 0.005
"""The first pause of a wait: most conditions hold within milliseconds."""
POLL_MAX = 0.1
"""The longest pause of a wait that was given no interval: each poll after the first waits
half as long again as the one before, up to this. A predicate that asks a server (an HTTP
request, a SQLite read, a stream's info) polled every 5 ms for seconds costs both processes CPU
that a machine under load does not have; the condition is seen at most 0.1 s late."""


def _pauses(interval: float | None) -> Iterator[float]:
    """The pauses between polls: ``interval`` each time, or growing from POLL_FIRST to
    POLL_MAX when it is None."""
    if interval is not None:
        while True:
            yield interval
    pause = POLL_FIRST
    while True:
        yield pause
        pause = min(pause * 1.5, POLL_MAX)


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    what: str | None = None,
    *,
    interval: float | None = None,
) -> Literal[True]:
    """Poll ``predicate`` until it returns a true value; fail naming ``what`` after ``timeout`` s.

    For real threads, processes and servers (virtual time needs no waiting). The predicate may
    raise to end the wait early (a process that died). Returns True, so ``assert wait_until(...)``
    reads naturally. Polls at a fixed ``interval`` if one is given (to catch a moment in a
    stream), else ever less often (see POLL_MAX).

    Raises:
        AssertionError: ``timed out after {timeout}s waiting for {what}``.
    """
    deadline = time.monotonic() + timeout
    pauses = _pauses(interval)
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {_described(predicate, what)}"
            )
        time.sleep(next(pauses))
    return True


async def wait_until_async(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    what: str | None = None,
    *,
    interval: float | None = None,
) -> Literal[True]:
    """:func:`wait_until` inside a running event loop: polls without blocking the loop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pauses = _pauses(interval)
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {_described(predicate, what)}"
            )
        await asyncio.sleep(next(pauses))
    return True


@contextmanager
def untraced() -> Iterator[None]:
    """This thread's trace function (coverage's line tracer, under ``--cov``) off inside the
    block: for a hot loop of hundreds of thousands of iterations whose lines other tests (or
    the loop's first iterations, outside the block) already measure. Threads keep theirs."""
    tracer = sys.gettrace()
    sys.settrace(None)
    try:
        yield
    finally:
        sys.settrace(tracer)


def _described(predicate: Callable[[], Any], what: str | None) -> str:
    if what:
        return what
    name = getattr(predicate, "__name__", "condition")
    return "condition" if name == "<lambda>" else name


_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI=true a skipped test is a failure: CI installs everything the suite needs."""
    if IN_CI and _skipped and exitstatus == 0:
        print(f"\nCI=true: {len(_skipped)} test(s) skipped; failing the run:")
        for nodeid in _skipped[:50]:
            print(f"  skipped: {nodeid}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def need_binary() -> Callable[..., str]:
    """``need_binary("redis-server")`` -> path, or skip/fail as :func:`require_binary`."""
    return require_binary


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def bus() -> Iterator[object]:
    """A fresh EventBus, closed after the test."""
    from rxbus import EventBus

    b = EventBus(name="test")
    try:
        yield b
    finally:
        b.close(timeout=5.0)


@pytest.fixture
def testbus() -> Iterator[object]:
    """A fresh virtual-time TestBus (``drain()``, ``advance()``), closed after the test."""
    from rxbus.testing import TestBus

    b = TestBus(name="test")
    try:
        yield b
    finally:
        b.close()


def run_example_pair(directory: Path, env: dict[str, str]) -> tuple[str, str]:
    """Run a two-process example as its docs page says: ``consumer.py`` started first, then
    ``producer.py`` to completion; returns both stdouts once the consumer has exited (each
    must exit 0; the consumer is killed if it outlives a 60 s deadline)."""
    import subprocess
    import sys

    consumer = subprocess.Popen(
        [sys.executable, str(directory / "consumer.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        producer = subprocess.run(
            [sys.executable, str(directory / "producer.py")],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert producer.returncode == 0, producer.stderr
        out, err = consumer.communicate(timeout=60)
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait(10)
    assert consumer.returncode == 0, err
    return producer.stdout.strip(), out.strip()
