"""The simulated vapor-recovery monitors: what they add, that they change nothing else, their faults, and
their HJ 212 uploads to the real receiving server over TCP."""

from __future__ import annotations

import asyncio
from datetime import datetime
from statistics import mean, pstdev
from typing import Any

import pytest

from bridges.hj212 import Hj212Server, MonitorConfig
from simulators.district import synthetic_district
from simulators.faults import build_fault
from simulators.feed import DistrictSimulator
from simulators.servers.hj212_client import Hj212MonitorClient
from twin.events import GASOLINE_GRADES
from twin.timeutil import CST

START = datetime(2026, 6, 1, tzinfo=CST).timestamp()
H = 3600.0


def _sim(vapor: bool, faults: dict[str, list[Any]] | None = None, stations: int = 2) -> DistrictSimulator:
    return DistrictSimulator(synthetic_district(stations, seed=11), seed=11, start_ts=START,
                             reading_interval_s=60.0, vapor=vapor, faults=faults)


def test_vapor_adds_its_events_and_changes_no_other() -> None:
    plain = _sim(False).advance(START + 8 * H)
    with_vapor = _sim(True).advance(START + 8 * H)
    others = [e for e in with_vapor if not e["kind"].startswith("vapor.")]
    assert others == plain  # its own generator: the rest of the simulation is untouched
    fills = [e for e in with_vapor if e["kind"] == "vapor.fill"]
    envs = [e for e in with_vapor if e["kind"] == "vapor.env"]
    gasoline_txns = [e for e in plain if e["kind"] == "nozzle.txn" and e["grade"] in GASOLINE_GRADES]
    assert len(fills) == len(gasoline_txns) > 20  # one per gasoline fill (no hidden sales here)
    assert len(envs) == 2 * 8 * 60  # two stations, a sample a minute
    a_l = [e["a_l"] for e in fills if e["liquid_l"] >= 15]
    assert 1.0 < mean(a_l) < 1.2 and 0.02 < pstdev(a_l) < 0.1  # varies fill to fill, inside §5.3
    assert all(abs(e["vapor_l"] - e["a_l"] * e["liquid_l"]) < 0.01 for e in fills)
    assert {e["processor_state"] for e in envs} <= {"running", "stopped"}
    assert _sim(True).advance(START + 8 * H) == with_vapor  # deterministic


def _faulty(spec: dict[str, Any]) -> list[dict[str, Any]]:
    sid, fault = build_fault(spec, START, 11)
    return _sim(True, {sid: [fault]}).advance(START + 10 * H)


def test_vapor_faults_act_from_their_time() -> None:
    sd = synthetic_district(2, seed=11)
    gas = next(n.id for n in sd.district.station("BH-0001").nozzles if n.grade in GASOLINE_GRADES)
    evs = _faulty({"type": "vapor_blockage", "station": "BH-0001", "nozzle": gas, "at": "4h", "a_l": 0.4})
    mine = [e for e in evs if e["kind"] == "vapor.fill" and e["station"] == "BH-0001" and e["entity"] == gas]
    before = [e["a_l"] for e in mine if e["ts"] < START + 4 * H]
    after = [e["a_l"] for e in mine if e["ts"] >= START + 4 * H]
    assert before and after and min(before) > 0.8 and max(after) < 0.6

    evs = _faulty({"type": "vapor_unsealed", "station": "BH-0001", "at": "4h"})
    p = [e["pressure_pa"] for e in evs if e["kind"] == "vapor.env" and e["station"] == "BH-0001"
         and e["ts"] >= START + 4 * H]
    assert max(abs(x) for x in p) < 50

    evs = _faulty({"type": "processor_off", "station": "BH-0001", "at": "2h"})
    env = [e for e in evs
           if e["kind"] == "vapor.env" and e["station"] == "BH-0001" and e["ts"] >= START + 2 * H]
    assert {e["processor_state"] for e in env} == {"stopped"}
    assert max(e["pressure_pa"] for e in env) > 150

    evs = _faulty({"type": "voc_leak", "station": "BH-0002", "at": "3h", "umol_per_mol": 9000})
    voc = [e["voc_umol_mol"] for e in evs if e["kind"] == "vapor.env" and e["station"] == "BH-0002"
           and e["ts"] >= START + 3 * H]
    assert min(voc) > 8000 * 0.8


def test_vapor_blockage_needs_a_gasoline_nozzle() -> None:
    sd = synthetic_district(2, seed=11)
    diesel = next(n.id for n in sd.district.station("BH-0001").nozzles if n.grade not in GASOLINE_GRADES)
    sid, fault = build_fault({"type": "vapor_blockage", "station": "BH-0001", "nozzle": diesel, "at": "1h",
                              "a_l": 0.5}, START, 11)
    with pytest.raises(ValueError, match="no vapor recovery"):
        _sim(True, {sid: [fault]}).advance(START + H)


def test_vapor_fault_needs_vapor_data() -> None:
    sid, fault = build_fault({"type": "voc_leak", "station": "BH-0001", "at": "1h", "umol_per_mol": 5000},
                             START, 11)
    with pytest.raises(ValueError, match="sends no vapor data"):
        _sim(False, {sid: [fault]}).advance(START + H)


async def test_monitors_upload_over_hj212_to_the_receiving_server() -> None:
    """Simulator → HJ 212 client → real TCP → receiving server → the same vapor events (in whole seconds),
    including after the server restarts mid-way (the client reconnects and back-fills)."""
    sim = _sim(True)
    evs = sim.advance(START + 3 * H)
    direct = [e for e in evs if e["kind"].startswith("vapor.")]
    received: list[dict[str, Any]] = []

    async def sink(batch: list[dict[str, Any]]) -> None:
        received.extend(batch)

    monitors = [MonitorConfig(station=f"BH-000{i}", mn=f"8888888000000{i}", password=f"pw{i}")
                for i in (1, 2)]
    server = Hj212Server(monitors, sink)
    port = await server.start()
    clients = [Hj212MonitorClient(m.station, m.mn, m.password, "127.0.0.1", port, reply_timeout_s=2.0)
               for m in monitors]
    for c in clients:
        await c.start()
    half = len(evs) // 2
    for c in clients:
        c.apply(evs[:half])
    await asyncio.gather(*(c.flush(60) for c in clients))
    await server.stop()  # the platform goes down; the monitors queue, then back-fill
    for c in clients:
        c.apply(evs[half:])
    server = Hj212Server(monitors, sink, port=port)
    await server.start()
    await asyncio.gather(*(c.flush(60) for c in clients))
    for c in clients:
        await c.stop()
    await server.stop()

    def key(e: dict[str, Any]) -> tuple[Any, ...]:
        if e["kind"] == "vapor.fill":
            return ("fill", e["station"], e["entity"], int(e["ts"]), round(e["a_l"], 3),
                    round(e["liquid_l"], 2))
        return ("env", e["station"], "", int(e["ts"]), round(e["pressure_pa"], 1), e["processor_state"])

    assert sorted(map(key, received)) == sorted(map(key, direct))
    assert sum(c.stats.acked for c in clients) == len(direct) and all(c.stats.refused == 0 for c in clients)


async def test_vapor_state_survives_a_program_restart(store: Any) -> None:
    """GB 20952 E.3.4: after a power loss the warning/alarm state is kept and the judgement continues.
    A twin restarted from its durable checkpoint plus the log ends with exactly the vapor state (carried
    fills, runs of warning days, open conditions, daily records) of one that never stopped."""
    from actors.base import make_runtime
    from twin.service import TwinService
    from twin.store import Store

    sd = synthetic_district(2, seed=11)
    gas = next(n.id for n in sd.district.station("BH-0001").nozzles if n.grade in GASOLINE_GRADES)
    sid, fault = build_fault({"type": "vapor_blockage", "station": "BH-0001", "nozzle": gas, "at": "6h",
                              "a_l": 0.75}, START, 11)
    sim = DistrictSimulator(sd, seed=11, start_ts=START, reading_interval_s=300.0, vapor=True,
                            faults={sid: [fault]}, running_update_s=None)
    batches = []
    t = START
    while t < START + 2 * 86_400 + 3 * H:
        t += 3 * H
        batches.append((sim.advance(t), t))

    async def run(s: Store, checkpoint_at: int | None) -> TwinService:
        service = TwinService(sd.district, s, make_runtime("local", sd.district))
        for i, (raws, now) in enumerate(batches):
            if i == checkpoint_at:
                await service.checkpoint()
            await service.ingest(raws, now=now)
        await service.drain()
        return service

    reference = await run(Store(store.r, prefix=store.p + "-ref"), None)
    expected = {k: v["vapor"] for k, v in (await reference.runtime.states()).items()}
    await reference.close()
    assert expected["BH-0001"]["status"] == "warning" and len(expected["BH-0001"]["history"]) == 2

    crashed = await run(store, checkpoint_at=10)  # a checkpoint in the middle of the second day
    await crashed.runtime.stop()
    restarted = TwinService(sd.district, store, make_runtime("local", sd.district))
    report = await restarted.recover()
    assert report.restored == 2 and report.replayed > 0
    assert {k: v["vapor"] for k, v in (await restarted.runtime.states()).items()} == expected
    await restarted.close()
