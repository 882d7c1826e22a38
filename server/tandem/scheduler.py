"""One scheduler for the model: which work runs, and what gives way.

The in-process model does one thing at a time. A user's request always goes first:
it starts at once and preempts whatever background work is running. Background
work (prefetching the completion after the one shown, next-edit prediction,
warming a document's prompt into the KV cache) waits until no request is
in progress and then runs one job at a time, most important first:

    request > following a generation in flight > prefetch > next edit > warm-up
    > growing a warmed window

Background jobs are keyed (a document URI): a newer job for the same key and
priority replaces the one waiting. A job that is preempted, replaced or never
run returns ``None`` to whoever awaits it. No model or LSP code here: pipelines
hand in coroutine factories.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeVar

import attrs

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Priority(enum.IntEnum):
    """What runs first (lower first)."""

    REQUEST = 0
    """A user's request: never queued, preempts background work."""
    FOLLOW = 1
    """A generation a request follows (protected from preemption)."""
    PREFETCH = 2
    NEXT_EDIT = 3
    WARM = 4
    GROW = 5
    """A longer window before the cursor for a prompt warmed already."""


@attrs.define(eq=False)
class _Job(Generic[T]):
    priority: Priority
    key: str
    factory: Callable[[], Awaitable[T]]
    result: asyncio.Future[T | None]
    protected: Callable[[], bool] | None
    seq: int
    task: asyncio.Task[T] | None = None


@attrs.define
class SchedulerStats:
    """Counters since start; shown by the status command."""

    started: dict[str, int] = attrs.field(factory=dict)
    completed: dict[str, int] = attrs.field(factory=dict)
    preempted: dict[str, int] = attrs.field(factory=dict)
    replaced: dict[str, int] = attrs.field(factory=dict)

    def count(self, what: dict[str, int], priority: Priority) -> None:
        """Add one to ``what`` for ``priority``."""
        name = priority.name.lower()
        what[name] = what.get(name, 0) + 1


class Scheduler:
    """Runs background model work when no user request needs the model."""

    def __init__(self) -> None:
        self._active = 0
        self._pending: dict[tuple[Priority, str], _Job[Any]] = {}
        self._running: _Job[Any] | None = None
        self._seq = 0
        self.stats = SchedulerStats()

    @property
    def busy(self) -> bool:
        """Whether a user request holds the model."""
        return self._active > 0

    @contextlib.asynccontextmanager
    async def request(self) -> AsyncIterator[None]:
        """Hold the model for a user request: background work stops and waits."""
        self._active += 1
        self.preempt()
        try:
            yield
        finally:
            self._active -= 1
            self._kick()

    def preempt(self) -> None:
        """Cancel the running background job, unless something follows it."""
        job = self._running
        if job is None or job.task is None or job.task.done():
            return
        if job.protected is not None and job.protected():
            return
        self.stats.count(self.stats.preempted, job.priority)
        job.task.cancel()

    async def run(
        self,
        priority: Priority,
        key: str,
        factory: Callable[[], Awaitable[T]],
        protected: Callable[[], bool] | None = None,
    ) -> T | None:
        """Run ``factory()`` in the background when the model is free.

        Returns its result, or ``None`` when it was preempted by a request,
        replaced by a newer job for the same key and priority, or dropped.
        ``protected`` (optional) says when the running job must not be preempted
        (a request is following it). Cancelling the caller cancels the job.
        """
        if priority == Priority.REQUEST:
            raise ValueError("requests run directly, inside Scheduler.request()")
        loop = asyncio.get_running_loop()
        self._seq += 1
        job: _Job[T] = _Job(
            priority, key, factory, loop.create_future(), protected, self._seq
        )
        # A caller gone by the time its job fails must not leave the failure
        # "never retrieved".
        job.result.add_done_callback(_retrieve)
        older = self._pending.pop((priority, key), None)
        if older is not None:
            self.stats.count(self.stats.replaced, priority)
            older.result.set_result(None)
        running = self._running
        if (
            running is not None
            and running.task is not None
            and (running.key, running.priority) == (key, priority)
            and not (running.protected is not None and running.protected())
        ):
            self.stats.count(self.stats.replaced, priority)
            running.task.cancel()  # a newer job for the same thing
        elif running is not None and running.priority > priority:
            self.preempt()  # more important background work
        self._pending[(priority, key)] = job
        self._kick()
        try:
            return await asyncio.shield(job.result)
        except asyncio.CancelledError:
            if self._pending.get((priority, key)) is job:
                del self._pending[(priority, key)]
            if job.task is not None:
                job.task.cancel()
            raise

    def cancel(self, key: str) -> None:
        """Drop waiting and running background jobs for ``key`` (a closed file)."""
        for k, job in list(self._pending.items()):
            if k[1] == key:
                del self._pending[k]
                job.result.set_result(None)
        running = self._running
        if running is not None and running.key == key and running.task is not None:
            running.task.cancel()

    def cancel_all(self) -> None:
        """Drop every background job (shutdown)."""
        for job in self._pending.values():
            job.result.set_result(None)
        self._pending.clear()
        if self._running is not None and self._running.task is not None:
            self._running.task.cancel()

    def status(self) -> dict[str, Any]:
        """For the status command."""
        running = self._running
        return {
            "requestsActive": self._active,
            "running": None
            if running is None
            else {"kind": running.priority.name.lower(), "key": running.key},
            "waiting": [
                {"kind": p.name.lower(), "key": k} for p, k in sorted(self._pending)
            ],
            **attrs.asdict(self.stats),
        }

    # -- internals ---------------------------------------------------------------

    def _kick(self) -> None:
        """Start the most important waiting job if the model is free."""
        if self._active or self._running is not None or not self._pending:
            return
        job = min(self._pending.values(), key=lambda j: (j.priority, j.seq))
        del self._pending[(job.priority, job.key)]
        try:
            task = asyncio.ensure_future(job.factory())
        except Exception as e:  # the factory failed before any await
            job.result.set_exception(e)
            self._kick()
            return
        self._running = job
        job.task = task
        self.stats.count(self.stats.started, job.priority)
        task.add_done_callback(lambda t: self._finished(job, t))

    def _finished(self, job: _Job[Any], task: asyncio.Task[Any]) -> None:
        if self._running is job:
            self._running = None
        if not job.result.done():
            if task.cancelled():
                job.result.set_result(None)
            elif (exc := task.exception()) is not None:
                logger.debug("background %s job failed: %s", job.priority.name, exc)
                job.result.set_exception(exc)
            else:
                self.stats.count(self.stats.completed, job.priority)
                job.result.set_result(task.result())
        self._kick()


def _retrieve(result: asyncio.Future[Any]) -> None:
    if not result.cancelled():
        result.exception()
