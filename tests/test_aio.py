"""twin.aio.cancel_and_wait: stops the task, keeps the stopper's own cancellation."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from twin.aio import cancel_and_wait


async def test_stops_the_task_and_returns() -> None:
    task = asyncio.create_task(asyncio.Event().wait())
    await asyncio.sleep(0)  # let it start waiting
    await cancel_and_wait(task)
    assert task.cancelled()


async def test_a_task_that_already_ended_is_fine() -> None:
    async def quick() -> int:
        return 1

    task = asyncio.create_task(quick())
    await task
    await cancel_and_wait(task)
    assert task.result() == 1


async def test_other_errors_of_the_task_are_raised() -> None:
    async def fails_on_cancel() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    task = asyncio.create_task(fails_on_cancel())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="cleanup failed"):
        await cancel_and_wait(task)


async def _stopper_cancelled_while_waiting(stop) -> asyncio.Task:
    """A task whose cleanup takes a while; a stopper waiting for it is itself cancelled meanwhile."""
    cleaning, release = asyncio.Event(), asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cleaning.set()
            await release.wait()
            raise

    task = asyncio.create_task(slow_to_stop())
    await asyncio.sleep(0)
    stopper = asyncio.create_task(stop(task))
    async with asyncio.timeout(5):
        await cleaning.wait()
    stopper.cancel()
    release.set()
    with contextlib.suppress(asyncio.CancelledError):
        async with asyncio.timeout(5):
            await stopper
    assert task.cancelled()
    return stopper


async def test_the_stoppers_own_cancel_is_not_swallowed() -> None:
    stopper = await _stopper_cancelled_while_waiting(cancel_and_wait)
    assert stopper.cancelled()


async def test_a_stopper_cleaning_up_after_its_own_cancel_still_stops_what_it_owns() -> None:
    """``serve`` at Ctrl-C: the main task is cancelled, and its ``finally`` stops the actors. The cancel
    it is handling must not make every stop in its cleanup raise (session 20's first version did: the
    program skipped its last words, tests/test_bridges_cli.py)."""
    owned = asyncio.create_task(asyncio.Event().wait())
    waiting, cleaned = asyncio.Event(), asyncio.Event()

    async def owner() -> None:
        try:
            waiting.set()
            await asyncio.Event().wait()
        finally:
            await cancel_and_wait(owned)
            cleaned.set()

    task = asyncio.create_task(owner())
    async with asyncio.timeout(5):
        await waiting.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        async with asyncio.timeout(5):
            await task
    assert cleaned.is_set() and owned.cancelled() and task.cancelled()


async def test_the_usual_suppress_would_swallow_it() -> None:
    """The pattern this replaces, under the same race: the stopper ends as if it had not been cancelled
    (why cancel_and_wait exists; if asyncio ever changes this, the helper may be dropped)."""

    async def suppressing(task: asyncio.Task) -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    stopper = await _stopper_cancelled_while_waiting(suppressing)
    assert not stopper.cancelled()
