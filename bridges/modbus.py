"""Modbus TCP bridge: polls one device per its profile and turns registers into twin events.

Each poll reads the profile's current-value blocks for the mapped channels (merged into as few requests
as the address map allows) and every ring's counter; blocks become events (a reading with a new device
time, a nozzle whose state changed), rings are read forward from the last record seen. The last record
number lives in the bridge, not the connection, so after a reconnect the records written meanwhile are
read back from the ring — none is lost unless the device overwrote it first, which is reported.

A register that holds garbage (NaN, a value outside the profile's range, a code the profile does not
know, broken BCD) spoils only its own event: that event goes to the twin as a ``Rejection`` with the
reason (counted and dead-lettered there) and the rest of the device is read as usual. A device that
stops answering is a connection error: the bridge reconnects with :class:`~bridges.base.Backoff` and
the twin, seeing no readings, marks the tanks stale and raises COMM_LOSS. A device that answers with
exception responses to the profile's own addresses at connect time does not match its profile: that is
:class:`ProfileMismatch`, raised by :meth:`ModbusBridge.check` at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bridges.base import (
    Backoff,
    BridgeHealth,
    EventSink,
    PollingLoop,
    ProfileMismatch,
    SourceSequence,
    wait_for,
)
from bridges.config import DeviceConfig
from bridges.modbus_codec import BadValue, Value, decode
from bridges.modbus_profile import BIT_FUNCTIONS, ModbusPoint, ModbusProfile, ModbusRing
from twin.events import Rejection
from twin.registry import StationSpec

log = logging.getLogger(__name__)

#: Modbus exception codes by number, for messages a person can act on.
EXCEPTION_NAMES = {1: "ILLEGAL FUNCTION", 2: "ILLEGAL DATA ADDRESS", 3: "ILLEGAL DATA VALUE",
                   4: "SERVER DEVICE FAILURE", 6: "SERVER DEVICE BUSY", 10: "GATEWAY PATH UNAVAILABLE",
                   11: "GATEWAY TARGET DEVICE FAILED TO RESPOND"}
MAX_BITS = 2000




class DeviceError(RuntimeError):
    """The device answered a request with a Modbus exception."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class _Request:
    fn: str
    start: int
    count: int

    def describe(self) -> str:
        kind = {"holding": "holding registers", "input": "input registers", "coil": "coils",
                "discrete": "discrete inputs"}[self.fn]
        return f"{kind} {self.start}–{self.start + self.count - 1}"


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    fn: str
    address: int
    point: ModbusPoint


@dataclass(frozen=True, slots=True)
class _Item:
    """One event's worth of points: a block at one channel."""

    kind: str
    entities: tuple[str, ...]
    fields: tuple[_Field, ...]
    timed: bool
    constants: tuple[tuple[str, Any], ...] = ()


@dataclass(slots=True)
class _RingAt:
    """One ring buffer on the device (a device-wide ring, or one channel's)."""

    ring: ModbusRing
    counter: _Field
    base: int
    entity: str | None
    last: int | None = None


def merge_requests(needs: list[tuple[str, int, int]], max_regs: int, gap: int = 0) -> list[_Request]:
    """Cover (fn, start, count) needs with few requests: adjacent or overlapping spans are joined."""
    out: list[_Request] = []
    for fn in ("holding", "input", "coil", "discrete"):
        spans = sorted((s, s + c) for f, s, c in needs if f == fn)
        limit = MAX_BITS if fn in BIT_FUNCTIONS else max_regs
        cur: list[int] | None = None
        for s, e in spans:
            if cur is not None and s <= cur[1] + gap and max(e, cur[1]) - cur[0] <= limit:
                cur[1] = max(cur[1], e)
                continue
            if cur is not None:
                out.append(_Request(fn, cur[0], cur[1] - cur[0]))
            cur = [s, e]
        if cur is not None:
            out.append(_Request(fn, cur[0], cur[1] - cur[0]))
    return out


class ModbusBridge(PollingLoop):
    """One Modbus TCP device, polled per its profile, until cancelled."""

    def __init__(self, device: DeviceConfig, profile: ModbusProfile, station: StationSpec | str,
                 sink: EventSink, *, clock: Callable[[], float] = time.time):
        self.device = device
        self.profile = profile
        self.station = station if isinstance(station, StationSpec) else None
        self.station_id = station.id if isinstance(station, StationSpec) else str(station)
        self.sink = sink
        self.clock = clock
        self.source = device.source
        self.unit = device.unit if device.unit is not None else profile.unit_id
        self.host, self.port = device.host_port(502)
        self.seq = SourceSequence(self.source, int(clock() * 1000))  # never reused across restarts
        self._health = BridgeHealth(self.source)
        self.backoff = Backoff()
        self.poll_interval_s = float(device.options.get("poll_interval_s", profile.poll_interval_s))
        self._client: Any = None
        self._last: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._raw: dict[tuple[str, str], tuple[int | None, ...]] = {}
        self._device_ts: float | None = None
        self._grades = {n.id: n.grade for n in self.station.nozzles} if self.station else {}
        self.items, self.rings = self._plan()
        self.requests = merge_requests(self._needs(), profile.max_read, profile.read_gap)
        self.polls = 0

    # ---- plan ------------------------------------------------------------------------------------

    def _plan(self) -> tuple[list[_Item], list[_RingAt]]:
        p = self.profile
        by_channel = sorted(self.device.channels.items(), key=lambda kv: kv[1])
        items: list[_Item] = []
        for block in p.blocks:
            targets: list[tuple[tuple[str, ...], int]]
            if block.per_channel:
                targets = [((eid,), p.channel_offset(ch, block.stride)) for eid, ch in by_channel]
            elif block.emit == "device.info":
                targets = [(tuple(eid for eid, _ in by_channel), 0)]
            else:
                targets = [(("",), 0)]
            for entities, off in targets:
                fields = tuple(_Field(name, p.fn(pt), block.base + off + pt.address, pt)
                               for name, pt in block.points().items())
                items.append(_Item(block.emit, entities, fields, block.time is not None,
                                   tuple(block.constants.items())))
        # Identities last: by then the device's clock is known from its timed values.
        items.sort(key=lambda it: it.kind == "device.info")
        rings: list[_RingAt] = []
        for ring in p.rings:
            if ring.per_channel:
                for eid, ch in by_channel:
                    off = p.channel_offset(ch, ring.channel_stride)
                    counter = _Field("counter", p.fn(ring.counter), ring.counter.address + off, ring.counter)
                    rings.append(_RingAt(ring, counter, ring.base + off, eid))
            else:
                rings.append(_RingAt(ring, _Field("counter", p.fn(ring.counter), ring.counter.address,
                                                  ring.counter), ring.base, None))
        return items, rings

    def _needs(self) -> list[tuple[str, int, int]]:
        needs = [(f.fn, f.address, f.point.registers) for item in self.items for f in item.fields]
        needs += [(r.counter.fn, r.counter.address, r.counter.point.registers) for r in self.rings]
        return needs

    # ---- the Bridge protocol -----------------------------------------------------------------------

    def health(self) -> BridgeHealth:
        return self._health

    async def check(self, timeout_s: float = 5.0) -> None:
        """Connect once and read every point of the plan: ProfileMismatch if the device refuses one,
        ConnectionError if it cannot be reached."""
        try:
            await wait_for(self._connect(), timeout_s)
            await wait_for(self._verify(), timeout_s)
        finally:
            self._close()

    async def run(self) -> None:
        # Spread the polls of many devices over the interval (a stable phase per device) instead of
        # having all of them ask at the same instant.
        await asyncio.sleep(zlib.crc32(self.source.encode()) % 1000 / 1000 * self.poll_interval_s)
        await super().run()

    async def _disconnect(self) -> None:
        self._close()

    def _peer(self) -> str:
        return f"{self.host}:{self.port}"

    # ---- connection ------------------------------------------------------------------------------

    async def _connect(self) -> None:
        from pymodbus.client import AsyncModbusTcpClient

        self._close()
        client = AsyncModbusTcpClient(self.host, port=self.port, timeout=self.profile.timeout_s, retries=0,
                                      reconnect_delay=0)
        self._client = client
        ok = await wait_for(client.connect(), self.profile.timeout_s + 1.0)
        if not ok:
            raise ConnectionError(f"cannot connect to {self.host}:{self.port}")

    def _close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    async def _read(self, req: _Request) -> list[int]:
        c = self._client
        if c is None:
            raise ConnectionError("not connected")
        call = {"holding": c.read_holding_registers, "input": c.read_input_registers,
                "coil": c.read_coils, "discrete": c.read_discrete_inputs}[req.fn]
        rr = await wait_for(call(req.start, count=req.count, device_id=self.unit),
                                    self.profile.timeout_s + 0.5)
        if rr.isError():
            code = int(getattr(rr, "exception_code", 0) or 0)
            raise DeviceError(f"{req.describe()} of unit {self.unit}: exception {code} "
                              f"({EXCEPTION_NAMES.get(code, 'unknown')})", code)
        if req.fn in BIT_FUNCTIONS:
            return [1 if b else 0 for b in list(rr.bits)[: req.count]]
        regs = list(rr.registers)
        if len(regs) < req.count:
            raise DeviceError(f"{req.describe()}: {len(regs)} registers in the answer", 0)
        return regs

    async def _verify(self) -> None:
        for req in self.requests:
            try:
                await self._read(req)
            except DeviceError as exc:
                raise ProfileMismatch(
                    f"device {self.source} at {self.host}:{self.port} does not match profile "
                    f"{self.profile.model}: reading {exc}. Check the profile, the unit id "
                    f"({self.unit}) and the channels of the station configuration.") from None

    # ---- polling ---------------------------------------------------------------------------------

    async def poll_once(self) -> None:
        regs: dict[str, dict[int, int]] = {"holding": {}, "input": {}, "coil": {}, "discrete": {}}
        failed: set[tuple[str, int]] = set()
        for req in self.requests:
            try:
                values = await self._read(req)
            except DeviceError as exc:  # one refused span: count it, read the rest
                self._health.errors += 1
                self._health.last_error = str(exc)
                failed.update((req.fn, a) for a in range(req.start, req.start + req.count))
                continue
            space = regs[req.fn]
            for i, v in enumerate(values):
                space[req.start + i] = v
        out: list[Any] = []
        for item in self.items:
            if any((f.fn, f.address) in failed for f in item.fields):
                continue
            self._block(item, regs, out)
        for ring in self.rings:
            if (ring.counter.fn, ring.counter.address) in failed:
                continue
            await self._ring(ring, regs, out)
        if out:
            await self.sink(out)

    @staticmethod
    def _regs(space: dict[str, dict[int, int]], f: _Field) -> list[int]:
        s = space[f.fn]
        return [s[a] for a in range(f.address, f.address + f.point.registers)]

    def _decode_all(self, fields: tuple[_Field, ...] | list[_Field], space: dict[str, dict[int, int]]
                    ) -> tuple[dict[str, Value], list[tuple[_Field, str, list[int]]]]:
        values: dict[str, Value] = {}
        bad: list[tuple[_Field, str, list[int]]] = []
        for f in fields:
            regs = self._regs(space, f)
            try:
                values[f.name] = decode(regs, self.profile, f.point)
            except BadValue as exc:
                bad.append((f, str(exc), regs))
        return values, bad

    def _base(self, kind: str, entity: str, ts: float) -> dict[str, Any]:
        return {"kind": kind, "ts": ts, "station": self.station_id, "entity": entity, "source": self.source,
                "seq": 0, "quality": "good"}

    def _reject(self, kind: str, entity: str, ts: float, values: dict[str, Value],
                bad: list[tuple[_Field, str, list[int]]], out: list[Any]) -> None:
        raw = self._base(kind, entity, ts)
        raw.update(values)
        raw["quality"] = "bad"
        raw["seq"] = None
        raw["registers"] = {f.name: {"function": f.fn, "address": f.address, "unit": self.unit,
                                     "dtype": f.point.dtype, "registers": regs} for f, _, regs in bad}
        what = "; ".join(f"{f.name} {why} ({f.point.dtype} at {f.fn} {f.address})" for f, why, _ in bad)
        self._health.bad_values += len(bad)
        out.append(Rejection(raw, f"bad value: {what}; {kind} of {entity or self.station_id} from "
                                  f"{self.source} unit {self.unit}", self.station_id, self.source))

    def _block(self, item: _Item, space: dict[str, dict[int, int]], out: list[Any]) -> None:
        always = not item.timed and item.kind in ("tank.reading", "vapor.env", "safety.reading")
        key = (item.kind, item.entities[0] if item.entities else "")
        raw = tuple(space[f.fn].get(a) for f in item.fields
                    for a in range(f.address, f.address + f.point.registers))
        if not always and self._raw.get(key) == raw:
            return  # the same registers as last poll: nothing new to decode or say
        self._raw[key] = raw
        values, bad = self._decode_all(item.fields, space)
        device_ts = values.pop("time", None)
        if item.timed and device_ts == 0:
            return  # the device has not measured this channel yet (its clock field is still zero)
        if isinstance(device_ts, (int, float)):
            self._device_ts = float(device_ts) if self._device_ts is None else max(self._device_ts,
                                                                                   float(device_ts))
        snapshot = (device_ts, *values.values(), len(bad))
        if not always and self._last.get(key) == snapshot:
            return
        self._last[key] = snapshot
        if isinstance(device_ts, (int, float)):
            ts = float(device_ts)
        elif item.kind == "device.info" and self._device_ts is not None:
            ts = self._device_ts
        else:
            ts = self.clock()
        for entity in item.entities:
            if bad:
                self._reject(item.kind, entity, ts, values, bad, out)
                continue
            ev = self._base(item.kind, entity, ts)
            ev.update(item.constants)
            ev.update({k: v for k, v in values.items() if v is not None})
            if item.kind == "device.info":
                ev.setdefault("model", self.profile.model)
                for k in ("serial", "firmware", "mainboard_id"):
                    if k in ev:
                        ev[k] = str(ev[k])
            ev["seq"] = self.seq.take()
            out.append(ev)

    async def _ring(self, at: _RingAt, space: dict[str, dict[int, int]], out: list[Any]) -> None:
        ring = at.ring
        try:
            counter = int(decode(self._regs(space, at.counter), self.profile, ring.counter))
        except BadValue as exc:
            self._health.bad_values += 1
            self._health.last_error = f"ring counter at {at.counter.address}: {exc}"
            return
        if at.last is None:
            at.last = counter  # history before the bridge started is not replayed
            return
        modulus = ring.counter.modulus
        new = (counter - at.last) % modulus
        if new == 0:
            return
        if new > modulus // 2:  # the counter went backwards: the device reset its buffer
            self._health.errors += 1
            self._health.last_error = f"ring counter went back from {at.last} to {counter}; following it"
            at.last = counter
            return
        if new > ring.size:
            lost = new - ring.size
            self._health.errors += 1
            self._health.last_error = f"{lost} {ring.emit} records overwritten before they were read"
            raw = self._base(ring.emit, at.entity or "", self.clock())
            raw.update(quality="bad", seq=None, first_lost=(at.last + 1) % modulus, lost=lost)
            out.append(Rejection(raw, f"lost records: {self.source}: {lost} {ring.emit} records were "
                                      f"overwritten in the device's ring of {ring.size} before they were "
                                      "read",
                                 self.station_id, self.source))
            new = ring.size
        numbers = [(counter - new + k) % modulus for k in range(1, new + 1)]
        slots = [(n - 1) % ring.size for n in numbers]
        records = await self._read_slots(at, slots)
        for n, slot in zip(numbers, slots, strict=True):
            self._record(at, n, records[slot], out)
        at.last = counter

    async def _read_slots(self, at: _RingAt, slots: list[int]) -> dict[int, dict[str, dict[int, int]]]:
        """Registers of each slot, read in runs of consecutive slots that fit one request."""
        ring = at.ring
        fn = self.profile.fn(next(iter(ring.fields.values())))
        per_req = max(1, self.profile.max_read // ring.record_stride)
        out: dict[int, dict[str, dict[int, int]]] = {}
        todo = sorted(set(slots))
        i = 0
        while i < len(todo):
            j = i
            while j + 1 < len(todo) and todo[j + 1] == todo[j] + 1 and j + 1 - i < per_req:
                j += 1
            first, n = todo[i], j - i + 1
            start = at.base + first * ring.record_stride
            values = await self._read(_Request(fn, start, n * ring.record_stride))
            for k in range(n):
                base = start + k * ring.record_stride
                out[first + k] = {fn: {base + a: values[k * ring.record_stride + a]
                                       for a in range(ring.record_stride)}}
            i = j + 1
        return out

    def _record(self, at: _RingAt, number: int, space: dict[str, dict[int, int]], out: list[Any]) -> None:
        ring = at.ring
        base = space[next(iter(space))]
        start = min(base)
        fields = [_Field(name, self.profile.fn(pt), start + pt.address, pt)
                  for name, pt in ring.record_points().items()]
        full = {"holding": {}, "input": {}, "coil": {}, "discrete": {}}
        full.update(space)
        values, bad = self._decode_all(fields, full)
        entity = at.entity
        if entity is None:
            channel = values.pop("channel", None)
            entity = next((e for e, c in self.device.channels.items() if c == channel), None)
            if entity is None and not bad:
                raw = self._base(ring.emit, "", self.clock())
                raw.update(values, quality="bad", seq=None, record=number, channel=channel)
                out.append(Rejection(raw, f"unmapped channel: record {number} of {self.source} is for "
                                          f"channel {channel}, which the station configuration does not map",
                                     self.station_id,
                                     self.source))
                return
        else:
            values.pop("channel", None)
        device_ts = values.pop("time", None)
        end_key = "end_ts" if ring.emit == "nozzle.txn" else "fill_end_ts"
        ts_value = device_ts if device_ts is not None else values.get(end_key)
        ts = float(ts_value) if isinstance(ts_value, (int, float)) else self.clock()
        if bad:
            self._reject(ring.emit, entity or "", ts, values, bad, out)
            return
        ev = self._base(ring.emit, entity or "", ts)
        ev.update({k: v for k, v in values.items() if v is not None})
        if ring.emit == "nozzle.txn" and "grade" not in ev:
            ev["grade"] = self._grades.get(entity or "", "")
        ev["seq"] = self.seq.take()
        out.append(ev)
