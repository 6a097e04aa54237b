"""A small local actor runtime on asyncio: actors, references, tell, ask, mailboxes, supervision.

Each actor has a mailbox (an asyncio queue) and a task that takes one message at a time, so an actor's
state is never touched concurrently. Handlers are synchronous state machines (I/O belongs to the edges),
which is what makes supervision by snapshot and journal exact: see actors/supervision.py. An actor that
keeps failing (``max_restarts`` within one checkpoint interval) is stopped rather than spun forever.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actors.supervision import ActorCrashed, Supervised
from twin.aio import cancel_and_wait

log = logging.getLogger(__name__)


class Actor:
    """Base class: override :meth:`receive`. Must be picklable (its state is its snapshot)."""

    def receive(self, message: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class ActorStopped(Exception):
    pass


def _receive(actor: Actor, message: Any, _sink: Any) -> Any:
    return actor.receive(message)


@dataclass
class ActorStats:
    processed: int = 0
    failures: int = 0


@dataclass
class _Cell:
    name: str
    supervised: Supervised[Actor]
    mailbox: asyncio.Queue[tuple[Any, asyncio.Future[Any] | None]]
    stats: ActorStats = field(default_factory=ActorStats)
    task: asyncio.Task[None] | None = None
    stopped: bool = False


class ActorRef:
    """How others reach an actor: by message only."""

    def __init__(self, cell: _Cell):
        self._cell = cell

    @property
    def name(self) -> str:
        return self._cell.name

    def tell(self, message: Any) -> None:
        """Fire and forget; a failure is the supervisor's business, not the sender's."""
        if self._cell.stopped:
            raise ActorStopped(self.name)
        self._cell.mailbox.put_nowait((message, None))

    async def ask(self, message: Any, timeout: float | None = None) -> Any:
        """Send and await the reply; raises ActorCrashed if the message made the actor fail."""
        if self._cell.stopped:
            raise ActorStopped(self.name)
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._cell.mailbox.put_nowait((message, reply))
        async with asyncio.timeout(timeout):  # not wait_for: on 3.11 it can lose a cancel (bridges.base)
            return await reply

    @property
    def stats(self) -> ActorStats:
        return self._cell.stats

    @property
    def restarts(self) -> int:
        return self._cell.supervised.restarts

    def instance(self) -> Actor:
        """The live actor, for tests and snapshots only; never call it from another actor."""
        return self._cell.supervised.instance


class ActorSystem:
    def __init__(self, on_failure: Callable[[str, Any, BaseException], None] | None = None,
                 max_restarts: int = 10):
        self._cells: dict[str, _Cell] = {}
        self.on_failure = on_failure
        self.max_restarts = max_restarts

    def spawn(self, name: str, actor: Actor, snapshot_every: int = 1000, mailbox_size: int = 0,
              strategy: str = "restart") -> ActorRef:
        """Start an actor; ``strategy`` "restart" or "resume" on failure (see actors/supervision.py)."""
        if name in self._cells:
            raise ValueError(f"an actor named {name!r} exists already")
        cell = _Cell(name, Supervised(name, actor, snapshot_every, strategy=strategy),
                     asyncio.Queue(mailbox_size))
        cell.task = asyncio.get_running_loop().create_task(self._run(cell), name=f"actor:{name}")
        self._cells[name] = cell
        return ActorRef(cell)

    def ref(self, name: str) -> ActorRef:
        return ActorRef(self._cells[name])

    async def _run(self, cell: _Cell) -> None:
        restarts_since_checkpoint = 0
        while True:
            message, reply = await cell.mailbox.get()
            try:
                result = cell.supervised.apply(_receive, message)
            except ActorCrashed as crash:
                cell.stats.failures += 1
                restarts_since_checkpoint += 1
                if self.on_failure is not None:
                    self.on_failure(cell.name, message, crash.cause)
                if reply is not None and not reply.done():
                    reply.set_exception(crash)
                if restarts_since_checkpoint > self.max_restarts:
                    log.error("actor %s failed %d times in a row; stopping it", cell.name,
                              restarts_since_checkpoint)
                    cell.stopped = True
                    self._fail_pending(cell)
                    return
                continue
            restarts_since_checkpoint = 0
            cell.stats.processed += 1
            if reply is not None and not reply.done():
                reply.set_result(result)

    @staticmethod
    def _fail_pending(cell: _Cell) -> None:
        while not cell.mailbox.empty():
            _, reply = cell.mailbox.get_nowait()
            if reply is not None and not reply.done():
                reply.set_exception(ActorStopped(cell.name))

    async def stop(self) -> None:
        for cell in self._cells.values():
            cell.stopped = True
            if cell.task is not None:
                cell.task.cancel()  # all at once; the second cancel below is harmless (no cleanup to cut)
        for cell in self._cells.values():
            if cell.task is not None:
                await cancel_and_wait(cell.task)
            self._fail_pending(cell)
        self._cells.clear()
