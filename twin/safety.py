"""Safety devices and inspections of a station (issue 6: emergency management and market supervision).

Field devices report ``safety.reading`` events (through the Modbus bridge, with a ``safety_sensor``
profile); inspectors' handheld reports arrive as ``inspection.report`` (``POST /api/v1/inspections``).
This module turns them into alerts, in event time:

- ``GAS_LEL`` — a combustible gas detector at or above the first alarm level (``lel_warning_pct``,
  warning) or the second (``lel_alarm_pct``, alarm). GB/T 50493-2019 (石油化工可燃气体和有毒气体检测报警
  设计标准) sets the first-level alarm at ≤ 25 %LEL and the second at ≤ 50 %LEL; those are the defaults.
  It ends when the reading falls below ``lel_clear_share`` of the first level.
- ``INTERSTITIAL_LEAK`` — the interstitial space of a double-walled tank reports liquid or loss of
  vacuum (``leak``, alarm); a sensor ``fault`` is a warning (the tank is then unwatched). ``ok`` ends it.
- ``UNLOADING_UNGROUNDED`` — the static-grounding clamp is not connected while product is unloaded
  (the clamp's own interlock says so, or the twin sees a delivery under way in a tank of the station).
- ``UNSAFE_BEHAVIOUR`` — video analytics: smoking or unloading without an attendant (alarm), phone use
  and other behaviour (warning); one alert per camera counts occurrences and ends after
  ``behaviour_quiet_s`` without one.
- ``INSPECTION_FINDING`` — a handheld report with findings or a failed checklist item; its severity
  follows the report's (minor → warning, major → alarm, critical → critical). A later report with no
  finding and every item passed ends it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from twin.vapor import VaporAction as AlertAction

SAFETY_CODES = ("GAS_LEL", "INTERSTITIAL_LEAK", "UNLOADING_UNGROUNDED", "UNSAFE_BEHAVIOUR",
                "INSPECTION_FINDING")

#: Behaviour seen by video analytics → (severity, zh, en).
BEHAVIOURS: dict[str, tuple[str, str, str]] = {
    "smoking": ("alarm", "吸烟", "smoking"),
    "unattended_unloading": ("alarm", "卸油无人监护", "unloading without an attendant"),
    "phone": ("warning", "使用手机", "phone use"),
}
_REPORT_SEVERITY = {"info": "warning", "minor": "warning", "major": "alarm", "critical": "critical"}


class SafetySettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: GB/T 50493-2019: first-level alarm ≤ 25 %LEL, second-level ≤ 50 %LEL.
    lel_warning_pct: float = Field(default=25.0, gt=0)
    lel_alarm_pct: float = Field(default=50.0, gt=0)
    #: A GAS_LEL alert ends when the reading is below this share of the first level (hysteresis).
    lel_clear_share: float = Field(default=0.8, gt=0, le=1)
    #: An UNSAFE_BEHAVIOUR alert ends this long after the camera's last occurrence (s).
    behaviour_quiet_s: float = Field(default=3600.0, gt=0)


@dataclass(slots=True)
class SafetyMonitor:
    settings: SafetySettings = field(default_factory=SafetySettings)
    lel_open: dict[str, str] = field(default_factory=dict)  # device → severity
    interstitial_open: set[str] = field(default_factory=set)
    ungrounded_open: set[str] = field(default_factory=set)
    behaviour_last: dict[str, float] = field(default_factory=dict)  # camera → last occurrence ts
    behaviour_count: dict[str, int] = field(default_factory=dict)
    finding_open: bool = False
    last_readings: dict[str, dict[str, Any]] = field(default_factory=dict)
    reports: int = 0

    def reading(self, ev: Any, delivering: bool) -> list[AlertAction]:
        s = self.settings
        device = ev.device
        entity = ev.entity or device
        self.last_readings[device] = {"sensor": ev.sensor, "value": ev.value, "state": ev.state,
                                      "ts": ev.ts, "entity": ev.entity}
        if ev.sensor == "gas_lel" and ev.value is not None:
            v = ev.value
            severity = "alarm" if v >= s.lel_alarm_pct else "warning" if v >= s.lel_warning_pct else None
            if severity is not None:
                self.lel_open[device] = severity
                return [AlertAction("raise", "GAS_LEL", entity, severity, {"lel_pct": v},
                                    {"rule": "GB/T 50493-2019: 1st level ≤ 25 %LEL, 2nd ≤ 50 %LEL",
                                     "device": device, "lel_pct": v, "ts": ev.ts})]
            if device in self.lel_open and v < s.lel_clear_share * s.lel_warning_pct:
                del self.lel_open[device]
                return [AlertAction("close", "GAS_LEL", entity)]
            return []
        if ev.sensor == "interstitial":
            if ev.state in ("leak", "fault"):
                self.interstitial_open.add(device)
                severity = "alarm" if ev.state == "leak" else "warning"
                return [AlertAction("raise", "INTERSTITIAL_LEAK", entity, severity, {"state": ev.state},
                                    {"device": device, "state": ev.state, "ts": ev.ts})]
            if ev.state == "ok" and device in self.interstitial_open:
                self.interstitial_open.discard(device)
                return [AlertAction("close", "INTERSTITIAL_LEAK", entity)]
            return []
        if ev.sensor == "grounding":
            unloading = ev.unloading or delivering
            if ev.state == "ungrounded" and unloading:
                self.ungrounded_open.add(device)
                return [AlertAction("raise", "UNLOADING_UNGROUNDED", entity, "alarm", {},
                                    {"device": device, "clamp_interlock": ev.unloading,
                                     "delivery_in_progress": delivering, "ts": ev.ts})]
            if device in self.ungrounded_open and (ev.state == "grounded" or not unloading):
                self.ungrounded_open.discard(device)
                return [AlertAction("close", "UNLOADING_UNGROUNDED", entity)]
            return []
        if ev.sensor == "video" and ev.state:
            severity, zh, en = BEHAVIOURS.get(ev.state, ("warning", ev.state, ev.state))
            self.behaviour_last[device] = ev.ts
            self.behaviour_count[device] = self.behaviour_count.get(device, 0) + 1
            return [AlertAction("raise", "UNSAFE_BEHAVIOUR", device, severity,
                                {"behaviour_zh": zh, "behaviour_en": en,
                                 "count": self.behaviour_count[device]},
                                {"camera": device, "behaviour": ev.state, "ts": ev.ts})]
        return []

    def report(self, ev: Any) -> list[AlertAction]:
        self.reports += 1
        failed = sorted(k for k, ok in ev.checks.items() if not ok)
        issues = list(ev.findings) + [f"未通过 / failed: {k}" for k in failed]
        if issues:
            self.finding_open = True
            severity = _REPORT_SEVERITY.get(ev.severity, "warning")
            return [AlertAction("raise", "INSPECTION_FINDING", "", severity,
                                {"findings": len(issues), "first": issues[0][:80]},
                                {"inspector": ev.device, "findings": issues, "failed_checks": failed,
                                 "report_severity": ev.severity, "ts": ev.ts, "source": ev.source})]
        if self.finding_open:
            self.finding_open = False
            return [AlertAction("close", "INSPECTION_FINDING", "")]
        return []

    def tick(self, ts: float) -> list[AlertAction]:
        out = []
        for device, last in list(self.behaviour_last.items()):
            if ts - last >= self.settings.behaviour_quiet_s:
                del self.behaviour_last[device]
                self.behaviour_count.pop(device, None)
                out.append(AlertAction("close", "UNSAFE_BEHAVIOUR", device))
        return out

    def state(self) -> dict[str, Any]:
        return {"devices": self.last_readings, "reports": self.reports}
