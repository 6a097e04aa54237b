"""Stopping a task from another one without losing the stopper's own cancellation."""

from __future__ import annotations

import asyncio


async def cancel_and_wait(task: asyncio.Task) -> None:
    """Cancel ``task`` and wait until it has ended.

    The usual ``task.cancel(); with suppress(CancelledError): await task`` cannot tell the stopped task's
    cancellation from one aimed at the task doing the stopping: if the stopper is cancelled while it
    waits (a server shutting down during a replay's stop, a test's timeout), the suppress swallows that
    too and the stopper goes on as if nothing happened. Here the error is swallowed only when no cancel
    of the stopper arrived while it waited (``Task.cancelling`` went up). Counted, not merely read: a
    stopper that is itself cleaning up after a cancel (``serve`` stopping its actors at Ctrl-C) has a
    cancel pending all along and must still be able to stop what it owns. Any other error of the stopped
    task is raised."""
    current = asyncio.current_task()
    pending = current.cancelling() if current is not None else 0
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        if current is not None and current.cancelling() > pending:
            raise
