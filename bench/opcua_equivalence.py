"""An open investigation, kept in bench/ (outside the suite) because it FAILS today; run it with
``python -m pytest -q -s bench/opcua_equivalence.py`` (≈ 45 s).

What it found: alerts, every transaction, vapor fill and tank reading arrive exactly (counts equal,
nothing rejected, the same open alerts as the in-process feed), and every tank reading and nozzle state
has the reference's values (compared key by key: none missing, none extra, none differing by more than
0.02), yet the twin recognises 2 (1-minute steps) to 4 (5-minute steps) extra tiny "deliveries"
(−6 … +7 L, 60–120 s long) at BH-0002. The reference gives the same 11 deliveries with 1- or 5-minute
steps. What differs is the order within a batch: over OPC UA a vapor fill comes (through HJ 212) before
the nozzle state and transaction of the same second, and a transaction before its nozzle state, where
the in-process feed has state, transaction, fill; and waiting for every reading of the step (not only
the count) did not remove the extra deliveries. Not resolved for lack of time: next, replay the
bridged batches into the twin with the reference's order at equal timestamps to see whether the
delivery detector depends on that order, and look at the extra deliveries' evidence.

The equivalence of tests/test_bridge_equivalence.py over OPC UA subscriptions and HJ 212 uploads:
simulator → asyncua servers (gauge console, forecourt controller) and HJ 212 vapor monitors → OPC UA
bridges and the HJ 212 receiving server → twin gives the in-process feed's alerts and deliveries.

A subscription cannot be polled on demand, so the test steps differently: it advances the simulator
five minutes, waits until every server has the values in its address space (``flush``) and every
monitor has had its uploads acknowledged (``flush``), then waits — on the bridges' sink, not on a
clock — until the bridges have delivered as many readings, nozzle states and transactions as the step
applied, and ticks the stations. Each monitored item queues what changed between publishes
(``queue_size``), so every reading and nozzle state of the five minutes arrives, as in the in-process
feed; the 64-record transaction ring holds a station's five minutes of sales.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest

from bridges.config import parse_config
from bridges.hj212 import Hj212Server
from bridges.opcua import OpcUaBridge
from simulators.serve import SimulatedSites, free_port
from tests.test_bridge_equivalence import SCENARIO, Collect
from twin.scenario_runner import build_district, build_simulator
from twin.scenarios import load_scenario

STEP_S = 60.0
KINDS = ("tank.reading", "nozzle.state", "nozzle.txn")


@pytest.mark.timeout(300)
async def test_a_day_through_opcua_and_hj212_equals_the_in_process_feed() -> None:
    scn = load_scenario(text=SCENARIO)

    reference_sim = build_simulator(scn, scn.seed, build_district(scn, scn.seed))
    reference = Collect(reference_sim.district)
    t = scn.start
    while t < scn.end:
        t = min(t + 60.0, scn.end)
        await reference.feed(reference_sim.advance(t), t)

    sim = build_simulator(scn, scn.seed, build_district(scn, scn.seed))
    sites = SimulatedSites(sim, protocols=["opcua"], vapor_via="hj212", hj212=("127.0.0.1", free_port()))
    await sites.start()
    config = parse_config(sites.config(), "<simulated>")
    assert config.devices and all(d.protocol == "opcua" for d in config.devices)
    assert {m.station for m in config.monitors} == {s.id for s in config.district.stations}
    bridged = Collect(config.district)
    now = [scn.start]
    polled: list[Any] = []
    arrived = asyncio.Event()
    got = dict.fromkeys(KINDS, 0)
    readings: set[tuple[str, str, float]] = set()

    async def sink(events: list[Any]) -> None:
        polled.extend(events)
        for e in events:
            if isinstance(e, dict) and e.get("kind") in got:
                got[e["kind"]] += 1
                if e["kind"] == "tank.reading":
                    readings.add((e["station"], e["entity"], round(float(e["ts"]), 3)))
        arrived.set()

    devices = [dataclasses.replace(d, options={"publishing_interval_ms": 20}) for d in config.devices]
    bridges = [OpcUaBridge(d, d.profile, config.district.station(d.station), sink, clock=lambda: now[0])
               for d in devices]
    receiver = Hj212Server(config.monitors, sink, host="127.0.0.1", port=config.hj212_listen[1])
    await receiver.start()
    tasks = [asyncio.create_task(b.run()) for b in bridges]
    wall0 = time.perf_counter()
    try:
        async with asyncio.timeout(30):  # subscribed, and every ring's counter known
            while not all(b.health().connected and all(r.last is not None for r in b.rings.values())
                          for b in bridges):
                await asyncio.sleep(0.05)
        polled.clear()
        got.update(dict.fromkeys(KINDS, 0))
        want = dict.fromkeys(KINDS, 0)
        seq = 0
        t = scn.start
        while t < scn.end:
            t = min(t + STEP_S, scn.end)
            events = [e for e in sim.advance(t) if e["kind"] != "clock.tick"]
            step_readings = set()
            for e in events:
                if e["kind"] in want:
                    want[e["kind"]] += 1
                if e["kind"] == "tank.reading":
                    step_readings.add((e["station"], e["entity"], round(float(e["ts"]), 3)))
            now[0] = t
            sites.apply(events)
            await asyncio.gather(*(d.server.flush() for d in sites.devices))
            await asyncio.gather(*(c.flush(30.0) for c, _ in sites.monitors.values()))
            async with asyncio.timeout(20):
                while any(got[k] < want[k] for k in KINDS) or not step_readings <= readings:
                    arrived.clear()
                    await arrived.wait()
            ticks = [{"kind": "clock.tick", "ts": t, "station": s.id, "source": f"edge:{s.id}:clock",
                      "seq": seq} for s in config.district.stations]
            seq += 1
            batch, polled[:] = polled + ticks, []
            await bridged.feed(batch, t)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await receiver.stop()
        await sites.stop()
        for dev in sites.devices:
            await dev.server.close()
    wall = time.perf_counter() - wall0

    assert not bridged.rejected, bridged.rejected[:5]
    assert got == want  # nothing more than was applied either (no repeats after a re-subscription)
    expected = reference.alert_set()
    assert {code for _, code, _ in expected} >= {"SUDDEN_LOSS", "TXN_GAP", "MAINBOARD_CHANGED", "COMM_LOSS"}
    assert bridged.alert_set() == expected
    for kind in ("nozzle.txn", "vapor.fill", "tank.reading"):
        assert bridged.kinds[kind] == reference.kinds[kind] > 0, kind
    ref, res = reference.delivery_list(), bridged.delivery_list()
    assert [(s, tank) for s, tank, _ in res] == [(s, tank) for s, tank, _ in ref] and ref
    for (_, _, a), (_, _, b) in zip(ref, res, strict=True):
        assert b == pytest.approx(a, rel=0.002)
    print(f"\none simulated day of 2 stations through OPC UA and HJ 212 in {wall:.1f} s "
          f"({len(bridges)} OPC UA devices, {len(config.monitors)} HJ 212 monitors, {len(ref)} deliveries, "
          f"{len(expected)} alerts)")
