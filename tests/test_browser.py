"""The pages in a real browser: Debian's Chromium driven by Playwright, against a real uvicorn app serving a
live twin of a simulated district (real Redis, the simulator feeding TwinService.ingest), all on loopback.

Every test asserts that the page asks nothing of any other machine. Screenshots at 1920×1080 go to
docs/screenshots/ (shown in the README).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.async_api import Browser, Page, async_playwright

from actors.base import make_runtime
from simulators.district import synthetic_district
from simulators.faults import build_fault
from simulators.feed import DistrictSimulator, run_live
from twin.service import TwinService
from twin.store import Store, connect
from ui.app import AppContext, create_app
from ui.hub import LiveHub

pytestmark = pytest.mark.timeout(120)

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
STATIONS = 12
#: 2026-06-01 06:00 Beijing: the simulated district's start.
T0 = 1_780_264_800.0
WARNING = "#f1c40f"
LOCAL = ("http://127.0.0.1:", "ws://127.0.0.1:", "data:", "about:blank")


class Twin:
    """A simulated district's live twin behind a uvicorn server that can be stopped and started again on
    the same port (the websocket-reconnection test)."""

    def __init__(self, redis_url: str):
        self.client = connect(redis_url)
        self.sim_district = synthetic_district(STATIONS, 7)
        district = self.sim_district.district
        self.store = Store(self.client, prefix=f"test-br-{uuid.uuid4().hex[:8]}")
        self.service = TwinService(district, self.store, make_runtime("local", district))
        self.hub = LiveHub(self.store, district)
        self.app = create_app(AppContext(store=self.store, district=district, hub=self.hub,
                                         service=self.service, mode="demo"))
        self.sim = DistrictSimulator(self.sim_district, seed=7, start_ts=T0)
        self.port = 0
        self.server: uvicorn.Server | None = None
        self.task: asyncio.Task[None] | None = None
        self.feed: asyncio.Task[float] | None = None
        #: wall time (monotonic) at which the service published each (station, code) alert first
        self.published: dict[tuple[str, str], float] = {}
        self.service.subscribe(self._note_alerts)

    def _note_alerts(self, outputs: Any) -> None:
        for a in outputs.alerts:
            self.published.setdefault((a["station"], a["code"]), time.monotonic())

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start_server(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.task = asyncio.create_task(self.server.serve(sockets=[sock]))
        async with asyncio.timeout(10):
            while not self.server.started:
                if self.task.done():
                    self.task.result()
                await asyncio.sleep(0.02)

    async def stop_server(self) -> None:
        assert self.server is not None and self.task is not None
        self.server.should_exit = True
        async with asyncio.timeout(15):
            await self.task

    async def warm_up(self, seconds: float) -> None:
        """Feed ``seconds`` of simulated time as fast as possible (sales, deliveries, states)."""
        await run_live(self.sim, self._ingest, speed=None, step_s=300.0, until_ts=self.sim.now + seconds)

    async def _ingest(self, events: list[dict[str, Any]], now: float) -> None:
        await self.service.ingest(events, now=now)

    def go_live(self, speed: float = 300.0) -> None:
        self.feed = asyncio.create_task(run_live(self.sim, self._ingest, speed=speed, step_s=30.0))

    def inject_water(self, station: str, tank: str = "T1") -> None:
        """Water floods a tank from now on: WATER_HIGH (warning) after three readings above 50 mm."""
        sid, fault = build_fault({"type": "water_ingress", "station": station, "tank": tank, "at": "0s",
                                  "mm_per_day": 20_000}, self.sim.now, 7)
        self.sim.add_fault(sid, fault)

    async def close(self) -> None:
        if self.feed is not None:
            self.feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.feed
        if self.server is not None and self.task is not None and not self.task.done():
            await self.stop_server()
        await self.service.close()
        await self.client.aclose()


@pytest.fixture
async def twin(redis_url: str) -> AsyncIterator[Twin]:
    tw = Twin(redis_url)
    await tw.warm_up(3 * 3600)
    await tw.start_server()
    yield tw
    await tw.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        await b.close()


async def open_page(browser: Browser, offsite: list[str]) -> Page:
    """A 1920×1080 page that records (and refuses) any request to another machine."""
    context = await browser.new_context(viewport={"width": 1920, "height": 1080}, locale="zh-CN",
                                        timezone_id="Asia/Shanghai")

    async def guard(route: Any) -> None:
        if route.request.url.startswith(LOCAL):
            await route.continue_()
        else:
            offsite.append(route.request.url)
            await route.abort()

    await context.route("**/*", guard)
    page = await context.new_page()
    page.on("request", lambda r: None if r.url.startswith(LOCAL) else offsite.append(r.url))
    page.on("websocket", lambda ws: None if ws.url.startswith(LOCAL) else offsite.append(ws.url))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors  # type: ignore[attr-defined]
    return page


async def test_wall_map_alert_ticker_station_twin_and_language(twin: Twin, browser: Browser) -> None:
    offsite: list[str] = []
    page = await open_page(browser, offsite)
    await page.goto(twin.base + "/")
    # Every station on the map, at its coordinates, on the district's polygon.
    await page.wait_for_function(f"window.__wall && window.__wall.mapPoints().length === {STATIONS}",
                                 timeout=15_000)
    points = await page.evaluate("window.__wall.mapPoints()")
    ids = sorted(s.id for s in twin.sim_district.district.stations)
    assert sorted(p["id"] for p in points) == ids
    assert all(p["inside"] and p["onLand"] for p in points), points
    await page.wait_for_function("document.getElementById('conn').classList.contains('up')", timeout=10_000)
    # The KPIs come from the live states: today's sales after three simulated hours are not zero.
    await page.wait_for_function("document.getElementById('k-volume').textContent.includes('升')")
    assert await page.locator("#k-online").text_content() == f"{STATIONS} / {STATIONS}"

    victim = ids[3]
    before = {p["id"]: p["color"] for p in points}[victim]
    assert before != WARNING
    twin.go_live()
    twin.inject_water(victim)
    async with asyncio.timeout(60):
        while (victim, "WATER_HIGH") not in twin.published:
            await asyncio.sleep(0.05)
    raised = twin.published[(victim, "WATER_HIGH")]
    # Within 5 s of the twin raising it: a line in the ticker, and the station's colour on the map.
    budget_ms = 5000 - (time.monotonic() - raised) * 1000
    assert budget_ms > 0
    line = page.locator(f"#ticker li[data-station='{victim}'][data-alert*='WATER_HIGH']")
    await line.first.wait_for(timeout=budget_ms)
    await page.wait_for_function(
        f"window.__wall.mapPoints().some(p => p.id === '{victim}' && p.color === '{WARNING}')",
        timeout=max(1.0, 5000 - (time.monotonic() - raised) * 1000))
    assert time.monotonic() - raised <= 5.0
    assert "水位" in await line.first.text_content()
    assert await page.locator("#ticker li").first.get_attribute("data-station") is not None
    await page.wait_for_timeout(5500)  # the side charts' next round
    await page.screenshot(path=str(SHOTS / "wall.png"))

    # Language switch: English and back.
    await page.click("#lang")
    await page.wait_for_function("document.getElementById('title').textContent.startsWith('Binhai')")
    assert await page.evaluate("document.documentElement.lang") == "en"
    assert "water bottom" in (await line.first.text_content()).lower()
    assert "L" in await page.locator("#k-volume").text_content()
    await page.click("#lang")
    await page.wait_for_function("document.getElementById('title').textContent.startsWith('滨海')")

    # Clicking the alert opens the station twin with that alert, its evidence and its actions.
    await line.first.click()
    await page.wait_for_url(f"**/station/{victim}")
    alert = page.locator(".alert-item[data-alert*='WATER_HIGH']")
    await alert.first.wait_for(timeout=10_000)
    await page.wait_for_function("document.querySelectorAll('.tank-card').length > 0")
    tanks = len(twin.sim_district.district.station(victim).tanks)
    assert await page.locator(".tank-card").count() == tanks
    assert await page.locator(".nozzle").count() == len(twin.sim_district.district.station(victim).nozzles)
    await page.fill("#who", "测试员")
    await alert.first.locator("button[data-action=ack]").click()
    await page.wait_for_function(
        "[...document.querySelectorAll('.alert-item')].some(a => a.dataset.alert.includes('WATER_HIGH') "
        "&& a.querySelector('.status-pill').textContent === '已确认')", timeout=10_000)
    stored = [a for a in await twin.store.alerts(victim, limit=100) if a["code"] == "WATER_HIGH"]
    assert stored[0]["status"] == "acknowledged" and stored[0]["history"][-1]["by"] == "测试员"
    await page.wait_for_timeout(1500)  # the divergence charts' first data
    await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=str(SHOTS / "station.png"))
    assert offsite == [] and page.errors == []  # type: ignore[attr-defined]


async def test_websocket_reconnects_after_the_server_restarts(twin: Twin, browser: Browser) -> None:
    offsite: list[str] = []
    page = await open_page(browser, offsite)
    await page.goto(twin.base + "/")
    await page.wait_for_function("window.__wall && window.__wall.live.connects === 1", timeout=15_000)
    await twin.stop_server()
    await page.wait_for_function("document.getElementById('conn').classList.contains('down')", timeout=10_000)
    await twin.start_server()  # same port
    await page.wait_for_function("window.__wall.live.connects === 2 && "
                                 "document.getElementById('conn').classList.contains('up')", timeout=20_000)
    # And the live stream flows again: a state after the reconnection moves the data time.
    before = await page.locator("#data-time").text_content()
    twin.go_live()
    await page.wait_for_function(f"document.getElementById('data-time').textContent !== {before!r}",
                                 timeout=10_000)
    assert offsite == [] and page.errors == []  # type: ignore[attr-defined]


async def test_scenarios_page_runs_one_and_shows_its_report(twin: Twin, browser: Browser,
                                                            tmp_path: Path) -> None:
    (tmp_path / "short-comm-loss.yaml").write_text(
        "name: short-comm-loss\n"
        "description: BH-0001's link is down for 30 minutes; COMM_LOSS expected within 15 minutes.\n"
        "seed: 5\nstart: \"2026-06-01T00:00:00+08:00\"\nduration: 6h\ndistrict: {stations: 1}\n"
        "faults:\n  - {type: comm_loss, station: BH-0001, at: 3h, for: 30m}\n"
        "expect:\n  - {alert: COMM_LOSS, station: BH-0001, within: 15m}\n", encoding="utf-8")
    twin.app.state.scenario_runs.directory = tmp_path  # the app's runner reads this folder
    offsite: list[str] = []
    page = await open_page(browser, offsite)
    await page.goto(twin.base + "/scenarios")
    await page.locator("button[data-run='short-comm-loss.yaml']").click()
    done = page.locator("#report [data-passed]")
    await done.first.wait_for(timeout=60_000)
    assert await done.first.get_attribute("data-passed") == "true"
    assert await page.locator("#report td.ok").count() == 1  # COMM_LOSS met
    assert "误报: 0" in await page.locator("#report").text_content()
    await page.screenshot(path=str(SHOTS / "scenarios.png"))
    assert offsite == [] and page.errors == []  # type: ignore[attr-defined]


async def test_replay_page_replays_the_recorded_twin(twin: Twin, browser: Browser) -> None:
    """A replay server over the twin's recorded log: /replay starts it, every page says it is a replay,
    and the wall display shows the replayed district."""
    from ui.replay import add_replay_routes

    await twin.service.drain()
    district = twin.sim_district.district
    target = Store(twin.client, prefix=twin.store.p + "-replay")
    hub = LiveHub(target, district, mode="replay")
    ctx = AppContext(store=target, district=district, hub=hub, service=None, mode="replay")
    app = create_app(ctx)
    add_replay_routes(app, twin.store, target, district, hub, ctx)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.02)
        offsite: list[str] = []
        page = await open_page(browser, offsite)
        await page.goto(base + "/replay")
        await page.wait_for_selector("#replay-start")
        await page.select_option("#replay-speed", "max")
        await page.click("#replay-start")
        await page.wait_for_selector("#replay-status [data-state='done']", timeout=60_000)
        assert await page.locator("#banner").is_visible()
        assert "回放" in await page.locator("#banner").text_content()
        await page.screenshot(path=str(SHOTS / "replay.png"))
        await page.goto(base + "/")
        await page.wait_for_function(f"window.__wall && window.__wall.mapPoints().length === {STATIONS}",
                                     timeout=15_000)
        assert "回放" in await page.locator("#banner").text_content()
        assert offsite == [] and page.errors == []  # type: ignore[attr-defined]
    finally:
        server.should_exit = True
        async with asyncio.timeout(15):
            await task
