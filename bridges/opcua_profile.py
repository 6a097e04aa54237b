"""OPC UA device profiles: which node holds which event field, of which OPC UA type, in which unit.

A profile names nodes by *template* so one file serves a device with any number of tanks or nozzles:
``{ns}`` is the namespace index (resolved at connect time from ``namespace_uri``, because servers
number their namespaces in the order they register them — OPC UA Part 3 §8.2.2 recommends clients
keep the URI, not the index), ``{ch}`` the device's channel (tank or nozzle number) and ``{slot}`` a
slot of the transaction ring buffer. Values are converted as ``event = raw * scale + offset``; integer
codes (a nozzle state, a grade) are mapped through ``codes``.

Transactions are a ring buffer with a counter, the layout forecourt controllers use: ``counter`` is the
number of records ever written, record *k* (counted from 1) lives in slot ``(k - 1) % size`` (plus
``slot_base``). A client that remembers the last count it read can read back whatever was written
while it was away, as long as the device has not overwritten it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bridges.profile_base import ProfileBase

UaType = Literal["Boolean", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64",
                 "Float", "Double", "String", "DateTime"]
INTEGER_TYPES = frozenset({"SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64"})
NUMERIC_TYPES = INTEGER_TYPES | {"Float", "Double"}
_INT_RANGE = {"SByte": (-2**7, 2**7 - 1), "Byte": (0, 2**8 - 1), "Int16": (-2**15, 2**15 - 1),
              "UInt16": (0, 2**16 - 1), "Int32": (-2**31, 2**31 - 1), "UInt32": (0, 2**32 - 1),
              "Int64": (-2**63, 2**63 - 1), "UInt64": (0, 2**64 - 1)}

#: Fields whose event value is a time (epoch seconds): a DateTime node, or a number of seconds × scale.
TIME_FIELDS = frozenset({"start_ts", "end_ts"})
#: Fields whose event value is text: a String node, or an integer code mapped through ``codes``.
TEXT_FIELDS = frozenset({"state", "grade", "model", "serial", "firmware", "mainboard_id"})


class BadValue(ValueError):
    """A node value the profile cannot turn into an event field (NaN, unknown code, wrong type)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UaPoint(_Strict):
    """One node: where it is, its OPC UA built-in type, and how its value becomes an event field."""

    node: str = Field(min_length=3, description="node id template, e.g. 'ns={ns};s=ATG.Tank{ch}.Level'")
    type: UaType
    scale: float = 1.0
    offset: float = 0.0
    codes: dict[int, str] | None = Field(default=None, description="integer code -> event text")
    min: float | None = Field(default=None, description="smallest plausible event value")
    max: float | None = Field(default=None, description="largest plausible event value")
    decimals: int | None = Field(default=None, ge=0, le=9,
                                 description="round the event value (float32 noise)")

    @model_validator(mode="after")
    def _consistent(self) -> UaPoint:
        if self.codes is not None and self.type not in INTEGER_TYPES:
            raise ValueError(f"codes need an integer type, not {self.type}")
        if self.scale == 0 or not math.isfinite(self.scale) or not math.isfinite(self.offset):
            raise ValueError("scale must be finite and non-zero, offset finite")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} > max {self.max}")
        return self

    def node_id(self, ns: int, ch: int = 0, slot: int = 0) -> str:
        return self.node.format(ns=ns, ch=ch, slot=slot)

    # ---- raw <-> event value (the bridge decodes, the simulator encodes) --------------------------

    def decode(self, field: str, raw: Any) -> Any:
        """Device value -> event value; :class:`BadValue` with the reason if it cannot be one."""
        if raw is None:
            raise BadValue("no value (null)")
        if self.codes is not None:
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise BadValue(f"expected an integer code, got {type(raw).__name__} {raw!r}")
            if raw not in self.codes:
                raise BadValue(f"code {raw} is not one of {sorted(self.codes)}")
            return self.codes[raw]
        if self.type == "DateTime":
            if not isinstance(raw, datetime):
                raise BadValue(f"expected a DateTime, got {type(raw).__name__}")
            return (raw if raw.tzinfo else raw.replace(tzinfo=UTC)).timestamp()
        if self.type == "String":
            if not isinstance(raw, str):
                raise BadValue(f"expected a String, got {type(raw).__name__}")
            return raw
        if self.type == "Boolean":
            if not isinstance(raw, bool):
                raise BadValue(f"expected a Boolean, got {type(raw).__name__}")
            return raw
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise BadValue(f"expected a number, got {type(raw).__name__} {raw!r}")
        if not math.isfinite(raw):
            raise BadValue(f"value is {raw}")
        value = float(raw) * self.scale + self.offset
        if field in ("txn_no", "nozzle"):
            return int(round(value))
        if self.decimals is not None:
            value = round(value, self.decimals)
        if self.min is not None and value < self.min:
            raise BadValue(f"{value:g} is below the plausible minimum {self.min:g}")
        if self.max is not None and value > self.max:
            raise BadValue(f"{value:g} is above the plausible maximum {self.max:g}")
        return value

    def encode(self, value: Any) -> Any:
        """Event value -> device value of this point's type (what a simulated device exposes)."""
        if self.codes is not None:
            for code, text in self.codes.items():
                if text == value:
                    return code
            raise BadValue(f"{value!r} has no code in {self.codes}")
        if self.type == "DateTime":
            return datetime.fromtimestamp(float(value), UTC)
        if self.type == "String":
            return str(value)
        if self.type == "Boolean":
            return bool(value)
        raw = (float(value) - self.offset) / self.scale
        if self.type in INTEGER_TYPES:
            lo, hi = _INT_RANGE[self.type]
            return int(min(max(round(raw), lo), hi))
        return raw


def _check_template(point: UaPoint | None, name: str, need: tuple[str, ...], forbid: tuple[str, ...]) -> None:
    if point is None:
        return
    for key in need:
        if "{" + key + "}" not in point.node:
            raise ValueError(f"{name}: node template {point.node!r} needs {{{key}}}")
    for key in forbid:
        if "{" + key + "}" in point.node:
            raise ValueError(f"{name}: node template {point.node!r} cannot use {{{key}}} here")
    try:
        point.node.format(ns=2, ch=1, slot=0)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"{name}: node template {point.node!r}: {exc}") from None


class _Group(_Strict):
    def points(self) -> dict[str, UaPoint]:
        return {k: v for k, v in ((k, getattr(self, k)) for k in type(self).model_fields) if v is not None}


class UaTankPoints(_Group):
    """Per tank channel ({ch} in every template): a ``tank.reading``."""

    level_mm: UaPoint
    water_mm: UaPoint | None = None
    temp_c: UaPoint


class UaNozzlePoints(_Group):
    """Per nozzle channel: a ``nozzle.state`` (state text via ``codes`` or a String node)."""

    state: UaPoint
    volume_l: UaPoint | None = None
    amount_cny: UaPoint | None = None


class UaDevicePoints(_Group):
    """Device identity: a ``device.info``. With {ch} in the templates, one identity per channel (a
    controller reporting each pump's own board); without, one for the device, sent for each entity."""

    model: UaPoint
    serial: UaPoint
    firmware: UaPoint | None = None
    mainboard_id: UaPoint | None = None


class UaTxnRecord(_Group):
    """One transaction record; templates use {slot} (and {ch} for a per-nozzle ring)."""

    nozzle: UaPoint | None = Field(default=None, description="channel of the nozzle, in a device-wide ring")
    txn_no: UaPoint
    grade: UaPoint | None = Field(default=None, description="absent: the station's grade of the nozzle")
    volume_l: UaPoint
    amount_cny: UaPoint
    unit_price: UaPoint
    start_ts: UaPoint
    end_ts: UaPoint
    totalizer_l: UaPoint
    totalizer_cny: UaPoint


class UaTxnRing(_Strict):
    per_channel: bool = Field(default=False, description="one ring per nozzle instead of one per device")
    counter: UaPoint = Field(description="records written so far (monotonic, wraps at the type's range)")
    size: int = Field(ge=1, le=10_000)
    slot_base: int = Field(default=0, ge=0)
    record: UaTxnRecord

    @model_validator(mode="after")
    def _layout(self) -> UaTxnRing:
        if self.counter.type not in INTEGER_TYPES:
            raise ValueError(f"counter must be an integer type, not {self.counter.type}")
        ch = ("ch",) if self.per_channel else ()
        _check_template(self.counter, "counter", ch, ("slot",))
        for name, pt in self.record.points().items():
            _check_template(pt, f"record.{name}", ch + ("slot",), ())
        if not self.per_channel and self.record.nozzle is None:
            raise ValueError("a device-wide ring needs record.nozzle (which nozzle each record is for)")
        return self

    def modulus(self) -> int:
        """The counter wraps to 0 after the largest value of its type."""
        return _INT_RANGE[self.counter.type][1] + 1

    def slot_of(self, number: int) -> int:
        """Slot index (with ``slot_base``) of record ``number`` (1-based count of records written)."""
        return (number - 1) % self.size + self.slot_base


class OpcUaProfile(ProfileBase):
    """A device model reachable over OPC UA (client/server, binary transport, IEC 62541)."""

    protocol: Literal["opcua"] = "opcua"
    namespace_uri: str = Field(min_length=1, description="namespace of the device's nodes; {ns} in templates")
    publishing_interval_ms: float = Field(default=100.0, gt=0, le=60_000)
    sampling_interval_ms: float = Field(default=0.0, ge=0, le=60_000,
                                        description="0: the server samples at the fastest rate it can")
    timeout_s: float = Field(default=4.0, gt=0, le=60)
    queue_size: int = Field(default=50, ge=1, le=10_000,
                            description="changes a monitored item keeps between publishes (the server may "
                                        "revise it): more than one measurement per interval is not lost")
    tank: UaTankPoints | None = None
    nozzle: UaNozzlePoints | None = None
    device: UaDevicePoints | None = None
    transactions: UaTxnRing | None = None

    @field_validator("namespace_uri")
    @classmethod
    def _uri(cls, v: str) -> str:
        if any(c.isspace() for c in v):
            raise ValueError("a namespace URI has no spaces")
        return v

    @model_validator(mode="after")
    def _shape(self) -> OpcUaProfile:
        if self.kind == "tank_gauge" and self.tank is None:
            raise ValueError("a tank_gauge profile needs 'tank' points")
        if self.kind == "dispenser" and self.nozzle is None and self.transactions is None:
            raise ValueError("a dispenser profile needs 'nozzle' points or 'transactions'")
        for group, name in ((self.tank, "tank"), (self.nozzle, "nozzle")):
            if group is not None:
                for field, pt in group.points().items():
                    _check_template(pt, f"{name}.{field}", ("ch",), ("slot",))
        if self.device is not None:
            need = ("ch",) if self.device_per_channel else ()
            for field, pt in self.device.points().items():
                _check_template(pt, f"device.{field}", need, ("slot",) + (() if need else ("ch",)))
        for group, name in ((self.nozzle, "nozzle"), (self.device, "device"),
                            (self.transactions.record if self.transactions else None, "record")):
            if group is None:
                continue
            for field, pt in group.points().items():
                if field in TEXT_FIELDS and pt.codes is None and pt.type != "String":
                    raise ValueError(f"{name}.{field} is text: use a String node or integer 'codes'")
                if field in TIME_FIELDS and pt.type not in NUMERIC_TYPES | {"DateTime"}:
                    raise ValueError(f"{name}.{field} is a time: use DateTime or a number of seconds")
        if self.nozzle is not None:
            states = set((self.nozzle.state.codes or {}).values())
            unknown = states - {"idle", "lifted", "fuelling", "finished"}
            if unknown:
                raise ValueError(f"nozzle.state codes map to unknown states {sorted(unknown)}")
        return self

    @property
    def device_per_channel(self) -> bool:
        return self.device is not None and "{ch}" in self.device.model.node

    def nodes_for(self, ns: int, tank_channels: list[int], nozzle_channels: list[int]) -> list[str]:
        """Every node id the device must serve for these channels (ring records included)."""
        out: list[str] = []
        for ch in tank_channels:
            out += [p.node_id(ns, ch) for p in (self.tank.points().values() if self.tank else ())]
        for ch in nozzle_channels:
            out += [p.node_id(ns, ch) for p in (self.nozzle.points().values() if self.nozzle else ())]
        if self.device is not None:
            chans = (nozzle_channels or tank_channels) if self.device_per_channel else [0]
            for ch in chans:
                out += [p.node_id(ns, ch) for p in self.device.points().values()]
        ring = self.transactions
        if ring is not None:
            chans = nozzle_channels if ring.per_channel else [0]
            for ch in chans:
                out.append(ring.counter.node_id(ns, ch))
                for slot in range(ring.slot_base, ring.slot_base + ring.size):
                    out += [p.node_id(ns, ch, slot) for p in ring.record.points().values()]
        return out
