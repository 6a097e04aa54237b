"""Vapor-recovery (油气回收) compliance of a station, judged as GB 20952-2020 prescribes.

GB 20952-2020《加油站大气污染物排放标准》 asks every gasoline vapor-recovery system to keep the
gas-to-liquid ratio 1.0 ≤ A/L ≤ 1.2 (§5.3), the processing unit's outlet at ≤ 25 g/m³ as a 1-hour
average (§5.4), the processing unit to start at +150 Pa (§4.6.1), and an online monitor that measures
every nozzle's A/L and the system pressure and raises warnings (预警) and alarms (报警) (§4.5.1,
§4.5.4). How a monitor turns measurements into warnings and alarms is Appendix E.3.3 (informative);
this module implements those rules, one by one, with the clause beside each:

- only fills of at least 15 L count (valid fills); a nozzle with fewer than 5 valid fills in a day is
  not judged that day and its fills carry into the next day until there are 5 (E.3.3);
- a day on which more than 25 % of a nozzle's judged fills have A/L < 0.9 or > 1.3 is a warning day;
  7 consecutive warning days are an alarm (E.3.3);
- A/L < 0.6 or > 1.5 continuously for more than 24 h is an alarm at once (E.3.3);
- the system pressure staying within −50…+50 Pa for more than 12 continuous hours in a day is a warning
  (the system is not sealed); 7 consecutive such days are an alarm (E.3.3);
- a VOC leak sensor reading ≥ 4,000 µmol/mol is a warning (7 consecutive days → alarm), ≥ 8,000 µmol/mol
  an alarm at once (E.3.3);
- warning and alarm states survive a power loss and the judgement continues (E.3.4): here the whole
  state is plain data inside the station actor, so it is in every snapshot the supervisor takes and
  comes back with it (``actors/supervision.py``).

Choices where the appendix leaves one open (each is a setting or stated here):

- *Event time.* The judge runs on the monitor's own clock — the newest vapor event time of the
  station — and closes a local day (Asia/Shanghai) ``close_delay_s`` after it ends, so an hourly upload
  (E.3.5: at least hourly) still lands in its day. A monitor back-filling missed uploads in order has
  them judged as if on time; data for a day already closed is counted as late, not judged.
- *Consecutive days.* A day on which a nozzle is not judged (fewer than 5 valid fills, carried over)
  neither extends nor breaks its run of warning days; the same for pressure and VOC days without data.
- *Ending.* A judged day without a warning ends a nozzle's warning and its 7-day alarm; an extreme-A/L
  alarm ends with the first valid fill back inside 0.6…1.5 *and* such a day. A pressure or VOC day
  with data and no warning ends that condition.
- *Processing unit.* ``fault`` reported by the unit is an alarm at once; a unit ``stopped`` while the
  pressure stays at or above its +150 Pa start point (§4.6.1) for ``processor_grace_s`` is an alarm;
  an hourly average outlet concentration above 25 g/m³ (§5.4) is an alarm. All three are
  ``VAPOR_PROCESSOR``, the rule in the evidence.
- Diesel nozzles have no vapor recovery (GB 20952 covers gasoline); their vapor.fill events are
  counted and not judged.

The module is pure: it takes events and returns :class:`VaporAction` (raise or close an alert) for the
actor to apply to its AlertBook.
"""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from twin.timeutil import local_day, local_day_number

_DAY_S = 86_400.0
_OFFSET_S = 8 * 3600.0

#: The alert codes of vapor recovery (issue 6; fixed).
VAPOR_CODES = ("VAPOR_AL_WARNING", "VAPOR_AL_ALARM", "VAPOR_PRESSURE", "VAPOR_PROCESSOR", "VAPOR_VOC")


class VaporSettings(BaseModel):
    """Every threshold of the judgement, with the clause it comes from. Override per scenario with
    ``settings: {vapor: {field: value}}``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: E.3.3: only fills of at least this many litres are valid fills.
    min_valid_fill_l: float = Field(default=15.0, ge=0)
    #: E.3.3: a nozzle needs this many valid fills (its carried-over ones included) to be judged.
    min_fills_judged: int = Field(default=5, ge=1)
    #: §5.3: the A/L every vapor-recovery system keeps (share of fills in range, for the daily record).
    al_low: float = Field(default=1.0, gt=0)
    al_high: float = Field(default=1.2, gt=0)
    #: E.3.3: the band of the daily rule, and the share of fills outside it that makes a warning day.
    warn_low: float = Field(default=0.9, gt=0)
    warn_high: float = Field(default=1.3, gt=0)
    warn_share: float = Field(default=0.25, ge=0, le=1)
    #: E.3.3: consecutive warning days that make an alarm (A/L, pressure and VOC alike).
    warning_days_to_alarm: int = Field(default=7, ge=1)
    #: E.3.3: A/L below / above these continuously for longer than ``extreme_s`` is an alarm at once.
    extreme_low: float = Field(default=0.6, gt=0)
    extreme_high: float = Field(default=1.5, gt=0)
    extreme_s: float = Field(default=24 * 3600.0, gt=0)
    #: E.3.3: gauge pressure within ±this (Pa) for more than ``zero_pressure_s`` in a day: not sealed.
    zero_band_pa: float = Field(default=50.0, ge=0)
    zero_pressure_s: float = Field(default=12 * 3600.0, gt=0)
    #: E.3.3 asks for a pressure sample at least every 30 s; a gap longer than this between two samples
    #: breaks a continuous stretch (no data is no evidence either way). Minute data (HJ 212 CN 2051)
    #: fits within it.
    pressure_max_gap_s: float = Field(default=300.0, gt=0)
    #: E.3.3: VOC leak sensor warning and immediate-alarm levels (µmol/mol).
    voc_warning_umol: float = Field(default=4_000.0, gt=0)
    voc_alarm_umol: float = Field(default=8_000.0, gt=0)
    #: §5.4: processing-unit outlet limit, 1-hour average (g/m³).
    outlet_limit_g_m3: float = Field(default=25.0, gt=0)
    #: §4.6.1: the processing unit starts at this pressure (Pa) ...
    processor_start_pa: float = Field(default=150.0)
    #: ... and one still stopped this long (s) with the pressure at or above it is not doing its job.
    processor_grace_s: float = Field(default=1800.0, gt=0)
    #: A local day is closed (judged) this long after it ends, by the monitor's clock: E.3.5 uploads
    #: come at least hourly, so the last hour's data still lands in its day.
    close_delay_s: float = Field(default=3600.0, ge=0)
    #: Daily records kept in the station's state for the API (E.3.4 asks the *monitor* to keep ≥ 1 year;
    #: the twin's input log keeps every event, so records can be rebuilt by replay).
    history_days: int = Field(default=31, ge=1)


@dataclass(frozen=True, slots=True)
class VaporAction:
    """Raise (or update) an alert, or close one; the actor applies it to the station's AlertBook."""

    op: Literal["raise", "close"]
    code: str
    entity: str
    severity: str = "warning"
    metrics: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def _day_end(day_no: int) -> float:
    return (day_no + 1) * _DAY_S - _OFFSET_S


def _day_start(day_no: int) -> float:
    return day_no * _DAY_S - _OFFSET_S


def _day_name(day_no: int) -> str:
    return local_day(_day_start(day_no))


# --------------------------------------------------------------------------------------------------
# Per nozzle


@dataclass(slots=True)
class _NozzleDay:
    fills: int = 0
    valid: list[float] = field(default_factory=list)


@dataclass(slots=True)
class NozzleJudge:
    """One gasoline nozzle's A/L judgement across days (E.3.3)."""

    id: str
    #: A/L of valid fills not yet judged (carried over from days with fewer than 5).
    pool: list[float] = field(default_factory=list)
    pool_since: str | None = None
    warning_days: int = 0
    warning: bool = False
    alarm_days: bool = False
    #: Start (event time) of the current run of extreme fills (A/L < 0.6 or > 1.5), and its last fill.
    extreme_since: float | None = None
    extreme_alarm: bool = False
    last_fill_ts: float | None = None
    last_a_l: float | None = None
    out_of_order: int = 0

    def fill(self, ts: float, a_l: float, s: VaporSettings) -> list[VaporAction]:
        """The continuous extreme rule, on each valid fill in event-time order."""
        if self.last_fill_ts is not None and ts < self.last_fill_ts:
            self.out_of_order += 1  # judged in its day, but cannot say what was continuous
            return []
        self.last_fill_ts = ts
        self.last_a_l = a_l
        if a_l < s.extreme_low or a_l > s.extreme_high:
            if self.extreme_since is None:
                self.extreme_since = ts
            elif ts - self.extreme_since > s.extreme_s:
                self.extreme_alarm = True
                hours = (ts - self.extreme_since) / 3600.0
                return [VaporAction("raise", "VAPOR_AL_ALARM", self.id, "alarm",
                                    {"a_l": a_l, "hours": hours, "rule": "E.3.3 extreme"},
                                    {"rule": "GB 20952-2020 E.3.3: A/L < 0.6 or > 1.5 continuously > 24 h",
                                     "since_ts": self.extreme_since, "last_a_l": round(a_l, 3),
                                     "hours": round(hours, 2)})]
        else:
            self.extreme_since = None
        return []

    def still_extreme(self, now: float, s: VaporSettings) -> list[VaporAction]:
        """A nozzle whose last valid fill was extreme stays so until a fill says otherwise: a quiet night
        after an extreme fill does not reset "continuously", so the 24 h are judged on the monitor's
        clock too, not only at the next fill (which may come hours later)."""
        if self.extreme_since is None or self.extreme_alarm or now - self.extreme_since <= s.extreme_s:
            return []
        self.extreme_alarm = True
        hours = (now - self.extreme_since) / 3600.0
        a_l = self.last_a_l if self.last_a_l is not None else 0.0
        return [VaporAction("raise", "VAPOR_AL_ALARM", self.id, "alarm",
                            {"a_l": a_l, "hours": hours, "rule": "E.3.3 extreme"},
                            {"rule": "GB 20952-2020 E.3.3: A/L < 0.6 or > 1.5 continuously > 24 h",
                             "since_ts": self.extreme_since, "last_a_l": round(a_l, 3),
                             "last_fill_ts": self.last_fill_ts, "hours": round(hours, 2)})]

    def close_day(self, day: str, bucket: _NozzleDay | None, ts: float, s: VaporSettings
                  ) -> tuple[dict[str, Any], list[VaporAction]]:
        """Judge one closed day; return its record and the alert changes."""
        valid = bucket.valid if bucket is not None else []
        carried = len(self.pool)
        if valid and self.pool_since is None:
            self.pool_since = day
        self.pool.extend(valid)
        rec: dict[str, Any] = {
            "day": day, "nozzle": self.id, "fills": bucket.fills if bucket else 0, "valid_fills": len(valid),
            "carried_in": carried, "median_a_l": _r(_median(valid), 3),
            "share_in_range": _r(sum(s.al_low <= a <= s.al_high for a in valid) / len(valid), 4)
            if valid else None,
            "judged": False, "fills_judged": 0, "share_out_of_band": None, "warning": False,
        }
        actions: list[VaporAction] = []
        if len(self.pool) < s.min_fills_judged:
            rec["status"] = "alarm" if self.alarmed else ("not_judged" if self.pool else "no_data")
            return rec, actions
        pool, self.pool, since = self.pool, [], self.pool_since
        self.pool_since = None
        out = sum(a < s.warn_low or a > s.warn_high for a in pool)
        share = out / len(pool)
        warning_day = share > s.warn_share
        rec.update(judged=True, fills_judged=len(pool), share_out_of_band=round(share, 4),
                   warning=warning_day, pooled_since=since)
        metrics = {"share_pct": 100.0 * share, "fills": len(pool), "day": day, "median_a_l": _median(pool)}
        evidence = {"rule": "GB 20952-2020 E.3.3: > 25 % of valid fills with A/L < 0.9 or > 1.3 in a day",
                    "day": day, "fills_judged": len(pool), "out_of_band": out,
                    "median_a_l": _r(_median(pool), 3), "pooled_since": since}
        if warning_day:
            self.warning_days += 1
            self.warning = True
            actions.append(VaporAction("raise", "VAPOR_AL_WARNING", self.id, "warning",
                                       {**metrics, "days": self.warning_days},
                                       {**evidence, "consecutive_warning_days": self.warning_days}))
            if self.warning_days >= s.warning_days_to_alarm:
                self.alarm_days = True
                actions.append(VaporAction(
                    "raise", "VAPOR_AL_ALARM", self.id, "alarm",
                    {"a_l": _median(pool), "hours": 24.0 * self.warning_days, "days": self.warning_days,
                     "rule": "E.3.3 7 days"},
                    {"rule": "GB 20952-2020 E.3.3: 7 consecutive warning days", "day": day,
                     "consecutive_warning_days": self.warning_days}))
        else:
            self.warning_days = 0
            if self.warning:
                self.warning = False
                actions.append(VaporAction("close", "VAPOR_AL_WARNING", self.id))
            self.alarm_days = False
            if self.extreme_since is None:
                self.extreme_alarm = False
            if not self.alarmed:
                actions.append(VaporAction("close", "VAPOR_AL_ALARM", self.id))
        rec["status"] = "alarm" if self.alarmed else ("warning" if warning_day else "compliant")
        return rec, actions

    @property
    def alarmed(self) -> bool:
        return self.alarm_days or self.extreme_alarm


def _r(x: float | None, nd: int) -> float | None:
    return None if x is None else round(x, nd)


# --------------------------------------------------------------------------------------------------
# Per station


@dataclass(slots=True)
class _StationDay:
    pressure_samples: int = 0
    pressure_min: float | None = None
    pressure_max: float | None = None
    pressure_sum: float = 0.0
    #: Longest continuous stretch with |p| within the band, inside this day (s).
    zero_longest_s: float = 0.0
    zero_warned: bool = False
    voc_samples: int = 0
    voc_max: float | None = None
    voc_warned: bool = False
    processor_states: dict[str, int] = field(default_factory=dict)
    processor_run_s: float = 0.0
    outlet_max_hourly: float | None = None
    nozzles: dict[str, _NozzleDay] = field(default_factory=dict)


@dataclass(slots=True)
class _Hour:
    hour_no: int = -1
    total: float = 0.0
    n: int = 0


class VaporMonitor:
    """A station's vapor-recovery judgement and its daily records; plain data, so it pickles."""

    def __init__(self, station: str, gasoline_nozzles: list[str] | tuple[str, ...], settings: VaporSettings):
        self.station = station
        self.s = settings
        self.nozzles = {n: NozzleJudge(n) for n in gasoline_nozzles}
        self.clock: float | None = None
        self.days: dict[int, _StationDay] = {}
        self.closed_through: int | None = None
        #: Completed daily records, oldest first: ``{"day", "station": {...}, "nozzles": [...]}``.
        self.history: list[dict[str, Any]] = []
        self.ignored_fills = 0
        self.late_events = 0
        # pressure
        self.last_env_ts: float | None = None
        self.zero_since: float | None = None
        self.pressure_warning_days = 0
        self.pressure_open: str | None = None  # severity of the open VAPOR_PRESSURE alert
        self.last_pressure: float | None = None
        # VOC
        self.voc_warning_days = 0
        self.voc_open: str | None = None
        self.last_voc: float | None = None
        # processing unit
        self.processor_state = "absent"
        self.stopped_high_since: float | None = None
        self.processor_rule: str | None = None  # the rule of the open VAPOR_PROCESSOR alert
        self.processor_ok_since: float | None = None
        self.hour = _Hour()
        self.last_outlet: float | None = None
        self.outlet_bad_hour: int | None = None

    # ---- input ----------------------------------------------------------------------------------

    def _day(self, ts: float) -> tuple[int, _StationDay] | None:
        """The open day of ``ts``, or None (counted late) when that day is closed already."""
        no = local_day_number(ts)
        if self.closed_through is not None and no <= self.closed_through:
            self.late_events += 1
            return None
        day = self.days.get(no)
        if day is None:
            day = self.days[no] = _StationDay()
        return no, day

    def fill(self, ts: float, nozzle: str, a_l: float, liquid_l: float,
             fill_end_ts: float | None = None) -> list[VaporAction]:
        judge = self.nozzles.get(nozzle)
        if judge is None:
            self.ignored_fills += 1  # a diesel nozzle: no vapor recovery to judge
            return self._advance(ts)
        at = fill_end_ts if fill_end_ts is not None else ts
        actions: list[VaporAction] = []
        found = self._day(at)
        if found is not None:
            bucket = found[1].nozzles.setdefault(nozzle, _NozzleDay())
            bucket.fills += 1
            if liquid_l >= self.s.min_valid_fill_l:  # E.3.3: valid fills only
                insort(bucket.valid, a_l)
                actions += judge.fill(at, a_l, self.s)
        return actions + self._advance(ts)

    def env(self, ts: float, pressure_pa: float, processor_state: str, outlet_g_m3: float | None,
            voc_umol_mol: float | None) -> list[VaporAction]:
        actions: list[VaporAction] = []
        found = self._day(ts)
        in_order = self.last_env_ts is None or ts > self.last_env_ts
        if found is not None and in_order:
            no, day = found
            actions += self._pressure(ts, no, day, pressure_pa)
            actions += self._voc(ts, day, voc_umol_mol)
            actions += self._processor(ts, day, pressure_pa, processor_state, outlet_g_m3)
            self.last_env_ts = ts
        elif found is not None:
            self.late_events += 1
        return actions + self._advance(ts)

    # ---- pressure (E.3.3 zero-pressure rule) -----------------------------------------------------

    def _pressure(self, ts: float, no: int, day: _StationDay, p: float) -> list[VaporAction]:
        s = self.s
        self.last_pressure = p
        day.pressure_samples += 1
        day.pressure_sum += p
        day.pressure_min = p if day.pressure_min is None else min(day.pressure_min, p)
        day.pressure_max = p if day.pressure_max is None else max(day.pressure_max, p)
        gap_ok = self.last_env_ts is not None and ts - self.last_env_ts <= s.pressure_max_gap_s
        if abs(p) <= s.zero_band_pa:
            if self.zero_since is None or not gap_ok:
                self.zero_since = ts
        else:
            self.zero_since = None
            return []
        stretch = ts - max(self.zero_since, _day_start(no))  # "in a day": clipped at local midnight
        day.zero_longest_s = max(day.zero_longest_s, stretch)
        if stretch <= s.zero_pressure_s or day.zero_warned:
            return []
        day.zero_warned = True
        hours = stretch / 3600.0
        severity = self.pressure_open or "warning"
        self.pressure_open = severity
        return [VaporAction("raise", "VAPOR_PRESSURE", "", severity,
                            {"hours": hours, "days": self.pressure_warning_days + 1, "pressure_pa": p},
                            {"rule": "GB 20952-2020 E.3.3: pressure within ±50 Pa > 12 h in a day "
                                     "(not sealed)",
                             "since_ts": self.zero_since, "hours": round(hours, 2),
                             "day": _day_name(no)})]

    # ---- VOC leak sensor (E.3.3) -----------------------------------------------------------------

    def _voc(self, ts: float, day: _StationDay, voc: float | None) -> list[VaporAction]:
        if voc is None:
            return []
        s = self.s
        self.last_voc = voc
        day.voc_samples += 1
        day.voc_max = voc if day.voc_max is None else max(day.voc_max, voc)
        if voc >= s.voc_alarm_umol:
            day.voc_warned = True
            self.voc_open = "alarm"
            return [VaporAction("raise", "VAPOR_VOC", "", "alarm", {"umol_per_mol": voc, "level": "alarm"},
                                {"rule": "GB 20952-2020 E.3.3: VOC ≥ 8000 µmol/mol → alarm at once",
                                 "umol_per_mol": voc, "ts": ts})]
        if voc >= s.voc_warning_umol and not day.voc_warned:
            day.voc_warned = True
            self.voc_open = self.voc_open or "warning"
            return [VaporAction("raise", "VAPOR_VOC", "", self.voc_open,
                                {"umol_per_mol": voc, "level": "warning"},
                                {"rule": "GB 20952-2020 E.3.3: VOC ≥ 4000 µmol/mol → warning",
                                 "umol_per_mol": voc, "ts": ts})]
        return []

    # ---- processing unit (§4.6.1, §5.4) ----------------------------------------------------------

    def _processor(self, ts: float, day: _StationDay, p: float, state: str, outlet: float | None
                   ) -> list[VaporAction]:
        s = self.s
        previous_ts = self.last_env_ts
        if state == "running" and self.processor_state == "running" and previous_ts is not None:
            day.processor_run_s += min(ts - previous_ts, s.pressure_max_gap_s)
        self.processor_state = state
        day.processor_states[state] = day.processor_states.get(state, 0) + 1
        if state == "absent":
            return []
        actions: list[VaporAction] = []
        bad: tuple[str, dict[str, Any], dict[str, Any]] | None = None
        if state == "fault":
            bad = ("state", {"rule_zh": "装置报告故障", "rule_en": "the unit reports a fault"},
                   {"rule": "GB 20952-2020 §4.5.4: processing unit state", "state": state})
        if state == "stopped" and p >= s.processor_start_pa:
            if self.stopped_high_since is None:
                self.stopped_high_since = ts
            elif ts - self.stopped_high_since >= s.processor_grace_s:
                bad = ("§4.6.1", {"rule_zh": f"压力 {p:.0f} Pa 时未启动",
                                  "rule_en": f"not started at {p:.0f} Pa"},
                       {"rule": "GB 20952-2020 §4.6.1: the unit starts at +150 Pa", "pressure_pa": p,
                        "since_ts": self.stopped_high_since})
        else:
            self.stopped_high_since = None
        # §5.4: 1-hour average outlet concentration.
        hour_no = int((ts + _OFFSET_S) // 3600.0)
        if hour_no != self.hour.hour_no:
            if self.hour.n:
                avg = self.hour.total / self.hour.n
                day.outlet_max_hourly = avg if day.outlet_max_hourly is None else max(day.outlet_max_hourly,
                                                                                      avg)
                if avg > s.outlet_limit_g_m3:
                    self.outlet_bad_hour = self.hour.hour_no
                    self.last_outlet = avg
                else:
                    self.outlet_bad_hour = None
            self.hour = _Hour(hour_no)
        if outlet is not None and state == "running":
            self.hour.total += outlet
            self.hour.n += 1
        if bad is None and self.outlet_bad_hour is not None:
            avg = self.last_outlet or 0.0
            bad = ("§5.4", {"rule_zh": f"排放浓度小时均值 {avg:.1f} g/m³ 超过 25 g/m³",
                            "rule_en": f"outlet {avg:.1f} g/m³ (1-hour average) above 25 g/m³"},
                   {"rule": "GB 20952-2020 §5.4: outlet ≤ 25 g/m³ (1-hour average)",
                    "hourly_avg_g_m3": round(avg, 2)})
        if bad is not None:
            rule, metrics, evidence = bad
            self.processor_ok_since = None
            if self.processor_rule is None:
                self.processor_rule = rule
                actions.append(VaporAction("raise", "VAPOR_PROCESSOR", "", "alarm",
                                           {**metrics, "state": state, "rule": rule}, evidence))
        elif self.processor_rule is not None:
            if self.processor_ok_since is None:
                self.processor_ok_since = ts
            elif ts - self.processor_ok_since >= s.processor_grace_s:
                self.processor_rule = None
                self.processor_ok_since = None
                actions.append(VaporAction("close", "VAPOR_PROCESSOR", ""))
        return actions

    # ---- days ------------------------------------------------------------------------------------

    def _advance(self, ts: float) -> list[VaporAction]:
        """Move the monitor's clock; close every open day that ended ``close_delay_s`` ago."""
        if self.clock is not None and ts <= self.clock:
            return []
        self.clock = ts
        actions: list[VaporAction] = []
        for judge in self.nozzles.values():  # the extreme rule also runs between fills (see NozzleJudge)
            actions += judge.still_extreme(ts, self.s)
        for no in sorted(self.days):
            if _day_end(no) + self.s.close_delay_s > ts:
                break
            actions += self._close_day(no, ts)
        return actions

    def _close_day(self, no: int, ts: float) -> list[VaporAction]:
        s = self.s
        day = self.days.pop(no)
        self.closed_through = no if self.closed_through is None else max(self.closed_through, no)
        name = _day_name(no)
        actions: list[VaporAction] = []
        records = []
        for nid, judge in self.nozzles.items():
            rec, acts = judge.close_day(name, day.nozzles.get(nid), ts, s)
            records.append(rec)
            actions += acts
        # Pressure days (E.3.3): a warning day extends the run, a day with data and no warning ends it.
        pressure_warn = day.zero_longest_s > s.zero_pressure_s
        if pressure_warn:
            self.pressure_warning_days += 1
            if self.pressure_warning_days >= s.warning_days_to_alarm:
                self.pressure_open = "alarm"
                actions.append(VaporAction("raise", "VAPOR_PRESSURE", "", "alarm",
                                           {"hours": day.zero_longest_s / 3600.0,
                                            "days": self.pressure_warning_days},
                                           {"rule": "GB 20952-2020 E.3.3: 7 consecutive days not sealed",
                                            "consecutive_days": self.pressure_warning_days, "day": name}))
        elif day.pressure_samples:
            self.pressure_warning_days = 0
            if self.pressure_open is not None:
                self.pressure_open = None
                actions.append(VaporAction("close", "VAPOR_PRESSURE", ""))
        if day.voc_warned:
            self.voc_warning_days += 1
            if self.voc_warning_days >= s.warning_days_to_alarm and self.voc_open != "alarm":
                self.voc_open = "alarm"
                actions.append(VaporAction("raise", "VAPOR_VOC", "", "alarm",
                                           {"umol_per_mol": day.voc_max or 0.0, "level": "alarm"},
                                           {"rule": "GB 20952-2020 E.3.3: 7 consecutive VOC warning days",
                                            "consecutive_days": self.voc_warning_days, "day": name}))
        elif day.voc_samples:
            self.voc_warning_days = 0
            if self.voc_open is not None:
                self.voc_open = None
                actions.append(VaporAction("close", "VAPOR_VOC", ""))
        valid = [a for nid in self.nozzles for a in (day.nozzles[nid].valid if nid in day.nozzles else [])]
        judged = [r for r in records if r["judged"]]
        station = {
            "day": name,
            "nozzles_judged": len(judged),
            "nozzles_warning": sum(r["warning"] for r in records),
            "nozzles_alarm": sum(r["status"] == "alarm" for r in records),
            "fills_judged": sum(r["fills_judged"] for r in records),
            "valid_fills": len(valid),
            "share_in_range": _r(sum(s.al_low <= a <= s.al_high for a in valid) / len(valid), 4)
            if valid else None,
            "median_a_l": _r(_median(sorted(valid)), 3),
            "pressure": {"samples": day.pressure_samples, "min_pa": _r(day.pressure_min, 1),
                         "max_pa": _r(day.pressure_max, 1),
                         "mean_pa": _r(day.pressure_sum / day.pressure_samples, 1) if day.pressure_samples
                         else None,
                         "longest_near_zero_h": round(day.zero_longest_s / 3600.0, 2),
                         "warning": pressure_warn,
                         "consecutive_warning_days": self.pressure_warning_days},
            "voc": {"samples": day.voc_samples, "max_umol_mol": day.voc_max, "warning": day.voc_warned,
                    "consecutive_warning_days": self.voc_warning_days},
            "processor": {"states": dict(day.processor_states),
                          "run_h": round(day.processor_run_s / 3600.0, 2),
                          "outlet_max_hourly_g_m3": _r(day.outlet_max_hourly, 2),
                          "alarm": self.processor_rule},
            "late_events_total": self.late_events,
        }
        station["status"] = self._status(records, pressure_warn, day.voc_warned)
        self.history.append({"day": name, "station": station, "nozzles": records})
        del self.history[:-s.history_days]
        return actions

    def _status(self, records: list[dict[str, Any]], pressure_warn: bool, voc_warn: bool) -> str:
        if (any(r["status"] == "alarm" for r in records) or self.pressure_open == "alarm"
                or self.voc_open == "alarm" or self.processor_rule is not None):
            return "alarm"
        if any(r["warning"] for r in records) or pressure_warn or voc_warn:
            return "warning"
        if any(r["judged"] for r in records) or self.last_env_ts is not None:
            return "compliant"
        return "no_data"

    # ---- view ------------------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """Whether this station has ever sent vapor data (the UI hides the panel otherwise)."""
        return self.clock is not None

    def live_status(self) -> str:
        """Today's status so far: alarms and warnings open now, else the last closed day's."""
        alarm = (any(j.alarmed for j in self.nozzles.values()) or self.pressure_open == "alarm"
                 or self.voc_open == "alarm" or self.processor_rule is not None)
        if alarm:
            return "alarm"
        if (any(j.warning for j in self.nozzles.values()) or self.pressure_open is not None
                or self.voc_open is not None):
            return "warning"
        return "compliant" if self.active else "no_data"

    def state(self) -> dict[str, Any]:
        open_day = max(self.days) if self.days else None
        today: dict[str, Any] | None = None
        if open_day is not None:
            d = self.days[open_day]
            valid = [a for nd in d.nozzles.values() for a in nd.valid]
            today = {"day": _day_name(open_day), "valid_fills": len(valid),
                     "median_a_l": _r(_median(sorted(valid)), 3),
                     "share_in_range": _r(sum(self.s.al_low <= a <= self.s.al_high for a in valid)
                                          / len(valid), 4) if valid else None,
                     "longest_near_zero_h": round(d.zero_longest_s / 3600.0, 2),
                     "voc_max_umol_mol": d.voc_max}
        return {
            "active": self.active, "clock": self.clock, "status": self.live_status(), "today": today,
            "pressure_pa": self.last_pressure, "processor_state": self.processor_state,
            "voc_umol_mol": self.last_voc, "late_events": self.late_events,
            "ignored_fills": self.ignored_fills,
            "nozzles": [{"id": j.id, "last_a_l": j.last_a_l, "carried_fills": len(j.pool),
                         "warning_days": j.warning_days, "warning": j.warning, "alarm": j.alarmed}
                        for j in self.nozzles.values()],
            "history": self.history,
        }
