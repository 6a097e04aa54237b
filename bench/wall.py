"""The wall display under load: 1,000 stations and ~200 live messages a second in Chromium, for minutes.

The station actors of a simulated 1,000-station district are warmed up (every station gets a real state), then
a publisher feeds the live hub at a fixed rate: each 50 ms, ``rate/20`` messages — station states
(round-robin over the district, each with its sales grown a little), a tank's divergence point, and
now and then an alert (opened, later closed, over a bounded set of ids). The hub sends them to the wall
display in Debian's Chromium (headless, 1920×1080). Every 10 s the script reads Chrome's own counters
(CDP ``Performance.getMetrics``): ``TaskDuration`` (main-thread busy seconds) gives the busy fraction of
the interval, ``JSHeapUsedSize`` the heap after a forced garbage collection every minute.

    python bench/wall.py [--minutes 10] [--stations 1000] [--rate 200] [--tiles]

``--tiles`` draws the map on slippy-map tiles (Leaflet, as where FUELTWIN_TILE_URL is set) from a plain
tile server on loopback (``ui/plain_tiles.py``) instead of the built-in ECharts outline.

Prints a table and a summary; never a test.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvicorn  # noqa: E402
from playwright.async_api import async_playwright  # noqa: E402

from actors.base import make_runtime  # noqa: E402
from simulators.district import synthetic_district  # noqa: E402
from simulators.feed import DistrictSimulator  # noqa: E402
from twin.events import Validator  # noqa: E402
from twin.outputs import Outputs  # noqa: E402
from twin.store import EmbeddedRedis, Store, connect  # noqa: E402
from ui.app import AppContext, create_app  # noqa: E402
from ui.hub import LiveHub  # noqa: E402
from ui.plain_tiles import TileServer  # noqa: E402

T0 = 1_780_264_800.0  # 2026-06-01 06:00 Beijing
CODES = [("WATER_HIGH", "warning"), ("LEAK", "alarm"), ("COMM_LOSS", "warning"), ("SUDDEN_LOSS", "critical"),
         ("METER_BIAS", "alarm"), ("TXN_GAP", "info")]


async def main(minutes: float, stations: int, rate: int, tiles: bool) -> None:
    if tiles:
        async with TileServer() as server:
            os.environ["FUELTWIN_TILE_URL"] = server.base + "/{z}/{x}/{y}.png"
            await run(minutes, stations, rate, "tiles")
            print(f"tiles served: {len(server.requested)}")
    else:
        await run(minutes, stations, rate, "echarts")


async def run(minutes: float, stations: int, rate: int, map_kind: str) -> None:
    data = Path(tempfile.mkdtemp(prefix="fueltwin-bench-wall-"))
    redis = EmbeddedRedis(data).start()
    client = connect(redis.url)
    store = Store(client, prefix="bench-wall")
    sim_district = synthetic_district(stations, 3)
    district = sim_district.district
    hub = LiveHub(store, district)
    app = create_app(AppContext(store=store, district=district, hub=hub, service=None, mode="demo"))
    # Real station states from the actors themselves (no Redis on this path: the bench measures the page).
    sim = DistrictSimulator(sim_district, seed=3, start_ts=T0)
    runtime = make_runtime("local", district)
    validator = Validator(district.directory())
    states: dict = {}
    t = time.perf_counter()
    for step in range(1, 31):
        accepted, _ = validator.validate(sim.advance(T0 + 60 * step), T0 + 60 * step)
        groups: dict = {}
        for ev in accepted:
            groups.setdefault(ev.station, []).append(ev)
        out = await runtime.process(groups, with_states=True)
        states.update(out.states)
    await runtime.stop()
    hub.publish(Outputs(states=states))  # first paint for the page comes from the hub's copy
    took = time.perf_counter() - t
    print(f"warm-up: {len(states)} station states after 30 simulated minutes in {took:.1f} s", flush=True)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    serve = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.05)

    ids = [s.id for s in district.stations]
    stop = asyncio.Event()

    async def publish() -> None:
        i, tick, now = 0, 0, T0 + 1800
        per_tick = max(1, rate // 20)
        next_t = time.monotonic()
        while not stop.is_set():
            out = Outputs()
            now += 0.05
            for _ in range(per_tick):
                sid = ids[i % len(ids)]
                i += 1
                kind = i % 10
                if kind < 7:
                    st = copy.deepcopy(states[sid])
                    st["watermark"] = now
                    for g in (st.get("sales_today") or {}).get("by_grade", {}).values():
                        g["volume_l"] += 40.0
                        g["amount_cny"] += 290.0
                    states[sid] = st
                    out.states[sid] = st
                elif kind < 9:
                    tank = states[sid]["tanks"][0]
                    out.divergence.append({"station": sid, "tank": tank["id"], "ts": [now],
                                           "observed_l": [tank.get("observed_l")],
                                           "expected_l": [tank.get("expected_l")],
                                           "divergence_l": [tank.get("divergence_l")], "leak_rate_lph": None,
                                           "leak_rate_se_lph": None})
                else:
                    code, sev = CODES[tick % len(CODES)]
                    victim = ids[(tick * 37) % 300]
                    status = "open" if (tick // 300) % 2 == 0 else "closed"
                    out.alerts.append({"id": f"{victim}/T1/{code}/bench", "code": code, "severity": sev,
                                       "station": victim, "entity": "T1", "first_ts": T0, "last_ts": now,
                                       "status": status, "message_zh": f"T1 基准测试告警 {code}",
                                       "message_en": f"T1 benchmark alert {code}", "evidence": {},
                                       "metrics": {}, "history": []})
                    tick += 1
            hub.publish(out)
            next_t += 0.05
            await asyncio.sleep(max(0.0, next_t - time.monotonic()))

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium",
                                          args=["--no-sandbox", "--js-flags=--expose-gc"])
        page = await browser.new_page(viewport={"width": 1920, "height": 1080})
        cdp = await page.context.new_cdp_session(page)
        await cdp.send("Performance.enable")
        await page.goto(f"http://127.0.0.1:{port}/")
        await page.wait_for_function(f"window.__wall && window.__wall.mapKind() === '{map_kind}' && "
                                     f"window.__wall.mapPoints().length === {stations}", timeout=60_000)
        feeder = asyncio.create_task(publish())

        async def metrics() -> dict[str, float]:
            got = await cdp.send("Performance.getMetrics")
            return {m["name"]: m["value"] for m in got["metrics"]}

        sent0 = hub.sent
        m0, w0 = await metrics(), time.monotonic()
        start = w0
        rows = []
        print(f"{'t (s)':>6} {'msgs/s':>7} {'busy %':>7} {'heap MB':>8} {'nodes':>7}", flush=True)
        while time.monotonic() - start < minutes * 60:
            await asyncio.sleep(10)
            if int(time.monotonic() - start) % 60 < 10:
                await page.evaluate("window.gc && window.gc()")
            m1, w1 = await metrics(), time.monotonic()
            sent1 = hub.sent
            busy = (m1["TaskDuration"] - m0["TaskDuration"]) / (w1 - w0)
            row = (w1 - start, (sent1 - sent0) / (w1 - w0), 100 * busy, m1["JSHeapUsedSize"] / 1e6,
                   m1["Nodes"])
            rows.append(row)
            print(f"{row[0]:6.0f} {row[1]:7.0f} {row[2]:7.1f} {row[3]:8.1f} {row[4]:7.0f}", flush=True)
            m0, w0, sent0 = m1, w1, sent1
        stop.set()
        await feeder
        await browser.close()

    server.should_exit = True
    await serve
    await client.aclose()
    redis.stop()
    busy = [r[2] for r in rows]
    heap = [r[3] for r in rows]
    rates = [r[1] for r in rows]
    print(f"\n{stations} stations on the {map_kind} map, {statistics.fmean(rates):.0f} messages/s to the "
          f"page for {minutes:g} min: "
          f"main thread busy {statistics.fmean(busy):.1f} % mean, {max(busy):.1f} % max; JS heap "
          f"{heap[0]:.1f} MB at the first sample, {heap[-1]:.1f} MB at the last (min {min(heap):.1f}, "
          f"max {max(heap):.1f})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--stations", type=int, default=1000)
    ap.add_argument("--rate", type=int, default=200, help="messages a second published to the hub")
    ap.add_argument("--tiles", action="store_true", help="the map on tiles from a loopback tile server")
    a = ap.parse_args()
    asyncio.run(main(a.minutes, a.stations, a.rate, a.tiles))
