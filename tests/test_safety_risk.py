"""Safety devices, inspections and the station risk score (twin/safety.py, twin/risk.py, ui/risk_api.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest
from conftest import station_spec

from actors.entities import StationActor
from simulators.district import synthetic_district
from simulators.faults import build_fault
from simulators.feed import DistrictSimulator
from twin.events import Validator, parse
from twin.outputs import Outputs
from twin.registry import StationSpec
from twin.risk import RiskSettings, rank, station_risk
from twin.settings import TwinSettings
from twin.timeutil import CST

T0 = datetime(2026, 6, 1, 9, tzinfo=CST).timestamp()
H = 3600.0


class Feed:
    def __init__(self) -> None:
        self.actor = StationActor(StationSpec.model_validate(station_spec("BH-0001")), TwinSettings())
        self.seq = 0

    def send(self, kind: str, ts: float, **payload: Any) -> list[dict[str, Any]]:
        out = Outputs()
        self.seq += 1
        ev = parse({"kind": kind, "ts": ts, "station": "BH-0001", "source": "test", "seq": self.seq,
                    **payload})
        self.actor.handle(ev, out)
        return out.alerts

    def safety(self, ts: float, device: str, sensor: str, **kw: Any) -> list[dict[str, Any]]:
        return self.send("safety.reading", ts, device=device, sensor=sensor, **kw)


def test_gas_lel_levels_follow_gb_t_50493() -> None:
    f = Feed()
    assert f.safety(T0, "GD-01", "gas_lel", value=24.9) == []
    (w,) = f.safety(T0 + 60, "GD-01", "gas_lel", value=25.0)
    assert (w["code"], w["severity"], w["status"]) == ("GAS_LEL", "warning", "open")
    assert w["message_zh"] == "GD-01 可燃气体浓度 25%LEL" and "25 %LEL" in w["message_en"]
    (a,) = f.safety(T0 + 120, "GD-01", "gas_lel", value=52.0)
    assert a["id"] == w["id"] and a["severity"] == "alarm"
    assert f.safety(T0 + 180, "GD-01", "gas_lel", value=21.0) == []  # hysteresis: above 80 % of 25
    (c,) = f.safety(T0 + 240, "GD-01", "gas_lel", value=19.0)
    assert c["status"] == "closed"


def test_interstitial_grounding_video_and_inspection() -> None:
    f = Feed()
    (leak,) = f.safety(T0, "IS-T1", "interstitial", state="leak", entity="T1")
    assert (leak["code"], leak["entity"], leak["severity"]) == ("INTERSTITIAL_LEAK", "T1", "alarm")
    (ok,) = f.safety(T0 + 60, "IS-T1", "interstitial", state="ok", entity="T1")
    assert ok["status"] == "closed"

    assert f.safety(T0, "GC-1", "grounding", state="ungrounded") == []  # nobody unloading: no hazard
    (ug,) = f.safety(T0 + 30, "GC-1", "grounding", state="ungrounded", unloading=True)
    assert ug["code"] == "UNLOADING_UNGROUNDED" and ug["severity"] == "alarm"
    (g,) = f.safety(T0 + 90, "GC-1", "grounding", state="grounded", unloading=True)
    assert g["status"] == "closed"

    (v1,) = f.safety(T0, "CAM-2", "video", state="phone")
    (v2,) = f.safety(T0 + 60, "CAM-2", "video", state="smoking")
    assert v1["severity"] == "warning" and v2["id"] == v1["id"] and v2["severity"] == "alarm"
    assert v2["metrics"]["count"] == 2 and "吸烟" in v2["message_zh"]
    assert f.send("clock.tick", T0 + 60 + 3599) == []
    (closed,) = f.send("clock.tick", T0 + 60 + 3600)
    assert closed["code"] == "UNSAFE_BEHAVIOUR" and closed["status"] == "closed"

    (fi,) = f.send("inspection.report", T0, device="handheld:张三", checks={"灭火器": True, "接地": False},
                   findings=["油罐区警示标识缺失"], severity="major")
    assert fi["code"] == "INSPECTION_FINDING" and fi["severity"] == "alarm"
    assert fi["metrics"]["findings"] == 2 and fi["evidence"]["failed_checks"] == ["接地"]
    (clean,) = f.send("inspection.report", T0 + 86_400, device="handheld:张三", checks={"接地": True})
    assert clean["status"] == "closed"


def _alert(code: str, severity: str, first_ts: float, status: str = "open", station: str = "BH-0001",
           last_ts: float | None = None) -> dict[str, Any]:
    return {"id": f"{station}/-/{code}/{first_ts:.0f}", "code": code, "severity": severity,
            "station": station, "entity": "", "first_ts": first_ts, "last_ts": last_ts or first_ts,
            "status": status, "message_zh": code, "message_en": code}


def test_risk_score_is_the_sum_of_its_reasons() -> None:
    now = T0 + 10 * 86_400
    alerts = [_alert("VAPOR_PRESSURE", "warning", now),                         # 8 × 1.0
              _alert("LEAK", "alarm", now - 7 * 86_400),                         # 20 × 2.0 (a week old)
              _alert("GAS_LEL", "alarm", now, status="acknowledged"),            # 20 × 1.0 × 0.5
              _alert("SUDDEN_LOSS", "alarm", now - 5 * 86_400, "closed", last_ts=now - 4 * 86_400),  # 3
              _alert("SUDDEN_LOSS", "alarm", now - 50 * 86_400, "closed",
                     last_ts=now - 40 * 86_400),  # too old to count
              _alert("DELIVERY_DETECTED", "info", now, "closed")]                # nothing
    state = {"tanks": [{"id": "T1", "last_ts": now, "stale": True}, {"id": "T2", "last_ts": now}],
             "vapor": {"clock": now - 3 * H, "history": [
                 {"day": "2026-06-08", "station": {"status": "warning"}},
                 {"day": "2026-06-09", "station": {"status": "alarm"}},
                 {"day": "2026-06-10", "station": {"status": "compliant"}}]}}
    r = station_risk("BH-0001", alerts, state, now)
    points = {(c["kind"], c["source"].get("code") or c["source"].get("alert") or c["source"].get("record")
               or c["source"].get("tank")): c["points"] for c in r["contributions"]}
    assert points[("open_alert", "VAPOR_PRESSURE")] == 8.0
    assert points[("open_alert", "LEAK")] == 40.0
    assert points[("open_alert", "GAS_LEL")] == 10.0
    assert points[("alert_history", f"BH-0001/-/SUDDEN_LOSS/{now - 5 * 86_400:.0f}")] == 3.0
    assert points[("vapor_compliance", "vapor_daily")] == 1.0 + 3.0
    assert points[("data_gap", "state")] == 6.0  # the stale tank
    assert points[("data_gap", "vapor")] == 5.0  # the monitor silent 3 h
    assert len(r["contributions"]) == 7
    assert r["score"] == pytest.approx(8 + 40 + 10 + 3 + 4 + 6 + 5) and r["level"] == "high"
    assert [c["points"] for c in r["contributions"]] == sorted(points.values(), reverse=True)
    capped = station_risk("BH-0001", alerts * 3, state, now, RiskSettings())
    assert capped["score"] == 100.0


def test_ranking_puts_the_faulty_stations_on_top() -> None:
    """Five simulated stations, three with injected faults (vapor unsealed, a VOC leak, a processing unit
    off) plus a major inspection finding at one of them: the three rank first, and every reason given
    traces to an alert the twin raised or to a record of its state."""
    start = datetime(2026, 6, 1, tzinfo=CST).timestamp()
    sd = synthetic_district(5, seed=21)
    faults: dict[str, list[Any]] = {}
    for spec in ({"type": "vapor_unsealed", "station": "BH-0002", "at": "2h"},
                 {"type": "voc_leak", "station": "BH-0004", "at": "20h", "umol_per_mol": 9000},
                 {"type": "processor_off", "station": "BH-0005", "at": "10h"}):
        sid, fault = build_fault(spec, start, 21)
        faults.setdefault(sid, []).append(fault)
    sim = DistrictSimulator(sd, seed=21, start_ts=start, reading_interval_s=60.0, vapor=True, faults=faults)
    actors = {s.id: StationActor(s, TwinSettings()) for s in sd.district.stations}
    validator = Validator(sd.district.directory())
    out = Outputs()
    t, end = start, start + 36 * H
    while t < end:
        t += H
        accepted, bad = validator.validate(sim.advance(t), t)
        assert not bad
        for ev in accepted:
            actors[ev.station].handle(ev, out)
    actors["BH-0004"].handle(parse({"kind": "inspection.report", "ts": end - 60, "station": "BH-0004",
                                    "source": "inspection:1", "seq": 0, "device": "handheld:李四",
                                    "findings": ["卸油口未加锁"], "severity": "major"}), out)
    latest: dict[str, dict[str, Any]] = {}
    for a in out.alerts:
        latest[a["id"]] = a
    states = {sid: a.state() for sid, a in actors.items()}
    ranked = rank(list(actors), list(latest.values()), states, end)
    top = [r["station"] for r in ranked[:3]]
    assert set(top) == {"BH-0002", "BH-0004", "BH-0005"}, [(r["station"], r["score"]) for r in ranked]
    assert ranked[3]["score"] < ranked[2]["score"]
    for r in ranked:
        for c in r["contributions"]:
            src = c["source"]
            assert "alert" in src or "record" in src
            if "alert" in src:
                assert src["alert"] in latest and latest[src["alert"]]["station"] == r["station"]
    codes = {c["source"].get("code") for c in ranked[top.index("BH-0004")]["contributions"]}
    assert {"VAPOR_VOC", "INSPECTION_FINDING"} <= codes


async def test_inspections_and_risk_over_the_api(ui_server: Any) -> None:
    t0 = ui_server.t0
    await ui_server.ingest([ui_server.feed.reading(s, tk, t0) for s in ("BH-0001", "BH-0002", "BH-0003")
                            for tk in ("T1", "T2")])
    body = {"station": "BH-0002", "inspector": "王五", "ts": t0 + 60, "checklist": {"消防器材": False},
            "findings": ["加油机周边堆放杂物"], "severity": "major", "report_id": "R-2026-0001"}
    async with httpx.AsyncClient(base_url=ui_server.base, timeout=10) as client:
        r = await client.post("/api/v1/inspections", json=body)
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["accepted"] and got["alerts"][0]["code"] == "INSPECTION_FINDING"
        assert got["alerts"][0]["severity"] == "alarm"
        again = (await client.post("/api/v1/inspections", json=body)).json()
        assert again["accepted"] is False and again["reason"] == "duplicate report_id"
        unknown = await client.post("/api/v1/inspections", json={**body, "station": "BH-0404"})
        assert unknown.status_code == 404
        assert (await client.post("/api/v1/inspections", json={**body, "inspector": ""})).status_code == 422
        await ui_server.ctx.service.drain()
        ranked = (await client.get("/api/v1/risk")).json()
        assert [r["station"] for r in ranked][0] == "BH-0002"
        listed = await client.get("/api/v1/alerts", params={"station": "BH-0002"})
        alert_ids = {a["id"] for a in listed.json()}
        reasons = ranked[0]["contributions"]
        assert reasons and all(c["source"]["alert"] in alert_ids
                               for c in reasons if "alert" in c["source"])
        assert ranked[0]["score"] == sum(c["points"] for c in reasons)
        assert all(r["score"] == 0 for r in ranked[1:])
        # One station (its twin page asks so): the same entry as in the district's ranking.
        mine = (await client.get("/api/v1/risk", params={"station": "BH-0002"})).json()
        assert mine == [ranked[0]]
        other = (await client.get("/api/v1/risk", params={"station": "BH-0003"})).json()
        assert other == [r for r in ranked if r["station"] == "BH-0003"]
        assert (await client.get("/api/v1/risk", params={"station": "BH-0404"})).status_code == 404
