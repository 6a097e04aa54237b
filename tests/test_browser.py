"""The pages in a real browser: Debian's Chromium driven by Playwright, against a real uvicorn app serving a
live twin of a simulated district (real Redis, the simulator feeding TwinService.ingest), all on loopback.

Every test asserts that the page asks nothing of any other machine. Screenshots at 1920×1080 go to
docs/screenshots/ (shown in the README).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.async_api import Browser, Page, async_playwright

from actors.base import make_runtime
from simulators.district import synthetic_district
from simulators.faults import build_fault
from simulators.feed import DistrictSimulator, run_live
from simulators.live_faults import LiveFaults
from twin.service import TwinService
from twin.store import Store, connect
from twin.timeutil import local_day
from ui.app import AppContext, create_app
from ui.hub import LiveHub
from ui.plain_tiles import TileServer

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

    def __init__(self, redis_url: str, stations: int = STATIONS, start_ts: float = T0,
                 reading_interval_s: float = 10.0, vapor: bool = False):
        self.client = connect(redis_url)
        self.sim_district = synthetic_district(stations, 7)
        district = self.sim_district.district
        self.store = Store(self.client, prefix=f"test-br-{uuid.uuid4().hex[:8]}")
        self.service = TwinService(district, self.store, make_runtime("local", district))
        self.hub = LiveHub(self.store, district)
        self.sim = DistrictSimulator(self.sim_district, seed=7, start_ts=start_ts,
                                     reading_interval_s=reading_interval_s, vapor=vapor)
        self.faults = LiveFaults(self.sim, 7)  # as `fueltwin demo` has: the station page injects faults
        self.app = create_app(AppContext(store=self.store, district=district, hub=self.hub,
                                         service=self.service, mode="demo", faults=self.faults))
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

    async def warm_up(self, seconds: float, step_s: float = 300.0) -> None:
        """Feed ``seconds`` of simulated time as fast as possible (sales, deliveries, states)."""
        await run_live(self.sim, self._ingest, speed=None, step_s=step_s, until_ts=self.sim.now + seconds)
        await self.service.drain()

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
    # The sales trend holds the three hours fed before this server started (read from the twin's
    # hourly rows, not counted while watching), bar for bar as the API gives them.
    trend = await page.evaluate("fetch('/api/v1/sales/trend?period=day').then((r) => r.json())")
    bars = [None if b.get("future") else round(b["volume_l"]) for b in trend["buckets"]]
    assert sum((v or 0) > 0 for v in bars) >= 3, bars
    # The hours the district has not reached are gaps, not zero sales: after the last hour fed, all of them.
    reached = [b.get("future") is None for b in trend["buckets"]]
    assert 9 <= sum(reached) <= 10 and reached == sorted(reached, reverse=True), reached  # 06:00 + 3 h
    assert bars[-1] is None
    await page.wait_for_function(
        "(() => { const c = echarts.getInstanceByDom(document.getElementById('chart-trend'));"
        " const s = c && c.getOption().series; return s && s.length && s[0].data.some((v) => v > 0); })()",
        timeout=15_000)
    drawn = await page.evaluate(
        "echarts.getInstanceByDom(document.getElementById('chart-trend')).getOption().series[0].data")
    assert drawn == bars
    assert await page.locator("#trend-note").text_content() == trend["key"]
    # Its export link: that day by station and grade, as a spreadsheet.
    link = page.locator("#trend-export")
    assert await link.text_content() == "导出表格" and await link.is_visible()
    href = await link.get_attribute("href")
    assert href == f"/api/v1/stats/export?period=day&key={trend['key']}"
    sheet = (await page.evaluate(f"fetch('{href}').then((r) => r.text())")).splitlines()
    assert sheet[0].startswith("期间 period") and len(sheet) > STATIONS
    # The month: the trend by day and the region ranking that month's revenue (万元), as /stats gives it.
    await page.click("#trend-switch button[data-p=month]")
    month = trend["key"][:7]
    await page.wait_for_function(f"document.getElementById('region-note').textContent === '{month}'",
                                 timeout=15_000)
    stats = await page.evaluate("fetch('/api/v1/stats?period=month').then((r) => r.json())")
    names, values = await page.evaluate(
        "(() => { const o = echarts.getInstanceByDom(document.getElementById('chart-regions')).getOption();"
        " return [o.yAxis[0].data, o.series[0].data]; })()")
    ranked = sorted(((r, v["amount_cny"]) for r, v in stats["regions"].items()), key=lambda x: x[1])[-12:]
    assert sorted(names) == sorted(r for r, _ in ranked)
    assert values == pytest.approx(sorted(v / 1e4 for _, v in ranked), abs=0.006)
    await page.click("#trend-switch button[data-p=day]")
    await page.wait_for_function("document.getElementById('region-note').textContent === '今日销售额'",
                                 timeout=15_000)

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
    # Its evidence as words with units, not JSON (the JSON one click further).
    evidence = alert.first.locator("details[data-evidence]")
    await evidence.locator(":scope > summary").click()
    fields = evidence.locator(":scope > .evidence-view > dl.evidence")
    assert await fields.locator("dt").all_text_contents() == ["水位 (mm)", "限值 (mm)"]
    shown = [float(x.replace(",", "")) for x in await fields.locator("dd").all_text_contents()]
    said = stored[0]["evidence"]
    assert shown == pytest.approx([said["water_mm"], said["limit_mm"]], abs=0.01)
    assert "{" not in (await fields.text_content() or "")
    assert await evidence.locator("details pre").count() == 1
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
    # The listing in the reader's language: the fault type and the expected alert by name, the file's
    # own words and its description on hover.
    row = page.locator("tr[data-file='short-comm-loss.yaml'] td")
    assert await row.nth(3).text_content() == "通讯中断"
    assert await row.nth(3).get_attribute("title") == "comm_loss"
    assert await row.nth(4).text_content() == "数据中断 ≤ 15m"
    assert await row.nth(4).get_attribute("title") == "COMM_LOSS ≤ 15m"
    assert (await row.nth(0).get_attribute("title") or "").startswith("BH-0001's link is down")
    await page.locator("button[data-run='short-comm-loss.yaml']").click()
    done = page.locator("#report [data-passed]")
    await done.first.wait_for(timeout=60_000)
    assert await done.first.get_attribute("data-passed") == "true"
    assert await page.locator("#report td.ok").count() == 1  # COMM_LOSS met
    assert "误报: 0" in await page.locator("#report").text_content()
    await page.screenshot(path=str(SHOTS / "scenarios.png"))
    assert offsite == [] and page.errors == []  # type: ignore[attr-defined]


async def test_scenarios_page_stops_a_run_and_scores_one_over_seeds(twin: Twin, browser: Browser,
                                                                   tmp_path: Path) -> None:
    """A tester stops a run started by mistake, then runs a scenario over three seeds: the page shows
    each expectation's detections over the seeds and its Pd (as the report's summary has them), the
    false alarms per tank-month, and each seed's own report folded away."""
    (tmp_path / "long-healthy.yaml").write_text(
        "name: long-healthy\nseed: 9\nstart: \"2026-06-01T00:00:00+08:00\"\nduration: 30d\n"
        "district: {stations: 2}\nfaults: []\nexpect: []\n", encoding="utf-8")
    (tmp_path / "short-comm-loss.yaml").write_text(
        "name: short-comm-loss\nseed: 5\nstart: \"2026-06-01T00:00:00+08:00\"\nduration: 6h\n"
        "district: {stations: 1}\nfaults:\n  - {type: comm_loss, station: BH-0001, at: 3h, for: 30m}\n"
        "expect:\n  - {alert: COMM_LOSS, station: BH-0001, within: 15m}\n", encoding="utf-8")
    twin.app.state.scenario_runs.directory = tmp_path
    offsite: list[str] = []
    page = await open_page(browser, offsite)
    await page.goto(twin.base + "/scenarios")
    await page.locator("button[data-run='long-healthy.yaml']").click()
    await page.locator("#report button[data-stop]").click(timeout=30_000)
    await page.locator("#report [data-status='stopped']").wait_for(timeout=30_000)
    assert "已停止" in (await page.locator("#report [data-status]").text_content() or "")

    await page.locator("#seeds").fill("3")
    await page.locator("button[data-run='short-comm-loss.yaml']").click()
    cell = page.locator("#report [data-summary='short-comm-loss'] td[data-detections]")
    await cell.wait_for(timeout=90_000)
    listing = await page.evaluate("fetch('/api/v1/scenarios').then((r) => r.json())")
    run_id = listing["runs"][0]["id"]
    run = await page.evaluate(f"fetch('/api/v1/scenarios/runs/{run_id}').then((r) => r.json())")
    assert run["seeds"] == 3 and run["status"] == "done"
    (expect,) = run["report"]["summary"]["scenarios"][0]["expectations"]
    assert await cell.get_attribute("data-detections") == f"{expect['detections']}/3"
    pd = page.locator("#report [data-summary='short-comm-loss'] td[data-pd]")
    assert float(await pd.get_attribute("data-pd") or "nan") == expect["pd"]
    assert await page.locator("#report details[data-seed]").count() == 3
    link = page.locator("#report a[data-download]")
    assert await link.get_attribute("download") == f"short-comm-loss-{run_id}.json"
    saved = await page.evaluate("fetch(document.querySelector('#report a[data-download]').href)"
                                ".then((r) => r.json())")
    assert saved == run["report"]  # the file is the report the command line writes
    await page.locator("#report details[data-seed='5'] > summary").click()
    await page.screenshot(path=str(SHOTS / "scenarios-seeds.png"))
    fa = run["report"]["summary"]["scenarios"][0]["false_alarms"]["count"]
    assert await page.locator("#report [data-false-alarms]").get_attribute("data-false-alarms") == str(fa)

    # A fault nobody expected: its alert is a false alarm, shown with what the twin said.
    (tmp_path / "unexpected.yaml").write_text(
        (tmp_path / "short-comm-loss.yaml").read_text(encoding="utf-8")
        .replace("short-comm-loss", "unexpected").split("expect:")[0] + "expect: []\n", encoding="utf-8")
    await page.goto(twin.base + "/scenarios")
    await page.locator("button[data-run='unexpected.yaml']").click()
    await page.locator("#report [data-passed='false']").wait_for(timeout=60_000)
    listing = await page.evaluate("fetch('/api/v1/scenarios').then((r) => r.json())")
    last = listing["runs"][0]["id"]
    run = await page.evaluate(f"fetch('/api/v1/scenarios/runs/{last}').then((r) => r.json())")
    alarms = run["report"]["runs"][0]["false_alarms"]
    assert alarms and {a["code"] for a in alarms} == {"COMM_LOSS"}
    cells = page.locator("#report td[data-message]")
    assert await cells.all_text_contents() == [a["message_zh"] for a in alarms]
    assert all(a["message_zh"] for a in alarms)
    assert offsite == [] and page.errors == []  # type: ignore[attr-defined]


async def test_scenarios_page_shows_a_leaks_estimate_against_the_truth(twin: Twin, browser: Browser,
                                                                       tmp_path: Path) -> None:
    """A tester sees what the twin estimated next to what was injected: the LEAK's rate at its last
    refresh, the true rate, the error, and whether the alert's 95 % interval held the truth — the same
    figures as the run's report."""
    (tmp_path / "big-leak.yaml").write_text(
        "name: big-leak\nseed: 5\nstart: \"2026-06-01T00:00:00+08:00\"\nduration: 2d12h\n"
        "district: {stations: 1}\n"
        "faults:\n  - {type: leak, station: BH-0001, tank: T1, at: 6h, rate_lph: 10}\n"
        "expect:\n  - {alert: LEAK, station: BH-0001, tank: T1, within: 3d}\n", encoding="utf-8")
    twin.app.state.scenario_runs.directory = tmp_path
    offsite: list[str] = []
    page = await open_page(browser, offsite)
    await page.goto(twin.base + "/scenarios")
    await page.locator("button[data-run='big-leak.yaml']").click()
    await page.locator("#report [data-passed]").first.wait_for(timeout=60_000)
    cell = page.locator("#report td[data-estimate='rate_lph']")
    assert await cell.count() == 1
    listing = await page.evaluate("fetch('/api/v1/scenarios').then((r) => r.json())")
    (run,) = [r for r in listing["runs"] if r["file"] == "big-leak.yaml"]
    report = await page.evaluate(f"fetch('/api/v1/scenarios/runs/{run['id']}').then((r) => r.json())")
    est = report["report"]["runs"][0]["expectations"][0]["estimate"]
    text = await cell.text_content() or ""
    latest = est["latest"]
    assert f"{latest['value']:.3f} / {est['true']:g} rate_lph ({latest['error_pct']:+.1f}%)" in text
    holds = await cell.locator("[data-ci-holds]").get_attribute("data-ci-holds")
    assert holds == str(est["latest"]["ci95_holds_truth"]).lower()
    assert ("95% 区间含真值" if est["latest"]["ci95_holds_truth"] else "95% 区间不含真值") in text

    # The shape that raised it: the tank's divergence around the LEAK, drawn when opened — the report's
    # points, falling 10 L an hour, with the alert's time marked.
    shape = report["report"]["runs"][0]["expectations"][0]["divergence"]
    drop = shape["divergence_l"][0] - min(shape["divergence_l"])
    assert shape["tank"] == "T1" and drop > 5 * (shape["ts"][-1] - shape["ts"][0]) / 3600
    details = page.locator("#report details[data-divergence='T1']")
    assert await details.get_attribute("data-points") == str(len(shape["ts"]))
    await details.locator("summary").click()
    await page.wait_for_function("document.querySelector('#report [data-chart]').dataset.drawn === '1'")
    drawn = await page.evaluate("""() => {
        const o = echarts.getInstanceByDom(document.querySelector('#report [data-chart]')).getOption();
        return {points: o.series[0].data, mark: o.series[0].markLine.data[0].xAxis};
    }""")
    pairs = zip(shape["ts"], shape["divergence_l"], strict=True)
    assert drawn["points"] == [[ts * 1000, v] for ts, v in pairs]
    assert drawn["mark"] == report["report"]["runs"][0]["expectations"][0]["detected_ts"] * 1000
    await page.screenshot(path=str(SHOTS / "scenarios-divergence.png"))
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
        first = district.stations[0]
        options = await page.locator("#replay-stations option").all_text_contents()
        assert len(options) == STATIONS and options[0] == f"{first.id} · {first.name}", options[:2]
        await page.select_option("#replay-speed", "max")
        await page.fill("#replay-settings", '{"loss_treshold_l": 40}')  # misspelt: refused, by name
        await page.click("#replay-start")
        await page.wait_for_function(
            "document.querySelector('#replay-error').textContent.includes('settings.loss_treshold_l')")
        await page.fill("#replay-settings", '{"loss_threshold_l": 40}')  # the default, given explicitly
        await page.click("#replay-start")
        await page.wait_for_selector("#replay-status [data-state='done']", timeout=60_000)
        assert await page.locator("#replay-error").text_content() == ""
        assert await page.locator("#replay-settings-used").text_content() == '{"loss_threshold_l":40}'
        assert re.search(r"速率 [\d,]+ 事件/秒", await page.locator("#replay-status").text_content())
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


# ---- a tile server on loopback (issue 7: Leaflet when a deployment names one) ---------------------------


def slippy_tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The Web-Mercator tile (x, y) holding a point at zoom z (the scheme Leaflet's {x}/{y} follow)."""
    n = 2**z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return x, y


async def test_wall_draws_tiles_when_a_tile_server_is_set(twin: Twin, browser: Browser,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """FUELTWIN_TILE_URL set: the map is Leaflet on those tiles (asked of the loopback tile server only),
    the district's outline, every station a marker coloured like the ECharts map, hover and click alike."""
    async with TileServer() as tiles:
        monkeypatch.setenv("FUELTWIN_TILE_URL", tiles.base + "/{z}/{x}/{y}.png")
        offsite: list[str] = []
        page = await open_page(browser, offsite)
        await page.goto(twin.base + "/")
        await page.wait_for_function("window.__wall && window.__wall.mapKind() === 'tiles' && "
                                     f"window.__wall.mapPoints().length === {STATIONS}", timeout=15_000)
        district = twin.sim_district.district
        points = await page.evaluate("window.__wall.mapPoints()")
        assert sorted(p["id"] for p in points) == sorted(s.id for s in district.stations)
        assert all(p["inside"] and p["onLand"] for p in points), points
        assert await page.locator(".leaflet-overlay-pane path").count() >= 1  # the district's outline
        await page.wait_for_function("window.__wall.tilesLoaded() > 0", timeout=10_000)
        # The tiles came from the loopback server, at one zoom, and cover every station.
        zooms = {z for z, _, _ in tiles.requested}
        assert len(zooms) == 1, zooms
        z = zooms.pop()
        assert 8 <= z <= 14, z  # a district of ~2,300 km² on a 1920-px wall
        got = {(x, y) for _, x, y in tiles.requested}
        assert {slippy_tile(s.lon, s.lat, z) for s in district.stations} <= got
        await page.wait_for_function("document.getElementById('k-volume').textContent.includes('升')")

        # Colour follows the station's worst open alert, as on the ECharts map.
        victim = sorted(s.id for s in district.stations)[3]
        assert {p["id"]: p["color"] for p in points}[victim] != WARNING
        twin.go_live()
        twin.inject_water(victim)
        async with asyncio.timeout(60):
            while (victim, "WATER_HIGH") not in twin.published:
                await asyncio.sleep(0.05)
        await page.wait_for_function(
            f"window.__wall.mapPoints().some(p => p.id === '{victim}' && p.color === '{WARNING}')",
            timeout=5000)
        await page.screenshot(path=str(SHOTS / "wall-tiles.png"))

        # Hover shows the station's figures; a click opens its twin.
        point = next(p for p in await page.evaluate("window.__wall.mapPoints()") if p["id"] == victim)
        box = await page.locator("#chart-map").bounding_box()
        assert box is not None
        await page.mouse.move(box["x"] + point["x"], box["y"] + point["y"])
        tip = page.locator(".leaflet-tooltip")
        await tip.wait_for(timeout=5000)
        text = await tip.text_content()
        assert district.station(victim).name in text and victim in text
        await page.mouse.click(box["x"] + point["x"], box["y"] + point["y"])
        await page.wait_for_url(f"**/station/{victim}")
        assert offsite == [] and page.errors == []  # type: ignore[attr-defined]


# ---- the station twin on three simulated days: meter factors, the ledger, deliveries and their trace ----

REG_T0 = 1_780_243_200.0  # 2026-06-01 00:00 Beijing: whole local days
LEDGER_NUMBERS = ("opening_measured_l", "receipts_documented_l", "receipts_detected_l",
                  "receipts_undocumented_l", "sales_metered_l", "closing_book_l", "closing_measured_l",
                  "variance_l")


def _number(text: str) -> float:
    return float(text.replace(",", "").replace("%", "").strip())


def _litres(text: str) -> float:
    """A volume as the UI shows it: "6,012 升", "6,012 L" or "30.50 万升"."""
    number = float(re.sub(r"[^0-9.\-]", "", text))
    return number * 1e4 if "万" in text else number


async def _ledger_matches(page: Page, http: httpx.AsyncClient, station: str,
                          period: str) -> list[dict[str, Any]]:
    """The ledger table of ``period`` against GET /stations/{id}/ledger: the same rows (newest first), every
    figure the API's rounded as shown."""
    resp = await http.get(f"/api/v1/stations/{station}/ledger", params={"period": period})
    api = resp.json()["station_total"]
    await page.wait_for_function(f"document.getElementById('ledger').dataset.period === '{period}'")
    shown = await page.evaluate(
        "[...document.querySelectorAll('#ledger tr[data-key]')].map(r => ({row: r.dataset.key, "
        "...Object.fromEntries([...r.cells].map(c => [c.dataset.field, c.textContent]))}))")
    assert [r["row"] for r in shown] == [r["key"] for r in reversed(api)]
    for row, want in zip(shown, reversed(api), strict=True):
        for field in LEDGER_NUMBERS:
            if want[field] is None:
                assert row[field] == "—", (field, row)
            else:
                assert abs(_number(row[field]) - want[field]) <= 0.5 + 1e-6, (field, row, want)
        if want["variance_pct"] is not None:
            assert abs(_number(row["variance_pct"]) - want["variance_pct"]) <= 0.005 + 1e-9, (row, want)
        assert row["key"].startswith(want["key"]) and ("(" in row["key"]) == (not want["complete"])
    return api


async def test_station_twin_meter_factors_ledger_deliveries_and_trace(redis_url: str,
                                                                      browser: Browser) -> None:
    """One simulated station for three days (its paperwork included: purchase orders, one of them only
    matched after its drop; and a drop with no paper at all on the third day) through the twin, then its
    page and the wall against the REST API and the simulator."""
    tw = Twin(redis_url, stations=1, start_ts=REG_T0, reading_interval_s=60.0)
    try:
        sid = tw.sim_district.district.stations[0].id
        # 无票油 at 01:00 on the third day: undocumented 12 h later, well before the day ends.
        tw.sim.add_fault(*build_fault({"type": "delivery_without_po", "station": sid, "tank": "T1",
                                       "at": "49h", "volume_l": 6000}, REG_T0, 7))
        await tw.warm_up(3 * 86_400 - 1800, step_s=3600.0)  # to 23:30 of the third day
        await tw.start_server()
        offsite: list[str] = []
        page = await open_page(browser, offsite)
        async with httpx.AsyncClient(base_url=tw.base, timeout=30) as http:
            state = (await http.get(f"/api/v1/stations/{sid}")).json()
            await page.goto(f"{tw.base}/station/{sid}")

            # Meter factors on the nozzle cards: the state's figure where it is judged, "not separable"
            # on the tank with two nozzles.
            await page.wait_for_function("document.querySelectorAll('.nozzle [data-role=meter]').length > 0")
            reasons = set()
            for tank in state["tanks"]:
                assert tank["meter_factors"], tank["id"]
                for nozzle, mf in tank["meter_factors"].items():
                    line = page.locator(f".nozzle[data-nozzle='{nozzle}'] [data-role=meter]")
                    text = await line.text_content()
                    if mf["judged"]:
                        half = (mf["ci95"][1] - mf["ci95"][0]) / 2
                        assert text == f"计量系数 {mf['factor']:.4f} ±{half:.4f}", (nozzle, text, mf)
                    else:
                        assert await line.get_attribute("data-reason") == mf["reason"]
                        assert not re.search(r"\d\.\d", text), text  # no misleading number
                    reasons.add(mf["reason"])
            assert None in reasons and "few_nozzles" in reasons, reasons
            assert "不可分离" in await page.locator(".nozzle [data-reason=few_nozzles]").first.text_content()

            # The 进销存 ledger: day rows (three days, the last one open), then month and year.
            await page.wait_for_selector("#ledger tr[data-key]")
            days = await _ledger_matches(page, http, sid, "day")
            assert len(days) >= 3 and sum(r["complete"] for r in days) >= 2
            assert all(r["sales_metered_l"] > 0 for r in days)
            for period in ("month", "year"):
                await page.click(f"#ledger-switch button[data-p={period}]")
                assert len(await _ledger_matches(page, http, sid, period)) == 1

            # Deliveries with their purchase orders, as the simulator ordered them. One order only matched
            # after its drop had been recognised: the stored delivery has no PO, the page must show it.
            stored = await tw.store.deliveries(sid, 50)
            truth = [d for d in tw.sim.truth.deliveries if d.station == sid]

            def ordered(d: dict[str, Any]) -> bool:
                return any(t.tank == d["tank"] and abs(t.start_ts - d["start_ts"]) < 900 for t in truth)

            (unpapered,) = [d for d in stored if not ordered(d)]
            assert unpapered["tank"] == "T1" and unpapered["po_no"] is None
            late = [d for d in stored if d["po_no"] is None and ordered(d)]
            assert late and len(stored) >= 3
            # The drop with no paper is its day's undocumented receipts, and no other day has any.
            undocumented = {r["key"]: r["receipts_undocumented_l"] for r in days}
            booked = undocumented.pop(local_day(unpapered["end_ts"]))
            assert booked == pytest.approx(unpapered["net_l_20c"], abs=0.5)
            assert set(undocumented.values()) == {0.0}
            await page.wait_for_selector("#deliveries tr[data-lot]")
            rows = await page.evaluate(
                "[...document.querySelectorAll('#deliveries tr[data-lot]')].map(r => ({lot: r.dataset.lot, "
                "po: r.dataset.po, tank: r.cells[0].textContent, "
                "poText: r.querySelector('[data-field=po]').textContent}))")
            assert len(rows) == len(stored)
            # T1's divergence chart shades its drops and leaves their points out (the books learn of a drop
            # when it is booked, booked_ts: the settle window after its end): over the day it shows the
            # noise, not the 6,000 L the drop moved it by.
            chart = await page.evaluate("""() => {
                const o = echarts.getInstanceByDom(document.querySelector('#div-T1')).getOption().series[0];
                const bands = o.markArea.data.map(([a, b]) => [a.xAxis / 1000, b.xAxis / 1000]);
                return {data: o.data, bands};
            }""")
            assert 600 <= unpapered["booked_ts"] - unpapered["end_ts"] <= 720, unpapered
            assert [unpapered["start_ts"], unpapered["booked_ts"]] in chart["bands"], chart["bands"]
            shown = [v for _, v in chart["data"] if v is not None]
            hidden = [t / 1000 for t, v in chart["data"] if v is None]
            assert len(shown) > 200 and max(abs(v) for v in shown) < 300, max(shown)
            near = [t for t in hidden if abs(t - unpapered["start_ts"]) < 7200]
            assert near and all(unpapered["start_ts"] <= t < unpapered["booked_ts"] for t in near), near
            for row in rows:
                if row["lot"] == unpapered["lot"]:
                    assert row["po"] == "" and row["poText"] == "—", row
                    continue
                start = next(d["start_ts"] for d in stored if d["lot"] == row["lot"])
                true = next(d for d in truth if d.tank == row["tank"] and abs(d.start_ts - start) < 900)
                assert row["po"] == true.po_no and row["poText"] == true.po_no, (row, true)

            # The late order's trace: its documents and the lot it was matched to, as GET /trace/po says.
            po = next(r["po"] for r in rows if r["lot"] == late[0]["lot"])
            await page.click(f"#deliveries tr[data-po='{po}'] [data-field=po] a")
            await page.wait_for_selector(f"#trace[data-kind=po][data-key='{po}']")
            trace = (await http.get(f"/api/v1/trace/po/{po}")).json()
            box = page.locator("#trace")
            assert await box.locator("[data-field=po_no]").text_content() == po
            assert await box.locator("dd[data-field=supplier]").text_content() == trace["source"]["supplier"]
            assert await box.locator("dd[data-field=vehicle]").text_content() == trace["transport"]["vehicle"]
            assert await box.locator("td[data-field=lot]").all_text_contents() == [
                d["lot"] for d in trace["deliveries"]]
            assert late[0]["lot"] in [d["lot"] for d in trace["deliveries"]]
            detected = await box.locator("td[data-field=detected]").all_text_contents()
            assert len(detected) == len(trace["deliveries"])
            for shown, d in zip(detected, trace["deliveries"], strict=True):
                assert abs(_number(shown) - d["detected_net_l_20c"]) <= 0.5 + 1e-6
            # A lot's own trace, and a transaction's lots.
            await page.click(f"#deliveries tr[data-lot='{unpapered['lot']}'] [data-field=lot] a")
            await page.wait_for_selector(f"#trace[data-kind=lot][data-key='{unpapered['lot']}']")
            assert await box.locator("dd[data-field=po_no]").text_content() == "未匹配采购单"
            ordered_row = next(r for r in rows if r["lot"] != unpapered["lot"])
            lot = ordered_row["lot"]
            await page.click(f"#deliveries tr[data-lot='{lot}'] [data-field=lot] a")
            await page.wait_for_selector(f"#trace[data-kind=lot][data-key='{lot}']")
            assert await box.locator("dd[data-field=po_no]").text_content() == ordered_row["po"]
            lot_api = (await http.get(f"/api/v1/trace/lot/{lot}")).json()
            drawn = _number(await box.locator("td[data-field=drawn]").first.text_content())
            assert lot_api["drawn_l_20c"] > 0 and abs(drawn - lot_api["drawn_l_20c"]) <= 0.5 + 1e-6
            await page.locator("#txns a").first.click()
            await page.wait_for_selector("#trace[data-kind=txn]")
            shares = await box.locator("td[data-field=share]").all_text_contents()
            assert shares and abs(sum(_number(x) for x in shares) - 100.0) <= 0.1 * len(shares)

            # For the screenshot: the day ledger and the late order's trace.
            await page.click("#ledger-switch button[data-p=day]")
            await page.wait_for_function("document.getElementById('ledger').dataset.period === 'day'")
            await page.click(f"#deliveries tr[data-po='{po}'] [data-field=po] a")
            await page.wait_for_selector(f"#trace[data-kind=po][data-key='{po}']")
            await page.evaluate("window.scrollTo(0, 0)")
            await page.screenshot(path=str(SHOTS / "station-ledger.png"), full_page=True)
            # English: the same figures, English words.
            await page.click("#lang")
            await page.wait_for_function(
                "document.querySelector('.nozzle [data-role=meter][data-judged=true]').textContent"
                ".startsWith('Meter factor ')")
            few = page.locator(".nozzle [data-reason=few_nozzles]").first
            assert "not separable" in await few.text_content()
            # The ledger is redrawn when its re-read returns (a fetch after the switch): wait for it.
            await page.wait_for_function("document.querySelector('#ledger th').textContent === 'Period'",
                                         timeout=10_000)

            # The wall's receipts today: documented, paper pending, undocumented (flagged), as the ledger.
            await page.goto(f"{tw.base}/")
            await page.wait_for_selector("#kpi-receipts:not([hidden])")
            ledger = (await http.get(f"/api/v1/stations/{sid}/ledger", params={"period": "day"})).json()
            today = ledger["station_total"][-1]
            assert today["key"] == local_day(unpapered["end_ts"]) and not today["complete"]
            doc, undoc = today["receipts_documented_l"], today["receipts_undocumented_l"]
            pending = max(0.0, today["receipts_detected_l"] - doc - undoc)
            assert undoc == pytest.approx(unpapered["net_l_20c"], abs=0.5)
            for key, want in (("doc", doc), ("pending", pending), ("undoc", undoc)):
                shown = await page.locator(f"#k-receipts-{key}").text_content()
                assert abs(_litres(shown) - want) <= (50.0 if "万" in shown else 0.5), (key, shown, want)
            assert await page.locator("#k-receipts-undoc.flag").count() == 1
        assert offsite == [] and page.errors == []  # type: ignore[attr-defined]
    finally:
        await tw.close()
