"""Where ``thread`` consumers run: a bounded pool of worker threads shared by the process.

A ``thread`` consumer with work is *scheduled*: put once in the pool's run queue (a flag under
the consumer's own lock keeps it there at most once). A worker takes it, runs a bounded batch of
its queue (:data:`BATCH`), and puts it back at the end of the run queue if work remains, so one
busy consumer cannot starve the others. One consumer is only ever run by one worker at a time,
so its order is kept and its ``on_next`` is never called concurrently.

One pool per process, like the timer thread of :mod:`rxbus.scheduling`: a pool per bus would
multiply the threads by the buses (tests and services create many), which is the cost the pool
exists to remove. Its size is bounded (``min(32, cpus + 4)``, as ``ThreadPoolExecutor``'s), its
threads are daemons named ``rxbus-worker-N``, started only when work finds no idle worker.

``Overflow.BLOCK`` and the pool: a worker never waits for room in a full queue (see
:meth:`WorkerPool.may_wait`). If it could, every worker might wait on queues whose consumers
need a worker to drain them, and the pool would stop. So an event published from a pool worker
into a full ``BLOCK`` queue is queued past the bound instead, as it already is when a consumer
publishes to itself.

A sink that blocks for long (waits on a socket, sleeps) holds a worker while it does: subscribe
it with ``dedicated=True`` to give it a thread of its own.

:class:`ManualExecutor` is the pool's stand-in for virtual-time tests (``rxbus.testing.TestBus``):
nothing runs until the test calls :meth:`ManualExecutor.run_pending`, in the test's thread.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from rxbus._log import logger

__all__ = ["BATCH", "Executor", "ManualExecutor", "Task", "WorkerPool", "worker_pool"]

BATCH = 64
"""Items a worker delivers for one consumer before it moves on to the next scheduled one."""


class Task(Protocol):
    """A consumer as the pool sees it."""

    def run_batch(self, limit: int) -> bool:
        """Deliver up to ``limit`` queued items; True if work remains (schedule it again)."""
        ...


class Executor(Protocol):
    """Runs scheduled consumers: the process's :class:`WorkerPool`, or a test's
    :class:`ManualExecutor`."""

    def submit(self, task: Task) -> None:
        """Run ``task`` soon (the caller guarantees it is not scheduled already)."""
        ...

    def may_wait(self) -> bool:
        """Whether the calling thread may wait for room in a full ``BLOCK`` queue."""
        ...

    def wait(self, done: threading.Event, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for ``done``; True if it was set."""
        ...


class _Worker(threading.local):
    """Set on a pool's worker threads."""

    pool: WorkerPool | None = None


_on_worker = _Worker()


class WorkerPool:
    """A bounded set of daemon threads running scheduled consumers (see the module docstring).

    Args:
        max_workers: the bound; default ``min(32, cpus + 4)``.
        batch: items per consumer per turn.
        name: thread name prefix (threads are ``{name}-1``, ``{name}-2``, ...).
    """

    _thread_class = threading.Thread  # a test swaps it to make start() fail, as at shutdown

    def __init__(
        self, max_workers: int | None = None, *, batch: int = BATCH, name: str = "rxbus-worker"
    ) -> None:
        if max_workers is None:
            max_workers = min(32, (os.cpu_count() or 1) + 4)
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers!r}")
        self.max_workers = max_workers
        self.batch = batch
        self.name = name
        self._queue: deque[Task] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._threads: list[threading.Thread] = []
        self._sleeping = 0  # workers waiting for work
        self._waking = 0  # of those, already notified
        self._can_grow = True  # fewer threads than max_workers
        self._append = self._queue.append

    @property
    def threads(self) -> int:
        """Worker threads started so far (never more than ``max_workers``)."""
        return len(self._threads)

    def submit(self, task: Task) -> None:
        self._append(task)  # deque.append is atomic: no lock on the publish path
        # Read after the append: a worker counts itself sleeping before it looks at the queue,
        # so either it sees the task or this sees it sleeping (no lost wake-up). Waking only the
        # workers not already woken keeps a publish to 1,000 consumers to a few notifications.
        if self._sleeping > self._waking or self._can_grow:
            self._wake()

    def _wake(self) -> None:
        with self._cond:
            if self._sleeping > self._waking:
                self._waking += 1
                self._cond.notify()
                return
            if len(self._threads) >= self.max_workers:
                return  # every worker is busy: one takes the task when it finishes a batch
            thread = self._thread_class(
                target=self._work, name=f"{self.name}-{len(self._threads) + 1}", daemon=True
            )
            try:
                thread.start()
            except RuntimeError:  # at interpreter shutdown: the workers already started go on
                if self._threads:
                    return
                raise
            self._threads.append(thread)
            self._can_grow = len(self._threads) < self.max_workers

    def _take(self) -> Task | None:
        try:
            return self._queue.popleft()
        except IndexError:
            return None

    def _work(self) -> None:
        _on_worker.pool = self
        cond = self._cond
        while True:
            task = self._take()
            if task is None:
                with cond:
                    self._sleeping += 1
                    task = self._take()
                    if task is None:
                        cond.wait()
                        self._waking -= 1
                    self._sleeping -= 1
                if task is None:
                    continue
            self._run(task)

    def _run(self, task: Task) -> None:
        try:
            more = task.run_batch(self.batch)
        except BaseException as err:  # a sink's KeyboardInterrupt must not kill a shared worker
            logger.opt(exception=err).error(
                "rxbus: a consumer raised out of its worker; it goes on"
            )
            more = True
        if more:
            self.submit(task)

    def may_wait(self) -> bool:
        return _on_worker.pool is None

    def wait(self, done: threading.Event, timeout: float) -> bool:
        """On a worker (``close()`` called from a sink), run other consumers while waiting, so a
        small pool cannot wait for work only it could do."""
        if _on_worker.pool is not self:
            return done.wait(timeout)
        deadline = time.monotonic() + timeout
        while not done.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            task = self._take()
            if task is None:
                done.wait(min(left, 0.01))
            else:
                self._run(task)
        return True


class ManualExecutor:
    """Runs scheduled consumers only when asked, in the caller's thread (virtual-time tests).

    A producer never waits for room here: nothing would make room until the test drains, so a
    full ``BLOCK`` queue grows past its bound instead.
    """

    def __init__(self, drive: Callable[[], object] | None = None) -> None:
        self._queue: deque[Task] = deque()
        self._drive = drive  # what "wait" runs: everything the test would drain

    def submit(self, task: Task) -> None:
        self._queue.append(task)

    def may_wait(self) -> bool:
        return False

    def run_pending(self) -> bool:
        """Give each consumer scheduled now one batch, in turn (as a worker would); True if
        any ran. Those with work left, or scheduled meanwhile, wait for the next call."""
        queue = self._queue
        ran = False
        for _ in range(len(queue)):
            task = queue.popleft()
            ran = True
            if task.run_batch(BATCH):
                queue.append(task)
        return ran

    def wait(self, done: threading.Event, timeout: float) -> bool:
        """Drain, then answer at once: nothing else would set ``done`` while the test waits."""
        if self._drive is not None:
            self._drive()
        else:
            self.run_pending()
        return done.is_set()

    def __len__(self) -> int:
        return len(self._queue)


_pool_lock = threading.Lock()
_pool: list[WorkerPool] = []


def worker_pool() -> WorkerPool:
    """The process's worker pool (no thread is started until a consumer has work)."""
    if not _pool:
        with _pool_lock:
            if not _pool:
                _pool.append(WorkerPool())
    return _pool[0]


def _forget_in_child() -> None:
    # A forked child has none of the parent's worker threads: a pool that believes it has
    # them would never run a consumer. The child starts its own on first use.
    global _pool_lock
    _pool_lock = threading.Lock()
    _pool.clear()


if hasattr(os, "register_at_fork"):  # pragma: no branch - POSIX
    os.register_at_fork(after_in_child=_forget_in_child)
