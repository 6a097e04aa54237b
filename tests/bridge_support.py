"""Helpers for the OPC UA and TLS bridge tests: a device description, a collecting sink, profile loading."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from twin.events import Rejection

PROFILES = Path(__file__).resolve().parent.parent / "bridges" / "profiles"


def load(name: str, cls: Any) -> Any:
    """A shipped profile by file stem, validated by its own model (no dependency on the loader)."""
    return cls.model_validate(yaml.safe_load((PROFILES / f"{name}.yaml").read_text(encoding="utf-8")))


@dataclass
class Device:
    """What a bridge needs of bridges.config.DeviceConfig."""

    id: str
    endpoint: str
    channels: dict[str, int]
    station: str = "BH-0001"
    protocol: str = "opcua"
    namespace: int | str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return f"{self.protocol}:{self.station}:{self.id}"


class Collector:
    """An EventSink that keeps everything and lets a test wait for a condition on it."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.arrivals: list[float] = []
        self._changed = asyncio.Event()

    async def __call__(self, batch: list[Any]) -> None:
        now = time.perf_counter()
        self.items.extend(batch)
        self.arrivals.extend([now] * len(batch))
        self._changed.set()

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for e in self.items if isinstance(e, dict)]

    @property
    def rejections(self) -> list[Rejection]:
        return [e for e in self.items if isinstance(e, Rejection)]

    def of(self, kind: str, entity: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == kind and (entity is None or e["entity"] == entity)]

    async def wait(self, cond: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Wait until ``cond()`` is truthy (re-checked on every batch); its value, or TimeoutError."""
        async with asyncio.timeout(timeout):
            while True:
                value = cond()
                if value:
                    return value
                self._changed.clear()
                await self._changed.wait()


async def until(cond: Callable[[], Any], timeout: float = 10.0, every: float = 0.02) -> Any:
    """Poll a condition that no event announces (a bridge's health) with a deadline."""
    async with asyncio.timeout(timeout):
        while not (value := cond()):
            await asyncio.sleep(every)
        return value
