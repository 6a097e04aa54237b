"""A Modbus device model as data: which registers hold which event field, and how to decode them.

Modbus itself only moves 16-bit registers and bits; everything else — 32-bit values split over two
registers in either word order, bytes swapped inside a register, integers scaled by 0.1 or 0.01, BCD
totalizers, transaction records kept in a ring buffer behind a counter — is each maker's own
convention. A profile states those conventions so that onboarding a model is writing YAML, not code.

Layout of a profile (see ``bridges/profiles/modbus-*.yaml`` and the README):

- defaults for every point: ``unit_id``, ``function`` (holding / input / coil / discrete),
  ``word_order`` and ``byte_order`` (big = the Modbus convention, most significant first);
- ``channels``: how the device numbers its tanks or nozzles (``first``, ``count``); the station
  configuration maps each tank or nozzle to one channel;
- ``blocks``: current values, one event kind each (``tank.reading``, ``nozzle.state``,
  ``device.info``, ``vapor.env``); a per-channel block sits at ``base + (channel - first) * stride``,
  its ``fields`` addressed relative to that; an optional ``time`` point is the device's own clock
  for the values (epoch seconds after scaling);
- ``rings``: records the device keeps (``nozzle.txn``, ``vapor.fill``): a ``counter`` of records ever
  written and ``size`` slots of ``record_stride`` registers from ``base``; record *n* (1-based) is in
  slot ``(n - 1) % size``. A bridge that remembers the last *n* it read can read back what it missed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bridges.profile_base import ProfileBase
from twin.events import EVENT_BY_KIND

Function = Literal["holding", "input", "coil", "discrete"]
Order = Literal["big", "little"]
DType = Literal["uint16", "int16", "uint32", "int32", "float32", "bcd16", "bcd32", "bcd48", "string",
                "bool"]

#: Registers per value of each type (strings: their declared ``length``).
REGISTERS: dict[str, int] = {"uint16": 1, "int16": 1, "uint32": 2, "int32": 2, "float32": 2,
                             "bcd16": 1, "bcd32": 2, "bcd48": 3, "bool": 1}
INTEGER_DTYPES = frozenset({"uint16", "int16", "uint32", "int32", "bcd16", "bcd32", "bcd48"})
BIT_FUNCTIONS = frozenset({"coil", "discrete"})

#: Event fields a bridge fills itself rather than from a register.
_ENVELOPE = frozenset({"ts", "station", "entity", "source", "seq", "quality", "kind"})
#: Fields a profile may leave out even though the event requires them, and where they come from.
_SUPPLIED = {"device.info": {"model"},  # the profile's own model name
             "nozzle.txn": {"grade"}}   # the nozzle's grade in the station configuration

BlockKind = Literal["tank.reading", "nozzle.state", "device.info", "vapor.env", "safety.reading"]
RingKind = Literal["nozzle.txn", "vapor.fill"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModbusPoint(_Model):
    """One value on the device. Unset function and orders inherit the profile's defaults."""

    address: int = Field(ge=0, le=65535, description="register or bit address, 0-based as on the wire")
    dtype: DType = "uint16"
    function: Function | None = None
    word_order: Order | None = None
    byte_order: Order | None = None
    #: value = raw * scale + offset
    scale: float = 1.0
    offset: float = 0.0
    #: Round the scaled value to this many decimals (a float32 of 12.34 reads 12.3400001…).
    decimals: int | None = Field(default=None, ge=0, le=9)
    #: Registers of a string (2 ASCII characters each).
    length: int | None = Field(default=None, ge=1, le=64)
    #: Range of the decoded value outside which the device is talking garbage (quality bad).
    min: float | None = None
    max: float | None = None
    #: Integer codes → words (a dispenser's state register, a processor's run state).
    enum: dict[int, str] | None = None
    #: The raw integer a device writes when it has no value (e.g. 65535 while a sensor warms up): the
    #: field is then left out of the event (only for fields the event may omit).
    missing: int | None = None

    @field_validator("scale")
    @classmethod
    def _nonzero(cls, v: float) -> float:
        if v == 0:
            raise ValueError("scale must not be 0")
        return v

    @model_validator(mode="after")
    def _coherent(self) -> ModbusPoint:
        if self.dtype == "string" and self.length is None:
            raise ValueError("a string point needs its length in registers")
        if self.dtype != "string" and self.length is not None:
            raise ValueError("length is only for strings")
        if self.function in BIT_FUNCTIONS and self.dtype != "bool":
            raise ValueError(f"{self.function} points are single bits: dtype must be bool")
        if self.enum is not None and self.dtype not in INTEGER_DTYPES:
            raise ValueError("enum needs an integer dtype")
        if self.missing is not None and self.dtype not in INTEGER_DTYPES:
            raise ValueError("missing needs an integer dtype")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is above max")
        return self

    @property
    def registers(self) -> int:
        return self.length if self.dtype == "string" else REGISTERS[self.dtype]

    @property
    def modulus(self) -> int:
        """Where an unsigned counter wraps to 0."""
        if self.dtype.startswith("bcd"):
            return 10 ** (4 * REGISTERS[self.dtype])
        return 1 << (16 * REGISTERS[self.dtype])


class Channels(_Model):
    first: int = Field(default=1, ge=0, le=255)
    count: int = Field(default=1, ge=1, le=255)

    @property
    def numbers(self) -> range:
        return range(self.first, self.first + self.count)


def _check_fields(kind: str, fields: dict[str, ModbusPoint], constants: Iterable[str] = ()) -> None:
    event = EVENT_BY_KIND[kind]
    known = set(event.payload_fields())
    unknown = sorted((set(fields) | set(constants)) - known)
    if unknown:
        raise ValueError(f"{kind} has no field {', '.join(unknown)}; "
                         f"its fields are {', '.join(sorted(known))}")
    required = {name for name, f in event.model_fields.items()
                if f.is_required() and name not in _ENVELOPE} - _SUPPLIED.get(kind, set())
    missing = sorted(required - set(fields) - set(constants))
    if missing:
        raise ValueError(f"{kind} needs {', '.join(missing)}")


def _span(points: list[ModbusPoint]) -> int:
    """Registers from the lowest to one past the highest register any of ``points`` uses."""
    lo = min(p.address for p in points)
    return max(p.address + p.registers for p in points) - lo


class ModbusBlock(_Model):
    """Current values of one event kind, per channel or for the whole device."""

    emit: BlockKind
    per_channel: bool = True
    base: int = Field(default=0, ge=0, le=65535)
    stride: int = Field(default=0, ge=0, le=65535)
    time: ModbusPoint | None = None
    fields: dict[str, ModbusPoint]
    #: Event fields that are the same in every reading of this block, not in any register: which kind of
    #: sensor a safety device's channel is, its name (``{sensor: gas_lel, device: GD-1}``).
    constants: dict[str, str | float | bool] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _valid(self) -> ModbusBlock:
        overlap = sorted(set(self.fields) & set(self.constants))
        if overlap:
            raise ValueError(f"{', '.join(overlap)} cannot be both a register and a constant")
        _check_fields(self.emit, self.fields, self.constants)
        if self.per_channel and self.stride == 0 and self.emit != "device.info":
            raise ValueError("a per-channel block needs a stride (registers between channels)")
        if self.emit in ("tank.reading", "nozzle.state", "vapor.fill") and not self.per_channel:
            raise ValueError(f"{self.emit} belongs to one tank or nozzle: the block must be per_channel")
        return self

    def points(self) -> dict[str, ModbusPoint]:
        pts = dict(self.fields)
        if self.time is not None:
            pts["time"] = self.time
        return pts


class ModbusRing(_Model):
    """Records in a ring buffer behind a counter of records ever written."""

    emit: RingKind
    per_channel: bool = False
    counter: ModbusPoint
    base: int = Field(ge=0, le=65535)
    channel_stride: int = Field(default=0, ge=0, le=65535)
    record_stride: int = Field(ge=1, le=125)
    size: int = Field(ge=1, le=10_000)
    #: In a device-wide ring, the record's field that names its channel.
    channel: ModbusPoint | None = None
    time: ModbusPoint | None = None
    fields: dict[str, ModbusPoint]

    @model_validator(mode="after")
    def _valid(self) -> ModbusRing:
        _check_fields(self.emit, self.fields)
        if self.counter.dtype not in ("uint16", "uint32", "bcd16", "bcd32", "bcd48"):
            raise ValueError("the counter must be an unsigned integer")
        if not self.per_channel and self.channel is None:
            raise ValueError("a device-wide ring needs a 'channel' field naming each record's channel")
        if self.per_channel and self.channel_stride == 0:
            raise ValueError("a per-channel ring needs a channel_stride")
        pts = list(self.record_points().values())
        if max(p.address + p.registers for p in pts) > self.record_stride:
            raise ValueError(f"record fields reach past record_stride ({self.record_stride} registers)")
        return self

    def record_points(self) -> dict[str, ModbusPoint]:
        pts = dict(self.fields)
        if self.channel is not None:
            pts["channel"] = self.channel
        if self.time is not None:
            pts["time"] = self.time
        return pts


class ModbusProfile(ProfileBase):
    """A Modbus device model (``protocol: modbus``)."""

    protocol: Literal["modbus"]
    unit_id: int = Field(default=1, ge=0, le=255)
    function: Function = "holding"
    word_order: Order = "big"
    byte_order: Order = "big"
    channels: Channels = Channels()
    blocks: list[ModbusBlock] = Field(default_factory=list)
    rings: list[ModbusRing] = Field(default_factory=list)
    #: Largest read in one request (registers); the protocol allows 125.
    max_read: int = Field(default=120, ge=1, le=125)
    #: Unused registers a read may span to join two requests into one. Many devices keep their values
    #: in a contiguous table and answer any address inside it; others refuse unused ones: then 0.
    read_gap: int = Field(default=0, ge=0, le=125)
    #: Seconds to wait for an answer.
    timeout_s: float = Field(default=1.0, gt=0, le=30)

    @model_validator(mode="after")
    def _valid(self) -> ModbusProfile:
        if not self.blocks and not self.rings:
            raise ValueError("a profile needs at least one block or ring")
        kinds = {b.emit for b in self.blocks} | {r.emit for r in self.rings}
        wanted = {"tank_gauge": "tank.reading", "dispenser": "nozzle.txn", "vapor_monitor": "vapor.env"}
        need = wanted.get(self.kind)
        if need is not None and need not in kinds:
            raise ValueError(f"a {self.kind} profile must provide {need}")
        for i, block in enumerate(self.blocks):
            if block.per_channel and self.channels.count > 1 and block.stride:
                used = _span_regs(self, list(block.points().values()))
                if used > block.stride:
                    raise ValueError(f"blocks[{i}]: its fields span {used} registers, more than its stride "
                                     f"{block.stride}: channels would overlap")
        for i, ring in enumerate(self.rings):
            if ring.per_channel and self.channels.count > 1:
                end = ring.base + ring.size * ring.record_stride
                if end - ring.base > ring.channel_stride:
                    raise ValueError(f"rings[{i}]: {ring.size} records of {ring.record_stride} registers do "
                                     f"not fit in channel_stride {ring.channel_stride}")
        return self

    # ---- effective settings of a point -----------------------------------------------------------

    def fn(self, p: ModbusPoint) -> Function:
        return p.function or self.function

    def word(self, p: ModbusPoint) -> Order:
        return p.word_order or self.word_order

    def byte(self, p: ModbusPoint) -> Order:
        return p.byte_order or self.byte_order

    def channel_offset(self, channel: int, stride: int) -> int:
        if channel not in self.channels.numbers:
            raise ValueError(f"channel {channel} is outside the device's channels "
                             f"{self.channels.first}..{self.channels.first + self.channels.count - 1}")
        return (channel - self.channels.first) * stride

    def kinds(self) -> set[str]:
        return {b.emit for b in self.blocks} | {r.emit for r in self.rings}


def _span_regs(profile: ModbusProfile, points: list[ModbusPoint]) -> int:
    """Span of the register points (bits excluded: they live in another address space)."""
    regs = [p for p in points if profile.fn(p) not in BIT_FUNCTIONS]
    return _span(regs) if regs else 0
