"""Stopping a task from another one without losing the stopper's own cancellation."""

from __future__ import annotations

import asyncio


async def cancel_and_wait(task: asyncio.Task) -> None:
    """Cancel ``task`` and wait until it has ended.

    The usual ``task.cancel(); with suppress(CancelledError): await task`` cannot tell the stopped task's
    cancellation from one aimed at the task doing the stopping: if the stopper is cancelled while it
    waits (a server shutting down during a replay's stop, a test's timeout), the suppress swallows that
    too and the stopper goes on as if nothing happened. Here the error is swallowed only when the stopper
    itself has no cancel pending (``Task.cancelling``). Any other error of the stopped task is raised."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
