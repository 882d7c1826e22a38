"""The model scheduler: requests first, background work one job at a time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tandem.scheduler import Priority, Scheduler


async def test_background_job_runs_when_idle() -> None:
    scheduler = Scheduler()

    async def job() -> str:
        return "done"

    assert await scheduler.run(Priority.WARM, "a", job) == "done"
    assert scheduler.stats.completed == {"warm": 1}


async def test_request_preempts_and_blocks_background_work() -> None:
    scheduler = Scheduler()
    started = asyncio.Event()
    order: list[str] = []

    async def slow() -> str:
        started.set()
        await asyncio.sleep(3600)
        return "never"

    warm = asyncio.ensure_future(scheduler.run(Priority.WARM, "a", slow))
    await started.wait()
    async with scheduler.request():
        assert await warm is None  # preempted by the request
        later = asyncio.ensure_future(
            scheduler.run(Priority.PREFETCH, "a", _record(order, "prefetch"))
        )
        await asyncio.sleep(0)
        assert order == []  # waits while the request holds the model
    assert await later == "prefetch"
    assert scheduler.stats.preempted == {"warm": 1}


async def test_most_important_waiting_job_goes_first() -> None:
    scheduler = Scheduler()
    order: list[str] = []
    async with scheduler.request():
        jobs = [
            scheduler.run(Priority.WARM, "a", _record(order, "warm")),
            scheduler.run(Priority.NEXT_EDIT, "b", _record(order, "next-edit")),
            scheduler.run(Priority.PREFETCH, "c", _record(order, "prefetch")),
        ]
        tasks = [asyncio.ensure_future(j) for j in jobs]
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert order == ["prefetch", "next-edit", "warm"]


async def test_newer_job_for_the_same_key_replaces_the_waiting_one() -> None:
    scheduler = Scheduler()
    order: list[str] = []
    async with scheduler.request():
        first = asyncio.ensure_future(
            scheduler.run(Priority.WARM, "a", _record(order, "old"))
        )
        second = asyncio.ensure_future(
            scheduler.run(Priority.WARM, "a", _record(order, "new"))
        )
        await asyncio.sleep(0)
    assert await first is None
    assert await second == "new"
    assert order == ["new"]


async def test_more_important_background_work_preempts_less() -> None:
    scheduler = Scheduler()
    started = asyncio.Event()

    async def slow() -> str:
        started.set()
        await asyncio.sleep(3600)
        return "never"

    warm = asyncio.ensure_future(scheduler.run(Priority.WARM, "a", slow))
    await started.wait()
    order: list[str] = []
    assert await scheduler.run(Priority.PREFETCH, "b", _record(order, "p")) == "p"
    assert await warm is None


async def test_protected_job_is_not_preempted() -> None:
    scheduler = Scheduler()
    started = asyncio.Event()
    release = asyncio.Event()

    async def followed() -> str:
        started.set()
        await release.wait()
        return "served"

    job = asyncio.ensure_future(
        scheduler.run(Priority.PREFETCH, "a", followed, protected=lambda: True)
    )
    await started.wait()
    async with scheduler.request():
        release.set()
        assert await job == "served"


async def test_cancelling_the_caller_cancels_the_job() -> None:
    scheduler = Scheduler()
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def slow() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    caller = asyncio.ensure_future(scheduler.run(Priority.NEXT_EDIT, "a", slow))
    await started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await asyncio.wait_for(cancelled.wait(), 5)
    assert scheduler.status()["running"] is None


async def test_failures_reach_the_caller_and_the_next_job_runs() -> None:
    scheduler = Scheduler()

    async def broken() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await scheduler.run(Priority.WARM, "a", broken)
    order: list[str] = []
    assert await scheduler.run(Priority.WARM, "a", _record(order, "ok")) == "ok"


async def test_requests_are_not_queued() -> None:
    with pytest.raises(ValueError):
        await Scheduler().run(Priority.REQUEST, "a", _record([], "x"))


def _record(order: list[str], name: str):  # type: ignore[no-untyped-def]
    async def job() -> str:
        order.append(name)
        return name

    return job


async def test_a_followed_job_is_not_replaced_by_a_newer_one() -> None:
    scheduler = Scheduler()
    started = asyncio.Event()
    release = asyncio.Event()

    async def followed() -> str:
        started.set()
        await release.wait()
        return "served"

    first = asyncio.ensure_future(
        scheduler.run(Priority.PREFETCH, "a", followed, protected=lambda: True)
    )
    await started.wait()
    order: list[str] = []
    second = asyncio.ensure_future(
        scheduler.run(Priority.PREFETCH, "a", _record(order, "next"))
    )
    await asyncio.sleep(0)
    release.set()
    assert await first == "served"
    assert await second == "next"


async def test_a_factory_failing_at_once_does_not_wedge_the_scheduler() -> None:
    scheduler = Scheduler()

    def broken() -> Any:
        raise RuntimeError("no coroutine")

    with pytest.raises(RuntimeError, match="no coroutine"):
        await scheduler.run(Priority.WARM, "a", broken)
    order: list[str] = []
    assert await scheduler.run(Priority.WARM, "a", _record(order, "ok")) == "ok"
