"""A simulated Modbus TCP device: pymodbus's server, its registers laid out by a profile.

The device defines exactly the addresses its profile uses (for the channels it has), so a client that
reads anything else gets ILLEGAL DATA ADDRESS, as from a real device. Values live in a register image
that :meth:`ModbusDeviceServer.apply` updates from the simulator's events; pymodbus calls our action on
every request and the action copies the image into the registers it is about to answer with.

Tests and fault scenarios may also :meth:`poke` raw registers (garbage), :meth:`stall` the device (it
accepts connections and requests but answers late or never), and stop / start it (a restart keeps its
registers and rings, as a device keeps them in non-volatile memory).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from bridges.modbus_codec import encode
from bridges.modbus_profile import BIT_FUNCTIONS, ModbusPoint, ModbusProfile, ModbusRing

log = logging.getLogger(__name__)

_FC = {1: "coil", 2: "discrete", 3: "holding", 4: "input", 5: "coil", 6: "holding", 15: "coil",
       16: "holding", 22: "holding", 23: "holding"}
_ORDER = ("coil", "discrete", "holding", "input")


class ModbusDeviceServer:
    """One simulated device on its own TCP port."""

    def __init__(self, profile: ModbusProfile, channels: Mapping[str, int], *, host: str = "127.0.0.1",
                 port: int = 0, unit_id: int | None = None):
        self.profile = profile
        self.channels = dict(channels)
        self.host = host
        self.port = port
        self.unit_id = profile.unit_id if unit_id is None else unit_id
        self.image: dict[str, dict[int, int]] = {fn: {} for fn in _ORDER}
        self.counters: dict[tuple[int, str | None], int] = {}
        self.delay_s = 0.0
        self._stalled: asyncio.Event | None = None
        self._server: Any = None
        self.requests = 0
        self._used = self._addresses()

    # ---- address map -------------------------------------------------------------------------------

    def _addresses(self) -> dict[str, set[int]]:
        p = self.profile
        used: dict[str, set[int]] = {fn: set() for fn in _ORDER}

        def mark(fn: str, start: int, n: int) -> None:
            used[fn].update(range(start, start + n))

        chans = sorted(self.channels.values())
        for block in p.blocks:
            offsets = [p.channel_offset(c, block.stride) for c in chans] if block.per_channel else [0]
            for off in offsets:
                pts = list(block.points().values())
                for pt in pts:
                    mark(p.fn(pt), block.base + off + pt.address, pt.registers)
                regs = [pt for pt in pts if p.fn(pt) not in BIT_FUNCTIONS]
                if p.read_gap and block.per_channel and regs:  # a table: the whole row answers
                    mark(p.fn(regs[0]), block.base + off, block.stride)
        for ring in p.rings:
            offsets = [p.channel_offset(c, ring.channel_stride) for c in chans] if ring.per_channel else [0]
            fn = p.fn(next(iter(ring.fields.values())))
            for off in offsets:
                mark(p.fn(ring.counter), ring.counter.address + off, ring.counter.registers)
                mark(fn, ring.base + off, ring.size * ring.record_stride)
        return used

    def _device(self) -> Any:
        from pymodbus.simulator import DataType, SimData, SimDevice

        blocks: list[list[Any]] = []
        for fn in _ORDER:
            addrs = sorted(self._used[fn])
            spans: list[list[int]] = []
            for a in addrs:
                if spans and a == spans[-1][1]:
                    spans[-1][1] = a + 1
                else:
                    spans.append([a, a + 1])
            bits = fn in BIT_FUNCTIONS
            if not spans:  # pymodbus wants every space defined: one cell far from any profile's map
                spans = [[65520, 65536]] if bits else [[65534, 65535]]
            if bits:
                blocks.append([SimData(address=s, values=[False] * (e - s), datatype=DataType.BITS)
                               for s, e in spans])
            else:
                blocks.append([SimData(address=s, count=e - s, values=0, datatype=DataType.REGISTERS)
                               for s, e in spans])
        return SimDevice(id=self.unit_id, simdata=tuple(blocks), action=self._action)  # type: ignore[arg-type]

    async def _action(self, function_code: int, start_address: int, address: int, count: int,
                      registers: list[int], set_values: Any) -> None:
        self.requests += 1
        if self._stalled is not None:
            await self._stalled.wait()
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)
        fn = _FC.get(function_code)
        if fn is None or set_values is not None:
            return None
        image = self.image[fn]
        if fn in BIT_FUNCTIONS:
            for a in range(address, address + count):
                word, bit = a // 16 - start_address, a % 16
                if image.get(a, 0):
                    registers[word] |= 1 << bit
                else:
                    registers[word] &= ~(1 << bit)
        else:
            for i in range(count):
                registers[address - start_address + i] = image.get(address + i, 0)
        return None

    # ---- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> str:
        from pymodbus.server import ModbusTcpServer

        server = ModbusTcpServer(self._device(), address=(self.host, self.port))
        await server.serve_forever(background=True)
        self._server = server
        self.port = server.transport.sockets[0].getsockname()[1]
        return self.endpoint

    @property
    def endpoint(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    async def stop(self) -> None:
        if self._stalled is not None:
            self._stalled.set()
            self._stalled = None
        if self._server is not None:
            server, self._server = self._server, None
            await server.shutdown()

    def stall(self, on: bool = True) -> None:
        """Stop answering (requests wait until released) or answer again."""
        if on and self._stalled is None:
            self._stalled = asyncio.Event()
        elif not on and self._stalled is not None:
            self._stalled.set()
            self._stalled = None

    def poke(self, fn: str, address: int, registers: list[int]) -> None:
        """Write raw registers (or bits) into the image: a test's or a fault's garbage."""
        for i, v in enumerate(registers):
            self.image[fn][address + i] = int(v) & 0xFFFF

    # ---- values ----------------------------------------------------------------------------------

    def _put(self, address: int, point: ModbusPoint, value: Any) -> None:
        if value is None:
            return
        try:
            regs = encode(value, self.profile, point)
        except (ValueError, OverflowError) as exc:
            log.debug("%s: cannot encode %r at %s: %s", self.profile.model, value, address, exc)
            return
        self.poke(self.profile.fn(point), address, regs)

    def set_block(self, kind: str, channel: int | None, values: Mapping[str, Any],
                  constants: Mapping[str, Any] | None = None) -> None:
        """Write the fields (and 'time') of a block at a channel (None: device-wide block); with
        ``constants``, only the blocks whose constants include them (one sensor of a safety panel)."""
        p = self.profile
        for block in p.blocks:
            if block.emit != kind or (channel is None) == block.per_channel:
                continue
            if constants and any(block.constants.get(k) != v for k, v in constants.items()):
                continue
            off = p.channel_offset(channel, block.stride) if block.per_channel and channel is not None else 0
            for name, pt in block.points().items():
                if name in values:
                    self._put(block.base + off + pt.address, pt, values[name])

    def push_record(self, kind: str, channel: int, values: Mapping[str, Any]) -> None:
        """Append a record to the ring of ``kind`` (its channel's, or the device-wide one)."""
        p = self.profile
        for ring in p.rings:
            if ring.emit != kind:
                continue
            off = p.channel_offset(channel, ring.channel_stride) if ring.per_channel else 0
            key = (off, kind)
            n = (self.counters.get(key, 0) + 1) % ring.counter.modulus
            self.counters[key] = n
            start = ring.base + off + ((n - 1) % ring.size) * ring.record_stride
            record = dict(values)
            record["channel"] = channel
            for name, pt in ring.record_points().items():
                self._put(start + pt.address, pt, record.get(name, 0))
            self._put(ring.counter.address + off, ring.counter, n)

    def rings(self) -> list[ModbusRing]:
        return list(self.profile.rings)

    def apply(self, events: list[dict[str, Any]]) -> None:
        kinds = self.profile.kinds()
        for ev in events:
            kind = ev.get("kind")
            if kind not in kinds:
                continue
            channel = self.channels.get(ev.get("entity", ""))
            if kind == "vapor.env":  # the station's vapor-recovery system, not one channel's
                self.set_block(kind, None, {"time": ev["ts"], "pressure_pa": ev["pressure_pa"],
                                            "processor_state": ev.get("processor_state", "absent"),
                                            "outlet_g_m3": ev.get("outlet_g_m3"),
                                            "voc_umol_mol": ev.get("voc_umol_mol")})
            elif kind == "safety.reading":  # one sensor of the panel, found by its name
                self.set_block(kind, None, {k: ev[k] for k in ("value", "state", "unloading") if k in ev},
                               {"device": ev.get("device")})
            elif channel is None:
                continue
            elif kind == "tank.reading":
                self.set_block(kind, channel, {"time": ev["ts"], "level_mm": ev["level_mm"],
                                               "water_mm": ev.get("water_mm", 0.0), "temp_c": ev["temp_c"]})
            elif kind == "nozzle.state":
                self.set_block(kind, channel, {"time": ev["ts"], "state": ev["state"],
                                               "volume_l": ev.get("volume_l", 0.0),
                                               "amount_cny": ev.get("amount_cny", 0.0)})
            elif kind in ("nozzle.txn", "vapor.fill"):
                self.push_record(kind, channel, {**ev, "time": ev["ts"]})
            elif kind == "device.info":
                info = {k: ev.get(k, "") for k in ("serial", "firmware", "mainboard_id", "model")}
                self.set_block(kind, channel, info)
                self.set_block(kind, None, info)
