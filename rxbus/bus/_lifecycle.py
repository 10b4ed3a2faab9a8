"""The bus's asyncio loop, and what happens to open buses at interpreter exit."""

from __future__ import annotations

import asyncio
import atexit
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["ExitGuard", "cancel_then_stop", "in_loop", "start_loop", "stop_when_done"]


def start_loop(name: str) -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    """A new event loop running on a daemon thread of its own."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    thread = threading.Thread(target=_run_loop, args=(loop, started), name=name, daemon=True)
    thread.start()
    started.wait()
    return loop, thread


def _run_loop(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(started.set)
    try:
        loop.run_forever()
    finally:
        loop.close()


async def cancel_then_stop(loop: asyncio.AbstractEventLoop, tasks: list[Any]) -> None:
    """Cancel drain tasks a close gave up on, let them finish, then stop the loop."""
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks, timeout=1)
    loop.stop()


async def stop_when_done(
    loop: asyncio.AbstractEventLoop, consumers: list[Any], deadline: float
) -> None:
    """Stop ``loop`` once ``consumers`` are done, or at ``deadline``."""
    while any(not c.done for c in consumers) and time.monotonic() < deadline:
        await asyncio.sleep(0.001)
    loop.stop()


def in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class ExitGuard:
    """Closes the buses still open at interpreter exit.

    Each open bus is held weakly; at exit it is closed with its ``exit_timeout``, so its
    ``thread`` and ``async`` consumers drain for a bounded time, and one line on stderr says how
    many events were waiting and how many could not be delivered. A bus with nothing waiting
    closes silently. (A bus with events queued cannot be garbage-collected before that: its
    workers hold it.)
    """

    def __init__(self) -> None:
        self._open: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._registered = False

    def watch(self, bus: Any) -> None:
        with self._lock:
            self._open.add(bus)
            if not self._registered:
                atexit.register(self.run)
                self._registered = True

    def forget(self, bus: Any) -> None:
        with self._lock:
            self._open.discard(bus)

    def run(self, write: Callable[[str], Any] | None = None) -> None:
        """Close every bus still open, reporting on stderr (or ``write``) what was at stake."""
        write = write or sys.stderr.write
        with self._lock:
            buses = list(self._open)
        for bus in buses:
            try:
                waiting = bus.metrics()["queued"]
                undelivered = bus.close(timeout=bus.exit_timeout)
            except Exception as err:  # exit must go on for the other buses
                write(f"rxbus: bus {bus.name!r} could not be closed at exit: {err!r}\n")
                continue
            if waiting or undelivered:
                write(
                    f"rxbus: bus {bus.name!r} was still open at exit with {waiting} event(s) "
                    f"queued; drained for up to {bus.exit_timeout:g}s: "
                    f"{len(undelivered)} not delivered\n"
                )


exit_guard = ExitGuard()
