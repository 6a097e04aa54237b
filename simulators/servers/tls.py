"""A simulated Veeder-Root TLS-350 console: an asyncio TCP server answering the serial inquiry protocol.

It answers the computer-format inquiries ``i201`` (in-tank inventory) and ``i202`` (delivery report)
as the Serial Interface Manual 576013-635 describes them (see ``bridges/tls_codec.py``), for the tanks
of its ``channels`` (tank id → console tank number), in the profile's units, and ``9999FF1B`` to
anything else — or to everything, if the profile has a security code and the command lacks it.

Values come from the simulator's ``tank.reading`` events (:meth:`Tls350DeviceServer.apply`). The
console's clock is the simulator's event time (the newest event applied), so under an accelerated
simulation the console runs fast, as the bridge expects a wrongly set console clock may. Volumes come
from each tank's declared chart (``tanks``: the station's TankSpec per tank id); the TC volume is at
the twin's reference of 20 °C (GB/T 1885), as a console in China is set up.

Like a real console, it detects deliveries itself: a level rise of more than ``delivery_rise_mm`` above
the lowest level since the last one starts a delivery (status bit 0 set in i201); when the level has
not risen for ``settle_s`` of console time, the delivery ends and is recorded with its start and end
values, the last ``keep_deliveries`` per tank being reported by i202.

Faults for tests: :meth:`corrupt` the checksum of the next responses, :meth:`stall` (accept commands,
answer nothing), and :meth:`stop` / :meth:`start` (a restart keeps the delivery history, as a console
keeps it in battery-backed memory, and listens on the same port).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from bridges.tls_codec import (
    ETX,
    I201_FIELDS,
    SOH,
    UNRECOGNISED,
    Delivery,
    Inventory,
    build_i201,
    build_i202,
)
from bridges.tls_profile import Tls350Profile

log = logging.getLogger(__name__)

_PRODUCT = {"92#": "1", "95#": "2", "98#": "3", "0#": "4", "-10#": "5", "-20#": "6", "-35#": "7"}


@dataclass
class _Tank:
    number: int
    product: str
    capacity_l: float
    geometry: Any = None
    density: float = 740.0
    grade: str = "92#"
    level: float | None = None
    water: float = 0.0
    temp: float = 15.0
    ts: float = 0.0
    # delivery detection
    low: tuple[float, float, float, float] | None = None  # (ts, level, water, temp) of the lowest level
    start: tuple[float, float, float, float] | None = None
    peak_level: float = 0.0
    last_rise_ts: float = 0.0


class Tls350DeviceServer:
    """One simulated TLS-350 console on its own TCP port."""

    def __init__(self, profile: Tls350Profile, channels: Mapping[str, int], *, host: str = "127.0.0.1",
                 port: int = 0, tanks: Mapping[str, Any] | None = None, delivery_rise_mm: float = 15.0,
                 settle_s: float = 600.0, keep_deliveries: int = 10):
        self.profile = profile
        self.channels = dict(channels)
        self.host = host
        self.port = port
        self.tz = ZoneInfo(profile.timezone)
        self.delivery_rise_mm = delivery_rise_mm
        self.settle_s = settle_s
        self.tanks: dict[str, _Tank] = {}
        for eid, number in sorted(self.channels.items(), key=lambda kv: kv[1]):
            spec = (tanks or {}).get(eid)
            tank = _Tank(number, "1", 0.0)
            if spec is not None:
                from twin.physics import geometry_from_spec

                tank.geometry = geometry_from_spec(spec.chart)
                tank.capacity_l = float(tank.geometry.capacity_l)
                tank.grade = spec.grade
                tank.product = _PRODUCT.get(spec.grade, "1")
                tank.density = float(spec.density)
            self.tanks[eid] = tank
        self.deliveries: dict[int, deque[Delivery]] = {t.number: deque(maxlen=keep_deliveries)
                                                       for t in self.tanks.values()}
        self.clock_ts = 0.0
        self.requests = 0
        self._corrupt = 0
        self._stalled = False
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()

    # ---- lifecycle -------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, reuse_address=True)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.endpoint

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for w in list(self._conns):
            w.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2.0)

    async def close(self) -> None:
        await self.stop()

    # ---- faults ----------------------------------------------------------------------------------

    def corrupt(self, responses: int = 1) -> None:
        """Send the next ``responses`` answers with a wrong checksum."""
        self._corrupt += responses

    def stall(self, stalled: bool = True) -> None:
        """Keep connections open but answer nothing (a hung console)."""
        self._stalled = stalled

    # ---- values ----------------------------------------------------------------------------------

    def apply(self, events: list[dict[str, Any]]) -> None:
        """Take the simulator's events of one station; tank readings update the console."""
        for ev in events:
            ts = float(ev.get("ts", 0.0))
            if ts > self.clock_ts:
                self.clock_ts = ts
            if ev.get("kind") != "tank.reading":
                continue
            tank = self.tanks.get(ev.get("entity", ""))
            if tank is None:
                continue
            tank.level = float(ev["level_mm"])
            tank.water = float(ev.get("water_mm", 0.0))
            tank.temp = float(ev["temp_c"])
            tank.ts = ts
            self._detect(tank)

    def _snapshot(self, tank: _Tank) -> tuple[float, float, float, float]:
        assert tank.level is not None
        return (tank.ts, tank.level, tank.water, tank.temp)

    def _detect(self, tank: _Tank) -> None:
        level = tank.level
        assert level is not None
        if tank.start is None:
            if tank.low is None or level <= tank.low[1] or tank.ts - tank.low[0] > 3600.0:
                tank.low = self._snapshot(tank)
            elif level - tank.low[1] > self.delivery_rise_mm:
                tank.start, tank.peak_level, tank.last_rise_ts = tank.low, level, tank.ts
            return
        if level > tank.peak_level + 1.0:
            tank.peak_level, tank.last_rise_ts = level, tank.ts
        elif tank.ts - tank.last_rise_ts >= self.settle_s:
            self._record(tank, tank.start, self._snapshot(tank))
            tank.start, tank.low = None, self._snapshot(tank)

    def _volumes(self, tank: _Tank, level: float, water: float, temp: float) -> tuple[float, float, float]:
        """(gross product volume, volume at 20 °C, ullage), litres."""
        if tank.geometry is None:
            return 0.0, 0.0, 0.0
        from twin.physics import product_of_grade, vcf

        total = float(tank.geometry.volume_l(level))
        water_l = float(tank.geometry.volume_l(min(water, level)))
        gross = max(0.0, total - water_l)
        tc = gross * float(vcf(temp, tank.density, product_of_grade(tank.grade)))
        return gross, tc, max(0.0, tank.capacity_l - total)

    def _record(self, tank: _Tank, start: tuple[float, float, float, float],
                end: tuple[float, float, float, float]) -> None:
        p = self.profile
        sv, stc, _ = self._volumes(tank, start[1], start[2], start[3])
        ev, etc, _ = self._volumes(tank, end[1], end[2], end[3])
        fields = {"start_volume": p.to_volume(sv), "start_tc_volume": p.to_volume(stc),
                  "start_water": p.to_height(start[2]), "start_temp": p.to_temp(start[3]),
                  "end_volume": p.to_volume(ev), "end_tc_volume": p.to_volume(etc),
                  "end_water": p.to_height(end[2]), "end_temp": p.to_temp(end[3]),
                  "start_height": p.to_height(start[1]), "end_height": p.to_height(end[1])}
        self.deliveries[tank.number].append(Delivery(tank.number, tank.product, start[0], end[0], fields))
        log.info("TLS sim: delivery recorded on tank %s: %.0f mm -> %.0f mm", tank.number, start[1], end[1])

    def add_delivery(self, number: int, delivery: Delivery) -> None:
        """Put a delivery straight into the console's report (tests)."""
        self.deliveries[number].append(delivery)

    # ---- protocol --------------------------------------------------------------------------------

    def respond(self, cmd: bytes) -> bytes:
        """The console's answer to one command (everything after SOH)."""
        code = self.profile.security_code
        text = cmd.decode("ascii", "replace")
        if code is not None:
            if not text.startswith(code):
                return SOH + UNRECOGNISED + ETX
            text = text[len(code):]
        if len(text) < 6 or text[0] != "i" or not text[4:6].isdigit():
            return SOH + UNRECOGNISED + ETX
        function, tank = text[1:4], int(text[4:6])
        selected = [t for t in self.tanks.values() if tank in (0, t.number)]
        p = self.profile
        if function == "201":
            out = []
            for t in selected:
                if t.level is None:  # no measurement yet: the probe's height is invalid
                    out.append(Inventory(t.number, t.product, 0x0004, {name: 0.0 for name in I201_FIELDS}))
                    continue
                gross, tc, ullage = self._volumes(t, t.level, t.water, t.temp)
                water_l = self._volumes(t, t.water, 0.0, t.temp)[0] if t.geometry is not None else 0.0
                out.append(Inventory(t.number, t.product, 0x0001 if t.start is not None else 0,
                                     {"volume": p.to_volume(gross), "tc_volume": p.to_volume(tc),
                                      "ullage": p.to_volume(ullage), "height": p.to_height(t.level),
                                      "water": p.to_height(t.water), "temp": p.to_temp(t.temp),
                                      "water_volume": p.to_volume(water_l)}))
            return build_i201(self.clock_ts, self.tz, out, tank)
        if function == "202":
            by_tank = [(t.number, t.product, list(self.deliveries[t.number])) for t in self.tanks.values()
                       if tank in (0, t.number)]
            return build_i202(self.clock_ts, self.tz, by_tank, tank)
        return SOH + UNRECOGNISED + ETX

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.add(writer)
        buf = b""
        try:
            while True:
                chunk = await reader.read(1024)
                if not chunk:
                    return
                buf += chunk
                # A command ends where the next SOH begins or after its 6-character tail: inquiries
                # have a fixed length (security code + i + 3-digit function + 2-digit tank).
                want = 1 + len(self.profile.security_code or "") + 6
                while True:
                    start = buf.find(SOH)
                    if start < 0:
                        buf = b""
                        break
                    buf = buf[start:]
                    if len(buf) < want:
                        break
                    cmd, buf = buf[1:want], buf[want:]
                    self.requests += 1
                    if self._stalled:
                        continue
                    answer = self.respond(cmd)
                    if self._corrupt > 0 and answer.endswith(ETX) and b"&&" in answer:
                        self._corrupt -= 1
                        bad = (int(answer[-5:-1], 16) + 1) & 0xFFFF
                        answer = answer[:-5] + f"{bad:04X}".encode("ascii") + ETX
                    writer.write(answer)
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._conns.discard(writer)
            writer.close()
