"""The REST API against a real twin: a real Redis, the local runtime, a real uvicorn server, httpx.

Events go in through TwinService.ingest exactly as a bridge's would; the API is read over HTTP.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest

pytestmark = pytest.mark.timeout(60)


async def _get(client: httpx.AsyncClient, path: str, **params: Any) -> Any:
    resp = await client.get(path, params=params or None)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def _readings(ui: Any, station: str, tanks: tuple[str, ...], n: int, step: float = 60.0,
                    start: float | None = None) -> float:
    """n readings a minute apart for each tank, in one batch; returns the last event time."""
    t0 = ui.t0 if start is None else start
    raws = [ui.feed.reading(station, tank, t0 + i * step) for i in range(n) for tank in tanks]
    await ui.ingest(raws)
    await ui.ctx.service.drain()
    return t0 + (n - 1) * step


async def _raise_comm_loss(ui: Any, station: str = "BH-0001", tank: str = "T1") -> dict[str, Any]:
    """A reading, then a clock tick 10 minutes later with nothing in between: the gauge went quiet."""
    last = await _readings(ui, station, (tank,), 1)
    out = await ui.ingest([ui.feed.tick(station, last + 600)])
    await ui.ctx.service.drain()
    alerts = [a for a in out.alerts if a["code"] == "COMM_LOSS" and a["entity"] == tank]
    assert alerts, out.alerts
    return alerts[0]


async def test_stations_list_and_region_filter(ui_server: Any) -> None:
    await _readings(ui_server, "BH-0001", ("T1", "T2"), 5)
    async with httpx.AsyncClient(base_url=ui_server.base, timeout=10) as client:
        stations = await _get(client, "/api/v1/stations")
        assert [s["id"] for s in stations] == ["BH-0002", "BH-0001", "BH-0003"]  # by region, then id
        by_id = {s["id"]: s for s in stations}
        one = by_id["BH-0001"]
        assert one["name"] == "界面测试站 BH-0001" and one["region"] == "新港街道"
        assert (one["lon"], one["lat"]) == (117.70, 39.00)
        assert one["online"] is True and one["last_ts"] == ui_server.t0 + 4 * 60
        assert one["open_alerts"] == 0 and one["worst_severity"] is None
        assert one["sales_today"]["volume_l"] == 0.0
        assert by_id["BH-0002"]["online"] is False  # nothing heard from it yet

        xingang = await _get(client, "/api/v1/stations", region="新港街道")
        assert [s["id"] for s in xingang] == ["BH-0001", "BH-0003"]
        resp = await client.get("/api/v1/stations", params={"region": "火星"})
        assert resp.status_code == 404 and "火星" in resp.json()["detail"]

        regions = {r["region"]: r for r in await _get(client, "/api/v1/regions")}
        assert set(regions) == {"新港街道", "大港街道"}
        assert regions["新港街道"]["stations"] == 2 and regions["新港街道"]["online"] == 1
        assert regions["大港街道"]["online"] == 0


async def test_station_twin_after_readings(ui_server: Any) -> None:
    last = await _readings(ui_server, "BH-0001", ("T1", "T2"), 30)
    async with httpx.AsyncClient(base_url=ui_server.base, timeout=10) as client:
        twin = await _get(client, "/api/v1/stations/BH-0001")
        assert twin["id"] == "BH-0001" and twin["online"] is True
        tanks = {t["id"]: t for t in twin["tanks"]}
        assert set(tanks) == {"T1", "T2"}
        for tank in tanks.values():
            assert tank["observed_l"] > 10_000 and tank["expected_l"] > 10_000
            assert abs(tank["divergence_l"]) < 1.0  # a still tank: observed follows expected
            assert tank["last_ts"] == last and tank["stale"] is False
        assert tanks["T2"]["grade"] == "0#" and tanks["T1"]["declared_capacity_l"] == 30000
        assert [n["id"] for n in twin["nozzles"]] == ["N1", "N2", "N3"]
        assert twin["nozzles"][0]["state"] == "idle"
        assert twin["recent_transactions"] == [] and twin["alerts"] == []
        assert twin["events"] == 60

        # A station the twin has not heard from still has its declared tanks, with nothing observed.
        quiet = await _get(client, "/api/v1/stations/BH-0002")
        assert quiet["online"] is False and quiet["tanks"][0]["observed_l"] is None

        url = "/api/v1/stations/BH-0001/divergence"
        series = (await _get(client, url, tank="T1", max_points=7))["series"]
        assert len(series) == 1 and series[0]["tank"] == "T1" and series[0]["points_total"] == 30
        s = series[0]
        assert len(s["ts"]) == len(s["observed_l"]) == len(s["expected_l"]) == len(s["divergence_l"]) == 7
        assert s["ts"][0] == ui_server.t0 and s["ts"][-1] == last  # evenly spread, ends included
        assert s["ts"] == sorted(s["ts"])

        since = ui_server.t0 + 20 * 60
        recent = (await _get(client, url, tank="T1", since=since))["series"][0]
        assert recent["points_total"] == 10 and min(recent["ts"]) == since

        both = (await _get(client, url))["series"]
        assert [x["tank"] for x in both] == ["T1", "T2"] and all(x["points_total"] == 30 for x in both)


async def test_not_found_is_clear(ui_server: Any) -> None:
    async with httpx.AsyncClient(base_url=ui_server.base, timeout=10) as client:
        for path, params in [("/api/v1/stations/BH-9999", None),
                             ("/api/v1/stations/BH-9999/divergence", None),
                             ("/api/v1/stations/BH-0001/divergence", {"tank": "T9"}),
                             ("/api/v1/alerts", {"station": "BH-9999"}),
                             ("/api/v1/deliveries", {"station": "BH-9999"})]:
            resp = await client.get(path, params=params)
            assert resp.status_code == 404, path
            detail = resp.json()["detail"]
            assert "BH-9999" in detail or "T9" in detail
        resp = await client.post("/api/v1/alerts/BH-0001/T1/COMM_LOSS/1/ack", json={"by": "张三"})
        assert resp.status_code == 404 and "unknown alert" in resp.json()["detail"]


async def test_alerts_ack_then_close(ui_server: Any) -> None:
    raised = await _raise_comm_loss(ui_server)
    async with httpx.AsyncClient(base_url=ui_server.base, timeout=10) as client:
        listed = await _get(client, "/api/v1/alerts", station="BH-0001", status="open")
        assert [a["id"] for a in listed] == [raised["id"]]
        alert = listed[0]
        assert alert["code"] == "COMM_LOSS" and alert["entity"] == "T1" and alert["severity"] == "warning"
        assert "数据中断" in alert["message_zh"] and alert["message_en"]

        summary = {s["id"]: s for s in await _get(client, "/api/v1/stations")}["BH-0001"]
        assert summary["online"] is False and summary["open_alerts"] == 1
        assert summary["worst_severity"] == "warning"
        twin = await _get(client, "/api/v1/stations/BH-0001")
        assert [a["id"] for a in twin["alerts"]] == [raised["id"]]

        # Alert ids hold slashes; both the raw and the percent-encoded form reach the alert.
        resp = await client.post(f"/api/v1/alerts/{quote(raised['id'], safe='')}/ack",
                                 json={"by": "值班员 李", "note": "已电话联系站长"})
        assert resp.status_code == 200, resp.text
        acked = resp.json()
        assert acked["status"] == "acknowledged" and acked["history"][-1]["by"] == "值班员 李"

        again = await client.post(f"/api/v1/alerts/{raised['id']}/ack", json={"by": "值班员 李"})
        assert again.status_code == 409 and "acknowledged" in again.json()["detail"]
        assert (await client.post(f"/api/v1/alerts/{raised['id']}/ack", json={})).status_code == 422

        summary = {s["id"]: s for s in await _get(client, "/api/v1/stations")}["BH-0001"]
        assert summary["open_alerts"] == 1 and summary["unacknowledged_alerts"] == 0
        # The station's actor heard of it too (through the input log), not only the store.
        await ui_server.ctx.service.drain()
        held = (await ui_server.ctx.store.state("BH-0001"))["open_alerts"]
        assert [(a["id"], a["status"]) for a in held] == [(raised["id"], "acknowledged")]

        resp = await client.post(f"/api/v1/alerts/{raised['id']}/close", json={"by": "科长 王"})
        assert resp.status_code == 200, resp.text
        closed = resp.json()
        assert closed["status"] == "closed"
        assert [h["status"] for h in closed["history"]] == ["open", "acknowledged", "closed"]
        await ui_server.ctx.service.drain()
        assert (await ui_server.ctx.store.state("BH-0001"))["open_alerts"] == []
        entries = [batch async for _, batch in ui_server.ctx.store.read_log("BH-0001")]
        logged = [ev for batch in entries for ev in batch if ev.kind == "alert.action"]
        assert [(ev.action, ev.by, ev.alert_id) for ev in logged] == [
            ("acknowledged", "值班员 李", raised["id"]), ("closed", "科长 王", raised["id"])]

        assert await _get(client, "/api/v1/alerts", status="open") == []
        assert [a["id"] for a in await _get(client, "/api/v1/alerts", status="closed")] == [raised["id"]]
        assert (await client.post(f"/api/v1/alerts/{raised['id']}/close",
                                  json={"by": "科长 王"})).status_code == 409


async def test_deadletters_show_rejections_with_reason(ui_server: Any) -> None:
    bad_tank = ui_server.feed.reading("BH-0001", "T7", ui_server.t0)
    incomplete = {"kind": "tank.reading", "station": "BH-0002", "entity": "T1"}
    await ui_server.ingest([bad_tank, incomplete, ui_server.feed.reading("BH-0001", "T1", ui_server.t0)])
    await ui_server.ctx.service.drain()
    async with httpx.AsyncClient(base_url=ui_server.base, timeout=10) as client:
        letters = await _get(client, "/api/v1/deadletters", limit=10)
        assert len(letters) == 2
        reasons = {d["station"]: d["reason"] for d in letters}
        assert "unknown tank 'T7'" in reasons["BH-0001"]
        assert "level_mm" in reasons["BH-0002"] and "Field required" in reasons["BH-0002"]
        assert {d["raw"].get("entity") for d in letters} == {"T7", "T1"}

        health = await _get(client, "/api/v1/health")
        assert health["status"] == "ok" and health["mode"] == "demo"
        assert health["store"]["rejected"] == 2 and health["store"]["accepted"] == 1
        assert health["service"]["rejected"] == 2 and health["hub"]["clients"] == 0


async def test_docs_openapi_and_page(ui_server: Any) -> None:
    async with httpx.AsyncClient(base_url=ui_server.base, timeout=10) as client:
        schema = await _get(client, "/openapi.json")
        paths = schema["paths"]
        for path in ("/api/v1/health", "/api/v1/stations", "/api/v1/regions", "/api/v1/stations/{station_id}",
                     "/api/v1/stations/{station_id}/divergence", "/api/v1/alerts",
                     "/api/v1/alerts/{alert_id}/ack", "/api/v1/alerts/{alert_id}/close", "/api/v1/deliveries",
                     "/api/v1/deadletters"):
            assert path in paths, path
        assert "StationSummary" in schema["components"]["schemas"]

        docs = await client.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()

        page = await client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "wall.js" in page.text
        assert "cdn" not in docs.text.lower() and "https://" not in docs.text  # Swagger UI is served here
        for asset in ("/static/wall.js", "/static/common.js", "/static/style.css",
                      "/static/vendor/echarts/echarts.min.js", "/static/vendor/maps/tianjin.geojson",
                      "/static/vendor/swagger-ui/swagger-ui-bundle.js"):
            resp = await client.get(asset)
            assert resp.status_code == 200 and resp.text, asset


async def test_deliveries_endpoint_lists_recognised_delivery(ui_server: Any) -> None:
    """A tank level that jumps by several thousand litres and settles is recognised as a delivery."""
    t0 = ui_server.t0
    feed = ui_server.feed
    raws = [feed.reading("BH-0003", "T1", t0 + i * 60, level_mm=1000.0) for i in range(10)]
    raws += [feed.reading("BH-0003", "T1", t0 + (10 + i) * 60, level_mm=1000.0 + 50 * (i + 1))
             for i in range(10)]
    raws += [feed.reading("BH-0003", "T1", t0 + (20 + i) * 60, level_mm=1500.0) for i in range(30)]
    await ui_server.ingest(raws)
    await ui_server.ctx.service.drain()
    async with httpx.AsyncClient(base_url=ui_server.base, timeout=10) as client:
        found = await _get(client, "/api/v1/deliveries", station="BH-0003")
        assert len(found) == 1 and found[0]["tank"] == "T1" and found[0]["net_l_20c"] > 5000
        assert await _get(client, "/api/v1/deliveries", station="BH-0001") == []


async def test_health_counts(ui_server: Any) -> None:
    await _readings(ui_server, "BH-0002", ("T1",), 3)
    async with httpx.AsyncClient(base_url=ui_server.base, timeout=10) as client:
        health = await _get(client, "/api/v1/health")
        assert health["store"]["accepted"] == 3
        assert health["service"]["accepted"] == 3 and health["service"]["batches"] == 1
        # one batch, then the full-state refresh that drain() publishes
        assert health["hub"]["batches"] == 2 and health["hub"]["sent"] == 0
