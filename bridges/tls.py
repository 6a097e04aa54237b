"""Veeder-Root TLS-350 bridge: polls a tank gauge console over TCP with the serial inquiry protocol.

Each poll asks ``i201`` (in-tank inventory) and, less often, ``i202`` (delivery report); the frames and
fields are described in ``bridges/tls_codec.py`` with the manual they come from. A reading becomes a
``tank.reading`` (height, water, temperature, converted from the profile's units); a delivery the
console recorded becomes a ``gauge.delivery`` (``twin/events.py``), sent once: the bridge remembers the
newest delivery it sent per tank, across reconnects, and the console's report from before the bridge
first read it is history, not replayed (as transaction rings are in the other bridges).

Time: the console's clock, from the response header, is to the minute. Within one console minute a
reading is placed by the bridge's clock — at the wall time when both clocks agree, else (a console
clock set wrong, or a simulation running fast) at the seconds elapsed since the bridge first saw that
minute — so readings of one source keep their order and never leave their console minute. A reading is
sent when it changed, or after ``heartbeat_s`` unchanged (a live gauge repeats itself rarely; a probe
that repeats exactly is the twin's SENSOR_STUCK to judge).

Faults: a response with a bad checksum (or otherwise malformed) is a ``twin.events.Rejection`` with the
reason and the frame, counted in :meth:`health` (``bad_values``); the connection is kept, since the
frame ended where it should and the next one is read normally. A value that is NaN or out of range,
or a tank whose status says the fuel height is invalid, is a Rejection for that tank only. A console
that stops answering times out: the bridge drops the connection (its byte stream may be out of step)
and reconnects with :class:`~bridges.base.Backoff`. A console that does not report a configured tank
or refuses an inquiry of the profile (``9999FF1B``) does not match the profile: ``ProfileMismatch``
from :meth:`Tls350Bridge.check`.

``device`` is duck-typed like the OPC UA bridge's (``bridges.config.DeviceConfig`` fits): ``id``,
``endpoint`` (``tcp://host:port``), ``channels`` (tank id → the console's tank number), optionally
``source`` and ``options`` (``security_code``, ``poll_interval_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from bridges.base import (
    Backoff,
    BridgeHealth,
    EventSink,
    PollingLoop,
    ProfileMismatch,
    SourceSequence,
    wait_for,
)
from bridges.tls_codec import (
    ETX,
    Delivery,
    FrameError,
    Unrecognised,
    command,
    parse_i201,
    parse_i202,
    unframe,
)
from bridges.tls_profile import Tls350Profile
from twin.events import Rejection

__all__ = ["ProfileMismatch", "Tls350Bridge"]

log = logging.getLogger(__name__)

#: Tank status bit 2 (i201): the probe reports an invalid fuel height.
INVALID_HEIGHT = 0x0004
#: Longest response accepted: 99 tanks × 10 deliveries is far below it.
MAX_FRAME = 256 * 1024


def host_port(endpoint: str, default_port: int = 10001) -> tuple[str, int]:
    parts = urlsplit(endpoint if "://" in endpoint else f"tcp://{endpoint}")
    if not parts.hostname:
        raise ValueError(f"endpoint {endpoint!r} has no host")
    return parts.hostname, parts.port or default_port


class Tls350Bridge(PollingLoop):
    """One TLS-350 console, polled until cancelled."""

    def __init__(self, device: Any, profile: Tls350Profile, station: Any, sink: EventSink, *,
                 clock: Callable[[], float] = time.time):
        self.device = device
        self.profile = profile
        self.station_id = station if isinstance(station, str) else station.id
        self.sink = sink
        self.clock = clock
        self.source = getattr(device, "source", None) or f"tls350:{self.station_id}:{device.id}"
        self.host, self.port = host_port(device.endpoint)
        options = getattr(device, "options", None) or {}
        self.security_code: str | None = options.get("security_code", profile.security_code)
        self.poll_interval_s = float(options.get("poll_interval_s", profile.poll_interval_s))
        self.tz = ZoneInfo(profile.timezone)
        self.tanks: dict[int, str] = {ch: eid for eid, ch in dict(device.channels).items()}
        self.seq = SourceSequence(self.source, int(clock() * 1000))  # never reused across restarts
        self._health = BridgeHealth(self.source)
        self.backoff = Backoff()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._last: dict[int, tuple[tuple[Any, ...], float]] = {}  # tank -> (values, wall time sent)
        self._last_ts: float | None = None
        self._minute: tuple[float, float] | None = None  # (device minute, monotonic when first seen)
        self.delivery_mark: dict[int, tuple[float, float]] = {}  # tank -> newest (end, start) sent
        self._deliveries_read = False
        self._next_delivery_poll = 0.0
        self.polls = 0
        self._pending: list[Any] = []  # rejections found while verifying, sent with the next poll

    # ---- the Bridge protocol ---------------------------------------------------------------------

    def health(self) -> BridgeHealth:
        return self._health

    async def check(self, timeout_s: float = 10.0) -> None:
        """Connect once and ask each inquiry of the profile: ProfileMismatch if the console refuses one
        or does not report a configured tank; a connection error if it cannot be reached."""
        try:
            await wait_for(self._connect(), timeout_s)
            await self._verify()
        finally:
            await self._close()

    async def _disconnect(self) -> None:
        await self._close()

    def _peer(self) -> str:
        return f"{self.host}:{self.port}"

    # ---- connection ------------------------------------------------------------------------------

    async def _connect(self) -> None:
        await self._close()
        self._reader, self._writer = await wait_for(
            asyncio.open_connection(self.host, self.port, limit=MAX_FRAME), self.profile.timeout_s + 1.0)

    async def _close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await wait_for(writer.wait_closed(), 1.0)

    async def ask(self, function: str, tank: int = 0) -> bytes:
        """Send one inquiry and return the raw response frame (through ETX)."""
        if self._reader is None or self._writer is None:
            raise ConnectionError("not connected")
        self._writer.write(command(function, tank, self.security_code))
        await self._writer.drain()
        try:
            message = await wait_for(self._reader.readuntil(ETX), self.profile.timeout_s)
        except asyncio.IncompleteReadError:
            raise ConnectionError(f"{self.host}:{self.port} closed the connection") from None
        except asyncio.LimitOverrunError:
            raise ConnectionError(f"{self.host}:{self.port} sent more than {MAX_FRAME} bytes "
                                  "without ETX") from None
        start = message.rfind(b"\x01")
        return message[start:] if start > 0 else message  # bytes before SOH are line noise

    async def _verify(self) -> None:
        for inquiry in self.profile.inquiries:
            message = await self.ask(inquiry[1:])
            try:
                payload = unframe(message)
            except Unrecognised:
                raise ProfileMismatch(
                    f"device {self.source} at {self.host}:{self.port} does not match profile "
                    f"{self.profile.model}: it does not answer {inquiry} (9999FF1B: unknown command or "
                    "wrong security code)") from None
            except FrameError as exc:  # one garbled answer is no mismatch; reported with the next poll
                self._frame_rejection(inquiry, message, exc, self._pending)
                continue
            if inquiry == "i201":
                _, tanks = parse_i201(payload, self.tz)
                missing = sorted(set(self.tanks) - {t.tank for t in tanks})
                if missing:
                    raise ProfileMismatch(
                        f"device {self.source} at {self.host}:{self.port} does not report tank(s) "
                        f"{', '.join(str(m) for m in missing)} of the station configuration "
                        f"({', '.join(self.tanks[m] for m in missing)}); it reports "
                        f"{sorted(t.tank for t in tanks)}")

    # ---- polling ---------------------------------------------------------------------------------

    async def poll_once(self) -> None:
        out, self._pending = self._pending, []
        await self._inventory(out)
        now = asyncio.get_running_loop().time()
        if "i202" in self.profile.inquiries and now >= self._next_delivery_poll:
            await self._deliveries(out)
            self._next_delivery_poll = now + self.profile.delivery_poll_s
        if out:
            await self.sink(out)

    def _frame_rejection(self, inquiry: str, message: bytes, exc: FrameError, out: list[Any]) -> None:
        self._health.bad_values += 1
        self._health.last_error = f"{inquiry}: {exc}"[:300]
        raw = {"kind": "tank.reading" if inquiry == "i201" else "gauge.delivery", "station": self.station_id,
               "source": self.source, "quality": "bad", "frame": message[:400].decode("latin-1")}
        out.append(Rejection(raw, f"bad frame: {exc}; {inquiry} response from {self.source}",
                             self.station_id, self.source))

    async def _inventory(self, out: list[Any]) -> None:
        message = await self.ask("201")
        try:
            device_ts, tanks = parse_i201(unframe(message), self.tz)
        except FrameError as exc:
            self._frame_rejection("i201", message, exc, out)
            return
        ts = self._stamp(device_ts)
        wall = self.clock()
        p = self.profile
        for inv in tanks:
            entity = self.tanks.get(inv.tank)
            if entity is None:
                continue
            f = inv.fields
            missing = [k for k in ("height", "water", "temp") if k not in f]
            values = {"level_mm": p.mm(f.get("height", math.nan)), "water_mm": p.mm(f.get("water", 0.0)),
                      "temp_c": p.celsius(f.get("temp", math.nan))}
            problems = [f"{k} is {v}" for k, v in values.items() if not math.isfinite(v)]
            if missing:
                problems.insert(0, f"{len(f)} fields, no {', '.join(missing)}")
            if inv.status & INVALID_HEIGHT:
                problems.append(f"tank status {inv.status:04X}: invalid fuel height alarm")
            raw = {"kind": "tank.reading", "ts": ts, "station": self.station_id, "entity": entity,
                   "source": self.source, "seq": None, "quality": "good"}
            if problems:
                bad_key = ("bad", *problems)
                last = self._last.get(inv.tank)
                if last is not None and last[0] == bad_key and wall - last[1] < p.heartbeat_s:
                    continue  # the same fault again: reported once a heartbeat, not every poll
                self._last[inv.tank] = (bad_key, wall)
                raw.update({k: (v if math.isfinite(v) else str(v)) for k, v in values.items()},
                           quality="bad", status=inv.status)
                self._health.bad_values += 1
                self._health.last_error = f"tank {inv.tank}: {'; '.join(problems)}"[:300]
                out.append(Rejection(raw, f"bad value: tank {inv.tank} ({entity}): {'; '.join(problems)}; "
                                          f"i201 from {self.source}", self.station_id, self.source))
                continue
            values = {k: round(v, 3) for k, v in values.items()}
            key = tuple(values.values())
            last = self._last.get(inv.tank)
            if last is not None and last[0] == key and wall - last[1] < p.heartbeat_s:
                continue
            self._last[inv.tank] = (key, wall)
            raw.update(values, seq=self.seq.take())
            out.append(raw)

    def _stamp(self, device_minute: float) -> float:
        """Event time inside the console's minute, monotonic per source (see the module docstring)."""
        wall = self.clock()
        mono = time.monotonic()
        if self._minute is None or self._minute[0] != device_minute:
            self._minute = (device_minute, mono)
        if 0.0 <= wall - device_minute < 60.0:
            ts = wall
        else:
            ts = device_minute + min(mono - self._minute[1], 59.999)
        if self._last_ts is not None and ts < self._last_ts and self._last_ts - device_minute < 60.0:
            ts = self._last_ts
        self._last_ts = ts
        return round(ts, 3)

    async def _deliveries(self, out: list[Any]) -> None:
        message = await self.ask("202")
        try:
            _, deliveries = parse_i202(unframe(message), self.tz)
        except FrameError as exc:
            self._frame_rejection("i202", message, exc, out)
            return
        first = not self._deliveries_read
        self._deliveries_read = True
        for d in sorted(deliveries, key=lambda d: (d.end_ts, d.start_ts)):
            entity = self.tanks.get(d.tank)
            if entity is None:
                continue
            mark = self.delivery_mark.get(d.tank)
            if mark is not None and (d.end_ts, d.start_ts) <= mark:
                continue
            self.delivery_mark[d.tank] = (d.end_ts, d.start_ts)
            if first:
                continue  # the console's history from before the bridge first read it
            out.append(self._delivery_event(d, entity))

    def _delivery_event(self, d: Delivery, entity: str) -> Any:
        p, f = self.profile, d.fields
        raw: dict[str, Any] = {
            "kind": "gauge.delivery", "ts": d.end_ts, "station": self.station_id, "entity": entity,
            "source": self.source, "seq": None, "quality": "good", "start_ts": d.start_ts, "end_ts": d.end_ts}
        conv = {"start_volume_l": ("start_volume", p.litres), "end_volume_l": ("end_volume", p.litres),
                "start_tc_volume_l": ("start_tc_volume", p.litres),
                "end_tc_volume_l": ("end_tc_volume", p.litres),
                "start_water_mm": ("start_water", p.mm), "end_water_mm": ("end_water", p.mm),
                "start_temp_c": ("start_temp", p.celsius), "end_temp_c": ("end_temp", p.celsius),
                "start_level_mm": ("start_height", p.mm), "end_level_mm": ("end_height", p.mm)}
        problems: list[str] = []
        for name, (src, fn) in conv.items():
            if src not in f:
                if name.endswith("level_mm"):
                    continue  # older software versions report no heights
                problems.append(f"no {src}")
                continue
            v = fn(f[src])
            if not math.isfinite(v):
                problems.append(f"{src} is {v}")
                raw[name] = str(v)
                continue
            raw[name] = round(v, 3)
        if problems:
            raw["quality"] = "bad"
            self._health.bad_values += 1
            return Rejection(raw, f"bad value: delivery to tank {d.tank} ({entity}): {'; '.join(problems)}; "
                                  f"i202 from {self.source}", self.station_id, self.source)
        raw["seq"] = self.seq.take()
        return raw
