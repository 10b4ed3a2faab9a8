"""A local spool of events that could not reach ``rxbus serve`` yet.

``rxbus publish`` writes an event here when the server is down and returns at once; the next
``publish`` that reaches the server, or ``rxbus serve`` at start-up (and every few seconds while
it runs), delivers the spool. Each event is one file named by its id, written to a temporary name
and renamed, so a reader never sees half an event and a crashed writer leaves no torn line.
Files are removed only after the server has acknowledged (and stored) their events; a delivery
cut short is simply repeated, and the server drops the repeats by event id.

    >>> import tempfile
    >>> spool = Spool(tempfile.mkdtemp())
    >>> spool.append("0001", b'{"id": "0001", "topic": "hook.tool"}')
    >>> spool.drain(lambda lines: "ok")
    1
    >>> spool.pending()
    0

This module imports only the standard library, so it costs a shell hook almost nothing.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

__all__ = ["Outcome", "Spool", "default_spool_dir"]

_SUFFIX = ".json"
_LOCK = ".drain.lock"
_REJECTED = "rejected"

Outcome = Literal["ok", "retry", "rejected"]
"""What a spool ``send`` callback reports for a batch."""


def default_spool_dir() -> Path:
    """``$RXBUS_SPOOL``, else ``$XDG_STATE_HOME/rxbus/spool``, else ``~/.local/state/rxbus/spool``."""
    explicit = os.environ.get("RXBUS_SPOOL")
    if explicit:
        return Path(explicit)
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(state) / "rxbus" / "spool"


class Spool:
    """A directory of undelivered events, one file per event, delivered oldest id first.

    Args:
        directory: where the files live; created on first write.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def append(self, event_id: str, line: bytes) -> None:
        """Store one event's JSON (``line``) under its id; atomic, durable on return.

        Raises:
            OSError: if the directory cannot be written.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / f"{_safe(event_id)}{_SUFFIX}"
        tmp = self.directory / f".{final.name}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)

    def pending(self) -> int:
        """How many events wait in the spool."""
        return sum(1 for _ in self._files())

    def drain(
        self,
        send: Callable[[list[bytes]], Outcome],
        *,
        batch: int = 500,
        max_bytes: int = 4 * 1024 * 1024,
        limit: int | None = None,
        wait: bool = False,
    ) -> int:
        """Hand the spooled events to ``send`` in batches, oldest first; remove what it accepted.

        ``send(lines)`` returns ``"ok"`` once the server has stored every line (duplicates
        included), ``"retry"`` to stop and keep the rest for later (server unreachable), or
        ``"rejected"`` when the server refused the batch as bad input. A rejected batch is
        sent again one event at a time, and an event rejected on its own is moved to
        ``rejected/`` beside the spool (kept for a person to look at, never deleted), so one bad
        file cannot block the rest. Only one process drains at a time (an ``flock``): when
        another holds it, this returns 0 at once unless ``wait``.

        Args:
            send: delivers a batch of JSON lines.
            batch: most events per call of ``send``.
            max_bytes: most bytes per call of ``send`` (one event may exceed it alone).
            limit: most events to deliver in this call (None: all).
            wait: block until the drain lock is free instead of giving up.

        Returns:
            How many events were delivered and removed.
        """
        if not self.directory.is_dir():
            return 0
        with self._locked(wait) as held:
            if not held:
                return 0
            files = sorted(self._files())
            if limit is not None:
                files = files[:limit]
            delivered = 0
            chunk: list[tuple[Path, bytes]] = []
            size = 0
            for path in files:
                try:
                    data = path.read_bytes().strip()
                except FileNotFoundError:
                    continue  # delivered by a drainer that finished just before us
                if chunk and (len(chunk) >= batch or size + len(data) > max_bytes):
                    done = self._deliver(chunk, send)
                    if done is None:
                        return delivered
                    delivered += done
                    chunk, size = [], 0
                chunk.append((path, data))
                size += len(data) + 1
            if chunk:
                delivered += self._deliver(chunk, send) or 0
            return delivered

    def rejected(self) -> list[Path]:
        """Spooled events the server refused as bad input, set aside in ``rejected/``."""
        folder = self.directory / _REJECTED
        return sorted(folder.glob(f"*{_SUFFIX}")) if folder.is_dir() else []

    def _deliver(
        self, chunk: list[tuple[Path, bytes]], send: Callable[[list[bytes]], Outcome]
    ) -> int | None:
        """Send one batch; the number removed, or None to stop draining."""
        outcome = send([data for _, data in chunk])
        if outcome == "ok":
            return _remove([path for path, _ in chunk])
        if outcome != "rejected":
            return None
        delivered = 0
        for path, data in chunk:
            alone = send([data]) if len(chunk) > 1 else outcome
            if alone == "ok":
                delivered += _remove([path])
            elif alone == "rejected":
                (self.directory / _REJECTED).mkdir(exist_ok=True)
                os.replace(path, self.directory / _REJECTED / path.name)
            else:
                return None
        return delivered

    def _files(self) -> Iterator[Path]:
        try:
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    if entry.name.endswith(_SUFFIX) and not entry.name.startswith("."):
                        yield Path(entry.path)
        except FileNotFoundError:
            return

    @contextmanager
    def _locked(self, wait: bool) -> Iterator[bool]:
        import fcntl

        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except OSError as err:
                if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    yield False
                    return
                raise
            yield True
        finally:
            os.close(fd)  # closing the descriptor releases the lock


def _safe(event_id: str) -> str:
    """An id usable as a file name (ids are hex, but a client may supply its own)."""
    if event_id and all(c.isalnum() or c in "-_" for c in event_id) and len(event_id) <= 200:
        return event_id
    import hashlib

    return "x" + hashlib.sha256(event_id.encode()).hexdigest()


def _remove(paths: list[Path]) -> int:
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
    return len(paths)
