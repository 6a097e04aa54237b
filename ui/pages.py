"""The web pages (wall display, station twin, scenarios, replay) and the small APIs only they need.

Each page is a static HTML file with its script; the pages read the REST API and the websocket like any
other client. Registered by :func:`ui.app.create_app`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse

from ui.trend import SalesTrend

if TYPE_CHECKING:
    from ui.app import AppContext

STATIC_DIR = Path(__file__).parent / "static"
API = "/api/v1"
NO_CACHE = {"Cache-Control": "no-cache"}


def _page(name: str) -> FileResponse:
    return FileResponse(STATIC_DIR / name, headers=NO_CACHE, media_type="text/html")


def register(app: FastAPI, ctx: AppContext) -> SalesTrend:
    from ui.scenarios_api import register as register_scenarios

    app.state.scenario_runs = register_scenarios(app)
    trend = SalesTrend()
    if ctx.service is not None and trend.on_outputs not in ctx.service.listeners:
        ctx.service.subscribe(trend.on_outputs)

    @app.get(f"{API}/sales/trend", tags=["stations"])
    async def sales_trend(period: Literal["day", "month", "year"] = "day") -> dict[str, Any]:
        """District sales (L, CNY) by local hour of the day, day of the month or month of the year, as the
        live station states grew since this process started (``since_ts``; empty with no twin here)."""
        return trend.series(period)

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

    return trend
