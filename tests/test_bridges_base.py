"""``bridges.base.wait_for``: a bridge's every timed await goes through it, so a cancel it lost would
leave ``fueltwin serve`` running after Ctrl-C. The races are made exact here: the awaited future is
settled and the task cancelled in the same loop step, as a socket closing at shutdown does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from bridges.base import wait_for


async def race(settle: Callable[[asyncio.Future[int]], None]) -> asyncio.Task[str]:
    """A task waiting on a future through ``wait_for``; the future is settled by ``settle`` and the task
    cancelled before either is seen. The task says what it saw if it goes on."""
    inner: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def body() -> str:
        try:
            value = await wait_for(inner, 10.0)
        except ConnectionError:
            return "went on after the connection error"
        return f"went on with {value}"

    task = asyncio.create_task(body())
    await asyncio.sleep(0)  # the task is now waiting
    settle(inner)
    task.cancel()
    await asyncio.wait([task], timeout=5.0)
    return task


async def test_a_cancel_as_the_awaited_thing_fails_is_not_lost() -> None:
    # Python 3.11's asyncio.wait_for raises the ConnectionError here and the task goes on
    task = await race(lambda f: f.set_exception(ConnectionError("peer closed")))
    assert task.cancelled(), task.result()


async def test_a_cancel_as_the_awaited_thing_returns_is_not_lost() -> None:
    task = await race(lambda f: f.set_result(7))
    assert task.cancelled(), task.result()


async def test_the_timeout_and_the_result_are_those_of_asyncio_wait_for() -> None:
    never: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    with pytest.raises(TimeoutError):
        await wait_for(never, 0.01)
    assert never.cancelled()  # like wait_for, nothing is left running after a timeout
    assert await wait_for(asyncio.sleep(0, result=3), None) == 3
    with pytest.raises(ConnectionError):
        await wait_for(asyncio.open_connection("127.0.0.1", 1), 5.0)  # refused on loopback
