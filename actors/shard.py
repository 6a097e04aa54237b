"""A shard: the station actors of many stations, driven by batches of events.

The shard is the unit both runtimes move around: the local runtime runs shards as actors in one asyncio
loop, the Ray runtime makes each shard one Ray actor (a Ray actor is a process; one per nozzle would not
scale, DOMAIN.md 'Digital twins and runtimes'). Inside, each station is supervised on its own: an
exception in one station restarts that station from its snapshot and journal, and the event that caused
it goes to the dead letters; the other stations never notice.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Mapping, Sequence

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


def _handle(actor: StationActor, event: EventBase, out: Outputs) -> None:
    actor.handle(event, out)


def _flush(actor: StationActor, _: None, out: Outputs) -> None:
    actor.flush(out)


class Shard:
    def __init__(self, stations: Iterable[StationSpec], settings: TwinSettings | None = None,
                 snapshot_every: int = 5000):
        settings = settings or TwinSettings()
        self.stations: dict[str, Supervised[StationActor]] = {
            spec.id: Supervised(spec.id, StationActor(spec, settings), snapshot_every, Outputs)
            for spec in stations
        }
        self.crashes = 0

    def process(self, batches: Mapping[str, Sequence[EventBase]]) -> Outputs:
        """Apply each station's events in order; return everything the twin has to say about them."""
        out = Outputs()
        for station_id, events in batches.items():
            cell = self.stations.get(station_id)
            if cell is None:
                out.rejected.extend({"station": station_id, "event": e.model_dump(), "reason":
                                     f"station {station_id} is not hosted by this shard"} for e in events)
                continue
            for ev in events:
                try:
                    cell.apply(_handle, ev, out)
                except ActorCrashed as crash:
                    self.crashes += 1
                    out.rejected.append({"station": station_id, "event": ev.model_dump(),
                                         "reason": str(crash)})
            try:
                cell.apply(_flush, None, out)
            except ActorCrashed as crash:
                self.crashes += 1
                log.error("station %s failed to flush: %s", station_id, crash)
            out.events += len(events)
        return out

    def process_encoded(self, blobs: Mapping[str, bytes]) -> dict:
        """The same, with each station's events in the log's compact encoding (cheap to ship to Ray)."""
        return self.process({sid: decode_batch(sid, blob) for sid, blob in blobs.items()}).to_dict()

    def state(self, station_id: str) -> dict:
        return self.stations[station_id].instance.state()

    def snapshots(self) -> dict[str, bytes]:
        return {sid: cell.snapshot_bytes() for sid, cell in self.stations.items()}

    def stats(self) -> dict[str, int]:
        return {"stations": len(self.stations), "crashes": self.crashes,
                "restarts": sum(c.restarts for c in self.stations.values())}
