"""Vapor-recovery compliance over the API (issue 6): per station and nozzle, and the district's view.

Reads what the twin wrote: each station's state carries its vapor monitor's view (``twin/vapor.py``:
live status, today's running figures, and the daily records of the last ``history_days`` closed days),
and the open vapor alerts come from the alert store. A day is *closed* an hour after it ends by the
monitor's clock (E.3.5 uploads at least hourly); until then it is shown live: its status is that of
the alerts open now.
"""

from __future__ import annotations

import re
import time
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, Field

from twin.timeutil import local_day
from twin.vapor import VAPOR_CODES

Status = Literal["compliant", "warning", "alarm", "no_data"]
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class StationVapor(BaseModel):
    station: str
    name: str
    region: str
    status: Status = Field(description="now: alarm / warning if such a vapor alert is open, else compliant")
    clock: float | None = Field(description="the monitor's clock: newest vapor event time (UTC epoch s)")
    today: dict[str, Any] | None = Field(description="the open day's running figures")
    pressure_pa: float | None
    processor_state: str | None
    voc_umol_mol: float | None
    nozzles: list[dict[str, Any]] = Field(description="each gasoline nozzle: last A/L, carried fills, "
                                                      "consecutive warning days")
    history: list[dict[str, Any]] = Field(description="closed days, newest first: {day, station, nozzles}")
    alerts: list[dict[str, Any]] = Field(description="vapor alerts not yet closed")
    fills_vs_transactions: dict[str, Any] | None = Field(
        default=None, description="the monitor's fills set against the dispensers' transactions "
        "(twin/detectors/fill_witness.py): matched, litres_disagree, lost_records (the totalizer counted "
        "them), unreported (hidden sales), unjudged, pending, unreported_by_nozzle (last 48 h)")


class StationDay(BaseModel):
    id: str
    name: str
    region: str
    status: Status
    closed: bool = Field(description="the day is judged (closed); otherwise the status is live")
    record: dict[str, Any] | None = Field(description="the station's record of the day (closed days)")
    nozzles: list[dict[str, Any]] = Field(default=[], description="each nozzle's record of the day")
    open_alerts: list[str] = Field(description="codes of vapor alerts open now")


class DistrictCompliance(BaseModel):
    day: str
    counts: dict[str, int] = Field(description="stations compliant / warning / alarm / no_data that day")
    stations: list[StationDay]


def _vapor(state: dict[str, Any] | None) -> dict[str, Any] | None:
    return (state or {}).get("vapor")


def add_vapor_routes(app: FastAPI, ctx: Any, api: str = "/api/v1") -> None:
    store, district = ctx.store, ctx.district

    async def open_vapor_alerts(station: str | None = None) -> dict[str, list[dict[str, Any]]]:
        by: dict[str, list[dict[str, Any]]] = {}
        for a in await store.alerts(station=station, limit=1_000_000):
            if a["code"] in VAPOR_CODES and a["status"] != "closed":
                by.setdefault(a["station"], []).append(a)
        return by

    @app.get(f"{api}/stations/{{station_id}}/vapor", response_model=StationVapor, tags=["vapor"],
             responses={404: {"description": "unknown station"}})
    async def station_vapor(station_id: str) -> StationVapor:
        """A station's vapor recovery (GB 20952-2020): live status, nozzles, daily compliance records."""
        if not district.has_station(station_id):
            raise HTTPException(status_code=404, detail=f"unknown station {station_id!r}")
        spec = district.station(station_id)
        v = _vapor(await store.state(station_id)) or {}
        alerts = (await open_vapor_alerts(station_id)).get(station_id, [])
        return StationVapor(station=spec.id, name=spec.name, region=spec.region,
                            status=v.get("status", "no_data"), clock=v.get("clock"), today=v.get("today"),
                            pressure_pa=v.get("pressure_pa"), processor_state=v.get("processor_state"),
                            voc_umol_mol=v.get("voc_umol_mol"), nozzles=v.get("nozzles", []),
                            history=list(reversed(v.get("history", []))), alerts=alerts,
                            fills_vs_transactions=v.get("fills_vs_transactions"))

    @app.get(f"{api}/vapor/compliance", response_model=DistrictCompliance, tags=["vapor"],
             responses={400: {"description": "bad day"}})
    async def compliance(
        day: Annotated[str | None, Query(description="local day YYYY-MM-DD (default: today)")] = None,
        region: Annotated[str | None, Query(description="only this region")] = None,
    ) -> DistrictCompliance:
        """The district's stations compliant / warned / alarmed on a day, each with its record."""
        if day is not None and not _DAY.match(day):
            raise HTTPException(status_code=400, detail=f"day must be YYYY-MM-DD, got {day!r}")
        states = await store.states()
        if day is None:
            if ctx.service is not None and ctx.service.sim_now is not None:
                day = local_day(ctx.service.sim_now)
            else:
                clocks = [v["clock"] for s in states.values() if (v := _vapor(s)) and v.get("clock")]
                day = local_day(max(clocks) if clocks else time.time())
        alerts = await open_vapor_alerts()
        rows: list[StationDay] = []
        for spec in district.stations:
            if region is not None and spec.region != region:
                continue
            v = _vapor(states.get(spec.id)) or {}
            codes = sorted({a["code"] for a in alerts.get(spec.id, [])})
            rec = next((h for h in v.get("history", []) if h["day"] == day), None)
            if rec is not None:
                rows.append(StationDay(id=spec.id, name=spec.name, region=spec.region,
                                       status=rec["station"]["status"], closed=True, record=rec["station"],
                                       nozzles=rec["nozzles"], open_alerts=codes))
            elif (v.get("today") or {}).get("day") == day:
                rows.append(StationDay(id=spec.id, name=spec.name, region=spec.region, status=v["status"],
                                       closed=False, record=v["today"], open_alerts=codes))
            else:
                rows.append(StationDay(id=spec.id, name=spec.name, region=spec.region, status="no_data",
                                       closed=False, record=None, open_alerts=codes))
        counts = {k: 0 for k in ("compliant", "warning", "alarm", "no_data")}
        for r in rows:
            counts[r.status] += 1
        return DistrictCompliance(day=day, counts=counts, stations=rows)
