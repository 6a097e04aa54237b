"""Inspections in, risk out (issue 6): ``POST /api/v1/inspections`` and ``GET /api/v1/risk``.

An inspector's handheld report becomes an ``inspection.report`` event through the same ingest path as
every other input (validated, logged, de-duplicated, judged by the station's actor, ``twin/safety.py``).
The risk ranking reads what the twin wrote (alerts, station states) and scores it with
``twin/risk.py`` at the twin's clock, so a replayed district is ranked as it was then.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, Field

from twin.events import parse
from twin.risk import rank


class InspectionIn(BaseModel):
    station: str = Field(min_length=1, max_length=64)
    inspector: str = Field(min_length=1, max_length=48, description="who inspected (badge or name)")
    ts: float | None = Field(default=None, description="when (UTC epoch s); default: the twin's clock now")
    checklist: dict[str, bool] = Field(default_factory=dict, description="item → passed")
    findings: list[str] = Field(default_factory=list, max_length=100)
    severity: Literal["info", "minor", "major", "critical"] = "info"
    report_id: str | None = Field(default=None, max_length=64,
                                  description="the device's id of the report: sending it twice is harmless")


class InspectionOut(BaseModel):
    accepted: bool
    event: dict[str, Any]
    alerts: list[dict[str, Any]] = Field(description="alerts the report raised, updated or closed")
    reason: str | None = None


class Contribution(BaseModel):
    points: float
    kind: str
    reason_zh: str
    reason_en: str
    source: dict[str, Any] = Field(description="the alert id or the record the points come from")


class StationRisk(BaseModel):
    station: str
    name: str
    region: str
    score: float = Field(description="0–100, the sum of the contributions (capped)")
    level: str
    contributions: list[Contribution]


def add_risk_routes(app: FastAPI, ctx: Any, api: str = "/api/v1") -> None:
    store, district = ctx.store, ctx.district

    def clock(states: dict[str, Any] | None = None) -> float:
        if ctx.service is not None and ctx.service.sim_now is not None:
            return float(ctx.service.sim_now)
        marks = [m for s in (states or {}).values() if (m := s.get("watermark")) is not None]
        return max(marks) if marks else time.time()

    @app.post(f"{api}/inspections", response_model=InspectionOut, tags=["inspections"],
              responses={404: {"description": "unknown station"}, 503: {"description": "no twin here"}})
    async def inspection(report: InspectionIn) -> InspectionOut:
        """A handheld inspection report (inspector, checklist, findings): judged at once."""
        if not district.has_station(report.station):
            raise HTTPException(status_code=404, detail=f"unknown station {report.station!r}")
        if ctx.service is None:
            raise HTTPException(status_code=503, detail="no twin runs in this process to take the report")
        ts = report.ts if report.ts is not None else clock()
        source = f"inspection:{report.report_id or uuid.uuid4().hex}"
        raw = {"kind": "inspection.report", "ts": ts, "station": report.station, "entity": "",
               "source": source, "seq": 0, "device": f"handheld:{report.inspector}",
               "checks": report.checklist, "findings": report.findings, "severity": report.severity}
        try:
            parse(raw)
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        before = ctx.service.counts.duplicates
        out = await ctx.service.ingest([raw], now=max(ts, clock()))
        duplicate = ctx.service.counts.duplicates > before
        alerts = [a for a in out.alerts
                  if a["station"] == report.station and a["code"] == "INSPECTION_FINDING"]
        return InspectionOut(accepted=not duplicate, event=raw, alerts=alerts,
                             reason="duplicate report_id" if duplicate else None)

    @app.get(f"{api}/risk", response_model=list[StationRisk], tags=["risk"],
             responses={404: {"description": "unknown station"}})
    async def risk(region: Annotated[str | None, Query(description="only this region")] = None,
                   station: Annotated[str | None, Query(description="only this station")] = None,
                   limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> list[StationRisk]:
        """Stations ranked by risk, highest first, each with the reasons (each traces to an alert or a
        record)."""
        if station is not None and not district.has_station(station):
            raise HTTPException(status_code=404, detail=f"unknown station {station!r}")
        if station is not None and ctx.service is not None and ctx.service.sim_now is not None:
            # One station at the twin's clock: its own state suffices (a station page refreshes this).
            own = await store.state(station)
            states = {station: own} if own else {}
        else:  # the clock may be the newest watermark of all
            states = await store.states()
        alerts = await store.alerts(station=station, limit=1_000_000)
        specs = {s.id: s for s in district.stations
                 if (region is None or s.region == region) and (station is None or s.id == station)}
        ranked = rank(list(specs), alerts, states, clock(states))
        return [StationRisk(name=specs[r["station"]].name, region=specs[r["station"]].region, **r)
                for r in ranked[:limit]]
