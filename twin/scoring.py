"""Scoring a fault scenario's run against the simulator's truth: plain data in, plain data out.

Alerts and deliveries as the twin emits them, and the simulator's ground truth reduced to
:class:`FaultTruth` and :class:`DeliveryTruth`, become which expectation was met by which alert and when,
which alerts were false, how far each recognised delivery's volume is from the truth, the aggregates over
seeds (probability of detection, false alarms per tank-month) and the plain-text table the runner prints.
The scenario format these read (expectations, alert vocabulary) is ``twin/scenarios.py``; running a
scenario is ``twin/scenario_runner.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twin.scenarios import (
    DELIVERY_GRACE_S,
    INFO_CODES,
    TANK_FOR_NOZZLE,
    Expectation,
    Scenario,
    detects,
    fmt_duration,
    names_nozzle,
)
from twin.timeutil import to_local

if TYPE_CHECKING:
    from twin.divergence_bins import DivergenceBins

__all__ = [
    "DeliveryTruth", "FaultTruth", "aggregate", "attach_divergence", "false_alarms", "format_table",
    "match_expectations", "score_deliveries", "score_run", "text_table",
]

# --------------------------------------------------------------------------------------------------
# Scoring: plain data in, plain data out


@dataclass(frozen=True, slots=True)
class FaultTruth:
    """What an injected fault did, reduced to what scoring needs (``simulators.truth.FaultRecord``)."""

    type: str
    station: str
    #: Tank or nozzle id; "" for the whole station.
    entity: str
    first_active_ts: float | None
    last_active_ts: float | None = None
    #: Every entity that shows the fault (a swapped board shows on each nozzle it drives).
    entities: tuple[str, ...] = ()
    #: The fault's parameters as the scenario gave them (a leak's ``rate_lph``): what estimates are
    #: scored against.
    params: Mapping[str, Any] = field(default_factory=dict)

    def covers(self, entity: str, tank_of_nozzle: str | None = None) -> bool:
        """Whether the fault shows on ``entity``: its own, every entity it touched, any for a whole-station
        fault, and (``tank_of_nozzle``, for codes in TANK_FOR_NOZZLE) the tank its nozzle draws from."""
        return (not self.entity or entity == self.entity or entity in self.entities
                or (tank_of_nozzle is not None and entity == tank_of_nozzle))

    @classmethod
    def of(cls, record: Any) -> FaultTruth:
        return cls(record.type, record.station, record.entity, record.first_active_ts, record.last_active_ts,
                   tuple(getattr(record, "entities", ()) or ()), dict(getattr(record, "params", {}) or {}))


@dataclass(frozen=True, slots=True)
class DeliveryTruth:
    station: str
    tank: str
    start_ts: float
    end_ts: float
    volume_l_20c: float

    @classmethod
    def of(cls, record: Any) -> DeliveryTruth:
        return cls(record.station, record.tank, record.start_ts, record.end_ts, record.volume_l_20c)


def iso(ts: float | None) -> str | None:
    """Beijing time of an event time, ISO 8601 with its offset."""
    return None if ts is None else to_local(ts).isoformat(timespec="seconds")


def unique_alerts(alerts: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One entry per alert id (its first version: the twin re-emits an alert when it escalates or
    closes), in order of first_ts then id."""
    seen: dict[str, dict[str, Any]] = {}
    for a in alerts:
        seen.setdefault(a["id"], dict(a))
    return sorted(seen.values(), key=lambda a: (a["first_ts"], a["id"]))


def _onsets(expect: Sequence[Expectation], faults: Sequence[FaultTruth], start_ts: float,
            tanks: Mapping[tuple[str, str], str]) -> list[tuple[float, FaultTruth | None]]:
    """The onset each expectation is timed from: the k-th expectation of one (code, station, entity)
    takes the k-th fault that maps to it (by first onset); with no such fault, the scenario's start."""
    used: set[tuple[int, str]] = set()  # (fault, code): a fault detected by two codes times both
    out: list[tuple[float, FaultTruth | None]] = []
    for e in expect:
        def fits(f: FaultTruth, e: Expectation = e) -> bool:
            return (detects(f.type, e.alert) and f.station == e.station
                    and (e.entity is None or f.covers(e.entity) or (
                        e.alert in TANK_FOR_NOZZLE and tanks.get((f.station, f.entity)) == e.entity)))

        cands = sorted((f.first_active_ts, i) for i, f in enumerate(faults)
                       if (i, e.alert) not in used and f.first_active_ts is not None and fits(f))
        if cands:
            used.add((cands[0][1], e.alert))
            f = faults[cands[0][1]]
            out.append((float(f.first_active_ts), f))  # type: ignore[arg-type]
        elif any(f.first_active_ts is None and fits(f) for f in faults):
            out.append((start_ts, IDLE))
        else:
            out.append((start_ts, None))
    return out


#: The onset of an expectation whose fault was injected but never acted in this run (a cheat switched
#: on 2 h in 8 that hid no fill at all by chance): nothing to detect, so it is not scored.
IDLE = FaultTruth("idle", "", "", None)


def match_expectations(expect: Sequence[Expectation], alerts: Iterable[Mapping[str, Any]],
                       faults: Sequence[FaultTruth], start_ts: float,
                       nozzle_tanks: Mapping[tuple[str, str], str] | None = None,
                       ) -> tuple[list[dict[str, Any]], set[str]]:
    """Score each expectation against the run's alerts (see docs/scenarios.md, 'Matching').

    Returns one result per expectation (in the file's order) and the ids of the alerts they account for:
    the detecting alert, a late one, and repeats of a detected fault (the same code on an entity the
    fault touched, from its onset until its last effect + the deadline) — none of these is a false alarm.
    ``nozzle_tanks`` maps (station, nozzle) to the tank it draws from, for the codes of TANK_FOR_NOZZLE.
    """
    tanks = nozzle_tanks or {}

    def tank_of(code: str, station: str, entity: str | None) -> str | None:
        return tanks.get((station, entity)) if code in TANK_FOR_NOZZLE and entity else None

    alerts = list(alerts)
    latest = {a["id"]: a for a in alerts}  # the last version: an estimate refined while open
    ordered = unique_alerts(alerts)
    onsets = _onsets(expect, faults, start_ts, tanks)
    claimed: set[str] = set()
    results: list[dict[str, Any] | None] = [None] * len(expect)
    # Earliest onset first, so two expectations of one kind take their alerts in time order.
    for k in sorted(range(len(expect)), key=lambda j: (onsets[j][0], j)):
        e = expect[k]
        onset, fault = onsets[k]
        if fault is IDLE:
            results[k] = {"alert": e.alert, "station": e.station, "entity": e.entity, "within_s": e.within,
                          "met": None, "exercised": False, "detected_at": None, "detected_ts": None,
                          "time_to_detect_s": None, "late": False, "alert_id": None, "alert_entity": None,
                          "metrics": None, "metrics_latest": None, "onset": "idle", "onset_ts": None,
                          "onset_at": None, "fault": None, "repeats": []}
            continue
        deadline = onset + e.within
        alt = tank_of(e.alert, e.station, e.entity)
        hit = next((a for a in ordered if a["id"] not in claimed and a["code"] == e.alert
                    and a["station"] == e.station
                    and (e.entity is None or a["entity"] == e.entity
                         or (alt is not None and a["entity"] == alt and names_nozzle(a, e.entity)))
                    and a["first_ts"] >= onset), None)
        met = hit is not None and hit["first_ts"] <= deadline
        repeats: list[str] = []
        if hit is not None:
            claimed.add(hit["id"])
            if fault is not None:
                until = (fault.last_active_ts if fault.last_active_ts is not None else onset) + e.within
                fault_tank = tank_of(e.alert, fault.station, fault.entity)
                for a in ordered:
                    if (a["id"] not in claimed and a["code"] == e.alert and a["station"] == e.station
                            and fault.covers(a["entity"], fault_tank) and onset <= a["first_ts"] <= until):
                        claimed.add(a["id"])
                        repeats.append(a["id"])
        results[k] = {
            "alert": e.alert, "station": e.station, "entity": e.entity, "within_s": e.within, "met": met,
            "detected_at": iso(hit["first_ts"]) if hit else None,
            "detected_ts": hit["first_ts"] if hit else None,
            "time_to_detect_s": (hit["first_ts"] - onset) if hit else None,
            "late": hit is not None and not met,
            "alert_id": hit["id"] if hit else None,
            "alert_entity": hit["entity"] if hit else None,
            "metrics": dict(hit.get("metrics") or {}) if hit else None,
            "metrics_latest": dict(latest[hit["id"]].get("metrics") or {}) if hit else None,
            "exercised": True,
            "onset": "fault" if fault is not None else "start",
            "onset_ts": onset, "onset_at": iso(onset),
            "fault": fault.type if fault is not None else None,
            "repeats": repeats,
        }
        if hit is not None and fault is not None:
            estimate = score_estimate(fault, hit, latest[hit["id"]])
            if estimate is not None:
                results[k]["estimate"] = estimate  # type: ignore[index]
    return [r for r in results if r is not None], claimed


#: Estimates an alert reports that the truth can score: fault type -> (fault parameter, alert metric,
#: the evidence field with its 95 % interval). A theft's litres at 20 °C against the alert's volume.
ESTIMATES = {"leak": ("rate_lph", "rate_lph", "ci95_lph"), "theft": ("volume_l", "volume_l", "ci95_l")}
#: An estimate counts as right within this relative error (issue 3: a leak's rate within ±30 %).
ESTIMATE_TOLERANCE = 0.30


def score_estimate(fault: FaultTruth, first: Mapping[str, Any], latest: Mapping[str, Any]
                   ) -> dict[str, Any] | None:
    """The detecting alert's estimate against the fault's true value, at its first report and its last
    refresh: relative error, within ±ESTIMATE_TOLERANCE, and whether its 95 % interval holds the truth.
    None for faults with no scored estimate (ESTIMATES) or alerts that carry none."""
    spec = ESTIMATES.get(fault.type)
    true = fault.params.get(spec[0]) if spec else None
    if spec is None or not isinstance(true, int | float) or not true:
        return None
    out: dict[str, Any] = {"quantity": spec[1], "true": float(true)}
    for name, alert in (("first", first), ("latest", latest)):
        value = (alert.get("metrics") or {}).get(spec[1])
        if not isinstance(value, int | float):
            return None
        ci = (alert.get("evidence") or {}).get(spec[2])
        error = value / true - 1.0
        out[name] = {"value": float(value), "error_pct": round(100.0 * error, 2),
                     "within_tolerance": abs(error) <= ESTIMATE_TOLERANCE,
                     "ci95": list(ci) if isinstance(ci, list | tuple) and len(ci) == 2 else None,
                     "ci95_holds_truth": (ci[0] <= true <= ci[1]) if isinstance(ci, list | tuple)
                     and len(ci) == 2 else None}
    return out


def false_alarms(alerts: Iterable[Mapping[str, Any]], claimed: set[str]) -> list[dict[str, Any]]:
    """Every alert no expectation accounts for, informational events aside, once per alert id — with
    what the twin said when it raised it, so a tester reads why without rerunning."""
    return [{"id": a["id"], "code": a["code"], "station": a["station"], "entity": a["entity"],
             "severity": a.get("severity"), "first_ts": a["first_ts"], "at": iso(a["first_ts"]),
             "metrics": dict(a.get("metrics") or {}),
             "message_zh": a.get("message_zh", ""), "message_en": a.get("message_en", "")}
            for a in unique_alerts(alerts) if a["code"] not in INFO_CODES and a["id"] not in claimed]


def _percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default method) of a non-empty sequence."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _median(values: Sequence[float]) -> float | None:
    return _percentile(values, 50.0)


def delivery_summary(errors_pct: Sequence[float]) -> dict[str, float | None]:
    abs_err = [abs(x) for x in errors_pct]
    med, p95 = _median(abs_err), _percentile(abs_err, 95.0)
    return {"median_abs_pct": None if med is None else round(med, 4),
            "p95_abs_pct": None if p95 is None else round(p95, 4),
            "max_abs_pct": round(max(abs_err), 4) if abs_err else None}


def score_deliveries(truth: Iterable[DeliveryTruth], detected: Iterable[Mapping[str, Any]], end_ts: float,
                     grace_s: float = DELIVERY_GRACE_S, faults: Sequence[FaultTruth] = ()) -> dict[str, Any]:
    """Match each true delivery to the first unclaimed recognised one of its station and tank whose time
    span overlaps it. A true drop that ends within ``grace_s`` of the run's end may not be booked yet:
    unmatched, it is 'pending', not missed. Errors are (detected − true) / true in %, net at 20 °C.
    A missed delivery names the injected faults active on its tank meanwhile (a frozen gauge cannot see
    a drop: still counted missed, but the reader knows why)."""
    found = sorted((dict(d) for d in detected), key=lambda d: (d["start_ts"], d["station"], d["tank"]))
    used: set[int] = set()
    errors: list[float] = []
    missed: list[dict[str, Any]] = []
    count_truth = pending = 0
    for t in sorted(truth, key=lambda d: (d.start_ts, d.station, d.tank)):
        if t.start_ts >= end_ts:
            continue  # planned, but its drop had not begun when the run ended
        due = t.end_ts <= end_ts - grace_s
        j = next((j for j, d in enumerate(found) if j not in used and d["station"] == t.station
                  and d["tank"] == t.tank and d["start_ts"] <= t.end_ts and d["end_ts"] >= t.start_ts), None)
        if j is None:
            if due:
                count_truth += 1
                during = sorted({f.type for f in faults if f.station == t.station and f.covers(t.tank)
                                 and f.first_active_ts is not None and f.first_active_ts <= t.end_ts
                                 and (f.last_active_ts or f.first_active_ts) >= t.start_ts})
                missed.append({"station": t.station, "tank": t.tank, "start_at": iso(t.start_ts),
                               "volume_l_20c": round(t.volume_l_20c, 1), "during_faults": during})
            else:
                pending += 1
            continue
        used.add(j)
        count_truth += 1
        errors.append(round(100.0 * (float(found[j]["net_l_20c"]) - t.volume_l_20c) / t.volume_l_20c, 4))
    phantom = [{"station": d["station"], "tank": d["tank"], "start_at": iso(d["start_ts"]),
                "net_l_20c": round(float(d["net_l_20c"]), 1)} for j, d in enumerate(found) if j not in used]
    return {"count_truth": count_truth, "count_detected": len(found), "matched": len(errors),
            "missed": len(missed), "pending": pending, "unmatched_detected": len(phantom),
            "errors_pct": errors, **delivery_summary(errors), "missed_items": missed,
            "unmatched_items": phantom}


def attach_divergence(results: Sequence[dict[str, Any]], fas: Sequence[dict[str, Any]],
                      alerts: Sequence[Mapping[str, Any]], divergence: DivergenceBins,
                      nozzle_tanks: Mapping[tuple[str, str], str]) -> None:
    """Give each detection (its alert's first version) and each false alarm the divergence of its tank:
    the alert's own entity, or the tank a nozzle draws from. Station-wide alerts get none."""
    first = {a["id"]: a for a in unique_alerts(alerts)}

    def around(alert: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if alert is None or not alert.get("entity"):
            return None
        station, entity = alert["station"], alert["entity"]
        tank = entity if divergence.has(station, entity) else nozzle_tanks.get((station, entity))
        return divergence.around(alert, tank) if tank is not None else None

    for r in results:
        if r.get("alert_id") is not None:
            r["divergence"] = around(first.get(r["alert_id"]))
    for fa in fas:
        fa["divergence"] = around(first.get(fa["id"]))


def score_run(scenario: Scenario, seed: int, *, alerts: Sequence[Mapping[str, Any]],
              deliveries: Sequence[Mapping[str, Any]], faults: Sequence[FaultTruth],
              truth_deliveries: Sequence[DeliveryTruth], figures: Mapping[str, Any],
              nozzle_tanks: Mapping[tuple[str, str], str] | None = None,
              divergence: DivergenceBins | None = None) -> dict[str, Any]:
    """The report of one run (one scenario, one seed): expectations, false alarms, deliveries, figures.

    With the run's ``divergence``, each false alarm and each detection of a tank or of a nozzle's tank
    carries that tank's divergence around it (``DivergenceBins.around``)."""
    results, claimed = match_expectations(scenario.expect, alerts, faults, scenario.start, nozzle_tanks)
    fas = false_alarms(alerts, claimed)
    if divergence is not None:
        attach_divergence(results, fas, alerts, divergence, nozzle_tanks or {})
    return {
        "scenario": scenario.name, "file": scenario.source, "seed": seed,
        "start": iso(scenario.start), "duration_s": scenario.duration,
        "expectations": results, "false_alarms": fas,
        "deliveries": score_deliveries(truth_deliveries, deliveries, scenario.end, faults=faults),
        "faults": [{"type": f.type, "station": f.station, "entity": f.entity,
                    "first_active_at": iso(f.first_active_ts), "last_active_at": iso(f.last_active_ts)}
                   for f in faults],
        "figures": dict(figures),
        "passed": all(r["met"] or not r["exercised"] for r in results) and not fas,
    }


# --------------------------------------------------------------------------------------------------
# Aggregation over seeds


@dataclass(slots=True)
class _Pool:
    trials: int = 0
    detections: int = 0
    late: int = 0
    #: Runs whose fault never acted (nothing to detect): not trials.
    idle: int = 0
    ttd: list[float] = field(default_factory=list)
    estimates: list[Mapping[str, Any]] = field(default_factory=list)

    def add(self, r: Mapping[str, Any]) -> None:
        if not r.get("exercised", True):
            self.idle += 1
            return
        self.trials += 1
        if r["met"]:
            self.detections += 1
            self.ttd.append(float(r["time_to_detect_s"]))
            if r.get("estimate"):
                self.estimates.append(r["estimate"])
        elif r["late"]:
            self.late += 1

    def to_dict(self) -> dict[str, Any]:
        out = {"trials": self.trials, "detections": self.detections, "late": self.late, "idle": self.idle,
               "pd": round(self.detections / self.trials, 4) if self.trials else None,
               "ttd_median_s": _median(self.ttd), "ttd_max_s": max(self.ttd) if self.ttd else None}
        if self.estimates:
            out["estimate"] = _estimate_summary(self.estimates)
        return out


def _estimate_summary(estimates: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Of the detections' estimates, at the first report and the last refresh: how many within the
    tolerance, the range of their errors, and how many 95 % intervals held the true value."""
    out: dict[str, Any] = {"quantity": estimates[0]["quantity"], "n": len(estimates)}
    for name in ("first", "latest"):
        errors = [e[name]["error_pct"] for e in estimates]
        held = [e[name]["ci95_holds_truth"] for e in estimates if e[name]["ci95_holds_truth"] is not None]
        out[name] = {"within_tolerance": sum(bool(e[name]["within_tolerance"]) for e in estimates),
                     "error_pct_min": min(errors), "error_pct_max": max(errors),
                     "ci95_holds_truth": sum(held), "with_ci95": len(held)}
    return out


def _exp_label(r: Mapping[str, Any]) -> str:
    return r["station"] + (f"/{r['entity']}" if r.get("entity") else "")


def _summarise(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    expectations: dict[tuple[str, float], _Pool] = {}
    where: dict[tuple[str, float], list[str]] = {}
    by_code: dict[str, int] = {}
    errors: list[float] = []
    tank_months = 0.0
    fa = missed = truth = detected = events = 0
    wall = 0.0
    for run in runs:
        for r in run["expectations"]:
            key = (r["alert"], float(r["within_s"]))
            expectations.setdefault(key, _Pool()).add(r)
            label = _exp_label(r)
            if label not in where.setdefault(key, []):
                where[key].append(label)
        for a in run["false_alarms"]:
            by_code[a["code"]] = by_code.get(a["code"], 0) + 1
            fa += 1
        d = run["deliveries"]
        errors += d["errors_pct"]
        missed += d["missed"]
        truth += d["count_truth"]
        detected += d["count_detected"]
        fig = run["figures"]
        tank_months += fig["tank_months"]
        events += fig["events"]
        wall += fig["wall_s"]
    return {
        "runs": len(runs),
        "passed_runs": sum(1 for r in runs if r["passed"]),
        "expectations": [{"alert": code, "within_s": within, "where": where[(code, within)],
                          **pool.to_dict()} for (code, within), pool in expectations.items()],
        "false_alarms": {"count": fa, "tank_months": round(tank_months, 3),
                         "per_tank_month": round(fa / tank_months, 5) if tank_months else None,
                         "by_code": dict(sorted(by_code.items()))},
        "deliveries": {"count_truth": truth, "count_detected": detected, "matched": len(errors),
                       "missed": missed, **delivery_summary(errors)},
        "events": events, "wall_s": round(wall, 3),
        "events_per_s": round(events / wall) if wall > 0 else None,
    }


def aggregate(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per scenario over its seeds, and pooled over every run: Pd with median and max time to detect per
    (alert code, deadline); false alarms per tank-month with counts by code; delivery errors pooled."""
    by_scenario: dict[str, list[Mapping[str, Any]]] = {}
    for run in runs:
        by_scenario.setdefault(run["scenario"], []).append(run)
    scenarios = []
    for name, group in by_scenario.items():
        scenarios.append({"scenario": name, "file": group[0].get("file"),
                          "seeds": [r["seed"] for r in group], **_summarise(group),
                          "passed": all(r["passed"] for r in group)})
    return {"scenarios": scenarios, "pooled": _summarise(runs), "passed": all(r["passed"] for r in runs)}


# --------------------------------------------------------------------------------------------------
# The table


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    """Plain-text columns (``right``: the indices aligned right), a rule under the header."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _pct(x: float | None, nd: int = 2) -> str:
    return "-" if x is None else f"{x:.{nd}f}%"


def format_table(agg: Mapping[str, Any]) -> str:
    """Plain aligned text: expectations (Pd, time to detect), then false alarms, deliveries and speed."""
    exp_rows: list[list[str]] = []
    for s in agg["scenarios"]:
        for e in s["expectations"]:
            where = ", ".join(e["where"][:2]) + (" …" if len(e["where"]) > 2 else "")
            exp_rows.append([s["scenario"], f"{e['alert']} {where}", fmt_duration(e["within_s"]),
                             f"{e['detections']}/{e['trials']}",
                             f"{e['pd']:.2f}" if e["pd"] is not None else "-",
                             fmt_duration(e["ttd_median_s"]), fmt_duration(e["ttd_max_s"]),
                             str(e["late"]) if e["late"] else "",
                             str(e["idle"]) if e.get("idle") else ""])
    lines = []
    if exp_rows:
        lines += text_table(["scenario", "expected", "within", "met", "Pd", "ttd median", "ttd max", "late",
                         "fault idle"], exp_rows, {3, 4, 5, 6, 7, 8})
        lines.append("")
    est_rows: list[list[str]] = []
    for s in agg["scenarios"]:
        for e in s["expectations"]:
            est = e.get("estimate")
            if not est:
                continue
            cells = [s["scenario"], f"{e['alert']} {est['quantity']}"]
            for name in ("first", "latest"):
                x = est[name]
                cells += [f"{x['within_tolerance']}/{est['n']}",
                          f"{x['error_pct_min']:+.0f} … {x['error_pct_max']:+.0f}%",
                          f"{x['ci95_holds_truth']}/{x['with_ci95']}" if x["with_ci95"] else "-"]
            est_rows.append(cells)
    if est_rows:
        tol = f"±{100 * ESTIMATE_TOLERANCE:.0f}%"
        lines += text_table(["scenario", "estimate", f"first {tol}", "first error", "first 95% CI holds",
                         f"latest {tol}", "latest error", "latest 95% CI holds"], est_rows,
                        {2, 3, 4, 5, 6, 7})
        lines.append("")
    run_rows = []
    for s in agg["scenarios"]:
        f, d = s["false_alarms"], s["deliveries"]
        codes = ", ".join(f"{c}×{n}" for c, n in f["by_code"].items())
        run_rows.append([s["scenario"], str(s["runs"]), f"{f['tank_months']:.1f}", str(f["count"]),
                         "-" if f["per_tank_month"] is None else f"{f['per_tank_month']:.3f}",
                         f"{d['matched']}/{d['count_truth']}", str(d["missed"]), _pct(d["median_abs_pct"]),
                         _pct(d["p95_abs_pct"]), f"{s['events_per_s']:,}" if s["events_per_s"] else "-",
                         "PASS" if s["passed"] else "FAIL", codes])
    lines += text_table(["scenario", "runs", "tank-months", "false alarms", "per tank-month", "deliveries",
                     "missed", "|err| median", "|err| p95", "events/s", "result", "false alarm codes"],
                    run_rows, {1, 2, 3, 4, 5, 6, 7, 8, 9})
    if len(agg["scenarios"]) > 1:
        p = agg["pooled"]
        f, d = p["false_alarms"], p["deliveries"]
        lines.append("")
        lines.append(f"all: {p['passed_runs']}/{p['runs']} runs passed; {f['count']} false alarms in "
                     f"{f['tank_months']:.1f} tank-months"
                     + (f" ({f['per_tank_month']:.3f} per tank-month)"
                        if f["per_tank_month"] is not None else "")
                     + f"; deliveries {d['matched']}/{d['count_truth']} matched, |error| median "
                     f"{_pct(d['median_abs_pct'])}, p95 {_pct(d['p95_abs_pct'])}; "
                     f"{p['events']:,} events at {p['events_per_s'] or 0:,}/s")
    return "\n".join(lines)
