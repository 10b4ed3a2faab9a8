"""Helpers shared by tests/api."""

from __future__ import annotations

import threading

from rxbus.api import RELEASE_THREAD


def join_releases() -> None:
    """Wait for the threads disposing consumers whose sink or waiter was garbage-collected
    (a collection starts them; they are listed by the time ``gc.collect()`` returns)."""
    for thread in threading.enumerate():
        if thread.name == RELEASE_THREAD:
            thread.join(5)
