"""OPC UA bridge against a real asyncua server on loopback (the simulated device), and the other way
round: asyncua's own command-line client reading our simulated device."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from bridge_support import Collector, Device, load, until
from conftest import station_spec

from bridges.opcua import OpcUaBridge, ProfileMismatch
from bridges.opcua_profile import OpcUaProfile
from simulators.servers.opcua import OpcUaDeviceServer
from twin.registry import StationSpec

T0 = 1_780_000_000.0  # device clock of the tests (2026-05-28), far from the bridge's wall clock
STATION = StationSpec.model_validate(station_spec("BH-0001"))


def atg() -> OpcUaProfile:
    return load("opcua-atg-float-m", OpcUaProfile)


def fcc() -> OpcUaProfile:
    return load("opcua-disp-fcc-ring", OpcUaProfile)


def reading(tank: str, ts: float, level: float, water: float = 12.5,
            temp: float = 18.25) -> dict[str, Any]:
    return {"kind": "tank.reading", "ts": ts, "station": "BH-0001", "entity": tank, "source": "sim",
            "seq": 0, "level_mm": level, "water_mm": water, "temp_c": temp}


def txn(nozzle: str, no: int, ts: float, volume: float = 30.0, price: float = 7.89) -> dict[str, Any]:
    return {"kind": "nozzle.txn", "ts": ts, "station": "BH-0001", "entity": nozzle, "source": "sim",
            "seq": 0, "txn_no": no, "grade": "95#", "volume_l": volume,
            "amount_cny": round(volume * price, 2),
            "unit_price": price, "start_ts": ts - 90.0, "end_ts": ts, "totalizer_l": 1000.0 + no * volume,
            "totalizer_cny": 8000.0 + no * volume * price}


async def subscribed(srv: OpcUaDeviceServer, sink: Collector) -> dict[str, Any]:
    """Wait until the bridge has its subscription's first notifications (the ring counter among them:
    transactions from before are history, not replayed), shown by a nozzle state getting through."""
    srv.apply([{"kind": "nozzle.state", "ts": T0, "station": "BH-0001", "entity": "N1", "source": "sim",
                "seq": 0, "state": "fuelling", "volume_l": 12.34, "amount_cny": 97.37}])
    return (await sink.wait(lambda: sink.of("nozzle.state", "N1"), timeout=10))[0]


class Rig:
    """A simulated device, a bridge running against it and what the bridge sent."""

    def __init__(self) -> None:
        self.servers: list[OpcUaDeviceServer] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def server(self, profile: OpcUaProfile, channels: dict[str, int]) -> OpcUaDeviceServer:
        srv = OpcUaDeviceServer(profile, channels)
        await srv.start()
        self.servers.append(srv)
        return srv

    def bridge(self, srv: OpcUaDeviceServer, profile: OpcUaProfile | None = None,
               station: Any = STATION) -> tuple[OpcUaBridge, Collector]:
        sink = Collector()
        dev = Device("dev", srv.endpoint, dict(srv.channels))
        br = OpcUaBridge(dev, profile or srv.profile, station, sink)
        self.tasks.append(asyncio.create_task(br.run()))
        return br, sink

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(t, 5)
        for s in self.servers:
            await s.close()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    r = Rig()
    yield r
    await r.close()


async def test_value_change_becomes_event_with_device_time(rig: Rig) -> None:
    srv = await rig.server(atg(), {"T1": 1, "T2": 2})
    br, sink = rig.bridge(srv)
    srv.apply([reading("T1", T0, 1523.4), reading("T2", T0, 987.65, water=0.0, temp=21.5)])
    await sink.wait(lambda: len(sink.of("tank.reading")) >= 2)
    srv.apply([reading("T1", T0 + 10.25, 1520.1, temp=18.5)])
    ev = (await sink.wait(lambda: [e for e in sink.of("tank.reading", "T1") if e["ts"] == T0 + 10.25]))[0]
    # level and water are Float metres on the device: back to mm within float32 precision
    assert ev["level_mm"] == pytest.approx(1520.1, abs=0.01)
    assert ev["water_mm"] == pytest.approx(12.5, abs=0.01)
    assert ev["temp_c"] == 18.5
    assert ev["station"] == "BH-0001" and ev["source"] == "opcua:BH-0001:dev" and ev["quality"] == "good"
    t2 = sink.of("tank.reading", "T2")[0]
    assert t2["ts"] == T0 and t2["level_mm"] == pytest.approx(987.65, abs=0.01) and t2["temp_c"] == 21.5
    seqs = [e["seq"] for e in sink.events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # one event per measurement: three points written together are not three readings
    assert len(sink.of("tank.reading", "T1")) == 2
    assert br.health().connected and br.health().bad_values == 0
    # several measurements within one publishing interval (a simulation running fast): none is lost,
    # each comes out whole and in order
    srv.apply([reading("T1", T0 + 20 + k, 1500.0 - k, temp=18.0 + k / 100) for k in range(6)])
    burst = await sink.wait(lambda: [e for e in sink.of("tank.reading", "T1") if e["ts"] >= T0 + 20]
                            if len(sink.of("tank.reading", "T1")) >= 8 else None)
    assert [e["ts"] for e in burst] == [T0 + 20 + k for k in range(6)]
    assert [round(e["level_mm"], 2) for e in burst] == [1500.0 - k for k in range(6)]
    assert [e["temp_c"] for e in burst] == [18.0 + k / 100 for k in range(6)]


async def test_bad_status_and_garbage_are_rejected_with_reason_rest_still_read(rig: Rig) -> None:
    p = atg()
    srv = await rig.server(p, {"T1": 1, "T2": 2})
    br, sink = rig.bridge(srv)
    srv.apply([reading("T1", T0, 1500.0), reading("T2", T0, 900.0)])
    await sink.wait(lambda: len(sink.of("tank.reading")) >= 2)
    assert p.tank is not None
    srv.set_status(p.tank.level_mm, "BadSensorFailure", T0 + 10, ch=1)
    srv.apply([reading("T2", T0 + 10, 901.0)])
    rej = (await sink.wait(lambda: sink.rejections))[0]
    assert "BadSensorFailure" in rej.reason and "ATG.Tank1.ProductLevel" in rej.reason
    assert rej.raw["quality"] == "bad" and rej.raw["entity"] == "T1" and rej.source == "opcua:BH-0001:dev"
    await sink.wait(lambda: [e for e in sink.of("tank.reading", "T2") if e["ts"] == T0 + 10])
    # garbage: NaN in a Float node, and a temperature the profile calls implausible
    srv.poke(p.tank.level_mm, float("nan"), T0 + 20, ch=1)
    srv.poke(p.tank.temp_c, 250.0, T0 + 20, ch=2)
    await sink.wait(lambda: len(sink.rejections) >= 3)
    reasons = " | ".join(r.reason for r in sink.rejections[1:])
    assert "level_mm" in reasons and "nan" in reasons
    assert "temp_c" in reasons and "above the plausible maximum 70" in reasons
    assert br.health().bad_values >= 3
    # the device recovers: good readings flow again
    srv.apply([reading("T1", T0 + 30, 1490.0)])
    ev = (await sink.wait(lambda: [e for e in sink.of("tank.reading", "T1") if e["ts"] == T0 + 30]))[0]
    assert ev["quality"] == "good" and ev["level_mm"] == pytest.approx(1490.0, abs=0.01)


async def test_rejections_reach_the_dead_letter_stream(rig: Rig, small_district: Any, store: Any) -> None:
    """The bridge's refusals go through TwinService.ingest like any input: counted and dead-lettered."""
    from actors.base import make_runtime
    from twin.service import TwinService

    service = TwinService(small_district, store, make_runtime("local", small_district))
    p = atg()
    srv = await rig.server(p, {"T1": 1})
    sink = Collector()

    async def to_twin(batch: list[Any]) -> None:
        await sink(batch)
        await service.ingest(batch, now=T0 + 60)

    br = OpcUaBridge(Device("dev", srv.endpoint, {"T1": 1}), p, STATION, to_twin)
    rig.tasks.append(asyncio.create_task(br.run()))
    srv.apply([reading("T1", T0, 1500.0)])
    await sink.wait(lambda: sink.events)
    assert p.tank is not None
    srv.set_status(p.tank.temp_c, "BadOutOfRange", T0 + 10, ch=1)
    await sink.wait(lambda: sink.rejections)
    await service.drain()
    dead = await store.dead_letters()
    assert any("BadOutOfRange" in d["reason"] for d in dead)
    assert service.counts.accepted >= 1 and service.counts.rejected >= 1
    await service.close()


async def test_restart_reconnects_and_reads_back_missed_transactions(rig: Rig) -> None:
    srv = await rig.server(fcc(), {"N1": 1, "N2": 2})
    br, sink = rig.bridge(srv)
    st = await subscribed(srv, sink)
    assert st["state"] == "fuelling" and st["volume_l"] == pytest.approx(12.34) and st["ts"] == T0
    srv.apply([txn("N1", 1, T0 + 100), txn("N2", 7, T0 + 110)])
    await sink.wait(lambda: len(sink.of("nozzle.txn")) >= 2)
    await srv.stop()
    # written while the bridge cannot see the device: in its log, to be read back
    srv.apply([txn("N1", 2, T0 + 200), txn("N2", 8, T0 + 210), txn("N1", 3, T0 + 220, volume=45.5)])
    await srv.flush()
    await until(lambda: not br.health().connected)
    await srv.start()
    await sink.wait(lambda: len(sink.of("nozzle.txn")) >= 5, timeout=10)
    txns = [(e["entity"], e["txn_no"]) for e in sink.of("nozzle.txn")]
    assert txns == [("N1", 1), ("N2", 7), ("N1", 2), ("N2", 8), ("N1", 3)]
    last = sink.of("nozzle.txn")[-1]
    assert last["volume_l"] == 45.5 and last["unit_price"] == 7.89 and last["grade"] == "95#"
    assert last["ts"] == T0 + 220 and last["end_ts"] == T0 + 220 and last["start_ts"] == T0 + 130
    assert br.health().reconnects == 1
    # and nothing is read twice after the reconnect
    srv.apply([txn("N2", 9, T0 + 300)])
    await sink.wait(lambda: len(sink.of("nozzle.txn")) >= 6)
    assert [e["txn_no"] for e in sink.of("nozzle.txn")].count(9) == 1


async def test_records_overwritten_before_read_are_reported_lost(rig: Rig) -> None:
    p = fcc().model_copy(deep=True)
    assert p.transactions is not None
    srv = await rig.server(p, {"N1": 1})
    br, sink = rig.bridge(srv)
    await subscribed(srv, sink)
    srv.apply([txn("N1", 1, T0)])
    await sink.wait(lambda: sink.of("nozzle.txn"))
    await srv.stop()
    size = p.transactions.size
    srv.apply([txn("N1", 1 + k, T0 + 10 * k) for k in range(1, size + 4)])  # 3 more than the ring holds
    await srv.flush()
    await until(lambda: not br.health().connected)
    await srv.start()
    await sink.wait(lambda: len(sink.of("nozzle.txn")) >= 1 + size, timeout=10)
    lost = [r for r in sink.rejections if r.reason.startswith("lost records")]
    assert len(lost) == 1 and "3 nozzle.txn records" in lost[0].reason
    numbers = [e["txn_no"] for e in sink.of("nozzle.txn")]
    assert numbers == [1] + list(range(5, size + 5))


async def test_profile_that_does_not_match_is_a_clear_error_at_start(rig: Rig) -> None:
    srv = await rig.server(atg(), {"T1": 1})
    data = atg().model_dump()
    data["tank"]["temp_c"]["node"] = "ns={ns};s=ATG.Tank{ch}.Temp"
    data["tank"]["level_mm"]["type"] = "Double"
    wrong = OpcUaProfile.model_validate(data)
    br = OpcUaBridge(Device("dev", srv.endpoint, {"T1": 1, "T2": 2}), wrong, STATION, Collector())
    with pytest.raises(ProfileMismatch) as err:
        await br.check()
    msg = str(err.value)
    assert "ns=2;s=ATG.Tank1.Temp" in msg and "ns=2;s=ATG.Tank2.ProductLevel" in msg
    assert "ATG.Tank1.ProductLevel is Float, not Double" in msg and "UA-ATG-FLOAT" in msg
    other_ns = OpcUaProfile.model_validate({**atg().model_dump(), "namespace_uri": "urn:other"})
    with pytest.raises(ProfileMismatch, match="no namespace 'urn:other'"):
        await OpcUaBridge(Device("dev", srv.endpoint, {"T1": 1}), other_ns, STATION, Collector()).check()
    # run() does not raise on it: it reports it in health and retries later
    br2, _ = rig.bridge(srv, wrong)
    await until(lambda: "does not match profile" in br2.health().last_error)
    assert not br2.health().connected


def test_profile_errors_are_caught_on_load() -> None:
    data = fcc().model_dump()
    data["transactions"]["record"]["txn_no"]["node"] = "ns={ns};s=FCC.TxnLog.TxnNo"  # no {slot}
    with pytest.raises(ValueError, match=r"record.txn_no: node template .* needs \{slot\}"):
        OpcUaProfile.model_validate(data)
    data = fcc().model_dump()
    data["nozzle"]["state"]["codes"] = {0: "idle", 1: "pumping"}
    with pytest.raises(ValueError, match="unknown states"):
        OpcUaProfile.model_validate(data)
    data = atg().model_dump()
    data["tank"]["level_mm"]["codes"] = {1: "x"}
    with pytest.raises(ValueError, match="codes need an integer type"):
        OpcUaProfile.model_validate(data)


def _cli(name: str) -> str:
    exe = shutil.which(name) or str(Path(sys.executable).parent / name)
    assert Path(exe).exists(), f"{name} (installed with asyncua) not found"
    return exe


async def test_asyncua_command_line_tools_read_the_simulated_device(rig: Rig) -> None:
    srv = await rig.server(atg(), {"T1": 1})
    srv.apply([reading("T1", T0, 1523.4, temp=17.75)])
    await srv.flush()

    def run(*args: str) -> str:
        done = subprocess.run(args, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    listing = await asyncio.to_thread(run, _cli("uals"), "-u", srv.endpoint, "-n", "ns=2;s=ATG.Tank1",
                                      "-l", "1")
    assert "ProductLevel" in listing and "Temperature" in listing and "WaterLevel" in listing
    value = await asyncio.to_thread(run, _cli("uaread"), "-u", srv.endpoint, "-n",
                                    "ns=2;s=ATG.Tank1.Temperature")
    assert value.strip().splitlines()[-1] == "17.75"
