"""HJ 212-2017 receiving server over real TCP: frames built by hand, the CRC computed here independently.

The test's CRC is a bit-by-bit transcription of the standard's algorithm (the server's is table-driven)
and is pinned to the standard's own worked example.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridges.hj212 import FrameError, Frames, Hj212Server, MonitorConfig, store_dead_letters
from twin.timeutil import CST

MN = "88888880000001"
PW = "123456"
MONITORS = [MonitorConfig(station="BH-0001", mn=MN, password=PW, nozzles={"1": "N1", "2": "N2"}),
            MonitorConfig(station="BH-0002", mn="88888880000002", password="654321")]


def crc_by_hand(data: bytes) -> int:
    """HJ 212-2017's CRC, written out: crc = (crc >> 8) XOR byte, then 8 shifts with 0xA001."""
    reg = 0xFFFF
    for byte in data:
        reg = (reg >> 8) ^ byte
        for _ in range(8):
            carry = reg & 0x0001
            reg >>= 1
            if carry:
                reg ^= 0xA001
    return reg


def frame(segment: str, crc: int | None = None, length: int | None = None) -> bytes:
    data = segment.encode("ascii")
    n = len(data) if length is None else length
    c = crc_by_hand(data) if crc is None else crc
    return b"##" + f"{n:04d}".encode() + data + f"{c:04X}".encode() + b"\r\n"


def seg(cn: str, cp: str, qn: str = "20260601103000123", mn: str = MN, pw: str = PW, flag: int = 5) -> str:
    return f"QN={qn};ST=31;CN={cn};PW={pw};MN={mn};Flag={flag};CP=&&{cp}&&"


def ts(text: str) -> float:
    return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=CST).timestamp()


FILL_CP = ("DataTime=20260601102959;BeginTime=20260601102901;i41019-Rtd=1;i41020-Rtd=1.08,i41020-Flag=N;"
           "i41023-Rtd=32.40;i41024-Rtd=30.00")
ENV_CP = "DataTime=20260601103000;i41028-Avg=215.5;i41015-Avg=1;i41016-Avg=4.2;i41030-Avg=120"


def test_crc_matches_the_standards_example() -> None:
    example = (b"QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;"
               b"CP=&&RtdInterval=30&&")
    assert len(example) == 101 and crc_by_hand(example) == 0x1C80
    from bridges.hj212 import build_frame, crc16

    assert crc16(example) == 0x1C80
    assert build_frame(example.decode()) == b"##0101" + example + b"1C80\r\n"


class Rig:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.dead: list[Any] = []
        self.server = Hj212Server(MONITORS, self._sink, dead_letters=self._dead)

    async def _sink(self, events: list[dict[str, Any]]) -> None:
        self.events.extend(events)

    async def _dead(self, rejections: list[Any]) -> None:
        self.dead.extend(rejections)


@pytest.fixture
async def rig() -> Any:
    r = Rig()
    await r.server.start()
    yield r
    await r.server.stop()


async def _connect(rig: Rig) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", rig.server.port), 5)


async def _reply(reader: asyncio.StreamReader) -> str:
    line = await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)
    assert line.startswith(b"##")
    n = int(line[2:6])
    data = line[6:6 + n]
    assert line[6 + n:6 + n + 4] == f"{crc_by_hand(data):04X}".encode()  # the reply's CRC checks out
    assert len(line) == 6 + n + 6
    return data.decode()


async def _until(cond: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


async def test_realtime_fill_is_mapped_and_acknowledged(rig: Rig) -> None:
    reader, writer = await _connect(rig)
    writer.write(frame(seg("2011", FILL_CP)))
    await writer.drain()
    reply = await _reply(reader)
    assert reply == f"QN=20260601103000123;ST=91;CN=9014;PW={PW};MN={MN};Flag=4;CP=&&&&"
    await _until(lambda: rig.events)
    ev = rig.events[0]
    assert ev["kind"] == "vapor.fill" and ev["station"] == "BH-0001" and ev["entity"] == "N1"
    assert ev["a_l"] == 1.08 and ev["liquid_l"] == 30.0 and ev["vapor_l"] == 32.4
    assert ev["ts"] == ts("20260601102959") and ev["fill_start_ts"] == ts("20260601102901")
    assert ev["quality"] == "good" and ev["seq"] == 10 * 3600 + 29 * 60 + 59
    writer.close()


async def test_minute_hour_day_data(rig: Rig) -> None:
    reader, writer = await _connect(rig)
    for i, (cn, cp) in enumerate([("2051", ENV_CP),
                                  ("2061", "DataTime=20260601100000;i41028-Avg=210;i41015-Avg=1"),
                                  ("2031", "DataTime=20260601000000;i41028-Avg=190")]):
        writer.write(frame(seg(cn, cp, qn=f"2026060110300{i}000")))
        await writer.drain()
        assert "CN=9014" in await _reply(reader)
    assert len(rig.events) == 1  # hour data after minute data, and day data, add nothing new
    env = rig.events[0]
    assert env["kind"] == "vapor.env" and env["pressure_pa"] == 215.5 and env["processor_state"] == "running"
    assert env["outlet_g_m3"] == 4.2 and env["voc_umol_mol"] == 120.0
    assert rig.server.stats.accepted == 3
    # A monitor that only uploads hourly: its hour data become the system samples.
    other = ("DataTime=20260601100000;i41028-Avg=12;i41015-Avg=0")
    writer.write(frame(seg("2061", other, qn="20260601110000000", mn="88888880000002", pw="654321", flag=4)))
    await writer.drain()
    await _until(lambda: len(rig.events) == 2)
    assert rig.events[1]["station"] == "BH-0002" and rig.events[1]["processor_state"] == "stopped"
    writer.close()


async def test_wrong_password_and_unknown_mn_are_refused(rig: Rig) -> None:
    reader, writer = await _connect(rig)
    writer.write(frame(seg("2011", FILL_CP, pw="000000")))
    writer.write(frame(seg("2011", FILL_CP, mn="99999990000009")))
    await writer.drain()
    r1, r2 = await _reply(reader), await _reply(reader)
    assert "CN=9011" in r1 and r1.endswith("CP=&&QnRtn=3&&")
    assert "CN=9011" in r2 and r2.endswith("CP=&&QnRtn=4&&")
    assert rig.events == []
    assert rig.server.stats.rejected == {"wrong_password": 1, "unknown_mn": 1}
    assert [d.reason.split(":")[0] for d in rig.dead] == ["hj212 wrong_password", "hj212 unknown_mn"]
    assert rig.dead[0].station == "BH-0001" and rig.dead[1].station == ""
    # The same connection still works.
    writer.write(frame(seg("2011", FILL_CP)))
    await writer.drain()
    assert "CN=9014" in await _reply(reader)
    writer.close()


async def test_malformed_frames_do_not_harm_later_frames_or_other_connections(rig: Rig) -> None:
    r1, w1 = await _connect(rig)
    r2, w2 = await _connect(rig)
    good = frame(seg("2011", FILL_CP, qn="20260601103000999"))
    bad_crc = frame(seg("2011", FILL_CP, qn="20260601103000001"), crc=0x1234)
    wrong_len = frame(seg("2051", ENV_CP, qn="20260601103000002"), length=50)
    truncated = frame(seg("2051", ENV_CP, qn="20260601103000003"))[:40]
    oversize = b"##2000" + b"A" * 2000 + b"0000\r\n"
    garbage = b"\x00\xffhello\r\n#"
    not_a_segment = frame("this is not HJ 212")
    # (Garbage right after an oversize frame would be dropped with that frame: one error, not two.)
    w1.write(garbage + bad_crc + wrong_len + truncated + oversize + not_a_segment)
    w2.write(frame(seg("2051", ENV_CP, qn="20260601103000004")))  # meanwhile, another monitor
    await asyncio.gather(w1.drain(), w2.drain())
    assert "CN=9014" in await _reply(r2)
    reply = await _reply(r1)
    assert "CN=9011" in reply and reply.endswith("QnRtn=9&&")  # the bad CRC, with its QN echoed
    w1.write(good)
    await w1.drain()
    assert "QN=20260601103000999;ST=91;CN=9014" in await _reply(r1)
    await _until(lambda: len(rig.events) == 2)
    rejected = rig.server.stats.rejected
    for reason in ("bad_crc", "wrong_length", "truncated", "oversize", "garbage", "bad_segment"):
        assert rejected.get(reason, 0) >= 1, (reason, rejected)
    assert sum(rejected.values()) == len(rig.dead)
    # A frame cut short by the end of the connection is rejected too.
    r3, w3 = await _connect(rig)
    w3.write(frame(seg("2051", ENV_CP, qn="20260601103000005"))[:30])
    await w3.drain()
    w3.close()
    await _until(lambda: rig.server.stats.rejected["truncated"] == 2)
    w1.close()
    w2.close()


async def test_duplicates_are_dropped_and_backfill_is_in_event_time(rig: Rig) -> None:
    reader, writer = await _connect(rig)
    f = frame(seg("2011", FILL_CP))
    late = frame(seg("2011", FILL_CP.replace("20260601102959", "20260530220000").replace(
        "BeginTime=20260601102901;", ""), qn="20260601103500000"))
    for data in (f, f, late):
        writer.write(data)
        await writer.drain()
        assert "CN=9014" in await _reply(reader)  # a retransmission is answered: its sender missed ours
    assert rig.server.stats.duplicates == 1
    assert [e["ts"] for e in rig.events] == [ts("20260601102959"), ts("20260530220000")]
    assert rig.events[1]["source"].endswith(":20260530")
    writer.close()


# ---- the garbage a hostile or broken link can send -------------------------------------------------------

GOOD = frame(seg("2011", FILL_CP))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbage=st.binary(max_size=400), cut=st.integers(min_value=1, max_value=64))
def test_framer_recovers_after_any_garbage(garbage: bytes, cut: int) -> None:
    """Whatever came before, a good frame after it is recovered; chunking never changes the result."""
    stream = garbage + GOOD
    whole = Frames().feed(stream)
    chunked: list[Any] = []
    fr = Frames()
    for i in range(0, len(stream), cut):
        chunked += fr.feed(stream[i:i + cut])
    good = [x for x in whole if not isinstance(x, FrameError)]
    assert good and good[-1][0] == GOOD[6:-6]
    assert [x for x in chunked if not isinstance(x, FrameError)][-1] == good[-1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=120), max_size=6))
def test_parsing_never_raises_on_garbage_segments(pieces: list[bytes]) -> None:
    from bridges.hj212 import Mapper, parse_segment

    mapper = Mapper()
    for p in pieces:
        data = (b"QN=20260601103000123;ST=31;CN=2011;PW=123456;MN=" + MN.encode() + b";Flag=5;CP=&&"
                + p + b"&&")
        for candidate in (p, data):
            try:
                pkt = parse_segment(candidate)
                mapper.events(pkt, MONITORS[0])
            except FrameError:
                pass


async def test_garbage_over_tcp_then_good_frames(rig: Rig) -> None:
    """Hypothesis-style garbage over a real connection (a fixed sample of random bytes), then a frame."""
    import random

    rnd = random.Random(212)
    reader, writer = await _connect(rig)
    for k in range(20):
        junk = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 300)))
        writer.write(junk + frame(seg("2011", FILL_CP, qn=f"202606011030{k:02d}000")))
        await writer.drain()
        assert "CN=9014" in await _reply(reader)
    assert len(rig.events) == 20
    writer.close()


async def test_into_the_twin_with_dead_letters_in_redis(store: Any, small_district: Any) -> None:
    """The real ingest path: events validated and de-duplicated by the twin, refusals in the dead letters.
    A retransmission after the server restarts (its QN memory gone) is caught by the twin's (source, seq)."""
    from actors.base import make_runtime
    from twin.service import TwinService

    service = TwinService(small_district, store, make_runtime("local", small_district))
    now = ts("20260601103100")

    async def sink(events: list[dict[str, Any]]) -> None:
        await service.ingest(events, now=now)

    for _ in range(2):  # two server lifetimes
        server = Hj212Server(MONITORS, sink, dead_letters=store_dead_letters(store))
        await server.start()
        reader, writer = await _connect_port(server.port)
        writer.write(frame(seg("2011", FILL_CP)) + frame(seg("2011", FILL_CP, pw="bad")))
        await writer.drain()
        assert "CN=9014" in await _reply(reader)
        assert "QnRtn=3" in await _reply(reader)
        writer.close()
        await server.stop()
    await service.drain()
    assert service.counts.accepted == 1 and service.counts.duplicates == 1
    dead = await store.dead_letters(10)
    assert len(dead) == 2 and all("wrong_password" in d["reason"] for d in dead)
    assert dead[0]["station"] == "BH-0001"
    await service.close()


async def _connect_port(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
