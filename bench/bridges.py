"""Benchmark: from a value change at a simulated device to a websocket client of ``/ws/live``.

Not a test: it prints figures. Everything runs in one process on loopback, as ``fueltwin simulate
--serve`` and ``fueltwin serve --config`` would on one machine: the district simulator at real speed
(a reading every 10 s per tank, customers filling), one protocol server per device, one bridge task per
device, the twin with embedded Redis, uvicorn, and one websocket client.

- ``--protocol modbus``: a Modbus TCP server per device (a gauge, a dispenser controller and a vapor
  monitor per station), each bridge polling at its profile's interval (gauges every 1 s).
- ``--protocol opcua``: an asyncua server per device (a gauge console and a forecourt controller per
  station; no OPC UA vapor monitor is shipped), each bridge subscribed at the profile's publishing
  interval (100 ms).

Latency of one tank reading = the wall time the client receives the tank's ``divergence`` message for
that reading's device time − the wall time the simulator handed the reading to the device (Modbus: its
registers; OPC UA: the server's write queue, so the write itself is included). It contains: waiting for
the next poll or publish, the transport, the runner's queue, ingest (validation, actors, Redis
pipeline), and the hub's flush.

    python bench/bridges.py                       # Modbus, 20 stations, 60 s measured after 10 s of warm-up
    python bench/bridges.py --protocol opcua      # the same over OPC UA subscriptions
    python bench/bridges.py --stations 5 --seconds 30 --profile   # pyinstrument profile of the measured part
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

#: Simulated (= wall) seconds per step of the feed.
STEP_S = 0.2


def jittered_sink(apply: Any, step_s: float, seed: int) -> Any:
    """A ``run_live`` sink that hands each station's events to its devices at a random moment of the step.

    The feed steps every ``step_s`` of wall time, and an OPC UA server publishes on a fixed cycle (as a
    Modbus bridge polls on one): left alone, every change of a device would land at the same phase of
    that cycle and the figures would show that one phase, not the spread a real device's independent
    measurements see. Each station's events keep their order (a later step is never applied before an
    earlier one)."""
    import random

    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    last: dict[str, float] = {}

    async def sink(events: list[dict[str, Any]], now: float) -> None:
        per: dict[str, list[dict[str, Any]]] = {}
        for ev in events:
            per.setdefault(ev["station"], []).append(ev)
        t = loop.time()
        for sid, evs in per.items():
            at = max(t + rng.uniform(0.0, step_s), last.get(sid, 0.0) + 1e-4)
            last[sid] = at
            loop.call_at(at, apply, evs)

    return sink


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100.0 * len(s)))]


async def main(args: argparse.Namespace) -> None:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    tune_gc()
    tmp = tempfile.mkdtemp(prefix="ftb-")
    redis = EmbeddedRedis(tmp).start()
    client = connect(redis.url)
    start = float(int(time.time()))
    sim = DistrictSimulator(synthetic_district(args.stations, args.seed), seed=args.seed, start_ts=start,
                            reading_interval_s=10.0)
    sites = SimulatedSites(sim, protocols=[args.protocol])
    applied: dict[tuple[str, str, float], float] = {}
    feed_apply = sites.apply

    def apply(events: list[dict[str, Any]]) -> None:
        feed_apply(events)
        now = time.time()
        for e in events:
            if e["kind"] == "tank.reading":
                applied[(e["station"], e["entity"], float(e["ts"]))] = now

    sites.apply = apply  # type: ignore[method-assign]
    t_start = time.perf_counter()
    await sites.start()
    started_s = time.perf_counter() - t_start
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
    feed = asyncio.create_task(run_live(sim, jittered_sink(sites.apply, STEP_S, args.seed), speed=1.0,
                                        step_s=STEP_S))
    latencies: list[float] = []
    parts: list[tuple[float, float, float]] = []
    t_measure = time.time() + args.warmup
    t_end = t_measure + args.seconds
    cpu0 = None
    profiler = None
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws/live", max_size=None) as ws:
        while time.time() < t_end:
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=max(0.1, t_end - time.time()))
            except TimeoutError:
                break
            got = time.time()
            if cpu0 is None and got >= t_measure:
                cpu0 = resource.getrusage(resource.RUSAGE_SELF)
                polls0 = sum(_activity(b) for b in runner.bridges)
                if args.profile:
                    from pyinstrument import Profiler

                    profiler = Profiler(async_mode="disabled")
                    profiler.start()
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
    if profiler is not None:
        profiler.stop()
    polls = sum(_activity(b) for b in runner.bridges) - polls0
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
    ms = [x * 1000 for x in latencies]
    name = {"modbus": "Modbus", "opcua": "OPC UA"}[args.protocol]
    print(f"{args.stations} stations, {len(runner.bridges)} {name} devices/bridges (servers started in "
          f"{started_s:.1f} s), hub flush {args.flush:g} s, one process, {args.seconds:.0f} s measured after "
          f"{args.warmup:.0f} s warm-up")
    if args.protocol == "opcua":
        intervals = sorted({b.publishing_interval_ms / 1000 for b in runner.bridges
                            if b.profile.kind == "tank_gauge"})
        what, unit = "gauge publishing interval", "notifications/s"
    else:
        intervals = sorted({b.poll_interval_s for b in runner.bridges if b.profile.kind == "tank_gauge"})
        what, unit = "gauge poll interval", "polls/s"
    gauges = ", ".join(f"{i:g}" for i in intervals)
    print(f"  {what} {gauges} s; {polls / args.seconds:,.0f} {unit}; "
          f"twin {service.counts.accepted:,} events accepted, {service.counts.rejected} rejected; "
          f"CPU {busy / args.seconds * 100:.0f} % of one core")
    if ms:
        print(f"  tank reading → /ws/live divergence: n={len(ms)}  p50 {statistics.median(ms):.0f} ms  "
              f"p90 {pct(ms, 90):.0f} ms  p95 {pct(ms, 95):.0f} ms  p99 {pct(ms, 99):.0f} ms  "
              f"max {max(ms):.0f} ms")
        names = ("device → runner (waiting for the poll or publish, the transport, the queue)",
                 "ingest (validate, actors, Redis)", "ingest done → client (hub flush, send)")
        for i, name in enumerate(names):
            xs = [p[i] * 1000 for p in parts]
            print(f"    {name}: p50 {statistics.median(xs):.0f} ms  p99 {pct(xs, 99):.0f} ms")
    else:
        print("  no samples")
    if profiler is not None:
        print(profiler.output_text(unicode=True, color=False, show_all=False))


def _activity(bridge: Any) -> int:
    """Polls (Modbus, TLS) or data-change notifications (OPC UA) so far."""
    return int(getattr(bridge, "polls", None) or getattr(bridge, "notifications", 0))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", choices=("modbus", "opcua"), default="modbus",
                    help="how the simulated devices speak: Modbus TCP (polled) or OPC UA (subscribed)")
    ap.add_argument("--stations", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--flush", type=float, default=0.1,
                    help="the hub's flush interval (s): 0.1 as `serve --config` runs it, 0.25 the demo's")
    ap.add_argument("--profile", action="store_true",
                    help="profile the measured part with pyinstrument (where the time goes)")
    asyncio.run(main(ap.parse_args()))
