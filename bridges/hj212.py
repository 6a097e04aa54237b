"""HJ 212-2017 receiving server: vapor-recovery online monitors upload here; their data become vapor events.

HJ 212-2017《污染物在线监控（监测）系统数据传输标准》 frames every message as

    ``##`` + 4-digit data length + data segment + CRC16 (4 hex digits) + CR LF

and the data segment as ``QN=…;ST=…;CN=…;PW=…;MN=…;Flag=…;[PNUM=…;PNO=…;]CP=&&…&&``. This module is
the upper computer (上位机) side: an asyncio TCP server that

- cuts frames out of each connection's byte stream and rejects malformed ones — garbage before ``##``,
  a length that is not 4 digits, a data segment longer than the standard's 1024 characters, a frame
  whose declared length does not end in CR LF, a frame cut short by the next ``##`` or by the end of
  the connection, a bad CRC, a data segment that does not parse — each with its reason, counted,
  logged and dead-lettered, and then resynchronises on the next ``##`` so that the connection's later
  frames and every other connection carry on;
- checks ``MN`` and ``PW`` against the station configuration (an unknown MN or a wrong password is
  rejected the same way);
- answers as the standard's command flow has it: an upload whose ``Flag`` asks for a reply (bit 0) gets
  a data reply ``CN=9014`` with the upload's ``QN``; an upload refused gets ``CN=9011`` with ``QnRtn``
  (3 password, 4 MN, 8 CN, 9 CRC — the request-reply codes of the standard's reply table);
- maps real-time (CN 2011), minute (2051), hour (2061) and day (2031) data to ``vapor.fill`` and
  ``vapor.env`` events in event time (``DataTime``, Beijing time per GB 20952 E.3.5), so back-filled
  uploads land where they belong; retransmissions are dropped twice over: by ``QN`` here, and by the
  events' (source, seq), which are derived from the data's own identity so that the twin's
  de-duplication also catches a retransmission after this server restarts.

The CRC is the standard's own algorithm (its appendix, with its worked example ``…&&RtdInterval=30&&``
→ ``1C80``): for each byte, ``crc = (crc >> 8) ^ byte``, then 8 right shifts XOR-ing 0xA001 when the bit
shifted out is 1, starting from 0xFFFF. Note that this is *not* CRC-16/MODBUS (which XORs the byte into
the low byte without the 8-bit shift); the two disagree on that example.

The data items (which ``i4xxxx`` code carries A/L, pressure, processor state …) follow a provincial
convention for vapor-recovery monitors; they are listed, with the choices made, in ``docs/hj212.md``,
and can be changed per deployment (:class:`ItemCodes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bridges.base import EventSink, wait_for
from twin.events import Rejection
from twin.timeutil import CST

log = logging.getLogger(__name__)

#: HJ 212-2017 packet structure: the data segment is at most 1024 characters.
MAX_DATA_LEN = 1024
#: Commands this server takes as uploads (HJ 212-2017 command table).
CN_REALTIME, CN_MINUTE, CN_HOUR, CN_DAY = "2011", "2051", "2061", "2031"
DATA_CNS = frozenset({CN_REALTIME, CN_MINUTE, CN_HOUR, CN_DAY})
CN_REQUEST_REPLY, CN_DATA_REPLY = "9011", "9014"
#: QnRtn of the request reply (HJ 212-2017 reply table): 3 password error, 4 MN error, 8 CN error,
#: 9 CRC error, 100 unknown error.
QNRTN_PW, QNRTN_MN, QNRTN_CN, QNRTN_CRC, QNRTN_OTHER = "3", "4", "8", "9", "100"
#: ST of system interaction, used in replies.
ST_SYSTEM = "91"

DeadLetterSink = Callable[[list[Rejection]], Awaitable[Any]]


# --------------------------------------------------------------------------------------------------
# CRC and framing


def _crc_table() -> list[int]:
    """The per-byte step of the standard's CRC, tabulated: 8 right shifts with 0xA001 on a 1 shifted out."""
    table = []
    for b in range(256):
        crc = b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """HJ 212-2017 CRC16 over the data segment: per byte ``crc = (crc >> 8) ^ byte`` then the 8 shifts."""
    crc = 0xFFFF
    table = _TABLE
    for b in data:
        crc = table[((crc >> 8) ^ b) & 0xFF]
    return crc


def build_frame(segment: str) -> bytes:
    """A whole frame around a data segment (for replies and for the simulated monitors)."""
    data = segment.encode("ascii")
    if len(data) > 9999:
        raise ValueError("data segment longer than 4 digits can say")
    return b"##" + f"{len(data):04d}".encode() + data + f"{crc16(data):04X}".encode() + b"\r\n"


class FrameError(ValueError):
    """A frame or data segment that is refused; ``reason`` is the short key it is counted under."""

    def __init__(self, reason: str, detail: str, header: dict[str, str] | None = None):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.header = header or {}


@dataclass(slots=True)
class Frames:
    """Cuts frames out of a byte stream; never raises, never stalls on garbage.

    ``feed`` returns, in order, each complete frame's data segment and CRC text, or a :class:`FrameError`
    for what had to be skipped. A declared length whose end is not CR LF, or a next ``##`` inside the
    declared frame, means the frame is broken: it is rejected and reading resumes at the next ``##``.
    """

    max_data_len: int = MAX_DATA_LEN
    buf: bytearray = field(default_factory=bytearray)
    #: After a broken frame, the rest of it is dropped silently up to the next ``##`` (it is one error).
    skipping: bool = False

    def feed(self, chunk: bytes) -> list[tuple[bytes, bytes] | FrameError]:
        self.buf += chunk
        out: list[tuple[bytes, bytes] | FrameError] = []
        buf = self.buf
        while buf:
            start = buf.find(b"##")
            if start < 0:
                keep = 1 if buf.endswith(b"#") else 0  # half a header may follow
                if len(buf) > keep:
                    if not self.skipping:
                        out.append(FrameError("garbage", f"{len(buf) - keep} bytes outside any frame"))
                    del buf[: len(buf) - keep]
                break
            if start > 0:
                if not self.skipping:
                    out.append(FrameError("garbage", f"{start} bytes before '##'"))
                del buf[:start]
            self.skipping = False
            if len(buf) < 6:
                break
            digits = bytes(buf[2:6])
            if not digits.isdigit():
                out.append(FrameError("bad_length", f"length field {digits!r} is not 4 digits"))
                self._skip()
                continue
            n = int(digits)
            if n > self.max_data_len:
                out.append(FrameError("oversize", f"data segment of {n} characters "
                                                  f"(max {self.max_data_len})"))
                self._skip()
                continue
            end = 6 + n + 4 + 2
            nxt = buf.find(b"##", 2, min(len(buf), end))
            if nxt >= 0:
                out.append(FrameError("truncated", f"next '##' {nxt} bytes in, before the declared "
                                                   f"end {end}"))
                del buf[:nxt]
                continue
            if len(buf) < end:
                break
            if bytes(buf[end - 2:end]) != b"\r\n":
                out.append(FrameError("wrong_length", f"declared length {n} does not end in CR LF"))
                self._skip()
                continue
            out.append((bytes(buf[6:6 + n]), bytes(buf[6 + n:6 + n + 4])))
            del buf[:end]
        return out

    def _skip(self) -> None:
        del self.buf[:1]  # one byte: a stray '#' right before a real frame must not take its '##' with it
        self.skipping = True

    def close(self) -> FrameError | None:
        """At the end of the connection: whatever is left is a frame cut short."""
        left, skipping = len(self.buf), self.skipping
        self.buf.clear()
        self.skipping = False
        if left and not skipping:
            return FrameError("truncated", f"connection ended inside a frame ({left} bytes)")
        return None


# --------------------------------------------------------------------------------------------------
# Data segment


@dataclass(frozen=True, slots=True)
class Packet:
    header: dict[str, str]
    #: CP items: ``{"DataTime": "...", "i41020-Rtd": "1.05", ...}``.
    cp: dict[str, str]

    @property
    def qn(self) -> str:
        return self.header.get("QN", "")

    @property
    def cn(self) -> str:
        return self.header["CN"]

    @property
    def mn(self) -> str:
        return self.header["MN"]

    @property
    def flag(self) -> int:
        return int(self.header.get("Flag", "4"))

    @property
    def wants_reply(self) -> bool:
        return bool(self.flag & 1)


_REQUIRED = ("ST", "CN", "PW", "MN", "Flag")


def parse_segment(segment: bytes) -> Packet:
    """``QN=…;ST=…;CN=…;PW=…;MN=…;Flag=…;CP=&&…&&`` → header fields and CP items."""
    try:
        text = segment.decode("ascii")
    except UnicodeDecodeError:
        raise FrameError("bad_segment", "data segment is not ASCII") from None
    cp_at = text.find("CP=&&")
    if cp_at < 0 or not text.endswith("&&") or len(text) < cp_at + 7:
        raise FrameError("bad_segment", "no CP=&&…&& at the end of the data segment")
    header: dict[str, str] = {}
    for part in text[:cp_at].split(";"):
        if not part:
            continue
        key, eq, value = part.partition("=")
        if not eq or not key:
            raise FrameError("bad_segment", f"header field {part[:40]!r} is not key=value", header)
        header[key] = value
    missing = [k for k in _REQUIRED if k not in header]
    if missing:
        raise FrameError("bad_segment", f"missing {', '.join(missing)}", header)
    if not header["Flag"].isdigit():
        raise FrameError("bad_segment", f"Flag {header['Flag'][:10]!r} is not a number", header)
    if "QN" in header and (len(header["QN"]) != 17 or not header["QN"].isdigit()):
        raise FrameError("bad_segment", f"QN {header['QN'][:20]!r} is not YYYYMMDDhhmmsszzz", header)
    cp: dict[str, str] = {}
    body = text[cp_at + 5:-2]
    for item in body.split(";"):
        for part in item.split(","):
            if not part:
                continue
            key, eq, value = part.partition("=")
            if not eq or not key:
                raise FrameError("bad_segment", f"CP field {part[:40]!r} is not key=value", header)
            cp[key] = value
    return Packet(header, cp)


def parse_time(text: str) -> float:
    """``YYYYMMDDhhmmss`` in Beijing time (GB 20952 E.3.5: uploads on Beijing time) → epoch seconds."""
    if len(text) != 14 or not text.isdigit():
        raise ValueError(f"time {text[:20]!r} is not YYYYMMDDhhmmss")
    return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=CST).timestamp()


def format_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, CST).strftime("%Y%m%d%H%M%S")


def format_qn(ts: float) -> str:
    dt = datetime.fromtimestamp(ts, CST)
    return dt.strftime("%Y%m%d%H%M%S") + f"{dt.microsecond // 1000:03d}"


# --------------------------------------------------------------------------------------------------
# Configuration


class ItemCodes(BaseModel):
    """Which CP data item carries what (docs/hj212.md: a provincial convention, changeable here)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    nozzle: str = "i41019"
    a_l: str = "i41020"
    vapor_flow: str = "i41021"
    fuel_flow: str = "i41022"
    vapor_volume: str = "i41023"
    fuel_volume: str = "i41024"
    pressure: str = "i41028"
    processor_state: str = "i41015"
    processor_outlet: str = "i41016"
    al_alarm_state: str = "i41008"
    #: Not in the convention DOMAIN.md lists: this project's choice for the VOC leak sensor (µmol/mol).
    voc: str = "i41030"


class MonitorConfig(BaseModel):
    """One station's online monitor: its MN, password, and gun numbers → the twin's nozzle ids."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    station: str = Field(min_length=1)
    mn: str = Field(min_length=1, max_length=24)
    password: str = Field(min_length=1, max_length=9)
    #: Gun number (as uploaded in the nozzle item) → nozzle id; a number not listed maps to ``N{number}``.
    nozzles: dict[str, str] = Field(default_factory=dict)

    def nozzle_id(self, gun: str) -> str:
        gun = gun.strip()
        if gun in self.nozzles:
            return self.nozzles[gun]
        return f"N{int(gun)}" if gun.isdigit() else gun


#: Processing-unit state values of the state item: 0 stopped, 1 running, 2 fault.
PROCESSOR_STATES = {"0": "stopped", "1": "running", "2": "fault"}
#: HJ 212 data flags that make a value uncertain or bad (N is normal).
_BAD_FLAGS = frozenset({"D", "M", "C", "F"})
_UNCERTAIN_FLAGS = frozenset({"T", "B", "S"})


# --------------------------------------------------------------------------------------------------
# Mapping packets to events


class Mapper:
    """Turns an accepted data packet into vapor events; keeps which MNs send minute data."""

    def __init__(self, codes: ItemCodes | None = None):
        self.codes = codes or ItemCodes()
        self.fine_env: set[str] = set()

    def events(self, pkt: Packet, mon: MonitorConfig) -> list[dict[str, Any]]:
        cp, c, cn = pkt.cp, self.codes, pkt.cn
        if "DataTime" not in cp:
            raise FrameError("bad_data", "CP has no DataTime", pkt.header)
        try:
            ts = parse_time(cp["DataTime"])
        except ValueError as exc:
            raise FrameError("bad_data", str(exc), pkt.header) from None
        day = cp["DataTime"][:8]
        sod = int(ts - parse_time(day + "000000"))
        out: list[dict[str, Any]] = []
        if cn == CN_REALTIME and _value(cp, c.a_l, "Rtd") is not None:
            gun = _value(cp, c.nozzle, "Rtd") or _value(cp, c.nozzle, "Info")
            if gun is None:
                raise FrameError("bad_data", f"A/L without a nozzle ({c.nozzle})", pkt.header)
            try:
                nozzle = mon.nozzle_id(gun)
                a_l = float(_value(cp, c.a_l, "Rtd"))  # type: ignore[arg-type]
                liquid = _float(cp, c.fuel_volume, "Rtd")
                vapor = _float(cp, c.vapor_volume, "Rtd")
                begin = parse_time(cp["BeginTime"]) if "BeginTime" in cp else None
            except ValueError as exc:
                raise FrameError("bad_data", f"fill: {exc}", pkt.header) from None
            if liquid is None:
                raise FrameError("bad_data", f"A/L without the fuel volume ({c.fuel_volume})", pkt.header)
            out.append({"kind": "vapor.fill", "ts": ts, "station": mon.station, "entity": nozzle,
                        "source": f"hj212:{mon.mn}:fill:{nozzle}:{day}", "seq": sod,
                        "quality": _quality(cp, c.a_l), "a_l": a_l, "liquid_l": liquid,
                        "vapor_l": vapor if vapor is not None else a_l * liquid,
                        "fill_start_ts": begin, "fill_end_ts": ts})
            return out
        if cn == CN_DAY:
            return out  # a day's averages say nothing the minute data did not (docs/hj212.md)
        field_ = "Rtd" if cn == CN_REALTIME else "Avg"
        if cn == CN_HOUR and mon.mn in self.fine_env:
            return out  # the minute data of that hour are in already
        try:
            pressure = _float(cp, c.pressure, field_)
            outlet = _float(cp, c.processor_outlet, field_)
            voc = _float(cp, c.voc, field_)
        except ValueError as exc:
            raise FrameError("bad_data", str(exc), pkt.header) from None
        if pressure is None:
            if outlet is None and voc is None:
                return out  # nothing this twin models (other items are acknowledged and counted)
            raise FrameError("bad_data", f"system data without the pressure ({c.pressure})", pkt.header)
        state_raw = _value(cp, c.processor_state, field_) or _value(cp, c.processor_state, "Rtd")
        state = "absent" if state_raw is None else PROCESSOR_STATES.get(state_raw.split(".")[0], "fault")
        if cn in (CN_REALTIME, CN_MINUTE):
            self.fine_env.add(mon.mn)
        out.append({"kind": "vapor.env", "ts": ts, "station": mon.station, "entity": "",
                    "source": f"hj212:{mon.mn}:env:{cn}:{day}", "seq": sod,
                    "quality": _quality(cp, c.pressure), "pressure_pa": pressure, "processor_state": state,
                    "outlet_g_m3": outlet, "voc_umol_mol": voc})
        return out


def _value(cp: dict[str, str], code: str, kind: str) -> str | None:
    return cp.get(f"{code}-{kind}")


def _float(cp: dict[str, str], code: str, kind: str) -> float | None:
    raw = cp.get(f"{code}-{kind}")
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{code}-{kind}={raw[:20]!r} is not a number") from None


def _quality(cp: dict[str, str], code: str) -> str:
    flag = cp.get(f"{code}-Flag", "N")
    return "bad" if flag in _BAD_FLAGS else "uncertain" if flag in _UNCERTAIN_FLAGS else "good"


# --------------------------------------------------------------------------------------------------
# The server


@dataclass(slots=True)
class Hj212Stats:
    connections: int = 0
    open_connections: int = 0
    frames: int = 0
    accepted: int = 0
    duplicates: int = 0
    events: int = 0
    replies: int = 0
    rejected: dict[str, int] = field(default_factory=dict)

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {"connections": self.connections, "open_connections": self.open_connections,
                "frames": self.frames, "accepted": self.accepted, "duplicates": self.duplicates,
                "events": self.events, "replies": self.replies, "rejected": dict(self.rejected)}


class Hj212Server:
    """The receiving side. ``sink`` takes the events (``TwinService.ingest``); ``dead_letters`` takes the
    rejections (``Store.write({}, rejections)``), so nothing refused vanishes."""

    def __init__(self, monitors: Sequence[MonitorConfig], sink: EventSink, *,
                 dead_letters: DeadLetterSink | None = None, codes: ItemCodes | None = None,
                 host: str = "127.0.0.1", port: int = 0, max_data_len: int = MAX_DATA_LEN,
                 idle_timeout_s: float = 600.0, qn_memory: int = 100_000):
        self.monitors = {m.mn: m for m in monitors}
        self.sink = sink
        self.dead_letters = dead_letters
        self.mapper = Mapper(codes)
        self.host, self.port = host, port
        self.max_data_len = max_data_len
        self.idle_timeout_s = idle_timeout_s
        self.stats = Hj212Stats()
        self._qns: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._qn_memory = qn_memory
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    # ---- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("HJ 212 server listening on %s:%d", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            # Ending each connection's transport lets its handler finish on EOF; cancelling the handler
            # tasks instead makes asyncio log their CancelledError from the stream protocol's callback.
            for writer in list(self._writers):
                writer.close()
            handlers = list(self._handlers)
            if handlers:
                _, pending = await asyncio.wait(handlers, timeout=5.0)
                for task in pending:
                    task.cancel()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Hj212Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # ---- one connection ------------------------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        peer = writer.get_extra_info("peername")
        self._writers.add(writer)
        self.stats.connections += 1
        self.stats.open_connections += 1
        frames = Frames(self.max_data_len)
        try:
            while True:
                try:
                    chunk = await wait_for(reader.read(4096), self.idle_timeout_s)
                except TimeoutError:
                    break
                if not chunk:
                    break
                for item in frames.feed(chunk):
                    await self._handle(item, writer, peer)
            leftover = frames.close()
            if leftover is not None:
                await self._handle(leftover, writer, peer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        except Exception:  # noqa: BLE001 - one connection's trouble never stops the server
            log.exception("HJ 212 connection %s failed", peer)
        finally:
            self.stats.open_connections -= 1
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            if task is not None:
                self._handlers.discard(task)

    async def _handle(self, item: tuple[bytes, bytes] | FrameError, writer: asyncio.StreamWriter,
                      peer: Any) -> None:
        self.stats.frames += 1
        if isinstance(item, FrameError):
            await self._reject(item, b"", peer)
            return
        segment, crc_text = item
        header: dict[str, str] = {}
        try:
            pkt = parse_segment(segment)
            header = pkt.header
            try:
                crc_ok = int(crc_text, 16) == crc16(segment)
            except ValueError:
                crc_ok = False
            if not crc_ok:
                raise FrameError("bad_crc", f"CRC {crc_text.decode('ascii', 'replace')} != "
                                            f"{crc16(segment):04X}", header)
            mon = self.monitors.get(pkt.mn)
            if mon is None:
                raise FrameError("unknown_mn", f"MN {pkt.mn[:24]!r} is not configured", header)
            if pkt.header["PW"] != mon.password:
                raise FrameError("wrong_password", f"wrong password for MN {pkt.mn}", header)
            if pkt.cn not in DATA_CNS:
                raise FrameError("unsupported_cn", f"CN {pkt.cn[:8]!r} is not an upload this server takes",
                                 header)
            key = (pkt.mn, pkt.cn, pkt.qn)
            duplicate = bool(pkt.qn) and key in self._qns
            if duplicate:
                self.stats.duplicates += 1
            else:
                events = self.mapper.events(pkt, mon)
                if pkt.qn:
                    self._qns[key] = None
                    if len(self._qns) > self._qn_memory:
                        self._qns.popitem(last=False)
                self.stats.accepted += 1
                if events:
                    self.stats.events += len(events)
                    await self.sink(events)
            if pkt.wants_reply:  # a retransmission is answered too: its sender missed our reply
                await self._reply(writer, pkt.qn, CN_DATA_REPLY, pkt.header["PW"], pkt.mn, "")
        except FrameError as err:
            if not err.header:
                err.header = header
            await self._reject(err, segment, peer)
            await self._refuse(writer, err)

    async def _reject(self, err: FrameError, segment: bytes, peer: Any) -> None:
        self.stats.reject(err.reason)
        mn = err.header.get("MN", "")
        mon = self.monitors.get(mn)
        log.warning("HJ 212 frame from %s rejected: %s", peer, err)
        if self.dead_letters is not None:
            raw = {"protocol": "HJ 212-2017", "peer": str(peer), "reason": err.reason,
                   "segment": segment[:2048].decode("ascii", "replace")}
            rej = Rejection(raw, f"hj212 {err.reason}: {err.detail}", mon.station if mon else "",
                            f"hj212:{mn}" if mn else "hj212")
            try:
                await self.dead_letters([rej])
            except Exception:  # noqa: BLE001 - the store being down must not stop reception
                log.exception("HJ 212 dead letter could not be written")

    async def _refuse(self, writer: asyncio.StreamWriter, err: FrameError) -> None:
        """A request reply (9011) with the reason code, when the frame said who sent it and asked."""
        h = err.header
        if not h.get("QN") or not h.get("MN") or not h.get("Flag", "").isdigit() or not int(h["Flag"]) & 1:
            return
        code = {"wrong_password": QNRTN_PW, "unknown_mn": QNRTN_MN, "unsupported_cn": QNRTN_CN,
                "bad_crc": QNRTN_CRC}.get(err.reason, QNRTN_OTHER)
        await self._reply(writer, h["QN"], CN_REQUEST_REPLY, h.get("PW", ""), h["MN"], f"QnRtn={code}")

    async def _reply(self, writer: asyncio.StreamWriter, qn: str, cn: str, pw: str, mn: str, cp: str) -> None:
        qn_part = f"QN={qn};" if qn else ""
        frame = build_frame(f"{qn_part}ST={ST_SYSTEM};CN={cn};PW={pw};MN={mn};Flag=4;CP=&&{cp}&&")
        try:
            writer.write(frame)
            await writer.drain()
            self.stats.replies += 1
        except (ConnectionError, OSError):
            pass


def store_dead_letters(store: Any) -> DeadLetterSink:
    """Dead letters into the twin's store (``ft:deadletter``), counted with the store's rejections."""

    async def write(rejections: list[Rejection]) -> None:
        await store.write({}, rejections)

    return write


def wall_qn() -> str:
    """A QN for now (edges may read the clock)."""
    return format_qn(time.time())
