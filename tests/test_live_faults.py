"""Faults injected into a running demo (simulators/live_faults.py, ui/demo_faults.py): a real simulated
district feeding the twin, a real Redis and uvicorn, httpx; the detection each fault is given is checked
against the simulator's own record of what the fault did."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import test_browser
from playwright.async_api import Browser
from test_browser import Twin, open_page

from twin.store import EmbeddedRedis, Store, connect

pytestmark = pytest.mark.timeout(180)
browser = test_browser.browser  # the fixture: Debian's Chromium through Playwright


@pytest.fixture
async def demo(redis_url: str) -> AsyncIterator[Twin]:
    tw = Twin(redis_url, stations=2)
    await tw.warm_up(3600)
    await tw.start_server()
    yield tw
    await tw.close()


async def test_a_tester_injects_faults_and_sees_when_the_twin_found_them(demo: Twin) -> None:
    async with httpx.AsyncClient(base_url=demo.base, timeout=10) as http:
        types = {t["type"]: t for t in (await http.get("/api/v1/demo/faults/types")).json()}
        assert types["theft"]["entity"] == "tank" and types["theft"]["alert"] == "SUDDEN_LOSS"
        assert {p["name"]: p["required"] for p in types["theft"]["params"]} == {"volume_l": True,
                                                                                "duration": False}
        assert "capacity_misreport" not in types  # a lie in the registry: only at a twin's start
        assert "vapor_unsealed" not in types  # these stations have no vapor monitor

        # Bad requests say what is wrong, and inject nothing.
        for body, words in (
                ({"type": "meteor", "station": "BH-0001"}, "unknown fault type 'meteor'"),
                ({"type": "leak", "station": "BH-0099", "tank": "T1", "rate_lph": 5}, "no station 'BH-0099'"),
                ({"type": "leak", "station": "BH-0001", "tank": "T9", "rate_lph": 5}, "has no tank 'T9'"),
                ({"type": "leak", "station": "BH-0001", "tank": "T1"}, "missing parameter 'rate_lph'"),
                ({"type": "capacity_misreport", "station": "BH-0001", "tank": "T1", "declared_factor": 1.2},
                 "cannot be injected into a running demo"),
                ({"type": "vapor_unsealed", "station": "BH-0001"}, "--vapor"),
                ({"type": "comm_loss", "station": "BH-0001", "for": "30m", "within": "soon"},
                 "not a duration")):
            resp = await http.post("/api/v1/demo/faults", json=body)
            assert resp.status_code == 422 and words in resp.json()["detail"], (body, resp.text)
        assert (await http.post("/api/v1/demo/faults", json=[1, 2])).status_code == 422
        assert (await http.get("/api/v1/demo/faults")).json() == []

        now = demo.sim.now
        theft = (await http.post("/api/v1/demo/faults", json={
            "type": "theft", "station": "BH-0001", "tank": "T1", "volume_l": 150, "duration": "30m",
            "within": "30m"})).json()
        assert theft["id"] == 1 and theft["at_ts"] == now and theft["entity"] == "T1"
        assert theft["alert"] == "SUDDEN_LOSS" and theft["detection"]["acted"] is False
        assert theft["detection"]["within_s"] == 1800
        outage = (await http.post("/api/v1/demo/faults", json={
            "type": "comm_loss", "station": "BH-0002", "for": "30m", "at": "1h"})).json()
        assert outage["at_ts"] == now + 3600
        leak = (await http.post("/api/v1/demo/faults", json={  # the books judge after two days' data
            "type": "leak", "station": "BH-0002", "tank": "T1", "rate_lph": 5, "within": "1h"})).json()
        assert leak["detection"]["overdue"] is False

        await demo.warm_up(3 * 3600)
        found = {f["id"]: f for f in (await http.get("/api/v1/demo/faults")).json()}
        theft, outage, leak = found[1], found[2], found[3]
        assert leak["detection"]["acted"] and leak["detection"]["alert_id"] is None
        assert leak["detection"]["overdue"] is True and leak["detection"]["met"] is None
        assert theft["detection"]["overdue"] is False
        record = demo.faults.faults[0].record
        assert theft["first_active_ts"] == record.first_active_ts and record.first_active_ts >= now
        assert theft["lost_l_20c"] == pytest.approx(150, rel=0.02)
        hit = theft["detection"]
        assert hit["acted"] and hit["met"] is True and hit["alert_entity"] == "T1"
        assert hit["time_to_detect_s"] == pytest.approx(hit["detected_ts"] - record.first_active_ts)
        assert 0 < hit["time_to_detect_s"] <= 1800
        alerts = (await http.get("/api/v1/alerts", params={"station": "BH-0001"})).json()
        alert = next(a for a in alerts if a["id"] == hit["alert_id"])
        assert alert["code"] == "SUDDEN_LOSS" and alert["first_ts"] == hit["detected_ts"]
        # No deadline given: timed, neither met nor late.
        assert outage["detection"]["acted"] and outage["detection"]["alert_id"] is not None
        assert outage["detection"]["met"] is None and outage["detection"]["late"] is False
        assert 0 < outage["detection"]["time_to_detect_s"] <= 900
        mine = (await http.get("/api/v1/demo/faults", params={"station": "BH-0002"})).json()
        assert [f["id"] for f in mine] == [2, 3]


async def test_only_a_demo_takes_faults(ui_server: object) -> None:
    async with httpx.AsyncClient(base_url=ui_server.base, timeout=10) as http:  # type: ignore[attr-defined]
        assert (await http.get("/api/v1/demo/faults/types")).status_code == 404
        resp = await http.post("/api/v1/demo/faults", json={"type": "leak"})
        assert resp.status_code in (404, 405)


async def test_the_station_page_injects_a_fault_and_shows_when_it_was_found(demo: Twin,
                                                                           browser: Browser) -> None:
    """A tester on BH-0001's page picks a theft from tank T2 with a 30-minute deadline; a bad parameter
    is refused with the twin's reason; once the simulated station has run on, the row says the alert
    that found it, after how long, and that it was in time — as the API scores it."""
    offsite: list[str] = []
    page = await open_page(browser, offsite)
    await page.goto(demo.base + "/station/BH-0001")
    await page.locator("#fault-type").select_option("theft")
    assert await page.locator("#fault-target option").all_text_contents() == [
        f"{t.id} · {t.grade}" for t in demo.sim_district.district.station("BH-0001").tanks]
    await page.locator("#fault-target").select_option("T2")
    assert await page.locator("[data-param=volume_l]").input_value() == "150"  # a value a demo shows
    await page.locator("#fault-within").fill("30m")
    await page.locator("#fault-inject").click()
    row = page.locator("#fault-list tr[data-fault='1']")
    await row.wait_for(timeout=10_000)
    assert (await row.locator("td").nth(0).text_content()) == "盗油"
    assert (await row.locator("td").nth(5).text_content()) == "油量骤减"
    assert await row.locator("[data-detection]").text_content() == "尚未生效"

    await page.locator("#fault-type").select_option("leak")
    await page.locator("[data-param=rate_lph]").fill("fast")
    await page.locator("#fault-inject").click()
    await page.wait_for_function("document.getElementById('fault-error').textContent.includes('rate_lph')")
    assert "expected a number, got 'fast'" in (await page.locator("#fault-error").text_content() or "")
    assert await page.locator("#fault-list tr[data-fault]").count() == 1

    await demo.warm_up(2 * 3600)
    (fault,) = (await page.evaluate("fetch('/api/v1/demo/faults').then((r) => r.json())"))
    assert fault["entity"] == "T2" and fault["detection"]["met"] is True
    minutes = round(fault["detection"]["time_to_detect_s"] / 60)
    cell = "document.querySelector(\"#fault-list tr[data-fault='1'] [data-detection]\")"
    await page.wait_for_function(f"{cell}.textContent.includes('后检出')", timeout=15_000)
    assert await row.locator("[data-detection]").text_content() == f"{minutes} 分钟后检出 · 在时限内"
    assert offsite == [] and page.errors == []  # type: ignore[attr-defined]


async def test_a_fault_the_station_cannot_take_is_refused_before_it_reaches_the_simulation(
        redis_url: str) -> None:
    """A vapor blockage on a diesel nozzle is refused by the fault's own check of its station (which
    ran only inside the simulation before, and stopped the demo's feed there); on a gasoline nozzle it
    is taken and the district runs on."""
    demo = Twin(redis_url, stations=1, vapor=True)
    try:
        await demo.start_server()
        spec = demo.sim_district.district.stations[0]
        diesel = next(n.id for n in spec.nozzles if n.grade == "0#")
        petrol = next(n.id for n in spec.nozzles if n.grade != "0#")
        async with httpx.AsyncClient(base_url=demo.base, timeout=10) as http:
            types = {t["type"]: t for t in (await http.get("/api/v1/demo/faults/types")).json()}
            assert {"vapor_blockage", "vapor_unsealed", "processor_off", "voc_leak"} <= set(types)
            assert types["vapor_blockage"]["grades"] == ["92#", "95#", "98#"]  # what the page offers
            assert types["leak"]["grades"] is None
            resp = await http.post("/api/v1/demo/faults", json={
                "type": "vapor_blockage", "station": spec.id, "nozzle": diesel, "a_l": 0.4})
            assert resp.status_code == 422 and "no vapor recovery" in resp.json()["detail"]
            resp = await http.post("/api/v1/demo/faults", json={
                "type": "vapor_blockage", "station": spec.id, "nozzle": petrol, "a_l": 0.4})
            assert resp.status_code == 201
            before = demo.sim.now
            await demo.warm_up(2 * 3600)
            assert demo.sim.now == before + 2 * 3600
            (fault,) = (await http.get("/api/v1/demo/faults")).json()
            assert fault["entity"] == petrol and fault["detection"]["acted"]
    finally:
        await demo.close()


async def test_the_demo_stops_when_its_simulator_fails(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The feed runs forever; if it fails, the pages would go on serving a district that stands still.
    The demo stops instead, keeps its data, and says why (the CLI exits with that message)."""
    from simulators.feed import DistrictSimulator
    from twin.app_runner import DemoOptions, FeedFailed, run_demo

    calls = 0
    advance = DistrictSimulator.advance

    def failing(self: DistrictSimulator, until_ts: float) -> list[dict]:
        nonlocal calls
        calls += 1
        if calls > 30:
            raise RuntimeError("a broken station")
        return advance(self, until_ts)

    monkeypatch.setattr(DistrictSimulator, "advance", failing)
    options = DemoOptions(stations=1, speed=None, port=0, host="127.0.0.1", runtime="local", shards=None,
                          seed=1, start_ts=1_780_243_200.0, reading_interval_s=60.0, data_dir=tmp_path / "d")
    with pytest.raises(FeedFailed, match="a broken station"):
        async with asyncio.timeout(60):
            await run_demo(options)
    # Its data are kept, consistent: every accepted event is in the log.
    redis = EmbeddedRedis(tmp_path / "d").start()
    client = connect(redis.url)
    try:
        store = Store(client)
        accepted = (await store.counters())["accepted"]
        assert accepted > 0 and await store.logged_events("BH-0001") == accepted
    finally:
        await client.aclose()
        redis.stop()
