"""The default runtime: every shard an actor of the local asyncio runtime, all in one process."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from actors.base import partition, route
from actors.runtime import Actor, ActorRef, ActorSystem
from actors.shard import Shard
from twin.events import EventBase
from twin.outputs import Outputs
from twin.registry import District
from twin.settings import TwinSettings


class ShardActor(Actor):
    def __init__(self, shard: Shard):
        self.shard = shard

    def receive(self, message: Any) -> Any:
        if message == "stats":
            return self.shard.stats()
        if message == "states":
            return self.shard.states()
        if message == "snapshot":
            return self.shard.snapshot()
        if isinstance(message, tuple) and message and message[0] == "restore":
            return self.shard.restore(message[1])
        batches, with_states = message
        return self.shard.process(batches, with_states)


class LocalTwinRuntime:
    name = "local"

    def __init__(self, district: District, settings: TwinSettings | None = None, shards: int = 4):
        self.shard_count = shards
        self.system = ActorSystem()
        # A shard supervises each of its stations (snapshot + journal); the shard actor itself holds
        # nothing else, so a failure outside a station resumes it rather than journaling every batch.
        self.refs: list[ActorRef] = [
            self.system.spawn(f"shard-{i}", ShardActor(Shard(specs, settings)), strategy="resume")
            for i, specs in enumerate(partition(district, shards))
        ]

    async def process(self, batches: Mapping[str, Sequence[EventBase]], with_states: bool = True) -> Outputs:
        routed = route(batches, self.shard_count)
        results = await asyncio.gather(*(self.refs[i].ask((part, with_states)) for i, part in routed.items()))
        out = Outputs()
        for result in results:
            out.extend(result)
        return out

    def shard(self, index: int) -> Shard:
        return self.refs[index].instance().shard  # type: ignore[attr-defined]

    async def states(self) -> dict[str, dict[str, Any]]:
        merged: dict[str, dict[str, Any]] = {}
        for part in await asyncio.gather(*(ref.ask("states") for ref in self.refs)):
            merged.update(part)
        return merged

    async def snapshot(self) -> dict[str, bytes]:
        merged: dict[str, bytes] = {}
        for part in await asyncio.gather(*(ref.ask("snapshot") for ref in self.refs)):
            merged.update(part)
        return merged

    async def restore(self, snapshots: Mapping[str, bytes]) -> list[str]:
        failed: list[str] = []
        for part in await asyncio.gather(*(ref.ask(("restore", dict(snapshots))) for ref in self.refs)):
            failed.extend(part)
        return failed

    async def stats(self) -> dict[str, Any]:
        per_shard = await asyncio.gather(*(ref.ask("stats") for ref in self.refs))
        return {"runtime": self.name, "shards": per_shard}

    async def stop(self) -> None:
        await self.system.stop()
