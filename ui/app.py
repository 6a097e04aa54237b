"""The regulators' web API: REST under /api/v1, the live websocket at /ws/live, and the static page.

The app only reads what the twin wrote (Redis, through :class:`twin.store.Store`) plus the hub's live
stream, so it works the same against a running twin in this process (``service`` set) and against an
existing Redis with nobody ingesting (``service`` None: replay results, a twin in another process).
The only writes are a person's acknowledgement or closing of an alert.

Time: the twin's numbers are in event time; "today" for sales is the local (Asia/Shanghai) day of the
twin's own clock — the service's edge clock when it runs here (simulated in demo, wall time live), else
the newest watermark in the store — so a replayed day shows that day's sales, not zeros.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Body, FastAPI, HTTPException, Query, Request, Response, WebSocket
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import ConnectionError as RedisConnectionError

from twin.alerts import severity_rank
from twin.registry import District, StationSpec
from twin.service import TwinService
from twin.store import Store
from twin.timeutil import local_day
from ui.demo_faults import add_demo_fault_routes
from ui.hub import LiveHub
from ui.risk_api import add_risk_routes
from ui.vapor_api import add_vapor_routes

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
API = "/api/v1"
#: Alerts are few per station (one per open condition), so listing them all to aggregate is fine.
ALL = 1_000_000


@dataclass
class AppContext:
    store: Store
    district: District
    hub: LiveHub
    service: TwinService | None = None
    #: "live" (bridges), "demo" (simulator) or "replay" (a recorded range); shown to users.
    mode: str = "live"
    #: The field bridges feeding a live twin (``bridges.runner.BridgeRunner``), if any.
    bridges: Any = None
    #: How to open a replay server on this twin's recording (``twin.app_runner.replay_command``).
    replay_command: str | None = None
    #: A demo's fault injection into its simulator (``simulators.live_faults.LiveFaults``), if any.
    faults: Any = None


# ---- response models (they document the API at /docs; extra fields pass through) -------------------

class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class SalesToday(BaseModel):
    day: str | None = Field(description="local day (Asia/Shanghai) the totals are for")
    volume_l: float = 0.0
    amount_cny: float = 0.0
    count: int = 0


class StationSummary(BaseModel):
    id: str
    name: str
    region: str
    lon: float
    lat: float
    online: bool = Field(description="the twin has readings from this station and no tank is stale")
    last_ts: float | None = Field(description="newest tank reading, event time (UTC epoch s)")
    open_alerts: int = Field(description="alerts not yet closed (open or acknowledged)")
    unacknowledged_alerts: int
    worst_severity: str | None = Field(description="highest severity among alerts not yet closed")
    sales_today: SalesToday


class RegionSummary(BaseModel):
    region: str
    stations: int
    online: int
    open_alerts: int
    sales_today_l: float
    sales_today_cny: float


class MeterFactor(BaseModel):
    factor: float = Field(description="delivered / displayed: 1 − (β − the tank's common β), latest fit")
    se: float
    ci95: list[float]
    sold_l: float = Field(description="litres (20 °C) the nozzle sold in the fit's window")
    judged: bool = Field(description="False: not the meter's own error (see reason); do not read it as one")
    reason: Literal["few_nozzles", "low_sales", "trend"] | None = None


class TankView(_Open):
    id: str
    grade: str
    declared_capacity_l: float
    observed_l: float | None = None
    expected_l: float | None = None
    divergence_l: float | None = None
    leak_rate_lph: float | None = None
    leak_rate_se_lph: float | None = None
    meter_factors: dict[str, MeterFactor] | None = Field(
        default=None, description="per nozzle of the tank; null before the first wetstock fit (~2 days)")
    stale: bool = False
    last_ts: float | None = None


class NozzleView(_Open):
    id: str
    tank: str
    grade: str
    state: str | None = None
    stale: bool = False
    last_ts: float | None = None


class AlertOut(_Open):
    id: str
    code: str
    severity: str
    station: str
    entity: str
    first_ts: float
    last_ts: float
    status: str
    message_zh: str
    message_en: str
    evidence: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    history: list[dict[str, Any]] = []


class StationTwin(BaseModel):
    id: str
    name: str
    region: str
    lon: float
    lat: float
    address: str
    online: bool
    watermark: float | None = Field(description="the station's event-time watermark (last clock.tick)")
    events: int = Field(description="events the twin has applied for this station")
    twin_faults: int = Field(default=0, description="events the twin failed on for this station (each kept "
                             "in the dead letters; an open TWIN_FAULT alert counts those since it opened)")
    tanks: list[TankView]
    nozzles: list[NozzleView]
    recent_transactions: list[dict[str, Any]]
    prices: dict[str, float]
    sales_today: SalesToday
    sales_today_by_grade: dict[str, dict[str, Any]]
    alerts: list[AlertOut] = Field(description="alerts not yet closed, newest first")


class DivergenceSeries(BaseModel):
    tank: str
    points_total: int = Field(description="points stored in the requested range, before downsampling")
    ts: list[float]
    observed_l: list[float | None]
    expected_l: list[float | None]
    divergence_l: list[float | None]
    leak_rate_lph: float | None = Field(description="trend of the divergence not explained by sales "
                                                          "(L/h, negative = loss), latest wetstock fit")
    leak_rate_se_lph: float | None


class DivergenceOut(BaseModel):
    station: str
    since: float | None
    until: float | None
    max_points: int
    series: list[DivergenceSeries]


class DeliveryOut(_Open):
    station: str
    tank: str
    start_ts: float
    end_ts: float
    booked_ts: float | None = Field(default=None, description="event time of the reading that settled the "
                                    "drop and booked it: until then the tank's divergence holds the litres "
                                    "dropped (None in records from before this field)")
    net_l_20c: float
    lot: str | None = Field(default=None, description="the lot the drop started in its tank (lot trace)")
    po_no: str | None = Field(default=None, description="the purchase order matched to the lot, also when "
                              "the order came or matched after the drop was recognised")


class DeadLetter(BaseModel):
    id: str = Field(description="Redis stream id (arrival time in ms)")
    reason: str
    station: str
    source: str
    raw: Any


class AlertAction(BaseModel):
    by: str = Field(min_length=1, max_length=64, description="who acts (shown in the alert's history)")
    note: str = Field(default="", max_length=2000)


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    mode: str
    server_time: float
    store: dict[str, int] | None
    store_error: str | None = None
    hub: dict[str, Any]
    service: dict[str, Any] | None
    #: The twin's writes to Redis (``state`` "holding" while Redis refuses them: they wait in order).
    writes: dict[str, Any] | None = None
    #: The input log moved to the archive on disk and the divergence dropped (``--keep-days``): events and
    #: entries so far, runs, the days kept; None when nothing is moved here.
    archive: dict[str, Any] | None = None
    #: The command that opens a replay server on this recording (shown by the /replay page here).
    replay_command: str | None = None


# ---- helpers --------------------------------------------------------------------------------------

def _not_found(what: str) -> HTTPException:
    return HTTPException(status_code=404, detail=what)


def _station_or_404(district: District, station_id: str) -> StationSpec:
    if not district.has_station(station_id):
        raise _not_found(f"unknown station {station_id!r}")
    return district.station(station_id)


def _archive_status(ctx: AppContext) -> dict[str, Any] | None:
    service = ctx.service
    if service is None or service.keep_days is None or service.store.archive is None:
        return None
    return {**service.archived, "keep_days": service.keep_days, "folder": str(service.store.archive.root)}


def _is_online(state: dict[str, Any] | None) -> bool:
    if not state:
        return False
    tanks = state.get("tanks", [])
    return any(t.get("last_ts") is not None for t in tanks) and not any(t.get("stale") for t in tanks)


def _last_ts(state: dict[str, Any] | None) -> float | None:
    stamps = [t["last_ts"] for t in (state or {}).get("tanks", []) if t.get("last_ts") is not None]
    return max(stamps) if stamps else None


def _sales_today(state: dict[str, Any] | None, today: str) -> SalesToday:
    sales = (state or {}).get("sales_today") or {}
    if sales.get("day") != today:
        return SalesToday(day=today)
    by_grade = sales.get("by_grade", {}).values()
    return SalesToday(day=today, volume_l=round(sum(g["volume_l"] for g in by_grade), 2),
                      amount_cny=round(sum(g["amount_cny"] for g in by_grade), 2),
                      count=sum(int(g["count"]) for g in by_grade))


def _downsample(n: int, max_points: int) -> list[int]:
    """Evenly spaced indices, first and last included, so the newest point is always shown."""
    if n <= max_points:
        return list(range(n))
    step = (n - 1) / (max_points - 1)
    return [round(i * step) for i in range(max_points)]


# ---- the app --------------------------------------------------------------------------------------

def create_app(ctx: AppContext) -> FastAPI:
    """Build the app around a store, the district and the live hub (and the service, if one runs here)."""
    store, district, hub = ctx.store, ctx.district, ctx.hub
    hub.mode = ctx.mode
    if ctx.service is not None and hub.publish not in ctx.service.listeners:
        ctx.service.subscribe(hub.publish)
    # Check-then-update of an alert's status must not interleave (two people acknowledging at once).
    alert_actions = asyncio.Lock()

    # /docs is served from the package's own Swagger UI (web/vendor.py), never from a CDN; no ReDoc.
    app = FastAPI(title="fueltwin", version="0.1.0", docs_url=None, redoc_url=None,
                  summary="加油站智慧监管云平台 — live twin of the district's fuel stations",
                  description="Read the twin's stations, tanks, alerts and deliveries; acknowledge and close "
                              "alerts. Live updates: websocket `/ws/live` (see the README for its messages).")

    @app.exception_handler(RedisConnectionError)
    async def store_unreachable(request: Request, exc: RedisConnectionError) -> JSONResponse:
        """Redis away (restarting, failed over): a request that reads or changes it gets 503 with the
        reason, not a 500; the live twin and its websocket carry on (README, *When Redis is away*)."""
        return JSONResponse(status_code=503, content={
            "detail": f"存储暂不可用，请稍后重试 / the store (Redis) is unreachable, retry later: {exc}"})

    async def today(states: dict[str, dict[str, Any]] | None = None) -> str:
        if ctx.service is not None and ctx.service.sim_now is not None:
            return local_day(ctx.service.sim_now)
        if states is None:
            states = await store.states()
        marks = [m for m in (s.get("watermark") or _last_ts(s) for s in states.values()) if m is not None]
        return local_day(max(marks) if marks else time.time())

    def summary(spec: StationSpec, state: dict[str, Any] | None, alerts: list[dict[str, Any]],
                day: str) -> StationSummary:
        active = [a for a in alerts if a["status"] != "closed"]
        worst = max((a["severity"] for a in active), key=severity_rank, default=None)
        return StationSummary(id=spec.id, name=spec.name, region=spec.region, lon=spec.lon, lat=spec.lat,
                              online=_is_online(state), last_ts=_last_ts(state), open_alerts=len(active),
                              unacknowledged_alerts=sum(a["status"] == "open" for a in active),
                              worst_severity=worst, sales_today=_sales_today(state, day))

    async def summaries(region: str | None = None) -> list[StationSummary]:
        states = await store.states()
        by_station: dict[str, list[dict[str, Any]]] = {}
        for alert in await store.alerts(limit=ALL):
            by_station.setdefault(alert["station"], []).append(alert)
        day = await today(states)
        specs = [s for s in district.stations if region is None or s.region == region]
        specs.sort(key=lambda s: (s.region, s.id))
        return [summary(s, states.get(s.id), by_station.get(s.id, []), day) for s in specs]

    @app.get(f"{API}/health", response_model=Health, tags=["system"])
    async def health(response: Response) -> Health:
        """Mode, the store's counters, the hub's delivery statistics and this process's ingest counts."""
        counters: dict[str, int] | None = None
        error = None
        try:
            counters = await store.counters()
        except Exception as exc:  # noqa: BLE001 - health reports the failure instead of failing
            error = f"{type(exc).__name__}: {exc}"
        writes = None if ctx.service is None else ctx.service.writer.status().as_dict()
        degraded = error is not None or (writes is not None and writes["state"] != "ok")
        if degraded:
            response.status_code = 503
        return Health(status="degraded" if degraded else "ok",
                      mode=ctx.mode, server_time=time.time(), store=counters, store_error=error,
                      hub=hub.stats(), service=None if ctx.service is None else ctx.service.counts.as_dict(),
                      writes=writes, archive=_archive_status(ctx), replay_command=ctx.replay_command)

    @app.get(f"{API}/bridges", tags=["system"])
    async def bridges() -> list[dict[str, Any]]:
        """Each field device's link: connected, last good poll (wall time), reconnects, errors, the last
        error, values refused as garbage. Empty when no bridges feed this twin (demo, replay)."""
        return [] if ctx.bridges is None else ctx.bridges.health()

    @app.get(f"{API}/stations", response_model=list[StationSummary], tags=["stations"])
    async def stations(region: Annotated[str | None, Query(description="only this region")] = None
                       ) -> list[StationSummary]:
        """Every station with its live status, alerts not yet closed and today's sales."""
        if region is not None and region not in district.regions():
            raise _not_found(f"unknown region {region!r}; known: {', '.join(district.regions())}")
        return await summaries(region)

    @app.get(f"{API}/regions", response_model=list[RegionSummary], tags=["stations"])
    async def regions() -> list[RegionSummary]:
        """Per region (开发区 / 街镇): stations, how many are online, open alerts, today's sales."""
        out: dict[str, RegionSummary] = {r: RegionSummary(region=r, stations=0, online=0, open_alerts=0,
                                                          sales_today_l=0.0, sales_today_cny=0.0)
                                         for r in district.regions()}
        for s in await summaries():
            r = out[s.region]
            r.stations += 1
            r.online += s.online
            r.open_alerts += s.open_alerts
            r.sales_today_l = round(r.sales_today_l + s.sales_today.volume_l, 2)
            r.sales_today_cny = round(r.sales_today_cny + s.sales_today.amount_cny, 2)
        return list(out.values())

    @app.get(f"{API}/stations/{{station_id}}", response_model=StationTwin, tags=["stations"],
             responses={404: {"description": "unknown station"}})
    async def station(station_id: str) -> StationTwin:
        """One station's twin: tanks observed vs expected, nozzles, recent transactions, open alerts."""
        spec = _station_or_404(district, station_id)
        state = await store.state(station_id) or {}
        tank_state = {t["id"]: t for t in state.get("tanks", [])}
        nozzle_state = {n["id"]: n for n in state.get("nozzles", [])}
        tanks = [TankView(**{**tank_state.get(t.id, {}), "id": t.id, "grade": t.grade,
                             "declared_capacity_l": t.declared_capacity_l}) for t in spec.tanks]
        nozzles = [NozzleView(**{**nozzle_state.get(n.id, {}), "id": n.id, "tank": n.tank, "grade": n.grade})
                   for n in spec.nozzles]
        alerts = [a for a in await store.alerts(station=station_id, limit=ALL) if a["status"] != "closed"]
        sales = state.get("sales_today") or {}
        day = await today()
        return StationTwin(id=spec.id, name=spec.name, region=spec.region, lon=spec.lon, lat=spec.lat,
                           address=spec.address, online=_is_online(state), watermark=state.get("watermark"),
                           events=state.get("events", 0), twin_faults=state.get("twin_faults", 0),
                           tanks=tanks, nozzles=nozzles,
                           recent_transactions=state.get("recent_transactions", []),
                           prices=state.get("prices", {}), sales_today=_sales_today(state, day),
                           sales_today_by_grade=sales.get("by_grade", {}) if sales.get("day") == day else {},
                           alerts=[AlertOut(**a) for a in alerts])

    @app.get(f"{API}/stations/{{station_id}}/divergence", response_model=DivergenceOut, tags=["stations"],
             responses={404: {"description": "unknown station or tank"}})
    async def divergence(
        station_id: str,
        tank: Annotated[str | None, Query(description="one tank (default: every tank)")] = None,
        since: Annotated[float | None, Query(description="event time ≥ since (UTC epoch s)")] = None,
        until: Annotated[float | None, Query(description="event time ≤ until (UTC epoch s)")] = None,
        max_points: Annotated[int, Query(ge=2, le=20_000)] = 500,
    ) -> DivergenceOut:
        """Observed, expected and divergence (L at 20 °C) per tank, downsampled evenly to max_points."""
        spec = _station_or_404(district, station_id)
        tank_ids = [t.id for t in spec.tanks]
        if tank is not None:
            if tank not in tank_ids:
                raise _not_found(f"station {station_id} has no tank {tank!r}; tanks: {', '.join(tank_ids)}")
            tank_ids = [tank]
        cols: dict[str, dict[str, list[Any]]] = {
            t: {"ts": [], "observed_l": [], "expected_l": [], "divergence_l": []} for t in tank_ids}
        rate: dict[str, tuple[float | None, float | None]] = {}
        async for rec in store.divergence(station_id, since):
            col = cols.get(rec["tank"])
            if col is None:
                continue
            ts = rec["ts"]
            lo = 0 if since is None else next((i for i, t in enumerate(ts) if t >= since), len(ts))
            hi = len(ts) if until is None else next((i for i, t in enumerate(ts) if t > until), len(ts))
            if lo >= hi:
                continue
            for name in ("ts", "observed_l", "expected_l", "divergence_l"):
                col[name].extend(rec[name][lo:hi])
            rate[rec["tank"]] = (rec.get("leak_rate_lph"), rec.get("leak_rate_se_lph"))
        series = []
        for t, col in cols.items():
            keep = _downsample(len(col["ts"]), max_points)
            lph, se = rate.get(t, (None, None))
            picked = {name: [values[i] for i in keep] for name, values in col.items()}
            series.append(DivergenceSeries(tank=t, points_total=len(col["ts"]), leak_rate_lph=lph,
                                           leak_rate_se_lph=se, **picked))
        return DivergenceOut(station=station_id, since=since, until=until, max_points=max_points,
                             series=series)

    @app.get(f"{API}/alerts", response_model=list[AlertOut], tags=["alerts"])
    async def alerts(station: str | None = None,
                     status: Literal["open", "acknowledged", "closed"] | None = None,
                     limit: Annotated[int, Query(ge=1, le=10_000)] = 200) -> list[AlertOut]:
        """Alerts (the latest version of each), newest first."""
        if station is not None:
            _station_or_404(district, station)
        return [AlertOut(**a) for a in await store.alerts(station, status, limit)]

    async def act(alert_id: str, status: Literal["acknowledged", "closed"], action: AlertAction) -> AlertOut:
        async with alert_actions:
            current = await store.alert(alert_id)
            if current is None:
                raise _not_found(f"unknown alert {alert_id!r}")
            allowed = {"acknowledged": ("open",), "closed": ("open", "acknowledged")}[status]
            if current["status"] not in allowed:
                raise HTTPException(status_code=409, detail=f"alert {alert_id} is {current['status']}; "
                                                            f"cannot set it {status}")
            updated = await store.update_alert(alert_id, status, action.by, time.time(), action.note or "")
            if updated is None:
                raise _not_found(f"unknown alert {alert_id!r}")
        hub.publish_alert(updated)
        if ctx.service is not None:
            await tell_twin(updated, status, action.by)
        return AlertOut(**updated)

    async def tell_twin(alert: dict[str, Any], status: str, by: str) -> None:
        """Log the decision and pass it to the station's actor, at the twin's event time for that station
        (its watermark, which in a demo or replay is not the wall clock)."""
        state = await store.state(alert["station"]) or {}
        ts = max(float(state.get("watermark") or 0.0), float(alert.get("last_ts") or 0.0))
        source = "api:alert-actions"
        event = {"kind": "alert.action", "ts": ts, "station": alert["station"], "entity": alert["entity"],
                 "source": source, "seq": await store.next_seq(source), "alert_id": alert["id"],
                 "code": alert["code"], "action": status, "by": by}
        await ctx.service.ingest([event], now=time.time())  # type: ignore[union-attr]

    responses: dict[int | str, dict[str, Any]] = {404: {"description": "unknown alert"},
                                                   409: {"description": "the alert's status forbids this"}}

    @app.post(f"{API}/alerts/{{alert_id:path}}/ack", response_model=AlertOut, tags=["alerts"],
              responses=responses)
    async def acknowledge(alert_id: str, action: Annotated[AlertAction, Body()]) -> AlertOut:
        """A person has seen the alert and takes it on (open → acknowledged)."""
        return await act(alert_id, "acknowledged", action)

    @app.post(f"{API}/alerts/{{alert_id:path}}/close", response_model=AlertOut, tags=["alerts"],
              responses=responses)
    async def close(alert_id: str, action: Annotated[AlertAction, Body()]) -> AlertOut:
        """A person closes the alert (open or acknowledged → closed)."""
        return await act(alert_id, "closed", action)

    @app.get(f"{API}/deliveries", response_model=list[DeliveryOut], tags=["deliveries"])
    async def deliveries(station: str | None = None,
                         limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> list[DeliveryOut]:
        """Deliveries the twin recognised from tank levels, newest first, each with its purchase order."""
        if station is not None:
            _station_or_404(district, station)
        found = await store.deliveries(station, limit)
        # A drop is written when it is recognised; its order may match later (paper after the drop, or
        # the second drop of a split tanker completes the order): the lot's trace record has the link.
        unlinked = [d for d in found if d.get("lot") and not d.get("po_no")]
        lots = await store.hmget_json("trace:lot", [d["lot"] for d in unlinked])
        for d, lot in zip(unlinked, lots, strict=True):
            if lot is not None and lot.get("po_no"):
                d["po_no"] = lot["po_no"]
        return [DeliveryOut(**d) for d in found]

    @app.get(f"{API}/deadletters", response_model=list[DeadLetter], tags=["system"])
    async def deadletters(limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> list[DeadLetter]:
        """Rejected input with the reason, newest first (nothing is silently lost)."""
        return [DeadLetter(**d) for d in await store.dead_letters(limit)]

    @app.websocket("/ws/live")
    async def live(websocket: WebSocket, stations: str | None = None) -> None:
        """Live divergence, state, alerts and deliveries; ``?stations=A,B`` limits it to some stations."""
        ids = None if not stations else [s for s in stations.split(",") if s.strip()]
        await hub.serve(websocket, ids)

    add_vapor_routes(app, ctx, API)  # issue 6: vapor-recovery compliance (ui/vapor_api.py)
    add_risk_routes(app, ctx, API)  # issue 6: inspections in, station risk out (ui/risk_api.py)
    add_demo_fault_routes(app, ctx, API)  # a demo's faults injected by a tester (ui/demo_faults.py)
    from ui.regulatory import register as register_regulatory  # issue 5: documents, ledger, trace, stats

    register_regulatory(app, ctx)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title="fueltwin API",
                                   swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
                                   swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
                                   swagger_favicon_url="/static/vendor/swagger-ui/favicon-32x32.png",
                                   swagger_ui_parameters={"validatorUrl": None})

    from ui.pages import register as register_pages  # the pages and their small APIs (issue 7)

    register_pages(app, ctx)

    return app
