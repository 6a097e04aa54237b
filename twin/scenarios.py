"""Fault scenarios: the file format testers write by hand, and the alert vocabulary it names.

A scenario (``scenarios/*.yaml``, documented field by field in ``docs/scenarios.md``) names a seed, a start,
a duration, a district, optional simulator noise, the faults to inject and the detections expected, each
with a deadline; every other alert the twin raises is a false alarm. This module holds the format, as
pydantic models with unknown keys forbidden, and :func:`load_scenario`, whose errors name the file and the
field (``scenarios/leak.yaml: faults[0].rate_lph: missing parameter …``); which alert detects which fault.

The fault vocabulary (types, their parameters) and the duration grammar (``36h``, ``2d``, ``1d12h``) belong
to the simulator (``simulators/faults.py``); they are imported when a file is *loaded*, never when this
module is imported, so scoring depends on nothing outside ``twin/``. Scoring a run against its truth is
``twin/scoring.py``; running a scenario (simulator, runtime, seeds, processes) is composition and lives in
``twin/scenario_runner.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from twin.registry import District, NozzleSpec, StationSpec, TankSpec
from twin.settings import TwinSettings

__all__ = [
    "ALERT_CODES", "FAULT_ALERT", "INFO_CODES", "NAMES_CANDIDATES", "TANK_FOR_NOZZLE", "DistrictSpec",
    "Expectation", "NoiseSpec", "ProfileSpec", "Scenario", "ScenarioError", "StationEntry", "entity_problems",
    "fmt_duration", "load_scenario", "parse_scenario",
]

#: The alert codes the twin raises (issue 3: fixed, the UI, the scenarios and users rely on them).
ALERT_CODES = ("LEAK", "SUDDEN_LOSS", "DELIVERY_DETECTED", "METER_BIAS", "HIDDEN_SALES", "TOTALIZER_MISMATCH",
               "TXN_GAP", "MAINBOARD_CHANGED", "SENSOR_STUCK", "SENSOR_DRIFT", "COMM_LOSS", "WATER_HIGH",
               "OVERFILL",
               # issue 6: vapor recovery (twin/vapor.py)
               "VAPOR_AL_WARNING", "VAPOR_AL_ALARM", "VAPOR_PRESSURE", "VAPOR_PROCESSOR", "VAPOR_VOC",
               # issue 6: safety devices and inspections (twin/safety.py)
               "GAS_LEL", "INTERSTITIAL_LEAK", "UNLOADING_UNGROUNDED", "UNSAFE_BEHAVIOUR",
               "INSPECTION_FINDING",
               # issue 5: the regulatory loop
               "DELIVERY_UNDOCUMENTED", "PO_UNDELIVERED", "SALES_UNDERDECLARED", "INVOICE_MISMATCH",
               "PRICE_DUMPING", "CAPACITY_MISREPORT", "HIDDEN_TANK")
#: Informational events, not alarms: never a false alarm (a delivery recognised is not a fault).
INFO_CODES = frozenset({"DELIVERY_DETECTED"})
#: Which alert detects which fault type: an expectation is timed from the first onset of a fault of the
#: type that maps to its code, at its station (and entity, when the expectation names one).
FAULT_ALERT: dict[str, str] = {
    "leak": "LEAK", "theft": "SUDDEN_LOSS", "meter_bias": "METER_BIAS", "hidden_sales": "HIDDEN_SALES",
    "totalizer_jump": "TOTALIZER_MISMATCH", "txn_gap": "TXN_GAP", "mainboard_swap": "MAINBOARD_CHANGED",
    "sensor_stuck": "SENSOR_STUCK", "sensor_drift": "SENSOR_DRIFT", "comm_loss": "COMM_LOSS",
    "water_ingress": "WATER_HIGH",
    # issue 6: vapor recovery
    "vapor_blockage": "VAPOR_AL_WARNING", "vapor_unsealed": "VAPOR_PRESSURE",
    "processor_off": "VAPOR_PROCESSOR", "voc_leak": "VAPOR_VOC",
    "delivery_without_po": "DELIVERY_UNDOCUMENTED", "po_without_delivery": "PO_UNDELIVERED",
    "underdeclared_sales": "SALES_UNDERDECLARED", "invoice_inflation": "INVOICE_MISMATCH",
    "price_dumping": "PRICE_DUMPING", "capacity_misreport": "CAPACITY_MISREPORT",
    "hidden_tank": "HIDDEN_TANK",
}
#: Further codes a fault type is detected by (an expectation of one of these is timed from that fault too):
#: a blocked nozzle's A/L is a warning at the day's close and, below 0.6, an alarm within a day.
FAULT_ALERT_ALSO: dict[str, tuple[str, ...]] = {"vapor_blockage": ("VAPOR_AL_ALARM",)}
#: Fault types whose scenario needs the simulator's vapor-recovery data (issue 6).
VAPOR_FAULT_TYPES = frozenset({"vapor_blockage", "vapor_unsealed", "processor_off", "voc_leak"})


def detects(fault_type: str, code: str) -> bool:
    """Whether alert ``code`` is one that detects faults of ``fault_type``."""
    return FAULT_ALERT.get(fault_type) == code or code in FAULT_ALERT_ALSO.get(fault_type, ())
#: Codes a detector raises on the *tank* a faulty nozzle draws from, because only the tank's books can see
#: the fault (a fill the station never reported leaves no trace on any nozzle): an expectation naming
#: the nozzle is met by the alert on its tank. The report's ``alert_entity`` says which was named.
#: METER_BIAS is raised on the tank when the books see a meter change but not which nozzle's: there the
#: tank's alert meets the expectation only if it names the nozzle among its ``candidates``.
TANK_FOR_NOZZLE = frozenset({"HIDDEN_SALES", "METER_BIAS"})
#: Codes whose tank alerts name their candidate nozzles (evidence ``candidates``).
NAMES_CANDIDATES = frozenset({"METER_BIAS"})


def names_nozzle(alert: Mapping[str, Any], nozzle: str | None) -> bool:
    """Whether a tank's alert stands for ``nozzle``: always for HIDDEN_SALES; for codes that list their
    candidates, only when the nozzle is among them."""
    if alert.get("code") not in NAMES_CANDIDATES:
        return True
    return nozzle in ((alert.get("evidence") or {}).get("candidates") or ())
#: A tank-month, for false-alarm rates (EPA SIR counts in 30-day months, DOMAIN.md).
MONTH_S = 30 * 86_400.0
#: Recognised deliveries are booked after the product settles (10 min by default); a true drop ending
#: this close to the end of the run may not be booked yet, so it is not counted missed.
DELIVERY_GRACE_S = 1800.0


# --------------------------------------------------------------------------------------------------
# Errors


class ScenarioError(ValueError):
    """A scenario file that cannot be used; ``problems`` are lines of ``field: what is wrong``."""

    def __init__(self, source: str, problems: Sequence[str]):
        self.source = source
        self.problems = list(problems)
        super().__init__("\n".join(f"{source}: {p}" for p in self.problems))


def _loc(parts: Iterable[Any]) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "(top level)"


#: Branch tags pydantic puts in an error's location (see DistrictSpec.stations): not keys of the file.
_BRANCH_TAGS = frozenset({"count", "list"})


def _allowed_keys(parent: Sequence[Any]) -> list[str]:
    names = [p for p in parent if isinstance(p, str)]
    model: type[BaseModel] | None = Scenario if not names else _MODEL_OF_KEY.get(names[-1])
    if model is None:
        return []
    return [k for k in model.model_fields if k != "source"]


def _messages(exc: ValidationError, root: type[BaseModel] | None = None) -> list[str]:
    """One line per problem, ``path.in[0].the.file: what is wrong``; ``root`` is the model at the top."""
    errors = exc.errors(include_url=False)
    locs = [tuple(p for p in err.get("loc", ()) if not (isinstance(p, str) and p in _BRANCH_TAGS))
            for err in errors]
    lines = []
    for err, loc_t in zip(errors, locs, strict=True):
        loc = list(loc_t)
        msg = err.get("msg", "")
        if err.get("type") == "too_short" and any(o[:len(loc_t)] == loc_t and o != loc_t for o in locs):
            continue  # "should have at least 1 item after validation": its item's own error says why
        if err.get("type") == "extra_forbidden":
            msg = f"unknown key {loc[-1]!r}" if loc else "unknown key"
            loc = loc[:-1]
            allowed = ([k for k in root.model_fields if k != "source"] if root is not None and not loc
                       else _allowed_keys(loc))
            if allowed:
                msg += f" (allowed: {', '.join(allowed)})"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        elif msg.startswith("Assertion failed, "):
            msg = msg[len("Assertion failed, "):]
        lines.append(f"{_loc(loc)}: {msg}" if loc else msg)
    return lines


# --------------------------------------------------------------------------------------------------
# Durations (the simulator's grammar: seconds, or numbers with s, m, h, d)


def _seconds(value: Any) -> float:
    from simulators.faults import parse_duration  # the one grammar every duration of a scenario uses

    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return parse_duration(value)
    raise ValueError(f"invalid duration {value!r}: expected a number of seconds or text like 90s, 10m, 36h, "
                     "2d")


def fmt_duration(seconds: float | None) -> str:
    """Short human form of a duration: ``45s``, ``12m``, ``3.5h``, ``2.25d`` (``-`` for None)."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    s = float(seconds)
    sign = "-" if s < 0 else ""
    s = abs(s)
    for unit, size in (("d", 86_400.0), ("h", 3600.0), ("m", 60.0)):
        if s >= size:
            v = s / size
            text = f"{v:.0f}" if abs(v - round(v)) < 1e-9 else f"{v:.2f}".rstrip("0").rstrip(".")
            return f"{sign}{text}{unit}"
    return f"{sign}{s:.0f}s"


Duration = Annotated[float, BeforeValidator(_seconds)]


# --------------------------------------------------------------------------------------------------
# The format


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NoiseSpec(_Model):
    """Simulator noise; a field left out takes the simulator's realistic default (shown in brackets)."""

    #: σ of the gauge's level reading (mm) [0.5].
    gauge_sigma_mm: float | None = Field(default=None, ge=0)
    #: Largest relative error of each declared strapping chart against the true tank (%) [0.3].
    strapping_error_pct: float | None = Field(default=None, ge=0, le=5)
    #: Each nozzle's meter error is drawn uniform in ± this (%) [0.25; JJG 443 allows 0.3].
    meter_error_pct: float | None = Field(default=None, ge=0, le=5)
    #: Seconds between tank gauge readings [60 in scenarios]; durations like ``30s`` are accepted.
    reading_interval_s: Duration | None = None
    #: The gauge's level and water resolution (mm) [0.1].
    gauge_resolution_mm: float | None = Field(default=None, gt=0)
    #: Thermistor noise (°C) [0.05].
    temp_sigma_c: float | None = Field(default=None, ge=0)

    @field_validator("reading_interval_s")
    @classmethod
    def _positive_interval(cls, v: float | None) -> float | None:
        if v is not None and not v >= 1:
            raise ValueError(f"must be at least 1 s, got {v:g}")
        return v

    def noise_settings(self) -> dict[str, float]:
        """The fields that map onto ``simulators.settings.NoiseSettings``, as given."""
        keys = ("gauge_sigma_mm", "meter_error_pct", "gauge_resolution_mm", "temp_sigma_c")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


class ProfileSpec(_Model):
    """Who buys at an explicitly listed station (the synthetic district draws this itself)."""

    size: Literal["small", "medium", "busy"] = "medium"
    #: urban: commuter peaks and quiet nights; port and highway: trucks around the clock (no idle hour).
    kind: Literal["urban", "port", "highway"] | None = None
    fills_per_day: float | None = Field(default=None, gt=0, le=20_000)
    brand: str | None = None


class StationEntry(StationSpec):
    """A station spec of the registry (``twin.registry.StationSpec``) plus how busy it is."""

    profile: ProfileSpec = ProfileSpec()

    def spec(self) -> StationSpec:
        return StationSpec.model_validate(self.model_dump(exclude={"profile"}))


def _stations_kind(value: Any) -> str:
    return "list" if isinstance(value, list | tuple) else "count"


class DistrictSpec(_Model):
    #: A count of synthetic stations (BH-0001 …, drawn from the run's seed), or explicit stations.
    stations: Annotated[Annotated[Annotated[int, Field(ge=1, le=5000)], Tag("count")]
                        | Annotated[list[StationEntry], Tag("list")], Discriminator(_stations_kind)]

    @field_validator("stations", mode="before")
    @classmethod
    def _not_bool(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError("expected a number of stations or a list of station specs")
        return v

    @model_validator(mode="after")
    def _unique(self) -> DistrictSpec:
        if isinstance(self.stations, list):
            if not self.stations:
                raise ValueError("stations: the list is empty")
            District(stations=tuple(s.spec() for s in self.stations))  # duplicate ids, with the reason
        return self

    @property
    def synthetic(self) -> bool:
        return isinstance(self.stations, int)

    def station_ids(self) -> list[str]:
        if isinstance(self.stations, int):
            return [f"BH-{i + 1:04d}" for i in range(self.stations)]
        return [s.id for s in self.stations]

    def declared(self) -> District | None:
        """The declared district of explicit stations (None for a synthetic one: it depends on the seed)."""
        if isinstance(self.stations, int):
            return None
        return District(stations=tuple(s.spec() for s in self.stations))


class Expectation(_Model):
    #: The alert code expected.
    alert: str
    station: str
    tank: str | None = None
    nozzle: str | None = None
    #: Deadline, counted from the first onset of the matching fault (or the scenario's start).
    within: Duration

    @field_validator("alert")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in ALERT_CODES:
            raise ValueError(f"unknown alert code {v!r}; known: {', '.join(ALERT_CODES)}")
        return v

    @model_validator(mode="after")
    def _one_entity(self) -> Expectation:
        if self.tank is not None and self.nozzle is not None:
            raise ValueError("give tank: or nozzle:, not both")
        if not self.within > 0:
            raise ValueError("within: must be a duration > 0")
        return self

    @property
    def entity(self) -> str | None:
        return self.tank if self.tank is not None else self.nozzle


class Scenario(_Model):
    name: str = Field(min_length=1)
    description: str = ""
    #: The run's seed draws everything: the synthetic district, customers, deliveries, noise, faults.
    seed: int = Field(ge=0)
    #: ISO 8601 with an offset, e.g. "2026-06-01T00:00:00+08:00" (kept as epoch seconds).
    start: float
    duration: Duration
    district: DistrictSpec
    noise: NoiseSpec = NoiseSpec()
    faults: list[dict[str, Any]] = []
    expect: list[Expectation] = []
    #: Overrides of ``twin.settings.TwinSettings`` fields (detector thresholds), checked by name.
    settings: dict[str, Any] = {}
    #: issue 6: simulate the stations' vapor-recovery monitors (vapor.fill / vapor.env). Left out: on
    #: when a vapor fault is listed, off otherwise (the other scenarios' events stay as they were).
    vapor: bool | None = None
    #: Where the scenario was read from (not part of the file).
    source: str = Field(default="", exclude=True)

    @field_validator("seed", mode="before")
    @classmethod
    def _int_seed(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"expected a whole number >= 0, got {v!r}")
        return v

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, v: Any) -> float:
        if isinstance(v, datetime):
            dt = v
        elif isinstance(v, date):
            raise ValueError(f"{v.isoformat()} is a date; give a time with its offset, e.g. "
                             f"\"{v.isoformat()}T00:00:00+08:00\"")
        elif isinstance(v, str):
            try:
                dt = datetime.fromisoformat(v.strip())
            except ValueError:
                raise ValueError(f"not an ISO 8601 time: {v!r} (e.g. \"2026-06-01T00:00:00+08:00\")"
                                 ) from None
        else:
            raise ValueError(f"expected an ISO 8601 time such as \"2026-06-01T00:00:00+08:00\", got {v!r}")
        if dt.tzinfo is None or dt.utcoffset() is None:
            raise ValueError(f"{v!s} has no UTC offset; write it with one, e.g. +08:00 for Beijing time")
        return dt.timestamp()

    @field_validator("duration")
    @classmethod
    def _positive(cls, v: float) -> float:
        if not v > 0:
            raise ValueError("must be a duration > 0")
        return v

    # -- derived --------------------------------------------------------------------------------------

    @property
    def end(self) -> float:
        return self.start + self.duration

    @property
    def vapor_on(self) -> bool:
        if self.vapor is not None:
            return self.vapor
        return any(isinstance(f, Mapping) and f.get("type") in VAPOR_FAULT_TYPES for f in self.faults)

    def twin_settings(self) -> TwinSettings:
        return TwinSettings(**self.settings)

    def seeds(self, n: int) -> list[int]:
        return [self.seed + k for k in range(n)]


#: Which model a nested mapping of the file is, by the key it sits under (for 'allowed keys' hints).
_MODEL_OF_KEY: dict[str, type[BaseModel]] = {
    "noise": NoiseSpec, "district": DistrictSpec, "stations": StationEntry, "profile": ProfileSpec,
    "tanks": TankSpec, "nozzles": NozzleSpec, "expect": Expectation}


def _fault_problems(faults: Any) -> list[str]:
    """Each fault of the raw file checked by the simulator's own parser (type, entity kind, parameters)."""
    from simulators.faults import build_fault  # the simulator owns the fault vocabulary

    if not isinstance(faults, list):
        return []  # pydantic says what is wrong with the list itself
    problems = []
    for i, spec in enumerate(faults):
        if isinstance(spec, Mapping):
            try:
                build_fault(spec, 0.0, 0)
            except ValueError as exc:
                problems.append(f"faults[{i}]: {exc}")
    return problems


def _settings_problems(settings: Any) -> list[str]:
    if not isinstance(settings, Mapping):
        return []
    try:
        TwinSettings(**settings)
    except ValidationError as exc:
        return [f"settings.{line}" if not line.startswith("unknown key") else f"settings: {line}"
                for line in _messages(exc, TwinSettings)]
    return []


def _cross_problems(scn: Scenario) -> list[str]:
    """What only the whole scenario can tell: stations that exist, faults inside the run, entities."""
    ids = scn.district.station_ids()
    known = set(ids)
    shown = ", ".join(ids) if len(ids) <= 12 else f"{ids[0]} … {ids[-1]} ({len(ids)})"
    problems = []
    for i, spec in enumerate(scn.faults):
        if spec.get("station") not in known:
            problems.append(f"faults[{i}].station: no station {spec.get('station')!r} in the district "
                            f"(stations: {shown})")
            continue
        at = _seconds(spec["at"])
        if at >= scn.duration:
            problems.append(f"faults[{i}].at: {fmt_duration(at)} is not before the end of the run "
                            f"(duration {fmt_duration(scn.duration)})")
    for i, e in enumerate(scn.expect):
        if e.station not in known:
            problems.append(f"expect[{i}].station: no station {e.station!r} in the district "
                            f"(stations: {shown})")
    declared = scn.district.declared()
    if declared is not None:  # explicit stations: tanks and nozzles are known now, whatever the seed
        problems += entity_problems(scn, declared)
    return problems


def entity_problems(scn: Scenario, district: District) -> list[str]:
    """Faults and expectations naming a tank or nozzle their station does not have, in ``district``."""
    from simulators.faults import check_fault

    problems = []
    for i, spec in enumerate(scn.faults):
        if district.has_station(spec.get("station")):
            try:
                check_fault(spec, district)
            except ValueError as exc:
                problems.append(f"faults[{i}]: {exc}")
    for i, e in enumerate(scn.expect):
        if not district.has_station(e.station):
            continue
        st = district.station(e.station)
        if e.tank is not None and e.tank not in {t.id for t in st.tanks}:
            problems.append(f"expect[{i}].tank: station {e.station} has no tank {e.tank!r} "
                            f"(its tanks: {', '.join(t.id for t in st.tanks)})")
        if e.nozzle is not None and e.nozzle not in {n.id for n in st.nozzles}:
            problems.append(f"expect[{i}].nozzle: station {e.station} has no nozzle {e.nozzle!r} "
                            f"(its nozzles: {', '.join(n.id for n in st.nozzles)})")
    return problems


def parse_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    """A scenario from already-parsed YAML data; :class:`ScenarioError` lists every problem found, each
    naming the field (``faults[2].rate_lph``), under ``source``."""
    if not isinstance(data, Mapping):
        raise ScenarioError(source, [f"expected a mapping of scenario fields (name, seed, start, …), "
                                     f"got {type(data).__name__}"])
    problems: list[str] = []
    if "source" in data:
        problems.append(f"unknown key 'source' (allowed: {', '.join(_allowed_keys([]))})")
        data = {k: v for k, v in data.items() if k != "source"}
    scn: Scenario | None = None
    try:
        scn = Scenario.model_validate({**data, "source": source})
    except ValidationError as exc:
        problems += _messages(exc)
    problems += _fault_problems(data.get("faults"))
    problems += _settings_problems(data.get("settings"))
    if scn is not None and not problems:
        problems += _cross_problems(scn)
    if problems:
        raise ScenarioError(source, problems)
    assert scn is not None
    return scn


def load_scenario(path: str | Path | None = None, *, text: str | None = None,
                  source: str | None = None) -> Scenario:
    """Read a scenario file (or ``text``); every problem is reported with the file and the field."""
    if (path is None) == (text is None):
        raise TypeError("give a path or text")
    name = source or (str(path) if path is not None else "<text>")
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ScenarioError(name, [f"cannot read: {exc.strerror or exc}"]) from None
    try:
        data = yaml.safe_load(text or "")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError(name, [f"{where}not valid YAML: {problem}"]) from None
    if data is None:
        raise ScenarioError(name, ["the file is empty"])
    return parse_scenario(data, name)
