"""Benchmark: OPC UA value change at a simulated device → normalized event out of the bridge.

Not a test: it prints figures. Each device is a real asyncua server on loopback (the simulated tank
gauge of ``simulators/servers/opcua.py``) and a real :class:`bridges.opcua.OpcUaBridge` subscribed to
it at the profile's publishing interval. A change is applied at a random phase of the publishing cycle
and timed from the ``apply`` call to the event reaching the bridge's sink, so the figure includes the
server's sampling, the wait for the next publish, the binary transport and the bridge's decoding.
Expect about half an interval on average and up to one interval plus overhead at the tail.

    python bench/opcua_latency.py                      # 1 device, 200 changes, 100 ms publishing
    python bench/opcua_latency.py --devices 5 --changes 300

``measure(...)`` is the function a wider bridge benchmark (bench/bridges.py) can call.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml  # noqa: E402

from bridges.opcua import OpcUaBridge  # noqa: E402
from bridges.opcua_profile import OpcUaProfile  # noqa: E402
from simulators.servers.opcua import OpcUaDeviceServer  # noqa: E402

PROFILE = Path(__file__).resolve().parent.parent / "bridges" / "profiles" / "opcua-atg-float-m.yaml"
T0 = 1_780_243_200.0


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100.0 * (len(s) - 1))))]


async def measure(devices: int = 1, changes: int = 200, publishing_interval_ms: float = 100.0,
                  seed: int = 1) -> dict[str, Any]:
    """Latency figures (ms) of ``changes`` value changes spread over ``devices`` gauges."""
    base = OpcUaProfile.model_validate(yaml.safe_load(PROFILE.read_text(encoding="utf-8")))
    profile = base.model_copy(update={"publishing_interval_ms": publishing_interval_ms})
    rng = random.Random(seed)
    servers = [OpcUaDeviceServer(profile, {"T1": 1}) for _ in range(devices)]
    await asyncio.gather(*(s.start() for s in servers))
    sent: dict[tuple[int, float], float] = {}
    latencies: list[float] = []
    arrived = asyncio.Event()

    def sink_for(k: int) -> Any:
        async def sink(batch: list[Any]) -> None:
            now = time.perf_counter()
            for ev in batch:
                if isinstance(ev, dict) and (k, ev["ts"]) in sent:
                    latencies.append((now - sent.pop((k, ev["ts"]))) * 1000.0)
            arrived.set()
        return sink

    bridges = [OpcUaBridge(SimpleNamespace(id=f"atg{k}", endpoint=s.endpoint, channels={"T1": 1}), profile,
                           "BH-0001", sink_for(k)) for k, s in enumerate(servers)]
    tasks = [asyncio.create_task(b.run()) for b in bridges]
    try:
        async with asyncio.timeout(30):
            while not all(b.health().connected for b in bridges):
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        for i in range(changes):
            k = i % devices
            ts = T0 + i
            sent[(k, ts)] = time.perf_counter()
            servers[k].apply([{"kind": "tank.reading", "ts": ts, "entity": "T1", "level_mm": 1500.0 + i % 7,
                               "water_mm": 0.0, "temp_c": 18.0}])
            await asyncio.sleep(rng.uniform(0.0, 1.5 * publishing_interval_ms / 1000.0))
        async with asyncio.timeout(10):
            while sent:
                arrived.clear()
                await arrived.wait()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(s.close() for s in servers))
    return {"devices": devices, "changes": len(latencies), "publishing_interval_ms": publishing_interval_ms,
            "p50_ms": statistics.median(latencies), "p95_ms": _pct(latencies, 95),
            "p99_ms": _pct(latencies, 99), "max_ms": max(latencies), "mean_ms": statistics.fmean(latencies)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=1)
    ap.add_argument("--changes", type=int, default=200)
    ap.add_argument("--interval-ms", type=float, default=100.0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    r = asyncio.run(measure(args.devices, args.changes, args.interval_ms))
    print(f"OPC UA change → bridge event, {r['devices']} device(s), {r['changes']} changes, "
          f"publishing {r['publishing_interval_ms']:.0f} ms: p50 {r['p50_ms']:.1f} ms, "
          f"p95 {r['p95_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms, "
          f"mean {r['mean_ms']:.1f} ms")


if __name__ == "__main__":
    main()
