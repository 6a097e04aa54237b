"""The simulated stations stand inside 滨海新区 as the wall display draws it (shipped boundary, GCJ-02)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulators.district import synthetic_district
from simulators.places import REGIONS, Region

BOUNDARY = Path(__file__).resolve().parent.parent / "ui" / "static" / "vendor" / "maps" / "tianjin.geojson"


def _binhai() -> list[list[float]]:
    features = json.loads(BOUNDARY.read_text(encoding="utf-8"))["features"]
    (binhai,) = [f for f in features if f["properties"]["name"] == "滨海新区"]
    assert binhai["geometry"]["type"] == "Polygon"
    return binhai["geometry"]["coordinates"][0]


def _inside(lon: float, lat: float, ring: list[list[float]]) -> bool:
    """Even-odd ray casting; the ring is a few hundred points, so a plain loop is fine."""
    hit = False
    for (x1, y1), (x2, y2) in zip(ring, ring[-1:] + ring[:-1], strict=True):
        if (y1 > lat) != (y2 > lat) and lon < (x2 - x1) * (lat - y1) / (y2 - y1) + x1:
            hit = not hit
    return hit


def test_the_boundary_tells_inside_from_outside() -> None:
    ring = _binhai()
    assert _inside(117.70, 39.00, ring)          # 塘沽
    assert not _inside(117.20, 39.12, ring)      # 和平区, the city centre
    assert not _inside(118.10, 38.90, ring)      # Bohai Sea


@pytest.mark.parametrize("region", REGIONS, ids=[r.name for r in REGIONS])
def test_each_region_scatter_square_is_inside(region: Region) -> None:
    ring, n, s = _binhai(), 21, region.scatter_deg
    grid = [(region.lon + (2 * i / (n - 1) - 1) * s, region.lat + (2 * j / (n - 1) - 1) * s)
            for i in range(n) for j in range(n)]
    assert [(round(x, 4), round(y, 4)) for x, y in grid if not _inside(x, y, ring)] == []


def test_synthetic_stations_are_inside() -> None:
    ring = _binhai()
    for seed in (1, 2):
        stations = synthetic_district(200, seed).district.stations
        assert [s.id for s in stations if not _inside(s.lon, s.lat, ring)] == []
