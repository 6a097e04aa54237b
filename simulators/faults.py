"""The faults a scenario injects into simulated stations, each acting only through the station's hooks.

A scenario lists faults as plain mappings (``{type: leak, station: BH-0002, tank: T2, at: 2d,
rate_lph: 0.76}``); :func:`build_fault` turns one into a :class:`~simulators.hooks.StationFault` and
:func:`check_fault` checks its tank or nozzle against the district before a long run starts, so a typo
fails in a second rather than after a simulated month.

Every fault keeps a :class:`~simulators.truth.FaultRecord` of what it really did and puts it in the
station's ground truth the first time the station calls it: the runner scores detections against those
records, and counts deadlines from ``first_active_ts`` (the first moment the fault had an effect, which
for a cheat switched on by schedule may be long after ``at``).

Rules every fault keeps, so that a scenario differs from the healthy run by the fault and nothing else:

- it draws random numbers only from its own generator (seeded from the scenario's seed and the fault's
  identity), never the station's;
- until it becomes active it changes nothing: a run with a fault whose time never comes equals the run
  without it, event for event;
- it acts from the first physics block the station generates after it is attached, never on events
  already released.

Semantics of each type, and the choices made where the issue left one open, are in each class's
docstring. Hooks run in the order the faults are listed, so a ``comm_loss`` listed after a
``mainboard_swap`` also drops the board's announcement, and one listed before a ``totalizer_jump``
makes the jump show on the first transaction that gets through.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np

from simulators.hooks import OTHER, FillPlan, Flow, GaugeFrame, StationFault
from simulators.truth import FaultRecord
from twin.timeutil import local_hour

if TYPE_CHECKING:
    from simulators.station import StationSim

__all__ = [
    "FAULT_TYPES", "CommLoss", "HiddenSales", "Leak", "MainboardSwap", "MeterBias", "Schedule",
    "ScenarioFault", "SensorDrift", "SensorStuck", "Theft", "TotalizerJump", "TxnGap", "WaterIngress",
    "build_fault", "check_fault", "parse_duration",
]

_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}
_NUM = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PART = re.compile(rf"\s*({_NUM})\s*([smhd])\s*")
_BARE = re.compile(rf"\s*({_NUM})\s*")
_DURATION_HELP = "a number of seconds, or a number with unit s, m, h or d (e.g. 90s, 10m, 1.5h, 2d, 1d12h)"


def parse_duration(text: str | float | int) -> float:
    """Seconds in a scenario duration: ``"36h"``, ``"2d"``, ``"10m"``, ``"90s"``, ``"1.5h"``, ``"1d12h"``,
    or a plain number of seconds.

    Testers write these by hand, so anything else (a negative, a unit we do not know, a stray word) is a
    ValueError that quotes the text and says what is accepted, rather than a silent zero.
    """
    if isinstance(text, bool):
        raise ValueError(f"invalid duration {text!r}: expected {_DURATION_HELP}")
    if isinstance(text, (int, float)):
        value = float(text)
    elif isinstance(text, str):
        bare = _BARE.fullmatch(text)
        if bare:
            value = float(bare.group(1))
        else:
            pos, value, ok = 0, 0.0, bool(text.strip())
            while ok and pos < len(text):
                m = _PART.match(text, pos)
                if m is None:
                    ok = False
                    break
                value += float(m.group(1)) * _UNIT_S[m.group(2)]
                pos = m.end()
            if not ok:
                raise ValueError(f"invalid duration {text!r}: expected {_DURATION_HELP}")
    else:
        raise ValueError(f"invalid duration {text!r} ({type(text).__name__}): expected {_DURATION_HELP}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"invalid duration {text!r}: must be a finite number of seconds >= 0")
    return value


# --------------------------------------------------------------------------------------------------
# Schedules


_HOUR = r"(\d{1,2})(?::(\d{2}))?"
_YAML_BOOL_KEYS = {True: "on", False: "off"}
_RANGE = re.compile(rf"\s*{_HOUR}\s*-\s*{_HOUR}\s*")


def _hour_of(h: str, m: str | None, text: str) -> float:
    hours, minutes = int(h), int(m or 0)
    if hours > 24 or minutes > 59 or (hours == 24 and minutes):
        raise ValueError(f"schedule hours {text!r}: {h}:{m or '00'} is not a time of day")
    return hours + minutes / 60.0


class Schedule:
    """When a switchable cheat is on: ``None`` always; ``{"hours": "18-22"}`` in those local hours
    (Asia/Shanghai) every day, ``"22-2"`` wrapping midnight, ``"18:30-22"`` and ``"7-9,17-19"`` allowed;
    ``{"on": "2h", "off": "6h"}`` on for 2 h, off for 6 h, cycling from ``origin_ts`` (the fault's ``at``).

    Cheats in the field are switched by remote control or a key combination (issue 3), so the detectors
    must be scored on faults that come and go. YAML 1.1 (PyYAML) reads the bare keys ``on:`` and ``off:``
    as the booleans True and False; those are accepted as the same keys.
    """

    def __init__(self, spec: Mapping[Any, Any] | None = None, origin_ts: float = 0.0):
        self.origin_ts = float(origin_ts)
        self.ranges: list[tuple[float, float]] = []
        self.on_s = self.off_s = 0.0
        self.kind = "always"
        if spec is None:
            return
        if not isinstance(spec, Mapping):
            raise ValueError(f"schedule must be a mapping like {{hours: '18-22'}} or {{on: 2h, off: 6h}}, "
                             f"got {spec!r}")
        keys = {_YAML_BOOL_KEYS.get(k, k) if isinstance(k, bool) else k: v for k, v in spec.items()}
        unknown = set(keys) - {"hours", "on", "off"}
        if unknown:
            raise ValueError(f"schedule: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                             "use hours: 'H-H' or on: and off: durations")
        if "hours" in keys:
            if "on" in keys or "off" in keys:
                raise ValueError("schedule: give either hours: or on:/off:, not both")
            self.kind = "hours"
            self.ranges = self._parse_hours(keys["hours"])
        elif "on" in keys and "off" in keys:
            self.kind = "cycle"
            try:
                self.on_s, self.off_s = parse_duration(keys["on"]), parse_duration(keys["off"])
            except ValueError as exc:
                raise ValueError(f"schedule: {exc}") from None
            if self.on_s <= 0 or self.off_s <= 0:
                raise ValueError("schedule: on and off must both be > 0 "
                                 "(leave the schedule out for always on)")
        else:
            raise ValueError("schedule: needs hours: 'H-H', or both on: and off:")

    @staticmethod
    def _parse_hours(value: Any) -> list[tuple[float, float]]:
        if isinstance(value, (list, tuple)) and len(value) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            text = f"{value[0]}-{value[1]}"
            pairs = [(float(value[0]), float(value[1]))]
        elif isinstance(value, str) and value.strip():
            text = value
            pairs = []
            for part in value.split(","):
                m = _RANGE.fullmatch(part)
                if m is None:
                    raise ValueError(f"schedule hours {value!r}: expected 'H-H' local hours such as '18-22' "
                                     "or '22-2' (wraps midnight), several separated by commas")
                pairs.append((_hour_of(m.group(1), m.group(2), value),
                              _hour_of(m.group(3), m.group(4), value)))
        else:
            raise ValueError(f"schedule hours {value!r}: expected a string such as '18-22'")
        for a, b in pairs:
            if not (0 <= a <= 24 and 0 <= b <= 24):
                raise ValueError(f"schedule hours {text!r}: hours must lie in 0-24")
            if a % 24 == b % 24:
                raise ValueError(f"schedule hours {text!r}: a range from {a:g} to {b:g} is empty or the "
                                 "whole day; leave the schedule out for always on")
        return [(a % 24, b % 24) for a, b in pairs]

    def active(self, ts: float) -> bool:
        """Whether the schedule is on at event time ``ts``."""
        if self.kind == "always":
            return True
        if self.kind == "hours":
            h = local_hour(ts)
            return any((a <= h < b) if a < b else (h >= a or h < b) for a, b in self.ranges)
        if ts < self.origin_ts:
            return False
        return (ts - self.origin_ts) % (self.on_s + self.off_s) < self.on_s

    def to_params(self) -> dict[str, Any] | None:
        """The schedule as plain data for the ground truth (durations in seconds)."""
        if self.kind == "hours":
            return {"hours": ",".join(f"{_fmt_hour(a)}-{_fmt_hour(b)}" for a, b in self.ranges)}
        if self.kind == "cycle":
            return {"on": self.on_s, "off": self.off_s}
        return None

    def __repr__(self) -> str:
        return f"Schedule({self.to_params()!r})"


def _fmt_hour(h: float) -> str:
    whole = int(h)
    minutes = round((h - whole) * 60)
    return f"{whole}" if not minutes else f"{whole}:{minutes:02d}"


# --------------------------------------------------------------------------------------------------
# Parameter parsing


class _Param(NamedTuple):
    parse: Callable[[Any], Any]
    default: Any
    help: str


_REQUIRED = object()


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"expected a number, got {value!r}")
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"expected a finite number, got {value!r}")
    return x


def _positive(value: Any) -> float:
    x = _number(value)
    if x <= 0:
        raise ValueError(f"must be > 0, got {value!r}")
    return x


def _nonzero(value: Any) -> float:
    x = _number(value)
    if x == 0:
        raise ValueError("must not be 0 (a fault that does nothing)")
    return x


def _fraction(value: Any) -> float:
    x = _number(value)
    if not 0 < x <= 1:
        raise ValueError(f"must be a fraction in (0, 1] (0.03 = 3 %), got {value!r}")
    return x


def _factor(value: Any) -> float:
    x = _number(value)
    if not 0.5 < x < 1.5:
        raise ValueError(f"must be a ratio near 1 (0.99 = customers get 1 % less), got {value!r}")
    return x


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"must be a whole number >= 1, got {value!r}")
    return int(value)


def _span(value: Any) -> float:
    x = parse_duration(value)
    if x <= 0:
        raise ValueError(f"must be a duration > 0, got {value!r}")
    return x


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value.strip()


def _scope(value: Any) -> str:
    if value not in ("board", "nozzle"):
        raise ValueError(f"must be 'board' (every nozzle the board drives) or 'nozzle', got {value!r}")
    return str(value)


def _schedule(value: Any) -> Mapping[Any, Any] | None:
    Schedule(value)  # validated here; built against the fault's start in the constructor
    return value


def _fmt_list(items: Iterable[str]) -> str:
    items = list(items)
    return ", ".join(items) if items else "none"


# --------------------------------------------------------------------------------------------------
# The base class


class ScenarioFault(StationFault):
    """A fault of a scenario: parameters checked at construction, entity resolved at the first hook call.

    ``station`` and ``entity`` (a tank or nozzle id, "" for the station) name what it acts on; ``at_ts`` is
    absolute event time; ``params`` holds the type's parameters as a scenario writes them (durations as
    text or seconds). ``seed`` feeds the fault's own generator, mixed with its identity so that faults
    built with one scenario seed still draw independent streams.
    """

    TYPE: ClassVar[str] = ""
    #: What the fault acts on: "tank", "nozzle", or "station" (with an optional tank or nozzle).
    ENTITY: ClassVar[str] = "tank"
    PARAMS: ClassVar[dict[str, _Param]] = {}

    def __init__(self, station: str, entity: str, at_ts: float, params: Mapping[str, Any] | None = None,
                 seed: int = 0, *, entity_kind: str | None = None):
        self.station_id = station
        self.entity = entity
        self.entity_kind = entity_kind if entity_kind is not None else (
            self.ENTITY if self.ENTITY != "station" else "")
        self.at = float(at_ts)
        self.label = f"{self.TYPE} fault ({station}{' ' + entity if entity else ''})"
        raw = dict(params or {})
        unknown = sorted(set(raw) - set(self.PARAMS))
        if unknown:
            raise ValueError(f"{self.label}: unexpected parameter(s) {_fmt_list(unknown)}; "
                             f"{self.TYPE} takes {_fmt_list(self.PARAMS) if self.PARAMS else 'no others'}")
        self.params: dict[str, Any] = {}
        for name, spec in self.PARAMS.items():
            if name not in raw or raw[name] is None:
                if spec.default is _REQUIRED:
                    raise ValueError(f"{self.label}: missing parameter {name!r} ({spec.help})")
                self.params[name] = spec.default
                continue
            try:
                self.params[name] = spec.parse(raw[name])
            except ValueError as exc:
                raise ValueError(f"{self.label}: {name}: {exc}") from None
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"{self.label}: seed must be a whole number >= 0, got {seed!r}")
        tag = zlib.crc32(f"{self.TYPE}|{station}|{entity}|{self.at!r}".encode())
        self.rng = np.random.default_rng(np.random.SeedSequence([int(seed), tag]))
        span = self.params.get("for")
        self.until = self.at + span if span is not None else math.inf
        sched = self.params.get("schedule")
        self.schedule = Schedule(sched, self.at) if "schedule" in self.PARAMS else Schedule(None)
        shown = {k: (self.schedule.to_params() if k == "schedule" else v) for k, v in self.params.items()}
        self.record = FaultRecord(self.TYPE, station, entity, shown, self.at,
                                  entities=[entity] if entity else [])
        self.index = -1
        self._station: StationSim | None = None
        self._b0 = self._b1 = self.at

    # -- identity -----------------------------------------------------------------------------------

    def check_entities(self, tanks: Iterable[str], nozzles: Iterable[str]) -> int:
        """Index of the fault's tank or nozzle among the station's (-1 for the station itself).

        Raises ValueError naming what the station does have, so a wrong id in a scenario reads as such.
        """
        tanks, nozzles = list(tanks), list(nozzles)
        if self.entity_kind == "tank":
            if self.entity not in tanks:
                raise ValueError(f"{self.label}: station {self.station_id} has no tank {self.entity!r} "
                                 f"(its tanks: {_fmt_list(tanks)})")
            return tanks.index(self.entity)
        if self.entity_kind == "nozzle":
            if self.entity not in nozzles:
                raise ValueError(f"{self.label}: station {self.station_id} has no nozzle {self.entity!r} "
                                 f"(its nozzles: {_fmt_list(nozzles)})")
            return nozzles.index(self.entity)
        if self.entity:
            if self.entity in tanks:
                self.entity_kind = "tank"
                return tanks.index(self.entity)
            if self.entity in nozzles:
                self.entity_kind = "nozzle"
                return nozzles.index(self.entity)
            raise ValueError(f"{self.label}: station {self.station_id} has no tank or nozzle {self.entity!r}")
        return -1

    def bind(self, station: StationSim) -> None:
        """Check the fault against its station now (entity, per-type checks) rather than at the first
        hook call, where a ValueError would stop the simulation: for faults added to a running one."""
        self._bind(station)

    def _bind(self, station: StationSim) -> None:
        """First call from a station: check that it is ours, resolve the entity, enter the truth."""
        if self._station is station:
            return
        if self._station is not None:
            raise ValueError(f"{self.label}: already attached to another station simulation; build one fault "
                             "object per run")
        if station.id != self.station_id:
            raise ValueError(f"{self.label}: attached to station {station.id}, but the fault names "
                             f"{self.station_id}")
        self.index = self.check_entities(station.tank_ids, station.nz_ids)
        self._station = station
        self._setup(station)
        station.truth.faults.append(self.record)

    def _setup(self, station: StationSim) -> None:
        """Per-type preparation once the station is known (nothing by default)."""

    def active(self, ts: float) -> bool:
        """Inside [at, at + for) and the schedule is on."""
        return self.at <= ts < self.until and self.schedule.active(ts)

    # -- hooks: bind, then the type's own behaviour ---------------------------------------------------

    def on_block(self, station: StationSim, b0: float, b1: float) -> list[Flow]:
        self._bind(station)
        self._b0, self._b1 = b0, b1
        return self._block(station, b0, b1)

    def on_fill(self, station: StationSim, fill: FillPlan) -> None:
        self._bind(station)
        self._fill(station, fill)

    def on_gauge(self, station: StationSim, frame: GaugeFrame) -> None:
        self._bind(station)
        self._gauge(station, frame)

    def on_events(self, station: StationSim, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self._bind(station)
        return self._events(station, events)

    def _block(self, station: StationSim, b0: float, b1: float) -> list[Flow]:
        return []

    def _fill(self, station: StationSim, fill: FillPlan) -> None:
        return None

    def _gauge(self, station: StationSim, frame: GaugeFrame) -> None:
        return None

    def _events(self, station: StationSim, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return events

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.station_id!r}, {self.entity!r}, at={self.at}, {self.params!r})"


_FOR = _Param(_span, None, "how long it lasts; until the end if left out")
_SCHEDULE = _Param(_schedule, None, "when it is switched on: {hours: '18-22'} or {on: 2h, off: 6h}")


# --------------------------------------------------------------------------------------------------
# Tank faults that change the truth


class Leak(ScenarioFault):
    """True product leaves the tank at ``rate_lph`` litres per hour at 20 °C, from ``at`` to the end (or for
    ``for``), as one steady outflow per physics block. Nothing reports it: only the gauge sees it."""

    TYPE = "leak"
    PARAMS = {"rate_lph": _Param(_positive, _REQUIRED, "L/h at 20 °C, e.g. 0.76"), "for": _FOR}

    def _block(self, station: StationSim, b0: float, b1: float) -> list[Flow]:
        s, e = max(b0, self.at), min(b1, self.until)
        if s >= e:
            return []
        litres = self.params["rate_lph"] * (e - s) / 3600.0
        self.record.lost_l_20c += litres
        self.record.touch(s, e)
        return [Flow(self.index, s, e, -litres, OTHER)]


class Theft(ScenarioFault):
    """``volume_l`` litres at 20 °C taken out of the tank at a steady rate over ``duration`` (default
    10 min), with no transaction. Attached after ``at`` has passed, it happens at the first block it sees."""

    TYPE = "theft"
    PARAMS = {"volume_l": _Param(_positive, _REQUIRED, "litres at 20 °C taken"),
              "duration": _Param(_span, 600.0, "how long the taking lasts, default 10m")}

    def _setup(self, station: StationSim) -> None:
        self._done = False

    def _block(self, station: StationSim, b0: float, b1: float) -> list[Flow]:
        if self._done or b1 <= self.at:
            return []
        self._done = True
        s = max(self.at, b0)
        e = s + self.params["duration"]
        self.record.lost_l_20c += self.params["volume_l"]
        self.record.count = 1
        self.record.touch(s, e)
        return [Flow(self.index, s, e, -self.params["volume_l"], OTHER)]


class WaterIngress(ScenarioFault):
    """The true water bottom rises by ``mm_per_day`` from ``at`` (for ``for``, then stays where it got to).

    Water comes in under the product and displaces none of it: the product's volume is unchanged and the
    level rises by the water's volume; the gauge's water float reports the new height. The station holds
    one water height per physics block, so the height is set at each block's start to its value there
    (a step of at most one block, 10 min: 0.07 mm at 10 mm/day).
    """

    TYPE = "water_ingress"
    PARAMS = {"mm_per_day": _Param(_positive, _REQUIRED, "mm of water bottom a day"), "for": _FOR}

    def _setup(self, station: StationSim) -> None:
        self._added = 0.0
        self._w0 = float(station.water_mm[self.index])

    def _block(self, station: StationSim, b0: float, b1: float) -> list[Flow]:
        grown = max(0.0, min(b0, self.until) - self.at)
        added = self.params["mm_per_day"] * grown / 86_400.0
        if added != self._added:
            station.water_mm[self.index] += added - self._added
            self._added = added
            self.record.touch(b0)
            geo = station.tanks[self.index].geometry
            w = float(station.water_mm[self.index])
            self.record.affected_l = float(geo.volume_l(w)) - float(geo.volume_l(w - added))
            self.record.details = {"water_mm_before": self._w0, "water_mm_added": added}
        return []


# --------------------------------------------------------------------------------------------------
# Dispenser cheats


class MeterBias(ScenarioFault):
    """While active, what really leaves the tank is the displayed volume × ``factor`` (0.99: customers get
    1 % less than they see and pay for).

    It multiplies on top of the nozzle's legal meter error e (displayed = true × (1 + e)): the plan's
    meter factor 1 + e becomes (1 + e) / factor, so true = displayed × factor / (1 + e). A fill is
    biased when it starts (fuelling begins) while the fault is active; one under way when the cheat is
    switched stays as it began, as a pulse-altering board would do.
    """

    TYPE = "meter_bias"
    ENTITY = "nozzle"
    PARAMS = {"factor": _Param(_factor, _REQUIRED, "true / displayed, e.g. 0.99"),
              "schedule": _SCHEDULE, "for": _FOR}

    def _setup(self, station: StationSim) -> None:
        self._open: list[FillPlan] = []

    def _fill(self, station: StationSim, fill: FillPlan) -> None:
        if fill.nozzle != self.index or not self.active(fill.start_ts):
            return
        fill.meter_factor /= self.params["factor"]
        self._open.append(fill)
        self.record.count += 1
        self.record.affected_l += fill.displayed_l
        self.record.touch(fill.start_ts, fill.end_ts)

    def _events(self, station: StationSim, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # The station sets true_l_20c after every on_fill; by on_events of the same block it is known.
        factor = self.params["factor"]
        for fill in self._open:
            self.record.lost_l_20c += fill.true_l_20c * (1.0 - 1.0 / factor)
        self._open.clear()
        return events


class HiddenSales(ScenarioFault):
    """While active, each fill of the nozzle is hidden with probability ``fraction`` (drawn from the
    fault's own generator): dispensed and paid, but the station's software reports nothing, no states, no
    transaction, and leaves it out of its totalizers and transaction numbers, so what is reported stays
    self-consistent. Only the tank sees the product go. A fill counts when it starts while active."""

    TYPE = "hidden_sales"
    ENTITY = "nozzle"
    PARAMS = {"fraction": _Param(_fraction, _REQUIRED, "share of fills hidden, e.g. 0.03"),
              "schedule": _SCHEDULE, "for": _FOR}

    def _setup(self, station: StationSim) -> None:
        self._open: list[FillPlan] = []

    def _fill(self, station: StationSim, fill: FillPlan) -> None:
        if fill.nozzle != self.index or not self.active(fill.start_ts):
            return
        if self.rng.random() >= self.params["fraction"]:
            return
        fill.emit_states = fill.emit_txn = fill.advance_counters = False
        self._open.append(fill)
        self.record.count += 1
        self.record.hidden_l += fill.displayed_l
        self.record.affected_l += fill.displayed_l
        self.record.touch(fill.lift_ts, fill.idle_ts)

    def _events(self, station: StationSim, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for fill in self._open:
            self.record.lost_l_20c += fill.true_l_20c
        self._open.clear()
        return events


# --------------------------------------------------------------------------------------------------
# What a dispenser reports


class _FromTxn(ScenarioFault):
    """Changes the nozzle's reported transactions from the first one that ends at or after ``at``."""

    ENTITY = "nozzle"

    def _setup(self, station: StationSim) -> None:
        self._started = False

    def _events(self, station: StationSim, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        nid = self.entity
        for ev in events:
            if ev["kind"] == "nozzle.txn" and ev["entity"] == nid and ev["ts"] >= self.at:
                if not self._started:
                    self._started = True
                    self._first(ev)
                    self.record.touch(ev["ts"])
                self._apply(ev)
        return events

    def _first(self, ev: dict[str, Any]) -> None:
        raise NotImplementedError

    def _apply(self, ev: dict[str, Any]) -> None:
        raise NotImplementedError


class TotalizerJump(_FromTxn):
    """The first transaction after ``at`` reports a volume totalizer higher by ``litres`` than it should,
    and the money totalizer higher by ``litres`` × that transaction's unit price; later ones continue
    from the jumped values (the counter was tampered with once). Negative ``litres`` turns it back."""

    TYPE = "totalizer_jump"
    PARAMS = {"litres": _Param(_nonzero, _REQUIRED, "litres added to the volume totalizer, e.g. 500")}

    def _first(self, ev: dict[str, Any]) -> None:
        self._cl = round(self.params["litres"] * 100.0)
        self._fen = round(self.params["litres"] * ev["unit_price"] * 100.0)
        self.record.count = 1
        self.record.affected_l = self._cl / 100.0
        self.record.details = {
            "txn_no": ev["txn_no"], "totalizer_l_before": ev["totalizer_l"],
            "totalizer_l_after": (round(ev["totalizer_l"] * 100.0) + self._cl) / 100.0,
            "totalizer_cny_before": ev["totalizer_cny"],
            "totalizer_cny_after": (round(ev["totalizer_cny"] * 100.0) + self._fen) / 100.0}

    def _apply(self, ev: dict[str, Any]) -> None:
        ev["totalizer_l"] = (round(ev["totalizer_l"] * 100.0) + self._cl) / 100.0
        ev["totalizer_cny"] = (round(ev["totalizer_cny"] * 100.0) + self._fen) / 100.0


class TxnGap(_FromTxn):
    """The first transaction after ``at`` carries a number higher by ``count`` (``count`` numbers are
    skipped, as when transactions are deleted from the controller); later ones continue from there.
    Volumes and totalizers are untouched: the skipped numbers hold nothing."""

    TYPE = "txn_gap"
    PARAMS = {"count": _Param(_count, _REQUIRED, "how many transaction numbers are skipped")}

    def _first(self, ev: dict[str, Any]) -> None:
        n = self.params["count"]
        self.record.count = n
        self.record.details = {"first_missing": ev["txn_no"], "last_missing": ev["txn_no"] + n - 1,
                               "txn_no_reported": ev["txn_no"] + n}

    def _apply(self, ev: dict[str, Any]) -> None:
        ev["txn_no"] += self.params["count"]


class MainboardSwap(ScenarioFault):
    """At ``at`` the dispenser's mainboard is replaced: the nozzle sends a ``device.info`` with a new
    ``mainboard_id`` and firmware (drawn from the fault's generator unless given).

    The simulated district gives each dispenser one board for all its nozzles (they share the
    ``mainboard_id``), so with ``scope: board`` (the default) every nozzle on that board announces the
    new one, as a real swap would show; ``scope: nozzle`` limits it to the named nozzle. The record lists
    every nozzle that announced in ``entities``, so a runner can accept the alert on any of them.

    A board is changed while its nozzle is idle, and the announcement must keep the nozzle's sequence
    numbers in time order: each nozzle announces at ``at``, or when its fill under way at ``at`` is
    over, or at the start of the first block it meets if it was attached late. The board's identity
    then holds for the rest of the run.
    """

    TYPE = "mainboard_swap"
    ENTITY = "nozzle"
    PARAMS = {"scope": _Param(_scope, "board", "'board' (default) or 'nozzle'"),
              "mainboard_id": _Param(_text, None, "the new board id; drawn if left out"),
              "firmware": _Param(_text, None, "the new firmware; drawn if left out")}

    def _setup(self, station: StationSim) -> None:
        mine = station.nozzles[self.index]
        if self.params["scope"] == "board":
            self._targets = [k for k, n in enumerate(station.nozzles) if n.mainboard_id == mine.mainboard_id]
        else:
            self._targets = [self.index]
        self.record.entities = [station.nz_ids[k] for k in self._targets]
        #: Latest moment any numbered event of each target nozzle can carry (its last fill's idle).
        self._busy_until = {k: float(station.free_at[k]) for k in self._targets}
        self._ready: list[dict[str, Any]] = []
        self._done: set[int] = set()
        self._old = (mine.mainboard_id, mine.firmware)
        self._new: tuple[str, str] | None = None

    def _identity(self) -> tuple[str, str]:
        if self._new is None:
            old_board, old_fw = self._old
            board = self.params["mainboard_id"]
            while board is None or board == old_board:
                board = f"{int(self.rng.integers(0, 2**48)):012X}"
            firmware = self.params["firmware"]
            while firmware is None or firmware == old_fw:
                firmware = (f"v{int(self.rng.integers(2, 6))}.{int(self.rng.integers(0, 10))}."
                            f"{int(self.rng.integers(0, 20))}")
            self._new = (board, firmware)
            self.record.details = {"old_mainboard_id": old_board, "new_mainboard_id": board,
                                   "old_firmware": old_fw, "new_firmware": firmware}
        return self._new

    def _announce(self, station: StationSim, k: int, ts: float) -> None:
        board, firmware = self._identity()
        n = station.nozzles[k]
        self._ready.append(station.nozzle_event(k, ts, "device.info", model=n.model, serial=n.serial,
                                                firmware=firmware, mainboard_id=board))
        self._done.add(k)
        self.record.count += 1
        self.record.touch(ts)

    def _fill(self, station: StationSim, fill: FillPlan) -> None:
        k = fill.nozzle
        if k not in self._busy_until or k in self._done:
            return
        if fill.lift_ts >= self.at:  # announce before this fill's events, in seq and in time
            self._announce(station, k, max(self.at, self._b0, self._busy_until[k]))
        self._busy_until[k] = max(self._busy_until[k], fill.idle_ts)

    def _events(self, station: StationSim, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.at < self._b1:
            for k in self._targets:
                if k not in self._done:
                    ts = max(self.at, self._b0, self._busy_until[k])
                    if ts < self._b1:  # else still busy: a later block announces it
                        self._announce(station, k, ts)
        for ev in self._ready:
            # Before the nozzle's next numbered event of this block: at equal times the release order
            # (stable by ts, then list order) then keeps the source's seqs in order too.
            src, seq = ev["source"], ev["seq"]
            at = next((j for j, other in enumerate(events) if other["source"] == src and other["seq"] > seq),
                      len(events))
            events.insert(at, ev)
        self._ready = []
        return events


# --------------------------------------------------------------------------------------------------
# Gauge faults (the truth is untouched)


class SensorStuck(ScenarioFault):
    """For ``for`` from ``at`` the gauge keeps reporting the last level, water and temperature it reported
    before ``at`` (the first reading at or after ``at`` if there was none). The truth is unaffected.
    ``first_active_ts`` is the first reading that repeated an older one."""

    TYPE = "sensor_stuck"
    PARAMS = {"for": _Param(_span, _REQUIRED, "how long the gauge stays frozen, e.g. 6h")}

    def _setup(self, station: StationSim) -> None:
        self._frozen: tuple[float, float, float] | None = None

    def _column(self, frame: GaugeFrame, j: int) -> tuple[float, float, float]:
        i = self.index
        return float(frame.level_mm[i, j]), float(frame.water_mm[i, j]), float(frame.temp_c[i, j])

    def _gauge(self, station: StationSim, frame: GaugeFrame) -> None:
        i, ts = self.index, frame.ts
        before = np.flatnonzero(ts < self.at)
        if len(before):
            self._frozen = self._column(frame, int(before[-1]))
        idx = np.flatnonzero((ts >= self.at) & (ts < self.until))
        if not len(idx):
            return
        if self._frozen is None:
            self._frozen = self._column(frame, int(idx[0]))
            self.record.details = {"level_mm": self._frozen[0], "water_mm": self._frozen[1],
                                   "temp_c": self._frozen[2]}
            idx = idx[1:]
            if not len(idx):
                return
        level, water, temp = self._frozen
        frame.level_mm[i, idx] = level
        frame.water_mm[i, idx] = water
        frame.temp_c[i, idx] = temp
        self.record.details = {"level_mm": level, "water_mm": water, "temp_c": temp}
        self.record.count += len(idx)
        self.record.touch(float(ts[idx[0]]), float(ts[idx[-1]]))


class SensorDrift(ScenarioFault):
    """The reported level drifts by ``mm_per_day`` × days since ``at`` (for ``for``, then the probe is
    right again), rounded to the gauge's resolution; water and temperature are untouched, as is the
    truth. ``first_active_ts`` is the first reading after ``at``."""

    TYPE = "sensor_drift"
    PARAMS = {"mm_per_day": _Param(_nonzero, _REQUIRED, "mm a day, signed"), "for": _FOR}

    def _gauge(self, station: StationSim, frame: GaugeFrame) -> None:
        i, ts = self.index, frame.ts
        idx = np.flatnonzero((ts > self.at) & (ts < self.until))
        if not len(idx):
            return
        res = station.noise.gauge_resolution_mm
        k = round(1.0 / res) if abs(1.0 / res - round(1.0 / res)) < 1e-9 else 1.0 / res
        offset = self.params["mm_per_day"] * (ts[idx] - self.at) / 86_400.0
        frame.level_mm[i, idx] = np.maximum(np.rint((frame.level_mm[i, idx] + offset) * k) / k, 0.0)
        self.record.count += len(idx)
        self.record.touch(float(ts[idx[0]]), float(ts[idx[-1]]))
        self.record.details = {"offset_mm": float(offset[-1])}


# --------------------------------------------------------------------------------------------------
# Communication


#: Kinds that do not travel over the station's device link: the platform's own watermark (made at the
#: receiving edge) and documents (from the supplier's and the tax systems).
_OFF_LINK_PREFIXES = ("clock.", "doc.")


class CommLoss(ScenarioFault):
    """For ``for`` from ``at`` the station's device events (gauge readings, nozzle states and
    transactions, device info, posted prices) are not delivered: lost, not delayed, so their sources'
    sequence numbers show the gap. ``clock.tick`` keeps coming (the platform makes it at the receiving
    edge) and so do documents. With ``tank`` or ``nozzle`` only that device's events are lost.
    Events are judged by their own time, so a fill that started before the outage loses its end."""

    TYPE = "comm_loss"
    ENTITY = "station"
    PARAMS = {"for": _Param(_span, _REQUIRED, "how long the link is down, e.g. 30m")}

    def _setup(self, station: StationSim) -> None:
        self._by_kind: dict[str, int] = {}

    def _events(self, station: StationSim, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        at, until, entity = self.at, self.until, self.entity
        if until <= self._b0:  # a block's events all lie at or after its start: the outage is over
            return events
        kept: list[dict[str, Any]] = []
        for ev in events:
            ts = ev["ts"]
            if (at <= ts < until and not ev["kind"].startswith(_OFF_LINK_PREFIXES)
                    and (not entity or ev["entity"] == entity)):
                self._by_kind[ev["kind"]] = self._by_kind.get(ev["kind"], 0) + 1
                self.record.count += 1
                self.record.touch(ts)
            else:
                kept.append(ev)
        if len(kept) != len(events):
            self.record.details = {"dropped": dict(self._by_kind)}
        return kept


# --------------------------------------------------------------------------------------------------
# Scenario entry points


FAULT_TYPES: dict[str, type[ScenarioFault]] = {cls.TYPE: cls for cls in (
    Leak, Theft, MeterBias, HiddenSales, TotalizerJump, TxnGap, MainboardSwap, SensorStuck, SensorDrift,
    CommLoss, WaterIngress)}


def _register_vapor_faults() -> None:
    """issue 6: vapor_blockage, vapor_unsealed, processor_off, voc_leak (simulators/vapor_faults.py)."""
    from simulators.vapor_faults import VAPOR_FAULTS

    FAULT_TYPES.update({cls.TYPE: cls for cls in VAPOR_FAULTS})


_register_vapor_faults()


def _register_regulatory_faults() -> None:
    """issue 5: delivery_without_po, po_without_delivery, underdeclared_sales, invoice_inflation,
    price_dumping, capacity_misreport, hidden_tank (simulators/regulatory_faults.py)."""
    from simulators.regulatory_faults import FAULT_TYPES as regulatory

    FAULT_TYPES.update(regulatory)


_register_regulatory_faults()

_COMMON = ("type", "station", "tank", "nozzle", "at")


def _entity(cls: type[ScenarioFault], spec: Mapping[str, Any], label: str) -> tuple[str, str]:
    """(entity id, kind) from a spec's tank:/nozzle: keys, with the error a tester needs if wrong."""
    given = {k: spec[k] for k in ("tank", "nozzle") if spec.get(k) is not None}
    for key, value in given.items():
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{label}: {key} must be an id such as {'T1' if key == 'tank' else 'N1'}, "
                             f"got {value!r}")
    if cls.ENTITY == "station":
        if len(given) > 1:
            raise ValueError(f"{label}: give tank: or nozzle: (or neither, for the whole station), not both")
        if not given:
            return "", ""
        key, value = next(iter(given.items()))
        return value.strip(), key
    want = cls.ENTITY
    other = "nozzle" if want == "tank" else "tank"
    if other in given:
        raise ValueError(f"{label}: {cls.TYPE} acts on a {want} (give {want}: "
                         f"{'T1' if want == 'tank' else 'N1'}…), not on a {other}")
    if want not in given:
        raise ValueError(f"{label}: missing {want!r} (the {want} it acts on, e.g. "
                         f"{want}: {'T1' if want == 'tank' else 'N1'})")
    return given[want].strip(), want


def build_fault(spec: Mapping[str, Any], start_ts: float, seed: int) -> tuple[str, ScenarioFault]:
    """One item of a scenario's ``faults:`` list → (station id, fault to attach to that station).

    ``at`` is relative to the scenario's start ``start_ts``. Raises ValueError naming the fault and the
    problem (unknown type, missing or unexpected parameter, a tank given where a nozzle is meant, a bad
    value); the caller adds the item's index. Whether the station, tank or nozzle exists is checked by
    :func:`check_fault`, or at the latest when the simulation first calls the fault.
    """
    if not isinstance(spec, Mapping):
        raise ValueError("a fault must be a mapping such as {type: leak, station: BH-0001, tank: T1, "
                         f"at: 1d, rate_lph: 0.76}}, got {spec!r}")
    ftype = spec.get("type")
    if ftype is None:
        raise ValueError(f"fault without a type: {dict(spec)!r}; known types: {_fmt_list(FAULT_TYPES)}")
    cls = FAULT_TYPES.get(ftype) if isinstance(ftype, str) else None
    if cls is None:
        raise ValueError(f"unknown fault type {ftype!r}; known types: {_fmt_list(FAULT_TYPES)}")
    station = spec.get("station")
    if not isinstance(station, str) or not station.strip():
        raise ValueError(f"{ftype} fault: missing or empty 'station' (e.g. station: BH-0001), "
                         f"got {station!r}")
    station = station.strip()
    label = f"{ftype} fault ({station})"
    entity, kind = _entity(cls, spec, label)
    label = f"{ftype} fault ({station}{' ' + entity if entity else ''})"
    if "at" not in spec or spec["at"] is None:
        raise ValueError(f"{label}: missing 'at' (when it starts, from the scenario's start, e.g. at: 2d)")
    try:
        at = parse_duration(spec["at"])
    except ValueError as exc:
        raise ValueError(f"{label}: at: {exc}") from None
    params = {k: v for k, v in spec.items() if k not in _COMMON}
    return station, cls(station, entity, float(start_ts) + at, params, seed, entity_kind=kind)


def check_fault(spec: Mapping[str, Any], district: Any) -> None:
    """Raise ValueError if ``spec`` is malformed or names a station, tank or nozzle the district lacks.

    ``district`` is the declared :class:`twin.registry.District` or a :class:`SimDistrict` (its
    ``.district``). Meant to run over a scenario's faults before a long simulation starts.
    """
    station_id, fault = build_fault(spec, 0.0, 0)
    declared = getattr(district, "district", district)
    if not declared.has_station(station_id):
        ids = [s.id for s in declared.stations]
        shown = _fmt_list(ids) if len(ids) <= 12 else f"{ids[0]} … {ids[-1]} ({len(ids)})"
        raise ValueError(f"{fault.label}: no station {station_id!r} in the district (stations: {shown})")
    st = declared.station(station_id)
    fault.check_entities([t.id for t in st.tanks], [n.id for n in st.nozzles])
