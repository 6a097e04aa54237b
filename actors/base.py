"""What the service needs of a runtime, whichever hosts the shards."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from actors.shard import shard_of
from twin.events import EventBase
from twin.outputs import Outputs
from twin.registry import District, StationSpec
from twin.settings import TwinSettings


class TwinRuntime(Protocol):
    name: str

    async def process(self, batches: Mapping[str, Sequence[EventBase]], with_states: bool = True) -> Outputs:
        """Apply each station's events (in event-time order) and return the twin's outputs."""

    async def states(self) -> dict[str, dict[str, Any]]:
        """The full state of every station (for first paint, and after a drain)."""

    async def snapshot(self) -> dict[str, bytes]:
        """Every station's pickled actor (a checkpoint)."""

    async def restore(self, snapshots: Mapping[str, bytes]) -> list[str]:
        """Load checkpoints; return the stations whose snapshot could not be loaded."""

    async def stats(self) -> dict[str, Any]: ...

    async def stop(self) -> None: ...


def partition(district: District, shards: int) -> list[list[StationSpec]]:
    groups: list[list[StationSpec]] = [[] for _ in range(shards)]
    for spec in district.stations:
        groups[shard_of(spec.id, shards)].append(spec)
    return groups


Batches = Mapping[str, Sequence[EventBase]]


def route(batches: Batches, shards: int) -> dict[int, dict[str, Sequence[EventBase]]]:
    routed: dict[int, dict[str, Sequence[EventBase]]] = defaultdict(dict)
    for station, events in batches.items():
        routed[shard_of(station, shards)][station] = events
    return routed


def make_runtime(kind: str, district: District, settings: TwinSettings | None = None,
                 shards: int | None = None) -> TwinRuntime:
    """``local`` (default, one process) or ``ray``."""
    if kind == "local":
        from actors.local import LocalTwinRuntime

        return LocalTwinRuntime(district, settings, shards or 4)
    if kind == "ray":
        from actors.ray_runtime import RayTwinRuntime

        return RayTwinRuntime(district, settings, shards or 2)
    raise ValueError(f"unknown runtime {kind!r}: expected 'local' or 'ray'")
