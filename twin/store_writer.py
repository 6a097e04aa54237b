"""The twin's writes to Redis, in order and each exactly once, held through an outage of the store.

Why: the twin applies a batch to its actors and shows it live before the batch's input log and outputs
reach Redis (the write overlaps the next batch). While Redis was unreachable — restarted, failed over,
refusing writes when out of memory — the write failed, the next ingest raised that failure, and both
batches were missing from the input log although the actors had applied them: a replay or a restart
then disagreed with what the wall had shown, and the bridges dropped the batch the error surfaced in.

Now the writes wait in a queue, in order, and each is retried with a growing pause until the store takes
it; the actors and the websocket clients carry on meanwhile, and ingest waits only when the queue holds
``max_events`` events (its memory bound). While the store takes writes, ingest waits for the previous
one as before (one write in flight): letting writes pile up there bought nothing and let a batch wait
behind several writes (the largest batch latency of ``bench/ingest.py`` doubled).

A write is one MULTI/EXEC transaction that also sets a marker to the write's id
(:meth:`twin.store.Store.write`): a retry after a failure whose outcome is unknown — the connection
dropped after EXEC went out — first asks whether the marker holds its id, so nothing is logged twice.
A failure that no retry can mend (a bug: an output that does not serialise, a wrong key type) is
logged and counted, and the write is tried once more without its outputs: the input log is what a
replay or a restart rebuilds everything else from, so it is not lost with an output it carried.

Pausing between retries waits on the wall clock: this is the edge of the service, like the store.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis import exceptions as rx

from twin.aio import cancel_and_wait
from twin.events import EventBase, Rejection
from twin.outputs import Outputs
from twin.store import Store

log = logging.getLogger(__name__)

#: Failures of the store, not of the write: retried until they pass.
TRANSIENT = (rx.ConnectionError, rx.TimeoutError, rx.OutOfMemoryError, rx.ReadOnlyError, rx.TryAgainError,
             rx.MasterDownError, rx.ClusterDownError)
#: Replies of a server that refuses writes for a while (a failing disk: MISCONF; a replica: NOREPLICAS).
TRANSIENT_REPLIES = ("MISCONF", "LOADING", "NOREPLICAS", "BUSY")


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` says the store cannot take writes now, rather than that this write is wrong."""
    if isinstance(exc, TRANSIENT):
        return True
    return isinstance(exc, rx.ResponseError) and str(exc).startswith(TRANSIENT_REPLIES)


@dataclass(slots=True)
class _Write:
    id: str
    inputs: Mapping[str, Sequence[EventBase]]
    rejections: Sequence[Rejection]
    outputs: Outputs | None
    counters: Mapping[str, int] | None
    events: int


@dataclass
class WriterStatus:
    """What ``/api/v1/health`` shows of the writes (``holding``: the store refuses them, and they wait)."""

    state: str = "ok"
    pending_writes: int = 0
    pending_events: int = 0
    written: int = 0
    retries: int = 0
    failed: int = 0
    outages: int = 0
    outage_s: float | None = None
    last_error: str | None = None
    lost_at_close: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class StoreWriter:
    """One writer task per twin: :meth:`submit` queues a :meth:`Store.write`, :meth:`flush` waits for
    everything submitted to be written."""

    store: Store
    #: Events the queue may hold before :meth:`submit` waits (≈ 1.5 kB each with their outputs: 93,798
    #: held took 140 MB, README).
    max_events: int = 200_000
    first_pause_s: float = 0.05
    max_pause_s: float = 2.0
    #: Set while the store refuses writes; cleared when it takes them again.
    outage: asyncio.Event = field(default_factory=asyncio.Event)
    _queue: deque[_Write] = field(default_factory=deque)
    _pending_events: int = 0
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _task: asyncio.Task[None] | None = None
    _run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    _next_id: int = 0
    _outage_since: float | None = None
    _status: WriterStatus = field(default_factory=WriterStatus)

    @property
    def holding(self) -> bool:
        return self.outage.is_set()

    async def submit(self, inputs: Mapping[str, Sequence[EventBase]], rejections: Sequence[Rejection] = (),
                     outputs: Outputs | None = None, counters: Mapping[str, int] | None = None) -> None:
        """Queue :meth:`Store.write` of these; waits for the write in flight while the store takes
        writes, and while it refuses them only when the queue holds ``max_events`` input events (a replay
        twin logs nothing: its ``accepted`` counter says how many events the write stands for)."""
        events = sum(len(v) for v in inputs.values()) or int((counters or {}).get("accepted", 0))
        async with self._changed:
            await self._changed.wait_for(lambda: not self._queue or (
                self.holding and self._pending_events + events <= self.max_events))
            self._next_id += 1
            self._queue.append(_Write(f"{self._run_id}:{self._next_id}", inputs, rejections, outputs,
                                      counters, events))
            self._pending_events += events
            self._changed.notify_all()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="store-writer")

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every write submitted so far is done; False if ``timeout_s`` passed first."""
        try:
            async with asyncio.timeout(timeout_s), self._changed:
                await self._changed.wait_for(lambda: not self._queue)
        except TimeoutError:
            return False
        return True

    def status(self) -> WriterStatus:
        s = self._status
        s.state = "holding" if self.holding else "ok"
        s.pending_writes = len(self._queue)
        s.pending_events = self._pending_events
        s.outage_s = None if self._outage_since is None else round(time.monotonic() - self._outage_since, 3)
        return s

    async def close(self, timeout_s: float = 30.0) -> bool:
        """Write what waits (for up to ``timeout_s`` if the store is away), then stop. False, with the
        writes given up logged and counted, if the store never came back."""
        done = await self.flush(timeout_s)
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        if not done:
            lost = sum(w.events for w in self._queue)
            self._status.lost_at_close += len(self._queue)
            log.error("Redis took no writes for %.0f s; %d writes (%d input events) were not written: "
                      "the input log lacks them", timeout_s, len(self._queue), lost)
            self._queue.clear()
            self._pending_events = 0
        return done

    async def _run(self) -> None:
        while True:
            async with self._changed:
                await self._changed.wait_for(lambda: bool(self._queue))
                item = self._queue[0]
            await self._write(item)
            async with self._changed:
                self._queue.popleft()
                self._pending_events -= item.events
                self._changed.notify_all()

    async def _write(self, item: _Write) -> None:
        pause, tries = self.first_pause_s, 0
        while True:
            try:
                if tries and await self.store.written(item.id):
                    break  # the attempt that failed had landed: its reply was what got lost
                await self.store.write(item.inputs, item.rejections, item.outputs, item.counters,
                                       write_id=item.id)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - sorted below: the store's trouble, or this write's
                if not is_transient(exc):
                    self._status.failed += 1
                    self._status.last_error = f"{type(exc).__name__}: {exc}"
                    if item.outputs is None:
                        log.exception("a write to Redis failed and was dropped (%d input events)",
                                      item.events)
                        return
                    log.exception("a write to Redis failed; trying it again without its outputs "
                                  "(%d input events)", item.events)
                    item.outputs = None
                    tries = max(tries, 1)  # Redis applies what it can of a failing EXEC: ask first
                    continue
                tries += 1
                self._status.retries += 1
                self._status.last_error = f"{type(exc).__name__}: {exc}"
                if not self.outage.is_set():
                    self._outage_since = time.monotonic()
                    self._status.outages += 1
                    self.outage.set()
                    async with self._changed:
                        self._changed.notify_all()  # a submit waiting for this write may queue now
                    log.warning("Redis refuses writes (%s); holding them in order and retrying",
                                self._status.last_error)
            await asyncio.sleep(pause)
            pause = min(pause * 2.0, self.max_pause_s)
        self._status.written += 1
        if self.outage.is_set():
            held = self.status()
            log.warning("Redis takes writes again after %.1f s; %d writes still held are going out",
                        held.outage_s or 0.0, held.pending_writes - 1)
            self._outage_since = None
            self.outage.clear()
