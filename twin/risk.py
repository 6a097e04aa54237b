"""A station's risk score (0–100) with the reasons for it: what the district's bureaus watch most.

The score is a plain sum of listed contributions, capped at 100, so that every point traces to an
alert or a record a regulator can open:

- **open alerts** (every kind: wetstock, dispenser, vapor, safety, inspection findings): points by
  severity (``severity_points``), growing with the alert's age up to ``age_factor_max`` × after
  ``age_full_h`` (an old unresolved problem weighs more than a new one), halved once a person has
  acknowledged it (someone is on it);
- **alert history**: alarms and critical alerts closed in the last ``history_days`` (a station that keeps
  having them), ``history_points`` each;
- **vapor compliance history**: warning and alarm days in the station's daily GB 20952 records of the
  last ``history_days`` (``twin/vapor.py``);
- **data gaps**: tanks whose gauge has gone stale, a station with no readings at all, a vapor monitor
  silent for more than ``vapor_silent_s`` while the station's clock moves on.

Pure: it reads alert dicts and the station's state dict (as the twin writes them) and the twin's clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twin.timeutil import local_day

_DAY = 86_400.0

#: Alerts about the platform, not the station (the twin failing on its events): no risk points.
PLATFORM_CODES = frozenset({"TWIN_FAULT"})
#: How the severities read in a Chinese reason (the alert's own code stays in the evidence).
SEVERITY_ZH = {"info": "提示", "warning": "预警", "alarm": "报警", "critical": "严重"}


@dataclass(frozen=True, slots=True)
class RiskSettings:
    severity_points: Mapping[str, float] = field(default_factory=lambda: {
        "info": 0.0, "warning": 8.0, "alarm": 20.0, "critical": 35.0})
    age_full_h: float = 168.0
    age_factor_max: float = 2.0
    acknowledged_factor: float = 0.5
    history_days: float = 30.0
    history_points: float = 3.0
    vapor_warning_day_points: float = 1.0
    vapor_alarm_day_points: float = 3.0
    stale_tank_points: float = 6.0
    offline_points: float = 10.0
    vapor_silent_s: float = 2 * 3600.0
    vapor_silent_points: float = 5.0
    #: Bands for the level shown next to the score.
    levels: tuple[tuple[float, str], ...] = ((60.0, "high"), (25.0, "medium"), (0.0, "low"))


def _contribution(points: float, kind: str, zh: str, en: str, source: dict[str, Any]) -> dict[str, Any]:
    return {"points": round(points, 1), "kind": kind, "reason_zh": zh, "reason_en": en, "source": source}


def station_risk(station: str, alerts: Iterable[Mapping[str, Any]], state: Mapping[str, Any] | None,
                 now: float, settings: RiskSettings | None = None) -> dict[str, Any]:
    """Score and contributions (largest first) of one station at event time ``now``."""
    s = settings or RiskSettings()
    out: list[dict[str, Any]] = []
    horizon = now - s.history_days * _DAY
    for a in alerts:
        if a.get("station") != station or a.get("severity") == "info" or a.get("code") in PLATFORM_CODES:
            continue
        base = s.severity_points.get(a.get("severity", "warning"), 0.0)
        if a.get("status") == "closed":
            closed_ts = a.get("last_ts", 0.0)
            if a.get("severity") in ("alarm", "critical") and closed_ts >= horizon:
                days = f"{s.history_days:.0f}"
                out.append(_contribution(s.history_points, "alert_history",
                                         f"近 {days} 天内的报警（已关闭）：{a.get('message_zh', '')}",
                                         f"alarm in the last {days} days (closed): {a.get('message_en', '')}",
                                         {"alert": a["id"]}))
            continue
        age_h = max(0.0, now - a.get("first_ts", now)) / 3600.0
        factor = 1.0 + (s.age_factor_max - 1.0) * min(age_h, s.age_full_h) / s.age_full_h
        acked = a.get("status") == "acknowledged"
        points = base * factor * (s.acknowledged_factor if acked else 1.0)
        severity_zh = SEVERITY_ZH.get(a["severity"], a["severity"])
        note_zh = f"（{severity_zh}，已持续 {age_h:.0f} 小时{'，已确认' if acked else ''}）"
        note_en = f" ({a['severity']}, open {age_h:.0f} h{', acknowledged' if acked else ''})"
        out.append(_contribution(points, "open_alert", a.get("message_zh", a["code"]) + note_zh,
                                 a.get("message_en", a["code"]) + note_en,
                                 {"alert": a["id"], "code": a["code"], "entity": a.get("entity", "")}))
    state = state or {}
    vapor = state.get("vapor") or {}
    warn_days, alarm_days = [], []
    first_day = local_day(horizon)
    for rec in vapor.get("history", []):
        if rec["day"] < first_day:
            continue
        status = rec.get("station", {}).get("status")
        if status == "warning":
            warn_days.append(rec["day"])
        elif status == "alarm":
            alarm_days.append(rec["day"])
    if warn_days or alarm_days:
        points = s.vapor_warning_day_points * len(warn_days) + s.vapor_alarm_day_points * len(alarm_days)
        nw, na = len(warn_days), len(alarm_days)
        out.append(_contribution(points, "vapor_compliance",
                                 f"油气回收：{nw} 天预警、{na} 天报警（GB 20952-2020）",
                                 f"vapor recovery: {nw} warning and {na} alarm days (GB 20952-2020)",
                                 {"record": "vapor_daily", "warning_days": warn_days,
                                  "alarm_days": alarm_days}))
    tanks = state.get("tanks", [])
    if not tanks or all(t.get("last_ts") is None for t in tanks):
        out.append(_contribution(s.offline_points, "data_gap", "站点无液位数据",
                                 "no tank readings from the station", {"record": "state", "field": "tanks"}))
    for t in tanks:
        if t.get("stale"):
            out.append(_contribution(s.stale_tank_points, "data_gap", f"{t['id']} 液位数据中断",
                                     f"{t['id']} gauge data stopped",
                                     {"record": "state", "tank": t["id"], "last_ts": t.get("last_ts")}))
    clock = vapor.get("clock")
    if clock is not None and now - clock > s.vapor_silent_s:
        out.append(_contribution(s.vapor_silent_points, "data_gap",
                                 f"油气回收在线监测 {(now - clock) / 3600:.1f} 小时无数据",
                                 f"vapor monitor silent for {(now - clock) / 3600:.1f} h",
                                 {"record": "vapor", "last_ts": clock}))
    out.sort(key=lambda c: -c["points"])
    score = min(100.0, sum(c["points"] for c in out))
    level = next(name for floor, name in s.levels if score >= floor)
    return {"station": station, "score": round(score, 1), "level": level, "contributions": out}


def rank(stations: Iterable[str], alerts: list[Mapping[str, Any]], states: Mapping[str, Mapping[str, Any]],
         now: float, settings: RiskSettings | None = None) -> list[dict[str, Any]]:
    """Every station's risk, highest first (ties by id)."""
    by: dict[str, list[Mapping[str, Any]]] = {}
    for a in alerts:
        by.setdefault(a.get("station", ""), []).append(a)
    scored = [station_risk(sid, by.get(sid, []), states.get(sid), now, settings) for sid in stations]
    scored.sort(key=lambda r: (-r["score"], r["station"]))
    return scored
