"""Benchmark: from a value change at a simulated Modbus device to a websocket client of ``/ws/live``.

Not a test: it prints figures. Everything runs in one process on loopback, as ``fueltwin simulate
--serve`` and ``fueltwin serve --config`` would on one machine: the district simulator at real speed
(a reading every 10 s per tank, customers filling), one Modbus TCP server per device (a gauge, a
dispenser controller and a vapor monitor per station), one bridge task per device polling at its
profile's interval, the twin with embedded Redis, uvicorn, and one websocket client.

Latency of one tank reading = the wall time the client receives the tank's ``divergence`` message for
that reading's device time − the wall time the simulator put the reading into the device's registers.
It contains: waiting for the next poll (uniform over the profile's 1 s interval), the poll, the
runner's queue, ingest (validation, actors, Redis pipeline), and the hub's flush (at most 4 a second).

    python bench/bridges.py                       # 20 stations, 60 s measured after 10 s of warm-up
    python bench/bridges.py --stations 5 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvicorn  # noqa: E402
import websockets  # noqa: E402

from actors.base import make_runtime  # noqa: E402
from bridges.config import parse_config  # noqa: E402
from bridges.runner import BridgeRunner, EdgeClock  # noqa: E402
from simulators.district import synthetic_district  # noqa: E402
from simulators.feed import DistrictSimulator, run_live  # noqa: E402
from simulators.serve import SimulatedSites  # noqa: E402
from twin.app_runner import tune_gc  # noqa: E402
from twin.service import TwinService  # noqa: E402
from twin.store import EmbeddedRedis, Store, connect  # noqa: E402
from ui.app import AppContext, create_app  # noqa: E402
from ui.hub import LiveHub  # noqa: E402


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100.0 * len(s)))]


async def main(args: argparse.Namespace) -> None:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    tune_gc()
    tmp = tempfile.mkdtemp(prefix="ftb-")
    redis = EmbeddedRedis(tmp).start()
    client = connect(redis.url)
    start = float(int(time.time()))
    sim = DistrictSimulator(synthetic_district(args.stations, args.seed), seed=args.seed, start_ts=start,
                            reading_interval_s=10.0)
    sites = SimulatedSites(sim, protocols=["modbus"])
    applied: dict[tuple[str, str, float], float] = {}
    feed_apply = sites.apply

    def apply(events: list[dict[str, Any]]) -> None:
        feed_apply(events)
        now = time.time()
        for e in events:
            if e["kind"] == "tank.reading":
                applied[(e["station"], e["entity"], float(e["ts"]))] = now

    sites.apply = apply  # type: ignore[method-assign]
    await sites.start()
    config = parse_config(sites.config(), "<bench>")
    district = config.district
    store = Store(client, prefix="bench")
    await store.save_district(district)
    service = TwinService(district, store, make_runtime("local", district))
    hub = LiveHub(store, district, flush_interval_s=args.flush)
    service.subscribe(hub.publish)
    app = create_app(AppContext(store=store, district=district, hub=hub, service=service, mode="live"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    polled: dict[tuple[str, str, float], float] = {}
    ingested: dict[tuple[str, str, float], float] = {}

    async def ingest(events: list[Any], now: float) -> None:
        t0 = time.time()
        keys = [(e["station"], e["entity"], float(e["ts"])) for e in events
                if isinstance(e, dict) and e.get("kind") == "tank.reading"]
        await service.ingest(events, now=now)
        t1 = time.time()
        for k in keys:
            polled[k], ingested[k] = t0, t1

    runner = BridgeRunner(config, ingest, clock=EdgeClock("device"))
    problems = await runner.check()
    assert not problems, problems
    bridges = asyncio.create_task(runner.run())
    feed = asyncio.create_task(run_live(sim, sites.sink, speed=1.0, step_s=0.2))
    latencies: list[float] = []
    parts: list[tuple[float, float, float]] = []
    t_measure = time.time() + args.warmup
    t_end = t_measure + args.seconds
    cpu0 = None
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws/live", max_size=None) as ws:
        while time.time() < t_end:
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=max(0.1, t_end - time.time()))
            except TimeoutError:
                break
            got = time.time()
            if cpu0 is None and got >= t_measure:
                cpu0 = resource.getrusage(resource.RUSAGE_SELF)
                polls0 = sum(b.polls for b in runner.bridges)
            msg = json.loads(raw)
            if msg.get("type") != "divergence" or got < t_measure:
                continue
            p = msg.get("payload", msg)
            key = (p["station"], p["tank"], float(p["ts"]))
            t_applied = applied.get(key)
            if t_applied is not None and key in polled:
                latencies.append(got - t_applied)
                parts.append((polled[key] - t_applied, ingested[key] - polled[key], got - ingested[key]))
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    polls = sum(b.polls for b in runner.bridges) - polls0
    feed.cancel()
    bridges.cancel()
    for task in (feed, bridges):
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    server.should_exit = True
    await serving
    await service.close()
    await sites.stop()
    await client.aclose()
    redis.stop()
    busy = (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime) if cpu0 else float("nan")
    intervals = sorted({b.poll_interval_s for b in runner.bridges if b.profile.kind == "tank_gauge"})
    ms = [x * 1000 for x in latencies]
    print(f"{args.stations} stations, {len(runner.bridges)} Modbus devices/bridges, hub flush "
          f"{args.flush:g} s, one process, {args.seconds:.0f} s measured after {args.warmup:.0f} s warm-up")
    gauges = ", ".join(f"{i:g}" for i in intervals)
    print(f"  gauge poll interval {gauges} s; {polls / args.seconds:,.0f} polls/s; "
          f"twin {service.counts.accepted:,} events accepted, {service.counts.rejected} rejected; "
          f"CPU {busy / args.seconds * 100:.0f} % of one core")
    if ms:
        print(f"  tank reading → /ws/live divergence: n={len(ms)}  p50 {statistics.median(ms):.0f} ms  "
              f"p90 {pct(ms, 90):.0f} ms  p99 {pct(ms, 99):.0f} ms  max {max(ms):.0f} ms")
        names = ("device → runner (waiting for the poll, the poll, the queue)",
                 "ingest (validate, actors, Redis)", "ingest done → client (hub flush, send)")
        for i, name in enumerate(names):
            xs = [p[i] * 1000 for p in parts]
            print(f"    {name}: p50 {statistics.median(xs):.0f} ms  p99 {pct(xs, 99):.0f} ms")
    else:
        print("  no samples")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stations", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--flush", type=float, default=0.1,
                    help="the hub's flush interval (s): 0.1 as `serve --config` runs it, 0.25 the demo's")
    asyncio.run(main(ap.parse_args()))
