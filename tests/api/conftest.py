"""Helpers for tests/api."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Check ``condition`` until it holds or ``timeout`` seconds pass; return whether it held.

    For states another thread reaches (a consumer subscribed by a blocked thread, a consumer
    disposed after a garbage collection) that offer no event to wait on.
    """
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            return False
        pause.wait(0.001)
    return True
