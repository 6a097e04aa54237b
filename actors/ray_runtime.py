"""The distributed runtime: each shard a Ray actor hosting the station actors of many stations.

Events cross the process boundary in the log's compact encoding (one msgpack blob per station per
batch), which is ~10x smaller than pickled event objects, and outputs come back as plain dicts.
Stations are routed to shards by the same stable hash as the local runtime, so both see the same
grouping; the actors are the same code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from actors.base import partition, route
from actors.shard import Shard
from twin.events import EventBase, encode_batch
from twin.outputs import Outputs
from twin.registry import District
from twin.settings import TwinSettings


class RayTwinRuntime:
    name = "ray"

    def __init__(self, district: District, settings: TwinSettings | None = None, shards: int = 2,
                 address: str | None = None):
        import ray  # imported here: the local runtime must not pay Ray's import time

        self._ray = ray
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False, num_cpus=None if address else max(shards, 1))
        self.shard_count = shards
        remote_shard = ray.remote(num_cpus=0)(Shard)
        self.handles = [remote_shard.remote(specs, settings) for specs in partition(district, shards)]

    async def process(self, batches: Mapping[str, Sequence[EventBase]], with_states: bool = True) -> Outputs:
        routed = route(batches, self.shard_count)
        refs = [self.handles[i].process_encoded.remote({sid: encode_batch(evs) for sid, evs in part.items()},
                                                       with_states)
                for i, part in routed.items()]
        results = await asyncio.gather(*refs)
        out = Outputs()
        for result in results:
            out.extend(Outputs.from_dict(result))
        return out

    async def states(self) -> dict[str, dict[str, Any]]:
        merged: dict[str, dict[str, Any]] = {}
        for part in await asyncio.gather(*(h.states.remote() for h in self.handles)):
            merged.update(part)
        return merged

    async def snapshot(self) -> dict[str, bytes]:
        merged: dict[str, bytes] = {}
        for part in await asyncio.gather(*(h.snapshot.remote() for h in self.handles)):
            merged.update(part)
        return merged

    async def restore(self, snapshots: Mapping[str, bytes]) -> list[str]:
        failed: list[str] = []
        for part in await asyncio.gather(*(h.restore.remote(dict(snapshots)) for h in self.handles)):
            failed.extend(part)
        return failed

    async def stats(self) -> dict[str, Any]:
        per_shard = await asyncio.gather(*(h.stats.remote() for h in self.handles))
        return {"runtime": self.name, "shards": list(per_shard)}

    async def stop(self) -> None:
        for handle in self.handles:
            self._ray.kill(handle)
        self.handles = []
        self._ray.shutdown()

