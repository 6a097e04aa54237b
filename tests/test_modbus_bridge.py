"""The Modbus bridge against real Modbus TCP servers on loopback, feeding a real twin with real Redis.

The devices are pymodbus servers laid out by a profile (``simulators/servers/modbus.py``), plus, for
interoperability, a pymodbus server whose registers pymodbus itself encodes from typed values.
"""

from __future__ import annotations

import asyncio
import math
import struct
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from actors.base import make_runtime
from bridges.config import ConfigError, DeviceConfig, parse_config
from bridges.modbus import ModbusBridge
from bridges.profiles import load_profile
from bridges.runner import BridgeRunner, EdgeClock
from simulators.servers.modbus import ModbusDeviceServer
from tests.conftest import station_spec
from twin.service import TwinService
from twin.store import Store

POLL = 0.1
TANKS = {"T1": 1, "T2": 2, "T3": 3}
NOZZLES = {f"N{i}": i for i in range(1, 9)}


async def until(cond: Callable[[], Any], timeout_s: float, what: str) -> None:
    """Poll a condition with a deadline (used where no event exists to await)."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def servers() -> AsyncIterator[Callable[..., Any]]:
    started: list[ModbusDeviceServer] = []

    async def start(model: str, channels: dict[str, int], **kw: Any) -> ModbusDeviceServer:
        srv = ModbusDeviceServer(load_profile(model), channels, **kw)
        await srv.start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        await srv.stop()


def site(devices: list[tuple[str, ModbusDeviceServer, dict[str, Any]]], time_source: str = "wall") -> Any:
    entries = [{"id": dev_id, "protocol": "modbus", "endpoint": srv.endpoint, "profile": srv.profile.model,
                "channels": srv.channels, "options": {"poll_interval_s": POLL}, **extra}
               for dev_id, srv, extra in devices]
    spec = station_spec("BH-0001")
    spec["devices"] = entries
    return parse_config({"time": time_source, "stations": [spec]}, "test.yaml")


class Twin:
    """A twin fed by a runner; keeps every event the runner ingested and every alert the twin raised."""

    def __init__(self, cfg: Any, store: Store, clock: EdgeClock | None = None, tick_s: float = 0.2):
        runtime = make_runtime("local", cfg.district)
        self.service = TwinService(cfg.district, store, runtime, state_interval_s=0)
        self.events: list[Any] = []
        self.alerts: list[dict[str, Any]] = []
        self.service.subscribe(lambda out: self.alerts.extend(out.alerts))
        self.runner = BridgeRunner(cfg, self._ingest, clock=clock, tick_interval_s=tick_s)
        self.task: asyncio.Task[None] | None = None

    async def _ingest(self, events: list[Any], now: float) -> None:
        self.events.extend(events)
        await self.service.ingest(events, now=now)

    def start(self) -> None:
        self.task = asyncio.create_task(self.runner.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await self.task
        await self.service.close()

    def of(self, kind: str, entity: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.events if isinstance(e, dict) and e.get("kind") == kind
                and (entity is None or e.get("entity") == entity)]

    async def state(self) -> dict[str, Any]:
        return (await self.service.runtime.states())["BH-0001"]


def reading(tank: str, ts: float, level: float = 1500.0, temp: float = 18.5) -> dict[str, Any]:
    return {"kind": "tank.reading", "ts": ts, "station": "BH-0001", "entity": tank, "level_mm": level,
            "water_mm": 2.0, "temp_c": temp}


def txn(nozzle: str, no: int, end: float, litres: float, totalizer: float) -> dict[str, Any]:
    return {"kind": "nozzle.txn", "ts": end, "station": "BH-0001", "entity": nozzle, "txn_no": no,
            "grade": "92#", "volume_l": litres, "amount_cny": round(litres * 7.2, 2), "unit_price": 7.2,
            "start_ts": end - 60, "end_ts": end, "totalizer_l": totalizer,
            "totalizer_cny": round(totalizer * 7.2, 2)}


async def test_bridge_feeds_the_twin_through_redis(servers: Any, store: Store) -> None:
    atg = await servers("MB-ATG-F32", TANKS)
    fcc = await servers("MB-FCC-BCD", NOZZLES)
    t0 = float(int(time.time()) - 200)
    atg.apply([reading(t, t0, 1200.0 + 100 * i) for i, t in enumerate(TANKS)])
    fcc.apply([{"kind": "device.info", "ts": t0, "station": "BH-0001", "entity": "N1", "serial": "ZXJ-1",
                "firmware": "v3.1", "mainboard_id": "00AB12CD34EF", "model": "x"}])
    twin = Twin(site([("atg", atg, {}), ("fcc", fcc, {})]), store)
    fcc_bridge = twin.runner.bridges[1]
    twin.start()
    try:
        await until(lambda: fcc_bridge.polls >= 1, 10, "the dispenser bridge polled")
        fcc.apply([{"kind": "nozzle.state", "ts": t0 + 5, "station": "BH-0001", "entity": "N1",
                    "state": "fuelling", "volume_l": 10.5, "amount_cny": 75.6},
                   txn("N1", 4711, t0 + 60, 40.25, 123456.78)])
        atg.apply([reading("T1", t0 + 10, 1190.0)])
        await until(lambda: twin.of("nozzle.txn") and len(twin.of("tank.reading", "T1")) >= 2
                    and twin.of("clock.tick"), 10, "the transaction, the new reading and a tick")
        state = await twin.state()
        tanks = {t["id"]: t for t in state["tanks"]}
        assert tanks["T1"]["level_mm"] == 1190.0 and tanks["T3"]["level_mm"] == 1400.0
        assert tanks["T1"]["last_ts"] == t0 + 10  # the device's own time, not the poll's
        n1 = next(n for n in state["nozzles"] if n["id"] == "N1")
        assert n1["last_txn_no"] == 4711 and n1["totalizer_l"] == 123456.78
        assert n1["mainboard_id"] == "00AB12CD34EF"
        t = twin.of("nozzle.txn")[0]
        assert (t["grade"], t["volume_l"], t["amount_cny"], t["end_ts"]) == ("92#", 40.25, 289.8, t0 + 60)
        await twin.service.drain()
        logged = [e async for _, evs in store.read_log("BH-0001") for e in evs]
        sources = {e.source for e in logged}
        assert {"modbus:BH-0001:atg", "modbus:BH-0001:fcc", "edge:BH-0001:clock"} <= sources
        assert all(e.quality == "good" for e in logged)
        seqs = [e.seq for e in logged if e.source == "modbus:BH-0001:atg"]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    finally:
        await twin.stop()


async def test_device_restart_reconnects_and_loses_no_transaction(servers: Any, store: Store) -> None:
    fcc = await servers("MB-DISP-F32", NOZZLES)
    twin = Twin(site([("fcc", fcc, {})]), store)
    bridge = twin.runner.bridges[0]
    t0 = float(int(time.time()) - 3000)
    twin.start()
    try:
        await until(lambda: bridge.polls >= 1, 10, "first poll")
        fcc.apply([txn("N1", 1, t0, 10.0, 1000.0)])
        await until(lambda: len(twin.of("nozzle.txn")) == 1, 10, "txn 1")
        await fcc.stop()
        await until(lambda: not bridge.health().connected, 10, "the bridge noticed the device is gone")
        fcc.apply([txn("N1", 2, t0 + 100, 20.0, 1020.0), txn("N2", 7, t0 + 150, 5.0, 505.0),
                   txn("N1", 3, t0 + 200, 30.0, 1050.0)])
        await fcc.start()  # same port, same registers and rings (non-volatile memory)
        # Issue 4: back within 10 s of the device, and every transaction written meanwhile read back.
        await until(lambda: len(twin.of("nozzle.txn")) == 4, 10, "reconnected and read back the ring")
        got = [(e["entity"], e["txn_no"]) for e in sorted(twin.of("nozzle.txn"), key=lambda e: e["ts"])]
        assert got == [("N1", 1), ("N1", 2), ("N2", 7), ("N1", 3)]
        assert bridge.health().reconnects >= 1 and bridge.health().connected
        state = await twin.state()
        assert not [a for a in state["open_alerts"] if a["code"] in ("TXN_GAP", "TOTALIZER_MISMATCH")]
    finally:
        await twin.stop()


async def test_ring_counter_wrap_and_overwritten_records(servers: Any, store: Store) -> None:
    fcc = await servers("MB-DISP-F32", {"N1": 1})  # 16-bit counter, 10 records per nozzle
    ring = fcc.profile.rings[0]
    fcc.counters[(0, "nozzle.txn")] = 65533
    fcc.poke("input", ring.counter.address, [65533])
    twin = Twin(site([("fcc", fcc, {})]), store)
    bridge = twin.runner.bridges[0]
    t0 = float(int(time.time()) - 3000)
    twin.start()
    try:
        await until(lambda: bridge.polls >= 1, 10, "first poll")
        fcc.apply([txn("N1", k, t0 + 10 * k, 1.0, 100.0 + k) for k in range(1, 6)])  # counter 65534 … 2
        await until(lambda: len(twin.of("nozzle.txn")) == 5, 10, "five records across the wrap")
        await fcc.stop()
        await until(lambda: not bridge.health().connected, 10, "device gone")
        fcc.apply([txn("N1", k, t0 + 10 * k, 1.0, 100.0 + k) for k in range(6, 18)])  # 12 > 10 slots
        await fcc.start()
        await until(lambda: len(twin.of("nozzle.txn")) == 15, 10, "the ten records still in the ring")
        assert [e["txn_no"] for e in twin.of("nozzle.txn")] == [1, 2, 3, 4, 5, *range(8, 18)]
        await twin.service.drain()
        dead = await twin.service.store.dead_letters()
        assert any(d["reason"].startswith("lost records:") and "2 nozzle.txn records" in d["reason"]
                   for d in dead)
    finally:
        await twin.stop()


async def test_garbage_register_is_dead_lettered_and_the_rest_still_read(servers: Any, store: Store) -> None:
    atg = await servers("MB-ATG-F32", TANKS)
    t0 = float(int(time.time()) - 200)
    atg.apply([reading(t, t0) for t in TANKS])
    twin = Twin(site([("atg", atg, {})]), store)
    twin.start()
    try:
        await until(lambda: len(twin.of("tank.reading")) == 3, 10, "first readings")
        block = atg.profile.blocks[0]
        atg.apply([reading(t, t0 + 10, 1490.0) for t in TANKS])
        nan, hot = (list(struct.unpack(">2H", struct.pack(">f", v))) for v in (math.nan, 500.0))
        atg.poke("input", block.base + 1 * block.stride + 2, nan)  # T2 level
        atg.poke("input", block.base + 2 * block.stride + 6, hot)  # T3 temperature
        await until(lambda: twin.service.counts.rejected >= 2 and len(twin.of("tank.reading")) >= 4, 10,
                    "rejections and the good tank's reading")
        await twin.service.drain()
        dead = await twin.service.store.dead_letters()
        reasons = {d["raw"]["entity"]: d["reason"] for d in dead}
        assert "level_mm nan is not a number (float32 at input 18)" in reasons["T2"]
        assert "temp_c 500 is outside -40…70" in reasons["T3"]
        assert all(d["raw"]["quality"] == "bad" and d["source"] == "modbus:BH-0001:atg" for d in dead)
        assert twin.service.counts.by_reason.get("bad value") == 2
        state = await twin.state()
        t1 = next(t for t in state["tanks"] if t["id"] == "T1")
        assert t1["last_ts"] == t0 + 10 and t1["level_mm"] == 1490.0  # the rest of the device still read
        assert twin.runner.bridges[0].health().bad_values == 2
    finally:
        await twin.stop()


async def test_profile_that_does_not_match_the_device_fails_at_start_up(servers: Any, store: Store) -> None:
    atg = await servers("MB-ATG-F32", TANKS)
    wrong_profile = site([("atg", atg, {"profile": "MB-ATG-CDAB", "unit": 1})])
    with pytest.raises(ConfigError) as err:
        await BridgeRunner(wrong_profile, _discard).check()
    msg = str(err.value)
    assert "modbus:BH-0001:atg" in msg and "does not match profile MB-ATG-CDAB" in msg
    assert "ILLEGAL DATA ADDRESS" in msg and "holding registers 1000" in msg
    wrong_unit = site([("atg", atg, {"unit": 7})])
    with pytest.raises(ConfigError, match=r"does not match profile MB-ATG-F32: reading input registers .* "
                                          r"of unit 7: exception"):
        await BridgeRunner(wrong_unit, _discard).check()
    assert await BridgeRunner(site([("atg", atg, {})]), _discard).check() == []


async def _discard(events: list[Any], now: float) -> None:
    return None


async def test_slow_device_does_not_delay_another(servers: Any, store: Store) -> None:
    slow = await servers("MB-ATG-F32", TANKS)
    fast = await servers("MB-FCC-BCD", NOZZLES)
    t0 = float(int(time.time()) - 200)
    slow.apply([reading(t, t0) for t in TANKS])
    twin = Twin(site([("atg", slow, {}), ("fcc", fast, {})]), store)
    twin.start()
    try:
        await until(lambda: len(twin.of("tank.reading")) == 3 and twin.runner.bridges[1].polls >= 1, 10,
                    "both devices read")
        slow.stall(True)  # requests to it now hang until released
        slow.apply([reading(t, t0 + 10) for t in TANKS])
        for k in range(1, 4):
            fast.apply([txn("N1", k, t0 + 60 * k, 10.0, 100.0 + 10 * k)])
            await until(lambda k=k: len(twin.of("nozzle.txn")) == k, 10, f"txn {k} while the gauge hangs")
        assert len(twin.of("tank.reading")) == 3  # nothing from the hung device meanwhile
        slow.stall(False)
        await until(lambda: len(twin.of("tank.reading")) == 6, 15, "the gauge back")
    finally:
        await twin.stop()


async def test_device_that_stops_answering_raises_comm_loss_and_goes_stale(servers: Any,
                                                                          store: Store) -> None:
    """Device clocks run 100× wall time here (a simulator at speed 100), so 5 minutes of event time
    without a reading take 3 s; the edge clock follows the devices' time."""
    atg = await servers("MB-ATG-CDAB", TANKS)
    speed = 100.0
    clock = EdgeClock("device", monotonic=lambda: time.monotonic() * speed)
    twin = Twin(site([("atg", atg, {})], time_source="device"), store, clock=clock, tick_s=0.05)
    t0 = float(int(time.time()) - 86_400)
    mono0 = time.monotonic()

    async def gauge() -> None:  # the probe measures every 10 s of device time
        k = 0
        while True:
            now = t0 + (time.monotonic() - mono0) * speed
            while t0 + 10 * k <= now:
                atg.apply([reading(t, t0 + 10 * k, 1500.0 - 0.01 * k, 18.5 + 0.01 * (k % 2)) for t in TANKS])
                k += 1
            await asyncio.sleep(0.02)

    probe = asyncio.create_task(gauge())
    twin.start()
    try:
        await until(lambda: len(twin.of("tank.reading", "T1")) >= 20, 15, "readings over 200 s device time")
        assert not [a for a in twin.alerts if a["code"] == "COMM_LOSS"]
        atg.stall(True)
        await until(lambda: any(a["code"] == "COMM_LOSS" and a["status"] == "open" for a in twin.alerts), 15,
                    "COMM_LOSS")
        lost = {a["entity"] for a in twin.alerts if a["code"] == "COMM_LOSS"}
        assert lost == set(TANKS)
        state = await twin.state()
        assert all(t["stale"] for t in state["tanks"])
        assert twin.runner.bridges[0].health().errors >= 1
        atg.stall(False)
        await until(lambda: any(a["code"] == "COMM_LOSS" and a["status"] == "closed"
                                for a in twin.alerts), 15,
                    "COMM_LOSS closed when the gauge is back")
    finally:
        probe.cancel()
        await twin.stop()


async def test_reads_pymodbus_own_server_configured_from_a_profile() -> None:
    """Interoperability: registers encoded by pymodbus itself (its typed SimData), not by our codec."""
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    profile = load_profile("MB-ATG-F32")
    block, info = profile.blocks
    assert profile.function == "input" and profile.word_order == "big"
    ts = float(int(time.time()) - 100)
    values = {1: (1234.5, 3.25, 18.375), 2: (2000.25, 0.0, -2.5)}
    ir: list[Any] = []
    for ch, (level, water, temp) in values.items():
        base = block.base + (ch - 1) * block.stride
        ir.append(SimData(address=base + block.time.address, values=int(ts) + ch, datatype=DataType.UINT32))
        ir.append(SimData(address=base + block.fields["level_mm"].address, values=[level, water, temp],
                          datatype=DataType.FLOAT32))
    ir.append(SimData(address=info.base, values="ATG-0042-SERIAL1", datatype=DataType.STRING))
    ir.append(SimData(address=info.base + 8, values="v1.2.3.4", datatype=DataType.STRING))
    bits = [SimData(address=0, values=[False] * 16, datatype=DataType.BITS)]
    holding = [SimData(address=0, datatype=DataType.REGISTERS)]
    device = SimDevice(id=1, simdata=(bits, list(bits), holding, ir))
    server = ModbusTcpServer(device, address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    port = server.transport.sockets[0].getsockname()[1]
    got: list[Any] = []

    async def sink(events: list[Any]) -> None:
        got.extend(events)

    dev = DeviceConfig("atg", "BH-0001", "modbus", f"127.0.0.1:{port}", profile.model, profile,
                       {"T1": 1, "T2": 2})
    bridge = ModbusBridge(dev, profile, "BH-0001", sink)
    task = asyncio.create_task(bridge.run())
    try:
        await until(lambda: len(got) >= 4, 10, "two readings and two identities")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await server.shutdown()
    readings = {e["entity"]: e for e in got if e["kind"] == "tank.reading"}
    for ch, (level, water, temp) in values.items():
        e = readings[f"T{ch}"]
        assert (e["ts"], e["level_mm"], e["water_mm"], e["temp_c"]) == (ts + ch, level, water, temp)
    infos = [e for e in got if e["kind"] == "device.info"]
    assert {(e["serial"], e["firmware"]) for e in infos} == {("ATG-0042-SERIAL1", "v1.2.3.4")}


async def test_safety_panel_profile_raises_and_clears_safety_alerts(servers: Any, store: Store) -> None:
    """A field safety panel read through a profile (issue 6): gas in %LEL, a double-walled tank's
    interstitial sensor, the grounding clamp during unloading — registers written raw, as the device
    would, and the twin's GAS_LEL, INTERSTITIAL_LEAK and UNLOADING_UNGROUNDED follow them."""
    panel = await servers("MB-SAFETY", {})
    panel.poke("holding", 0, [32, 0])      # GD-1 3.2 %LEL, GD-2 0
    panel.poke("holding", 10, [0])         # interstitial ok
    panel.poke("holding", 20, [1])         # clamp grounded
    twin = Twin(site([("safety", panel, {})]), store)
    twin.start()
    try:
        await until(lambda: len(twin.of("safety.reading")) >= 4, 10, "a reading of every sensor")
        got = {e["device"]: e for e in twin.of("safety.reading")}
        assert (got["GD-1"]["sensor"], got["GD-1"]["value"]) == ("gas_lel", 3.2)
        assert (got["IS-T1"]["state"], got["GC-1"]["state"], got["GC-1"]["unloading"]) == ("ok", "grounded",
                                                                                          False)
        panel.poke("holding", 1, [612])    # GD-2 61.2 %LEL: above the 50 % alarm level
        panel.poke("holding", 10, [1])     # the interstitial space wets: leak
        panel.poke("holding", 20, [0])     # clamp off ...
        panel.image["discrete"][0] = 1     # ... while unloading
        codes = lambda: {(a["code"], a["status"]) for a in twin.alerts}  # noqa: E731
        await until(lambda: {("GAS_LEL", "open"), ("INTERSTITIAL_LEAK", "open"),
                             ("UNLOADING_UNGROUNDED", "open")} <= codes(), 10, "the three safety alerts")
        gas = next(a for a in twin.alerts if a["code"] == "GAS_LEL")
        assert gas["severity"] == "alarm" and gas["metrics"]["lel_pct"] == 61.2
        panel.poke("holding", 1, [0])
        await until(lambda: ("GAS_LEL", "closed") in codes(), 10, "GAS_LEL closed when the gas is gone")
    finally:
        await twin.stop()
