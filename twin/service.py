"""Service wiring: raw input → validation → dedup → log → actors → outputs → store and live clients.

This is the edge between the outside world and the pure twin. Every batch goes through the same steps
whether it came from the simulator, a bridge or a document import:

1. validate (bad input becomes a dead letter with its reason, never an exception);
2. drop repeats of (source, seq), counting them;
3. order each station's events by event time (sources interleave) and hand them to the runtime;
4. write the accepted inputs, dead letters and outputs to Redis in one transaction, overlapped with
   the next batch's processing, in order and held through an outage of Redis
   (:class:`twin.store_writer.StoreWriter`: the twin stays live, nothing is logged twice or lost);
5. pass the outputs to the live listeners (websocket hub), which must never block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from actors.base import TwinRuntime
from twin.events import Deduplicator, EventBase, Rejection, Validator
from twin.outputs import Outputs
from twin.registry import District
from twin.store import Store
from twin.store_writer import StoreWriter
from twin.timeutil import local_day

log = logging.getLogger(__name__)

Listener = Callable[[Outputs], None]
#: The transactions' trace stays in Redis at least this long past the days of log kept (whole local
#: months move to the archive): a regulator traces recent sales most, and the paper trail's window of
#: 45 days is when lots and their orders still change.
TRACE_KEPT_DAYS = 62


@dataclass
class IngestCounts:
    received: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    batches: int = 0
    outputs_divergence_points: int = 0
    alerts: int = 0
    deliveries: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    by_reason: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(slots=True)
class RecoveryReport:
    restored: int = 0
    replayed: int = 0


class TwinService:
    def __init__(self, district: District, store: Store, runtime: TwinRuntime,
                 future_tolerance_s: float = 300.0, state_interval_s: float = 0.5,
                 checkpoint_every: int | None = None, keep_log: bool = True, keep_days: float | None = None):
        self.district = district
        self.store = store
        self.runtime = runtime
        self.validator = Validator(district.directory(), future_tolerance_s)
        self.dedup = Deduplicator()
        self.counts = IngestCounts()
        self.listeners: list[Listener] = []
        self.writer = StoreWriter(store)
        self._lock = asyncio.Lock()
        self.sim_now: float | None = None
        # Station states are for people; a few a second is plenty and building them is not free.
        self.state_interval_s = state_interval_s
        self._last_states = -math.inf
        #: Accepted events between durable checkpoints (None: only when asked, e.g. at close).
        self.checkpoint_every = checkpoint_every
        self._since_checkpoint = 0
        #: Whether accepted events go to the input log. A replay twin's inputs are its source's log
        #: already: it keeps no second copy in Redis (nothing reads one; writing it cost a replay 5–15 %
        #: of its time, bench/replay.py side by side). Accepted events are counted all the same.
        self.keep_log = keep_log
        #: Days of input log and divergence kept in Redis, before the newest ``now`` (None: all). After each
        #: checkpoint older log entries move to the store's archive on disk (still read by replay and
        #: recovery) and older divergence is dropped (a replay gives it again): Redis holds everything
        #: in memory, and those two are ~5 MB a station-day (bench/redis_memory.py).
        self.keep_days = keep_days
        self._archiving: asyncio.Task[None] | None = None
        self.archived: dict[str, float] = {"events": 0, "divergence_entries": 0, "runs": 0, "files_bytes": 0,
                                           "before_ts": 0.0, "seconds": 0.0, "trace_records": 0}

    def subscribe(self, listener: Listener) -> None:
        self.listeners.append(listener)

    async def ingest(self, raws: Sequence[Any], now: float) -> Outputs:
        """Take one batch of raw events. ``now`` is the caller's clock: the wall time where events come
        from the field (bridges, the API), the simulated time where a simulator or a replay feeds the
        twin. Validation judges events "from the future" against it, so the caller chooses it; this
        module reads the wall clock only to pace the station states it builds for people."""
        async with self._lock:  # batches are applied in the order they arrive
            accepted, rejected = self.validator.validate(raws, now)
            return await self._apply(len(raws), accepted, rejected, now)

    async def ingest_events(self, events: Sequence[EventBase], now: float) -> Outputs:
        """Take one batch of events that were validated already: read back from a twin's input log (a
        replay), where :func:`twin.events.decode_batch` has just validated them. Dumping them to dicts and
        validating them again found nothing new and cost a replay about 7 % of its time (pyinstrument,
        bench/replay.py). Repeats are still dropped; ``now`` means what it means for :meth:`ingest`."""
        async with self._lock:
            return await self._apply(len(events), list(events), [], now)

    async def _apply(self, received: int, accepted: list[EventBase], rejected: list[Rejection],
                     now: float) -> Outputs:
        """The rest of :meth:`ingest`, under its lock: dedup, the runtime, Redis, listeners."""
        self.sim_now = now
        groups, duplicates, too_old = self._admit(accepted)
        rejected.extend(too_old)
        with_states = time.monotonic() - self._last_states >= self.state_interval_s
        if with_states:
            self._last_states = time.monotonic()
        outputs = await self.runtime.process(groups, with_states)
        self._count(received, groups, rejected, duplicates, outputs)
        if self.keep_log:
            await self.writer.submit(groups, rejected, outputs, {"duplicates": duplicates})
        else:
            taken = sum(len(events) for events in groups.values())
            await self.writer.submit({}, rejected, outputs, {"duplicates": duplicates, "accepted": taken})
        self._publish(outputs)
        self._since_checkpoint += outputs.events
        # While Redis is away the checkpoint waits: it would hold ingest until Redis came back.
        if (self.checkpoint_every is not None and self._since_checkpoint >= self.checkpoint_every
                and not self.writer.holding):
            await self._checkpoint()
        return outputs

    def _publish(self, outputs: Outputs) -> None:
        for listener in self.listeners:
            try:
                listener(outputs)
            except Exception:  # noqa: BLE001 - a broken listener must not stop the twin
                log.exception("live listener failed")

    def _admit(self, events: list[EventBase]) -> tuple[dict[str, list[EventBase]], int, list[Rejection]]:
        groups: dict[str, list[EventBase]] = {}
        duplicates = 0
        too_old: list[Rejection] = []
        admit = self.dedup.admit
        for ev in events:
            reason = admit(ev)
            if reason is None:
                groups.setdefault(ev.station, []).append(ev)
            elif reason == "duplicate":
                duplicates += 1
            else:
                too_old.append(Rejection(ev.model_dump(), reason, ev.station, ev.source))
        for station, evs in groups.items():
            if any(evs[i].ts > evs[i + 1].ts for i in range(len(evs) - 1)):
                groups[station] = sorted(evs, key=_by_ts)
        return groups, duplicates, too_old

    def _count(self, received: int, groups: dict[str, list[EventBase]], rejected: list[Rejection],
               duplicates: int, outputs: Outputs) -> None:
        c = self.counts
        c.received += received
        c.accepted += sum(len(v) for v in groups.values())
        c.rejected += len(rejected) + len(outputs.rejected)
        c.duplicates += duplicates
        c.batches += 1
        c.alerts += len(outputs.alerts)
        c.deliveries += len(outputs.deliveries)
        c.outputs_divergence_points += sum(len(d["ts"]) for d in outputs.divergence)
        for rej in rejected:
            key = rej.reason.split(":")[0][:60]
            c.by_reason[key] = c.by_reason.get(key, 0) + 1
        for evs in groups.values():
            if evs:
                c.first_ts = evs[0].ts if c.first_ts is None else min(c.first_ts, evs[0].ts)
                c.last_ts = evs[-1].ts if c.last_ts is None else max(c.last_ts, evs[-1].ts)

    async def drain(self) -> None:
        """Wait until everything ingested so far is in Redis, station states included."""
        async with self._lock:
            states = Outputs(states=await self.runtime.states())
            await self.writer.submit({}, outputs=states)
            await self.writer.flush()
            self._last_states = time.monotonic()
            self._publish(states)

    async def checkpoint(self) -> int:
        """Write every station's actor to Redis with the log entry it has seen; return how many."""
        async with self._lock:
            return await self._checkpoint()

    async def _checkpoint(self) -> int:
        await self.writer.flush()  # the log is complete up to what the actors have seen
        stations = [s.id for s in self.district.stations]
        heads = await self.store.log_heads(stations)
        snapshots = await self.runtime.snapshot()
        await self.store.save_snapshots(snapshots, heads)
        self._since_checkpoint = 0
        self._start_archiving()
        return len(snapshots)

    def _start_archiving(self) -> None:
        """In the background (ingest goes on: the move reads the streams' heads, ingest appends at their
        tails), at most one at a time."""
        if self.keep_days is None or self.store.archive is None or self.sim_now is None:
            return
        if self._archiving is not None and not self._archiving.done():
            return
        self._archiving = asyncio.create_task(self.archive(self.sim_now - self.keep_days * 86_400.0))

    async def archive(self, before_ts: float) -> tuple[int, int]:
        """Move every station's log entries before ``before_ts`` to the archive and drop its divergence
        before it; return (events moved, divergence entries dropped). A failure (Redis away, a full
        disk) is logged and left for the next checkpoint: what was moved is consistent either way."""
        moved = dropped = 0
        began = time.monotonic()
        try:
            trace_month = (local_day(before_ts - TRACE_KEPT_DAYS * 86_400.0)[:7] if math.isfinite(before_ts)
                           else "9999-12")  # everything
            for spec in self.district.stations:
                moved += await self.store.archive_log(spec.id, before_ts)
                dropped += await self.store.trim_divergence(spec.id, before_ts)
            self.archived["trace_records"] += await self.store.archive_trace(trace_month)

        except (RedisError, OSError) as exc:
            log.warning("moving the log before %.0f to the archive stopped (%s); the next checkpoint "
                        "goes on", before_ts, exc)
        self.archived["events"] += moved
        self.archived["divergence_entries"] += dropped
        self.archived["runs"] += 1
        self.archived["before_ts"] = before_ts
        self.archived["seconds"] += time.monotonic() - began
        if moved and self.store.archive is not None:  # what the folder holds, for the health page
            self.archived["files_bytes"] = await asyncio.to_thread(self.store.archive.size_bytes)
        if moved or dropped:
            log.info("archived %d logged events, dropped %d divergence entries before %.0f",
                     moved, dropped, before_ts)
        return moved, dropped

    async def recover(self, chunk: int = 20_000) -> RecoveryReport:
        """Bring the actors back after a restart: the last checkpoint, then the log after it.

        DESIGN principle 5 across program restarts, not only inside one. A station with no usable
        snapshot (none yet, or pickled by other code) replays its whole log. The replayed events' outputs
        were written when they first ran, so only alerts and states are refreshed."""
        async with self._lock:
            report = RecoveryReport()
            snapshots, positions = await self.store.load_snapshots()
            failed = set(await self.runtime.restore(snapshots)) if snapshots else set()
            report.restored = len(snapshots) - len(failed)
            for spec in self.district.stations:
                sid = spec.id
                start = "-" if sid in failed or sid not in positions else f"({positions[sid]}"
                pending: list[EventBase] = []
                async for _, events in self.store.read_log(sid, start=start):
                    pending.extend(events)
                    if len(pending) >= chunk:
                        await self._replay(sid, pending)
                        report.replayed += len(pending)
                        pending = []
                if pending:
                    await self._replay(sid, pending)
                    report.replayed += len(pending)
            states = Outputs(states=await self.runtime.states())
            await self.store.write({}, outputs=states)
            self._publish(states)
            log.info("recovered %d stations from their checkpoint, replayed %d logged events",
                     report.restored, report.replayed)
            return report

    async def _replay(self, station: str, events: list[EventBase]) -> None:
        for ev in events:  # a source that retransmits after the restart is still de-duplicated
            self.dedup.admit(ev)
        outputs = await self.runtime.process({station: events}, with_states=False)
        await self.store.write({}, outputs=outputs, replayed=True)

    async def close(self, store_timeout_s: float = 30.0) -> None:
        """Write what is held, the states and a checkpoint, and stop the actors. Redis unreachable for
        ``store_timeout_s``: what it has not taken is given up, logged with its count (a shutdown must
        end), and no checkpoint is written."""
        async with self._lock:
            states = Outputs(states=await self.runtime.states())
            await self.writer.submit({}, outputs=states)
            written = await self.writer.close(store_timeout_s)
        if written and self.checkpoint_every is not None:
            await self.checkpoint()
        if self._archiving is not None:  # a move cut short is consistent: the rest goes at the next start
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._archiving, timeout=store_timeout_s)
        await self.runtime.stop()


def _by_ts(ev: EventBase) -> float:
    return ev.ts
