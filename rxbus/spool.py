"""A local spool of events that could not reach ``rxbus serve`` yet.

``rxbus publish`` writes an event here when the server is down and returns at once; the next
``publish`` that reaches the server, or ``rxbus serve`` at start-up (and every few seconds while
it runs), delivers the spool. Each destination has a spool of its own (a sub-directory named by
host and port, see :meth:`Spool.for_url`), so an event is only ever delivered where it was sent. Each event is one file named by its id, written to a temporary name
and renamed, so a reader never sees half an event and a crashed writer leaves no torn line.
Files are removed only after the server has acknowledged (and stored) their events; a delivery
cut short is simply repeated, and the server drops the repeats by event id. An entry that cannot
be read (a directory, a permission or I/O error) is moved to ``quarantine/`` with one warning,
and one the server refuses as bad input to ``rejected/``: neither blocks the events behind it.

    >>> import tempfile
    >>> spool = Spool(tempfile.mkdtemp())
    >>> spool.append("0001", b'{"id": "0001", "topic": "hook.tool"}')
    >>> spool.drain(lambda lines: "ok")
    1
    >>> spool.pending()
    0

This module imports only the standard library, and not even :mod:`pathlib` until a
:class:`~pathlib.Path` is asked for: ``rxbus publish`` with the server up only checks that its
spool is empty, and a hook should not pay 3 ms of imports for that.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

TYPE_CHECKING = False  # typing is not imported at run time: see rxbus/__init__.py
if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path
    from typing import Literal

    Outcome = Literal["ok", "retry", "rejected"]
    """What a spool ``send`` callback reports for a batch."""

__all__ = ["Outcome", "Spool", "default_spool_dir", "destination_key", "split_url"]

_SUFFIX = ".json"
_LOCK = ".drain.lock"
_REJECTED = "rejected"
_QUARANTINE = "quarantine"
_DESTINATION = "destination"  # a file in a destination's spool holding its URL


def __getattr__(name: str) -> object:
    """``Outcome`` at run time, built on first use (typing is not imported otherwise)."""
    if name == "Outcome":
        from typing import Literal

        return Literal["ok", "retry", "rejected"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def default_spool_dir() -> Path:
    """``$RXBUS_SPOOL``, else ``$XDG_STATE_HOME/rxbus/spool``, else ``~/.local/state/rxbus/spool``."""
    from pathlib import Path

    return Path(_default_root())


def _default_root() -> str:
    explicit = os.environ.get("RXBUS_SPOOL")
    if explicit:
        return explicit
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(state, "rxbus", "spool")


def split_url(url: str) -> tuple[str, int, str]:
    """``http://host[:port][/base]`` as ``(host, port, base)``; port 80 when absent.

    Raises:
        ValueError: naming the URL, for anything else.
    """
    rest = url.removeprefix("http://")
    if rest == url or not rest:
        raise ValueError(f"--url must look like http://127.0.0.1:8765, got {url!r}")
    hostport, _, path = rest.partition("/")
    if hostport.startswith("["):  # [::1]:8765
        host, _, after = hostport[1:].partition("]")
        port_text = after.removeprefix(":") or "80"
    else:
        host, colon, port_text = hostport.rpartition(":")
        if not colon:
            host, port_text = hostport, "80"
    if not host:
        raise ValueError(f"--url has no host: {url!r}")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"--url has an invalid port {port_text!r}: {url!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"--url has an invalid port {port}: {url!r}")
    base = ("/" + path).rstrip("/")
    return host.lower(), port, base


def destination_key(url: str) -> str:
    """The sub-directory name of ``url``'s spool: ``127.0.0.1_8765`` (plus a hash of a path).

    Raises:
        ValueError: for a URL :func:`split_url` refuses.
    """
    host, port, base = split_url(url)
    key = f"{''.join(c if c.isalnum() or c in '.-' else '_' for c in host)}_{port}"
    if base:
        import hashlib

        key += "_" + hashlib.sha256(base.encode()).hexdigest()[:12]
    return key


class Spool:
    """A directory of undelivered events, one file per event, delivered oldest id first.

    A spool is path-like (``os.fspath(spool)`` is its directory), so messages can name it
    without building a :class:`~pathlib.Path`.

    Args:
        directory: where the files live; created on first write.
        url: the destination these events are for (see :meth:`for_url`); None for a spool of
            unknown destination (the layout before destinations had their own spools).
    """

    def __init__(self, directory: str | os.PathLike[str], url: str | None = None) -> None:
        self._dir = os.fspath(directory)
        self.url = url

    @property
    def directory(self) -> Path:
        """The spool's directory."""
        from pathlib import Path

        return Path(self._dir)

    def __fspath__(self) -> str:
        return self._dir

    @classmethod
    def for_url(cls, root: str | os.PathLike[str] | None, url: str) -> Spool:
        """The spool under ``root`` (None: :func:`default_spool_dir`) for events sent to ``url``.

        Raises:
            ValueError: for a URL :func:`split_url` refuses.
        """
        base = _default_root() if root is None else os.fspath(root)
        return cls(os.path.join(base, destination_key(url)), url)

    @classmethod
    def destinations(cls, root: str | os.PathLike[str]) -> list[Spool]:
        """Every destination's spool under ``root`` (its URL read back), then ``root`` itself
        if it holds files of unknown destination."""
        from pathlib import Path

        root = Path(root)
        found: list[Spool] = []
        try:
            entries = sorted(os.scandir(root), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return found
        for entry in entries:
            marker = Path(entry.path) / _DESTINATION
            try:
                url = marker.read_text().strip()
            except OSError:
                continue
            found.append(cls(entry.path, url or None))
        legacy = cls(root)
        if legacy.pending() or legacy.rejected() or legacy.quarantined():
            found.append(legacy)
        return found

    def append(self, event_id: str, line: bytes) -> None:
        """Store one event's JSON (``line``) under its id; atomic, durable on return.

        Raises:
            OSError: if the directory cannot be written.
        """
        self._prepare()
        name = f"{_safe(event_id)}{_SUFFIX}"
        final = os.path.join(self._dir, name)
        tmp = os.path.join(self._dir, f".{name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)

    def pending(self) -> int:
        """How many events wait in the spool."""
        return sum(1 for _ in self._names())

    def drain(
        self,
        send: Callable[[list[bytes]], Outcome],
        *,
        batch: int = 500,
        max_bytes: int = 4 * 1024 * 1024,
        limit: int | None = None,
        wait: bool = False,
        deadline: float | None = None,
        warn: Callable[[str], object] | None = None,
    ) -> int:
        """Hand the spooled events to ``send`` in batches, oldest first; remove what it accepted.

        ``send(lines)`` returns ``"ok"`` once the server has stored every line (duplicates
        included), ``"retry"`` to stop and keep the rest for later (server unreachable), or
        ``"rejected"`` when the server refused the batch as bad input. A rejected batch is
        sent again one event at a time, and an event rejected on its own is moved to
        ``rejected/`` beside the spool (kept for a person to look at, never deleted), so one bad
        file cannot block the rest. An entry that cannot be read at all (a directory, a
        permission or I/O error) is moved to ``quarantine/`` with one line to ``warn``. Only one
        process drains at a time (an ``flock``): when
        another holds it, this returns 0 at once unless ``wait``.

        Args:
            send: delivers a batch of JSON lines.
            batch: most events per call of ``send``.
            max_bytes: most bytes per call of ``send`` (one event may exceed it alone).
            limit: most events to deliver in this call (None: all).
            wait: block until the drain lock is free instead of giving up.
            deadline: a :func:`time.monotonic` time after which no new batch is started.
            warn: called with one line for each entry set aside (default: stderr).

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
            say = warn or _stderr
            delivered = 0
            chunk: list[tuple[Path, bytes]] = []
            size = 0
            for path in files:
                try:
                    data = path.read_bytes().strip()
                except FileNotFoundError:
                    continue  # delivered by a drainer that finished just before us
                except OSError as err:
                    self._quarantine(path, err, say)
                    continue
                if chunk and (len(chunk) >= batch or size + len(data) > max_bytes):
                    done = self._deliver(chunk, send, say)
                    if done is None:
                        return delivered
                    delivered += done
                    chunk, size = [], 0
                    if deadline is not None and time.monotonic() >= deadline:
                        return delivered
                chunk.append((path, data))
                size += len(data) + 1
            if chunk:
                delivered += self._deliver(chunk, send, say) or 0
            return delivered

    def drop(self, *, rejected: bool = False) -> int:
        """Delete the events waiting here (or, with ``rejected``, those set aside); how many.

        Takes the drain lock, so no delivery is under way while files go.
        """
        with self._locked(wait=True):
            paths = self.rejected() if rejected else sorted(self._files())
            return _remove(paths)

    def restore_rejected(self) -> int:
        """Move the events in ``rejected/`` back into the spool (to send them again); how many."""
        moved = 0
        for path in self.rejected():
            os.replace(path, self.directory / path.name)
            moved += 1
        return moved

    def quarantined(self) -> list[Path]:
        """Entries that could not be read, set aside in ``quarantine/``."""
        folder = self.directory / _QUARANTINE
        return sorted(folder.iterdir()) if folder.is_dir() else []

    def set_aside(self, event_id: str, line: bytes) -> Path:
        """Store an event the server refused in ``rejected/`` (kept for a person to look at).

        Raises:
            OSError: if the directory cannot be written.
        """
        self._prepare()
        Spool(self.directory / _REJECTED).append(event_id, line)
        return self.directory / _REJECTED / f"{_safe(event_id)}{_SUFFIX}"

    def _prepare(self) -> None:
        """Create the directory, recording the destination URL in it (for ``rxbus spool``)."""
        os.makedirs(self._dir, exist_ok=True)
        if self.url is not None:
            marker = os.path.join(self._dir, _DESTINATION)
            if not os.path.exists(marker):
                with open(marker, "w") as f:
                    f.write(self.url + "\n")

    def _quarantine(self, path: Path, error: OSError, say: Callable[[str], object]) -> None:
        folder = self.directory / _QUARANTINE
        try:
            folder.mkdir(exist_ok=True)
            os.replace(path, folder / path.name)
        except OSError as err:
            say(
                f"rxbus spool: cannot read {path} ({error.strerror or error}) nor move it aside "
                f"({err.strerror or err}); skipped"
            )
            return
        say(f"rxbus spool: cannot read {path} ({error.strerror or error}); moved to {folder}")

    def rejected(self) -> list[Path]:
        """Spooled events the server refused as bad input, set aside in ``rejected/``."""
        folder = self.directory / _REJECTED
        return sorted(folder.glob(f"*{_SUFFIX}")) if folder.is_dir() else []

    def _deliver(
        self,
        chunk: list[tuple[Path, bytes]],
        send: Callable[[list[bytes]], Outcome],
        say: Callable[[str], object],
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
                folder = self.directory / _REJECTED
                folder.mkdir(exist_ok=True)
                os.replace(path, folder / path.name)
                say(f"rxbus spool: the server refused {path.name} as bad input; moved to {folder}")
            else:
                return None
        return delivered

    def _files(self) -> Iterator[Path]:
        directory = self.directory
        return (directory / name for name in self._names())

    def _names(self) -> Iterator[str]:
        try:
            with os.scandir(self._dir) as entries:
                for entry in entries:
                    if entry.name.endswith(_SUFFIX) and not entry.name.startswith("."):
                        yield entry.name
        except (FileNotFoundError, NotADirectoryError):
            return  # no spool here, so nothing waits in it

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


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


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
