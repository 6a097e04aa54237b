"""A shard: the station actors of many stations, driven by batches of events.

The shard is the unit both runtimes move around: the local runtime runs shards as actors in one asyncio
loop, the Ray runtime makes each shard one Ray actor (a Ray actor is a process; one per nozzle would not
scale, DOMAIN.md 'Digital twins and runtimes'). Inside, each station is supervised on its own: an
exception in one station restarts that station from its snapshot and journal, and the event that caused
it goes to the dead letters; the other stations never notice.
"""

from __future__ import annotations

import logging
import pickle
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from actors.entities import StationActor
from actors.supervision import ActorCrashed, Supervised
from twin.events import EventBase, decode_batch
from twin.outputs import Outputs
from twin.registry import StationSpec
from twin.settings import TwinSettings

log = logging.getLogger(__name__)


def shard_of(station_id: str, shards: int) -> int:
    """Stable routing: the same station lands on the same shard in every process and every run."""
    return zlib.crc32(station_id.encode("utf-8")) % shards


RunMessage = tuple[Sequence[EventBase], list[int], bool, bool]

#: Each event class's field names, in the order of its instances' ``__dict__``.
_FIELDS: dict[type, tuple[str, ...]] = {}


def _pack_run(message: RunMessage) -> tuple[bytes, bool, bool]:
    """A station batch as its supervisor journals it: pickled, each event as one tuple (its class, then
    its values). A station journals up to 20,000 events between snapshots, and what an event costs there
    is most of a live station's memory (bench/memory.py, 10 stations at 10-s readings, pympler at day 8):
    ~1.1 kB as a pydantic object; ~250 B as a tuple of its values (session 13: day 8, 25.0 → 11.0 MB
    resident a station, journals 2.5 MB of it); ~57 B pickled, at ~0.2 µs an event, a percent or two of
    the ~13 µs the station then spends on it. Unpickling (2.6 µs an event) is paid only by a replay."""
    events, _, flush, with_state = message
    packed = []
    for e in events:
        d = e.__dict__
        cls = type(e)
        if cls not in _FIELDS:
            _FIELDS[cls] = tuple(d)
        packed.append((cls, *d.values()))
    return pickle.dumps(packed, pickle.HIGHEST_PROTOCOL), flush, with_state


def _unpack_run(entry: tuple[bytes, bool, bool]) -> RunMessage:
    """The journaled batch as events again, for a replay (validated once: rebuilt unchecked)."""
    blob, flush, with_state = entry
    packed: list[tuple[Any, ...]] = pickle.loads(blob)
    events = [row[0].model_construct(**dict(zip(_FIELDS[row[0]], row[1:], strict=True))) for row in packed]
    return events, [0], flush, with_state


def _run(actor: StationActor, message: RunMessage, out: Outputs) -> None:
    """Handle a run of one station's events; ``progress`` tells a supervisor which event failed."""
    events, progress, flush, with_state = message
    handle = actor.handle
    for i, ev in enumerate(events):
        progress[0] = i
        handle(ev, out)
    progress[0] = len(events)
    if flush:
        actor.flush(out, with_state)


class Shard:
    def __init__(self, stations: Iterable[StationSpec], settings: TwinSettings | None = None,
                 snapshot_every: int = 5000):
        settings = settings or TwinSettings()
        self.stations: dict[str, Supervised[StationActor]] = {
            spec.id: Supervised(spec.id, StationActor(spec, settings), snapshot_every, Outputs,
                                codec=(_pack_run, _unpack_run))
            for spec in stations
        }
        self.crashes = 0

    def process(self, batches: Mapping[str, Sequence[EventBase]], with_states: bool = True) -> Outputs:
        """Apply each station's events in order; return everything the twin has to say about them.

        ``with_states`` adds each touched station's full state (for the UI); building it costs more
        than the events of a batch, so the service asks for it a few times a second, not every batch.
        """
        out = Outputs()
        for station_id, events in batches.items():
            cell = self.stations.get(station_id)
            if cell is None:
                out.rejected.extend({"station": station_id, "event": e.model_dump(), "reason":
                                     f"station {station_id} is not hosted by this shard"} for e in events)
                continue
            self._apply(cell, list(events), out, with_states)
            out.events += len(events)
        return out

    def _apply(self, cell: Supervised[StationActor], events: list[EventBase], out: Outputs,
               with_state: bool) -> None:
        """One supervised call per station batch (cheap); on a crash, isolate the poison event.

        The failed attempt wrote into a scratch sink that is dropped; the events before the poison are
        applied again (they succeeded once, and actors are deterministic), the poison is dead-lettered,
        the station counts it in an open TWIN_FAULT alert (StationActor.twin_fault: on the wall, not only
        in the dead letters), and the rest continue. The station is then checkpointed, the count with it:
        each restart replays the journal since the last checkpoint, so a bug that fails every event of
        some kind (a stale monkeypatch in a test did: every bin close) would otherwise replay a journal
        grown by each isolated prefix, once per poison event, and the run crawl instead of dead-lettering
        them at a steady cost.
        """
        while True:
            scratch, progress = Outputs(), [0]
            try:
                cell.apply(_run, (events, progress, True, with_state), scratch, len(events))
            except ActorCrashed as crash:
                self.crashes += 1
                bad = progress[0]
                cause = f"{type(crash.cause).__name__}: {crash.cause}"
                if bad >= len(events):
                    # Every event went in; emitting the batch's outputs failed. The restart took the
                    # events back out, so they are applied again: the station must not lose them (its
                    # books would miss their sales); only this batch's points and state are lost.
                    log.error("station %s failed to flush its outputs: %s", cell.name, crash)
                    if events:
                        cell.apply(_run, (events, [0], False, False), out, len(events))
                        self._record_fault(cell, events[-1], f"flush: {cause}", out)
                    return
                out.rejected.append({"station": cell.name, "event": events[bad].model_dump(),
                                     "reason": str(crash)})
                if bad:
                    cell.apply(_run, (events[:bad], [0], False, False), out, bad)
                self._record_fault(cell, events[bad], cause, out)
                events = events[bad + 1:]
                continue
            out.extend(scratch)
            return

    @staticmethod
    def _record_fault(cell: Supervised[StationActor], event: EventBase, cause: str, out: Outputs) -> None:
        """The station's TWIN_FAULT, then a checkpoint (see _apply); telling of a fault must not be one."""
        try:
            cell.instance.twin_fault(event, cause, out)
        except Exception:  # noqa: BLE001
            log.exception("station %s: could not record its twin fault", cell.name)
        cell.checkpoint()

    def process_encoded(self, blobs: Mapping[str, bytes], with_states: bool = True) -> dict:
        """The same, with each station's events in the log's compact encoding (cheap to ship to Ray)."""
        batches = {sid: decode_batch(sid, blob) for sid, blob in blobs.items()}
        return self.process(batches, with_states).to_dict()

    def snapshot(self) -> dict[str, bytes]:
        """Every station's pickled actor, for a durable checkpoint."""
        return {sid: cell.snapshot() for sid, cell in self.stations.items()}

    def restore(self, snapshots: Mapping[str, bytes]) -> list[str]:
        """Restore the stations this shard hosts; return those whose snapshot could not be loaded (the
        code changed since, say): they start empty and the caller replays their whole log."""
        failed = []
        for sid, blob in snapshots.items():
            cell = self.stations.get(sid)
            if cell is None:
                continue
            try:
                cell.restore(blob)
            except Exception as exc:  # noqa: BLE001 - any unpickling failure means "start afresh"
                log.warning("station %s: snapshot not restorable (%s); replaying its whole log", sid, exc)
                failed.append(sid)
        return failed

    def state(self, station_id: str) -> dict:
        return self.stations[station_id].instance.state()

    def states(self) -> dict[str, dict]:
        return {sid: cell.instance.state() for sid, cell in self.stations.items()}

    def stats(self) -> dict[str, int]:
        return {"stations": len(self.stations), "crashes": self.crashes,
                "restarts": sum(c.restarts for c in self.stations.values())}
