"""Vapor compliance over the real API: events through TwinService.ingest, Redis, uvicorn, httpx."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from twin.timeutil import CST

D = datetime(2026, 5, 29, tzinfo=CST).timestamp()  # a local midnight after the ui fixture's t0
H = 3600.0


def _vapor_day(station: str, day_start: float, a_l: dict[str, float], seq0: int) -> list[dict[str, Any]]:
    evs: list[dict[str, Any]] = []
    seq = seq0
    for i in range(6):
        ts = day_start + 9 * H + i * 1200.0
        for nozzle, value in a_l.items():
            evs.append({"kind": "vapor.fill", "ts": ts, "station": station, "entity": nozzle,
                        "source": f"hj212-{station}", "seq": seq, "a_l": value, "liquid_l": 35.0,
                        "vapor_l": 35.0 * value, "fill_end_ts": ts})
            seq += 1
    for k in range(0, 24 * 60, 30):
        evs.append({"kind": "vapor.env", "ts": day_start + k * 60.0 + 5.0, "station": station,
                    "source": f"hj212-{station}", "seq": seq, "pressure_pa": 220.0 + (k % 120),
                    "processor_state": "running", "outlet_g_m3": 4.0})
        seq += 1
    return sorted(evs, key=lambda e: e["ts"])


async def test_compliance_view_and_station_vapor(ui_server: Any) -> None:
    day1 = _vapor_day("BH-0001", D, {"N1": 0.7, "N2": 1.1}, 0)  # N1: every fill out of 0.9–1.3
    day2 = _vapor_day("BH-0001", D + 86_400, {"N1": 1.1, "N2": 1.1}, 10_000)
    other = _vapor_day("BH-0002", D, {"N1": 1.08, "N2": 1.12}, 0)
    other2 = _vapor_day("BH-0002", D + 86_400, {"N1": 1.08, "N2": 1.12}, 10_000)
    for batch in (day1 + other, day2[: len(day2) // 2] + other2[: len(other2) // 2]):
        await ui_server.ingest(sorted(batch, key=lambda e: e["ts"]))
    await ui_server.ctx.service.drain()
    async with httpx.AsyncClient(base_url=ui_server.base, timeout=10) as client:
        r = await client.get("/api/v1/vapor/compliance", params={"day": "2026-05-29"})
        assert r.status_code == 200
        body = r.json()
        by = {s["id"]: s for s in body["stations"]}
        assert body["counts"] == {"compliant": 1, "warning": 1, "alarm": 0, "no_data": 1}
        assert by["BH-0001"]["status"] == "warning" and by["BH-0001"]["closed"] is True
        assert by["BH-0001"]["open_alerts"] == ["VAPOR_AL_WARNING"]
        n1 = next(n for n in by["BH-0001"]["nozzles"] if n["nozzle"] == "N1")
        assert n1["judged"] and n1["fills_judged"] == 6 and n1["share_out_of_band"] == 1.0
        assert n1["median_a_l"] == 0.7 and n1["share_in_range"] == 0.0
        assert by["BH-0002"]["status"] == "compliant" and by["BH-0002"]["record"]["share_in_range"] == 1.0
        assert by["BH-0003"]["status"] == "no_data"

        # The open day is live: BH-0001's warning is still open (not yet a good judged day).
        r = await client.get("/api/v1/vapor/compliance", params={"day": "2026-05-30"})
        live = {s["id"]: s for s in r.json()["stations"]}
        assert live["BH-0001"]["closed"] is False and live["BH-0001"]["status"] == "warning"

        r = await client.get("/api/v1/stations/BH-0001/vapor")
        assert r.status_code == 200
        v = r.json()
        assert v["status"] == "warning" and v["processor_state"] == "running"
        assert [h["day"] for h in v["history"]] == ["2026-05-29"]
        assert [a["code"] for a in v["alerts"]] == ["VAPOR_AL_WARNING"]
        assert {n["id"] for n in v["nozzles"]} == {"N1", "N2"}  # N3 is diesel: no vapor recovery

        assert (await client.get("/api/v1/stations/BH-0009/vapor")).status_code == 404
        assert (await client.get("/api/v1/vapor/compliance", params={"day": "29-05-2026"})).status_code == 400
