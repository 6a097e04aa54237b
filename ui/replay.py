"""Replay: a recorded range of the input log into a fresh twin, in event time, at a chosen speed.

Researchers replay recorded days; regulators look again at what the wall showed. The twin is a pure
function of its input log (actors read no clock), so replaying the log of some stations into a new twin
— under its own key prefix in the same Redis — gives exactly the alerts, deliveries and divergence the
live twin produced, whatever the speed. History before the chosen start is applied as fast as possible
(the twin's state at the start depends on it); from the start on, event time is paced against the wall
clock here, at the edge, and can be paused and resumed.

``fueltwin replay`` serves the UI over the replay twin (mode "replay": every page says so), with
``/api/v1/replay`` to start, pause, resume and stop a session.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field, ValidationError

from actors.base import make_runtime
from twin.aio import cancel_and_wait
from twin.events import EventBase
from twin.registry import District
from twin.service import TwinService
from twin.settings import TwinSettings
from twin.store import Store
from ui.hub import LiveHub

log = logging.getLogger(__name__)

State = Literal["idle", "catching-up", "running", "paused", "done", "stopped", "failed"]


@dataclass(slots=True)
class ReplayStatus:
    state: State = "idle"
    stations: list[str] = field(default_factory=list)
    start_ts: float | None = None
    end_ts: float | None = None
    speed: float | None = None
    #: Event time the replay twin has reached.
    sim_ts: float | None = None
    events: int = 0
    #: Wall seconds the replay has run, its pauses left out: what the page's events/s is over.
    active_s: float = 0.0
    #: The detector settings the replay twin runs with, where they differ from the defaults.
    settings: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        span = (self.end_ts or 0.0) - (self.start_ts or 0.0)
        done = 0.0
        if self.sim_ts is not None and span > 0:
            done = min(1.0, max(0.0, (self.sim_ts - (self.start_ts or 0.0)) / span))
        return {"state": self.state, "stations": self.stations, "start_ts": self.start_ts,
                "end_ts": self.end_ts, "speed": self.speed, "sim_ts": self.sim_ts, "events": self.events,
                "progress": round(done if self.state != "done" else 1.0, 4), "error": self.error,
                "active_s": round(self.active_s, 2), "settings": self.settings,
                "events_per_s": round(self.events / self.active_s) if self.active_s > 0 else None}


async def recorded_range(store: Store, stations: list[str]) -> dict[str, tuple[float, float]]:
    """First and last event time in each station's log, its archived part included."""
    out: dict[str, tuple[float, float]] = {}
    for sid in stations:
        if (bounds := await store.log_range(sid)) is not None:
            out[sid] = bounds
    return out


class ReplayRangeError(LookupError):
    """A replay that cannot start: ``status`` is the HTTP status the API answers with."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status


async def replay_range_of(source: Store, district: District, stations: list[str] | None,
                          start_ts: float | None, end_ts: float | None) -> tuple[list[str], float, float]:
    """The stations (all when none are given), start and end of a replay, defaults from what is recorded;
    one place for the server's API and ``fueltwin replay --headless``."""
    known = [s.id for s in district.stations]
    chosen = stations or sorted(known)
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise ReplayRangeError(404, f"unknown stations: {', '.join(unknown)} (recorded: {', '.join(known)})")
    ranges = await recorded_range(source, chosen)
    if not ranges:
        raise ReplayRangeError(409, "nothing recorded for these stations")
    start = start_ts if start_ts is not None else min(a for a, _ in ranges.values())
    end = end_ts if end_ts is not None else max(b for _, b in ranges.values())
    if end <= start:
        raise ReplayRangeError(422, "end_ts must be after start_ts")
    return chosen, start, end


async def _merged(store: Store, stations: list[str], until: float) -> AsyncIterator[list[EventBase]]:
    """Every station's logged batches, merged by their first event time (each station's own order kept),
    up to ``until``."""
    streams = [store.read_log(sid) for sid in stations]
    heap: list[tuple[float, int, list[EventBase]]] = []

    async def push(i: int) -> None:
        with contextlib.suppress(StopAsyncIteration):
            _, events = await anext(streams[i])
            if events:
                heapq.heappush(heap, (events[0].ts, i, events))
            else:
                await push(i)

    for i in range(len(streams)):
        await push(i)
    while heap:
        t0, i, events = heapq.heappop(heap)
        if t0 > until:
            continue  # this station is past the end; others may not be
        yield [e for e in events if e.ts <= until]
        await push(i)


class ReplaySession:
    """One replay: ``source`` (the recorded twin's store) → a fresh twin in ``target``."""

    def __init__(self, source: Store, target: Store, district: District, stations: list[str],
                 start_ts: float, end_ts: float, speed: float | None, *, step_s: float = 60.0,
                 runtime: str = "local", settings: TwinSettings | None = None):
        self.source, self.target = source, target
        wanted = set(stations)
        self.district = District.model_validate(
            {"stations": [s.model_dump() for s in district.stations if s.id in wanted]})
        overrides = settings.model_dump(exclude_unset=True) if settings is not None else {}
        self.status = ReplayStatus(stations=sorted(wanted), start_ts=start_ts, end_ts=end_ts, speed=speed,
                                   settings=overrides)
        self.step_s = step_s
        # Other settings on the same log: what a detector would have raised with other thresholds.
        self.service = TwinService(self.district, target, make_runtime(runtime, self.district, settings),
                                   state_interval_s=0.5, keep_log=False)
        self._resume = asyncio.Event()
        self._resume.set()
        self._parked = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._started = 0.0
        self._paused_s = 0.0
        #: The speed the pacing's anchor (wall0, sim0 in _emit) was taken at: a new speed re-anchors.
        self._paced_at: float | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def pause(self) -> None:
        """Pause, and return once the replay stands still (the step under way finishes first)."""
        if self.status.state in ("running", "catching-up"):
            self._resume.clear()
            self.status.state = "paused"
            if self._task is not None and not self._task.done() and not self._parked.is_set():
                parked = asyncio.ensure_future(self._parked.wait())
                await asyncio.wait([parked, self._task], return_when=asyncio.FIRST_COMPLETED)
                parked.cancel()

    def resume(self) -> None:
        if self.status.state == "paused":
            self.status.state = "running"
            self._resume.set()

    def set_speed(self, speed: float | None) -> None:
        self.status.speed = speed

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            await cancel_and_wait(self._task)
            self.status.state = "stopped"
        with contextlib.suppress(Exception):
            await self.service.close()

    async def wait(self) -> None:
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        st = self.status
        self._started, self._paused_s = time.monotonic(), 0.0
        try:
            await self.target.save_district(self.district)
            st.state = "catching-up"
            batch: list[EventBase] = []
            window_end: float | None = None
            wall0 = sim0 = None
            async for events in _merged(self.source, st.stations, st.end_ts):  # type: ignore[arg-type]
                for ev in events:
                    if window_end is None:
                        window_end = ev.ts + self.step_s
                    while ev.ts >= window_end:
                        wall0, sim0 = await self._emit(batch, window_end, wall0, sim0)
                        batch = []
                        window_end += self.step_s
                    batch.append(ev)
            if batch and window_end is not None:
                await self._emit(batch, window_end, wall0, sim0)
            await self.service.drain()
            st.sim_ts = st.end_ts
            st.active_s = time.monotonic() - self._started - self._paused_s
            st.state = "done"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the page shows why
            log.exception("replay failed")
            st.state, st.error = "failed", f"{type(exc).__name__}: {exc}"

    async def _emit(self, batch: list[EventBase], window_end: float, wall0: float | None,
                    sim0: float | None) -> tuple[float | None, float | None]:
        """Ingest one step of event time; from the start on, wait until the wall clock says it is due.

        Paced against an anchor (wall0, sim0) taken anew after a pause, a change of speed or a stretch
        at full speed: due times counted from an older anchor would make the replay rush through the
        event time the pause or the old speed left behind."""
        st = self.status
        if not self._resume.is_set():
            self._parked.set()
            paused_at = time.monotonic()
            await self._resume.wait()
            self._parked.clear()
            self._paused_s += time.monotonic() - paused_at
            wall0 = sim0 = None
        if batch:
            await self.service.ingest_events(batch, now=window_end)  # decode_batch validated them
            st.events += len(batch)
        st.sim_ts = window_end
        st.active_s = time.monotonic() - self._started - self._paused_s
        if window_end < (st.start_ts or 0) or not st.speed:
            return None, None
        if st.state == "catching-up":
            st.state = "running"
        if wall0 is None or sim0 is None or st.speed != self._paced_at:
            self._paced_at = st.speed
            return time.monotonic(), window_end
        due = wall0 + (window_end - sim0) / st.speed
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        return wall0, sim0


class ReplayRequest(BaseModel):
    stations: list[str] | None = Field(default=None, description="station ids; all when omitted")
    start_ts: float | None = Field(default=None, description="UTC epoch s; the recorded start when omitted")
    end_ts: float | None = Field(default=None, description="UTC epoch s; the recorded end when omitted")
    speed: float | None = Field(default=60.0, gt=0,
                                description="simulated s per wall s; null = as fast as possible")
    settings: dict[str, Any] = Field(
        default_factory=dict, description="detector thresholds to replay with: overrides of TwinSettings "
        "fields (twin/settings.py), as in a scenario's `settings`; the recorded twin's defaults otherwise")


def replay_settings(overrides: dict[str, Any]) -> TwinSettings | None:
    """The settings a replay runs with; 422 naming each unknown or invalid field."""
    if not overrides:
        return None
    try:
        return TwinSettings(**overrides)
    except ValidationError as exc:
        problems = [f"settings.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise HTTPException(status_code=422, detail="; ".join(problems)) from None


class SpeedRequest(BaseModel):
    speed: float | None = Field(gt=0)


def add_replay_routes(app: FastAPI, source: Store, target: Store, district: District, hub: LiveHub,
                      ctx: Any) -> None:
    """The replay controls of a ``fueltwin replay`` server; its other pages read ``target``."""
    current: dict[str, ReplaySession] = {}

    def session() -> ReplaySession:
        if "s" not in current:
            raise HTTPException(status_code=409, detail="no replay has been started")
        return current["s"]

    @app.get("/api/v1/replay/range", tags=["replay"])
    async def replay_range() -> dict[str, Any]:
        """What can be replayed: each station's first and last recorded event time."""
        ranges = await recorded_range(source, [s.id for s in district.stations])
        return {"stations": {k: {"first_ts": a, "last_ts": b} for k, a, b in
                             ((k, *v) for k, v in ranges.items())},
                "first_ts": min((a for a, _ in ranges.values()), default=None),
                "last_ts": max((b for _, b in ranges.values()), default=None)}

    @app.get("/api/v1/replay", tags=["replay"])
    async def replay_status() -> dict[str, Any]:
        return current["s"].status.as_dict() if "s" in current else ReplayStatus().as_dict()

    @app.post("/api/v1/replay", tags=["replay"])
    async def replay_start(req: ReplayRequest) -> dict[str, Any]:
        """Start a replay (stopping the one under way): a fresh twin, its history caught up at once,
        then paced from ``start_ts`` to ``end_ts``."""
        try:
            stations, start, end = await replay_range_of(source, district, req.stations, req.start_ts,
                                                         req.end_ts)
        except ReplayRangeError as exc:
            raise HTTPException(status_code=exc.status, detail=str(exc)) from None
        settings = replay_settings(req.settings)
        if "s" in current:
            await current.pop("s").stop()
        await target.wipe()
        s = ReplaySession(source, target, district, stations, start, end, req.speed, settings=settings)
        s.service.subscribe(hub.publish)
        ctx.service = s.service
        current["s"] = s
        s.start()
        return s.status.as_dict()

    @app.post("/api/v1/replay/pause", tags=["replay"])
    async def replay_pause() -> dict[str, Any]:
        s = session()
        await s.pause()
        return s.status.as_dict()

    @app.post("/api/v1/replay/resume", tags=["replay"])
    async def replay_resume() -> dict[str, Any]:
        s = session()
        s.resume()
        return s.status.as_dict()

    @app.post("/api/v1/replay/speed", tags=["replay"])
    async def replay_speed(req: SpeedRequest) -> dict[str, Any]:
        s = session()
        s.set_speed(req.speed)
        return s.status.as_dict()

    @app.post("/api/v1/replay/stop", tags=["replay"])
    async def replay_stop() -> dict[str, Any]:
        s = session()
        await s.stop()
        return s.status.as_dict()

    async def _stop_replay() -> None:
        if "s" in current:
            await current["s"].stop()

    app.router.on_shutdown.append(_stop_replay)
