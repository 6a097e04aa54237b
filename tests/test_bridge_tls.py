"""TLS-350 bridge against consoles on loopback: one whose frames this test builds by hand from the
manual's format (576013-635 §6.1, checksum and hex floats computed here, independently of
bridges/tls_codec.py), and the simulated console of simulators/servers/tls.py."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from bridge_support import Collector, Device, load, until
from conftest import station_spec

from bridges.opcua import ProfileMismatch
from bridges.tls import Tls350Bridge
from bridges.tls_profile import Tls350Profile
from simulators.servers.tls import Tls350DeviceServer
from twin.registry import StationSpec

TZ = ZoneInfo("Asia/Shanghai")
STATION = StationSpec.model_validate(station_spec("BH-0001"))
T0 = datetime(2026, 5, 28, 16, 53, tzinfo=TZ).timestamp()


def metric(**over: Any) -> Tls350Profile:
    p = load("tls350-atg-metric", Tls350Profile)
    return p.model_copy(update={"delivery_poll_s": 0.05, "poll_interval_s": 0.05, "timeout_s": 1.0, **over})


# ---- a console whose every byte this test writes ---------------------------------------------------


def f8(v: float) -> str:
    """IEEE 754 single precision as 8 hex digits, most significant first (§6.3)."""
    return format(struct.unpack(">I", struct.pack(">f", v))[0], "08X")


def seal(payload: str) -> bytes:
    """SOH + payload + && + checksum + ETX; checksum: 16-bit sum of SOH..&& plus it is zero."""
    body = "\x01" + payload + "&&"
    total = sum(ord(c) for c in body)
    return (body + format((0x10000 - total % 0x10000) % 0x10000, "04X") + "\x03").encode("ascii")


class HandConsole:
    """Answers i201/i202 from a few mutable values; ``corrupt`` spoils the next checksums."""

    def __init__(self) -> None:
        self.stamp = "2605281653"  # 2026-05-28 16:53 console (Beijing) time
        self.tanks = {1: (1523.5, 12.0, 18.25), 2: (987.25, 0.0, 21.5)}  # height, water, temp
        self.deliveries: list[tuple[int, str, str, list[float]]] = []
        self.corrupt = 0
        self.server: asyncio.Server | None = None
        self.commands: list[bytes] = []

    def i201(self) -> bytes:
        text = "i20100" + self.stamp
        for tank, (h, w, t) in self.tanks.items():
            fields = [30000.0 - tank, 29900.0, 1000.0, h, w, t, 0.0]
            text += format(tank, "02d") + "1" + "0000" + "07" + "".join(f8(v) for v in fields)
        return seal(text)

    def i202(self) -> bytes:
        text = "i20200" + self.stamp
        for tank in self.tanks:
            mine = [d for d in self.deliveries if d[0] == tank]
            text += format(tank, "02d") + "1" + format(len(mine), "02X")
            for _, start, end, fields in mine:
                text += start + end + format(len(fields), "02X") + "".join(f8(v) for v in fields)
        return seal(text)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                cmd = await reader.readexactly(7)  # SOH i NNN TT
                self.commands.append(cmd)
                answer = {b"\x01i20100": self.i201, b"\x01i20200": self.i202}.get(cmd)
                out = answer() if answer else b"\x019999FF1B\x03"
                if answer and self.corrupt:
                    self.corrupt -= 1
                    out = out[:-5] + (b"0000" if out[-5:-1] != b"0000" else b"FFFF") + b"\x03"
                writer.write(out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        return f"tcp://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def running() -> AsyncIterator[list[asyncio.Task[None]]]:
    """Bridge tasks, each stopped by one cancel: the TLS path awaits nothing that can lose one (its
    timed awaits go through ``bridges.base.wait_for``; session 17 saw a teardown time out here when
    they did not, and this fixture cancelled again to get by). Every task must end, cancelled."""
    tasks: list[asyncio.Task[None]] = []
    yield tasks
    for t in tasks:
        t.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=10.0)
    assert all(t.cancelled() for t in tasks), [t for t in tasks if not t.cancelled()]


def start(running: list[asyncio.Task[None]], endpoint: str, profile: Tls350Profile,
          channels: dict[str, int] | None = None) -> tuple[Tls350Bridge, Collector]:
    sink = Collector()
    dev = Device("atg", endpoint, channels or {"T1": 1, "T2": 2}, protocol="tls350")
    br = Tls350Bridge(dev, profile, STATION, sink)
    running.append(asyncio.create_task(br.run()))
    return br, sink


async def test_i201_frames_built_by_hand_become_readings(running: list[Any]) -> None:
    console = HandConsole()
    br, sink = start(running, await console.start(), metric())
    await sink.wait(lambda: len(sink.of("tank.reading")) >= 2)
    t1, t2 = sink.of("tank.reading", "T1")[0], sink.of("tank.reading", "T2")[0]
    assert (t1["level_mm"], t1["water_mm"], t1["temp_c"]) == (1523.5, 12.0, 18.25)
    assert (t2["level_mm"], t2["water_mm"], t2["temp_c"]) == (987.25, 0.0, 21.5)
    # the console's minute (its clock is not the test machine's): the reading stays inside it
    assert T0 <= t1["ts"] < T0 + 60 and t1["ts"] <= t2["ts"]
    assert t1["source"] == "tls350:BH-0001:atg" and t1["quality"] == "good"
    # an unchanged gauge is not re-sent every poll; a change is
    polls = br.polls
    await until(lambda: br.polls >= polls + 3)
    assert len(sink.of("tank.reading")) == 2
    console.tanks[1] = (1519.0, 12.0, 18.5)
    ev = (await sink.wait(lambda: [e for e in sink.of("tank.reading", "T1") if e["level_mm"] == 1519.0]))[0]
    assert ev["temp_c"] == 18.5 and ev["seq"] > t2["seq"] and ev["ts"] >= t2["ts"]
    await console.stop()


async def test_us_units_are_converted(running: list[Any]) -> None:
    console = HandConsole()
    console.tanks = {1: (60.0, 0.5, 68.0)}  # inches, inches, °F
    profile = load("tls350-atg-us", Tls350Profile).model_copy(update={"poll_interval_s": 0.05})
    _, sink = start(running, await console.start(), profile, {"T1": 1})
    ev = (await sink.wait(lambda: sink.of("tank.reading", "T1")))[0]
    assert ev["level_mm"] == pytest.approx(1524.0) and ev["water_mm"] == pytest.approx(12.7)
    assert ev["temp_c"] == pytest.approx(20.0)
    await console.stop()


async def test_bad_checksum_is_rejected_and_later_frames_still_read(running: list[Any]) -> None:
    console = HandConsole()
    console.corrupt = 1
    br, sink = start(running, await console.start(), metric())
    rej = (await sink.wait(lambda: sink.rejections))[0]
    assert "bad checksum" in rej.reason and "i201" in rej.reason and rej.raw["quality"] == "bad"
    assert rej.raw["frame"].startswith("\x01i20100" + console.stamp)
    await sink.wait(lambda: len(sink.of("tank.reading")) >= 2)
    assert br.health().bad_values == 1 and br.health().reconnects == 0
    console.corrupt = 2
    console.tanks[2] = (980.0, 0.0, 21.5)
    await sink.wait(lambda: [e for e in sink.of("tank.reading", "T2") if e["level_mm"] == 980.0])
    assert len(sink.rejections) >= 2 and br.health().reconnects == 0
    await console.stop()


async def test_i202_deliveries_are_sent_once_and_history_is_not_replayed(running: list[Any]) -> None:
    console = HandConsole()
    old = [10000.0, 9950.0, 10.0, 17.0, 30000.0, 29900.0, 10.0, 17.5, 900.0, 2100.0]
    console.deliveries.append((1, "2605270800", "2605270840", old))
    br, sink = start(running, await console.start(), metric())
    await sink.wait(lambda: len(sink.of("tank.reading")) >= 2)
    await until(lambda: sum(c == b"\x01i20200" for c in console.commands) >= 3)
    assert not sink.of("gauge.delivery")  # yesterday's delivery was there before the bridge
    new = [8000.0, 7960.0, 12.0, 18.0, 20000.0, 19950.0, 12.0, 18.75, 800.0, 1700.0]
    console.deliveries.append((2, "2605281610", "2605281650", new))
    ev = (await sink.wait(lambda: sink.of("gauge.delivery")))[0]
    assert ev["entity"] == "T2" and ev["start_ts"] == T0 - 43 * 60 and ev["end_ts"] == T0 - 3 * 60
    assert ev["ts"] == ev["end_ts"]
    assert (ev["start_volume_l"], ev["end_volume_l"], ev["start_tc_volume_l"], ev["end_tc_volume_l"]) == (
        8000.0, 20000.0, 7960.0, 19950.0)
    assert (ev["start_level_mm"], ev["end_level_mm"], ev["start_temp_c"], ev["end_temp_c"]) == (
        800.0, 1700.0, 18.0, 18.75)
    n = sum(c == b"\x01i20200" for c in console.commands)
    await until(lambda: sum(c == b"\x01i20200" for c in console.commands) >= n + 3)
    assert len(sink.of("gauge.delivery")) == 1
    await console.stop()


async def test_console_that_does_not_match_is_a_clear_error() -> None:
    console = HandConsole()
    endpoint = await console.start()
    br = Tls350Bridge(Device("atg", endpoint, {"T1": 1, "T3": 3}, protocol="tls350"), metric(), STATION,
                      Collector())
    with pytest.raises(ProfileMismatch, match=r"does not report tank\(s\) 3 .*\(T3\); it reports \[1, 2\]"):
        await br.check()
    coded = metric(security_code="ABC123")  # this console has no code: it answers 9999FF1B
    br = Tls350Bridge(Device("atg", endpoint, {"T1": 1}, protocol="tls350"), coded, STATION, Collector())
    with pytest.raises(ProfileMismatch, match="does not answer i201"):
        await br.check()
    await console.stop()


# ---- the simulated console -------------------------------------------------------------------------


def reading(tank: str, ts: float, level: float, temp: float = 18.0) -> dict[str, Any]:
    return {"kind": "tank.reading", "ts": ts, "station": "BH-0001", "entity": tank, "source": "sim", "seq": 0,
            "level_mm": level, "water_mm": 5.0, "temp_c": temp}


async def test_simulated_console_frames_check_out_independently() -> None:
    srv = Tls350DeviceServer(metric(), {"T1": 1}, tanks={"T1": STATION.tanks[0]})
    srv.apply([reading("T1", T0 + 5, 1500.0)])
    raw = srv.respond(b"i20100").decode("ascii")
    body, given = raw[:-5], int(raw[-5:-1], 16)
    assert raw[0] == "\x01" and raw[-1] == "\x03" and body.endswith("&&")
    assert (sum(ord(c) for c in body) + given) % 0x10000 == 0
    assert body[1:17] == "i20100" + "2605281653"
    tank = body[17:-2]
    assert tank[:2] == "01" and tank[3:7] == "0000" and tank[7:9] == "07"
    values = [struct.unpack(">f", bytes.fromhex(tank[9 + 8 * i:17 + 8 * i]))[0] for i in range(7)]
    assert values[3] == 1500.0 and values[4] == 5.0 and values[5] == 18.0
    assert 0 < values[0] < values[1] < 30_000 and values[2] > 0  # 18 °C fuel is more litres at 20 °C
    assert srv.respond(b"i99900") == b"\x019999FF1B\x03"


async def test_simulated_console_delivery_and_restart(running: list[Any]) -> None:
    srv = Tls350DeviceServer(metric(), {"T1": 1, "T2": 2},
                             tanks={"T1": STATION.tanks[0], "T2": STATION.tanks[1]}, settle_s=120.0)
    await srv.start()
    srv.apply([reading("T1", T0, 1000.0), reading("T2", T0, 1200.0)])
    br, sink = start(running, srv.endpoint, metric())
    await sink.wait(lambda: len(sink.of("tank.reading")) >= 2)
    await until(lambda: br._deliveries_read)
    # a truck drop on T1: the level rises for 3 minutes, then settles
    ts = T0 + 60
    for k in range(4):
        srv.apply([reading("T1", ts + 60 * k, 1000.0 + 200.0 * k), reading("T2", ts + 60 * k, 1200.0 - k)])
    await srv.stop()  # the console restarts: its delivery memory survives
    for k in range(4, 8):
        srv.apply([reading("T1", ts + 60 * k, 1600.0), reading("T2", ts + 60 * k, 1200.0 - k)])
    await until(lambda: not br.health().connected)
    await srv.start()
    ev = (await sink.wait(lambda: sink.of("gauge.delivery"), timeout=10))[0]
    assert br.health().reconnects >= 1
    assert ev["entity"] == "T1" and ev["start_level_mm"] == 1000.0 and ev["end_level_mm"] == 1600.0
    assert ev["end_volume_l"] - ev["start_volume_l"] > 5000  # 600 mm mid-tank in a 2.5 m × 6.1 m cylinder
    assert ev["start_ts"] < ev["end_ts"] <= ts + 7 * 60
    latest = (await sink.wait(lambda: [e for e in sink.of("tank.reading", "T2") if e["level_mm"] == 1193.0]))
    assert latest[0]["quality"] == "good"
    n = srv.requests
    await until(lambda: srv.requests >= n + 10)
    assert len(sink.of("gauge.delivery")) == 1
    await srv.close()


async def test_gauge_delivery_is_accepted_logged_and_round_trips(small_district: Any, store: Any) -> None:
    from actors.base import make_runtime
    from twin.events import decode_batch, encode_batch, parse
    from twin.service import TwinService

    raw = {"kind": "gauge.delivery", "ts": T0, "station": "BH-0001", "entity": "T1", "source": "tls350:x",
           "seq": 1, "start_ts": T0 - 2400, "end_ts": T0, "start_volume_l": 8000.0, "end_volume_l": 20000.0,
           "start_tc_volume_l": 7960.0, "end_tc_volume_l": 19950.0, "start_level_mm": 800.0,
           "end_level_mm": 1700.0, "start_temp_c": 18.0, "end_temp_c": 18.75}
    ev = parse(raw)
    assert decode_batch("BH-0001", encode_batch([ev])) == [ev]
    service = TwinService(small_district, store, make_runtime("local", small_district))
    await service.ingest([raw, {**raw, "seq": 2, "entity": "T9"}], now=T0)
    assert service.counts.accepted == 1 and service.counts.rejected == 1
    await service.drain()
    dead = await store.dead_letters()
    assert any("unknown tank 'T9'" in d["reason"] for d in dead)
    await service.close()
