"""The web pages (wall display, station twin, scenarios, replay) and the small APIs only they need.

Each page is a static HTML file with its script; the pages read the REST API and the websocket like any
other client. Registered by :func:`ui.app.create_app`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import FileResponse

from twin.stats import key_problem
from ui.trend import SalesTrend

if TYPE_CHECKING:
    from ui.app import AppContext

STATIC_DIR = Path(__file__).parent / "static"
API = "/api/v1"
NO_CACHE = {"Cache-Control": "no-cache"}


def _page(name: str) -> FileResponse:
    return FileResponse(STATIC_DIR / name, headers=NO_CACHE, media_type="text/html")


def register(app: FastAPI, ctx: AppContext) -> None:
    from ui.scenarios_api import register as register_scenarios

    app.state.scenario_runs = register_scenarios(app)
    trend = SalesTrend(ctx.store)

    @app.get(f"{API}/sales/trend", tags=["stations"])
    async def sales_trend_api(
        period: Literal["day", "month", "year"] = "day",
        key: Annotated[str | None, Query(description="2026-06-01, 2026-06 or 2026; default: newest")] = None,
        region: str | None = None,
    ) -> dict[str, Any]:
        """District (or one region's) sales, litres, CNY and transactions by grade, by local hour of a day,
        day of a month or month of a year: closed periods from the rows the stations wrote when each was
        over, the current one from their running totals (restart-proof; the same figures as /stats)."""
        if (problem := key_problem(period, key)) is not None:
            raise HTTPException(422, problem)
        stations = None
        if region is not None:
            stations = [s.id for s in ctx.district.stations if s.region == region]
            if not stations:
                raise HTTPException(404, f"unknown region {region!r}")
        return await trend.series(period, key, stations)

    @app.get(f"{API}/ui/settings", tags=["system"])
    async def ui_settings() -> dict[str, Any]:
        """Display settings: a map tile server for deployments that have one (FUELTWIN_TILE_URL, a Leaflet
        URL template such as ``http://tiles.local/{z}/{x}/{y}.png``; its tiles must be in GCJ-02 like the
        stations, and FUELTWIN_TILE_ATTRIBUTION is the credit its provider asks for); the default draws
        the district from the shipped boundary with no tiles."""
        return {"tile_url": os.environ.get("FUELTWIN_TILE_URL") or None,
                "tile_attribution": os.environ.get("FUELTWIN_TILE_ATTRIBUTION") or None, "mode": ctx.mode,
                "district": ctx.district.name, "timezone": ctx.district.timezone}

    @app.get("/", include_in_schema=False)
    async def wall() -> FileResponse:
        return _page("wall.html")

    @app.get("/station/{station_id}", include_in_schema=False)
    async def station_page(station_id: str) -> FileResponse:
        if not ctx.district.has_station(station_id):
            raise HTTPException(404, f"unknown station {station_id!r}")
        return _page("station.html")

    @app.get("/scenarios", include_in_schema=False)
    async def scenarios_page() -> FileResponse:
        return _page("scenarios.html")

    @app.get("/replay", include_in_schema=False)
    async def replay_page() -> FileResponse:
        return _page("replay.html")

