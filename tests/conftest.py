"""Shared fixtures: one real Redis server per test session (the embedded one), a fresh key prefix per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from twin.physics import HorizontalCylinder, StrappingTable
from twin.registry import District
from twin.store import EmbeddedRedis, Store, connect


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    client = connect(redis_url)
    yield Store(client, prefix=f"test-{uuid.uuid4().hex[:8]}")
    await client.aclose()


def tank_chart(diameter_mm: float = 2500, length_mm: float = 6100) -> dict[str, Any]:
    chart = StrappingTable.from_geometry(HorizontalCylinder(diameter_mm, length_mm), 10)
    return {"shape": "strapping", "levels_mm": list(chart.levels_mm), "volumes_l": list(chart.volumes_l)}


def station_spec(sid: str, region: str = "新港街道", lon: float = 117.70,
                 lat: float = 39.00) -> dict[str, Any]:
    chart = tank_chart()
    grades = ["92#", "95#", "0#"]
    return {
        "id": sid, "name": f"测试站 {sid}", "region": region, "lon": lon, "lat": lat,
        "tanks": [{"id": f"T{i + 1}", "grade": g, "declared_capacity_l": 30000, "chart": chart}
                  for i, g in enumerate(grades)],
        "nozzles": [{"id": f"N{i + 1}", "tank": f"T{i % 3 + 1}", "grade": grades[i % 3]} for i in range(8)],
    }


@pytest.fixture
def small_district() -> District:
    return District.model_validate({"stations": [station_spec("BH-0001"),
                                                 station_spec("BH-0002", "大港街道", 117.45, 38.84)]})
