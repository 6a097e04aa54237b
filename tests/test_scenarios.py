"""Fault scenarios: the file format and its errors, the scoring rules on hand-built alerts, and real runs
end to end through `fueltwin scenario run` (a healthy 2-station, 2-day district whose deliveries all match
the truth, and a communication loss whose COMM_LOSS is met)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from twin.scenario_runner import load_all, run_one
from twin.scenarios import Scenario, ScenarioError, fmt_duration, load_scenario, parse_scenario
from twin.scoring import (
    DeliveryTruth,
    FaultTruth,
    aggregate,
    false_alarms,
    format_table,
    match_expectations,
    score_deliveries,
    score_run,
)

ROOT = Path(__file__).resolve().parent.parent
START = 1_780_243_200.0  # 2026-06-01 00:00 Beijing
H, D = 3600.0, 86_400.0

#: The example of issue 3, verbatim: the public format.
ISSUE_EXAMPLE = """\
name: slow-leak
seed: 7
start: "2026-06-01T00:00:00+08:00"
duration: 14d                # s m h d
district: {stations: 4}      # synthetic stations BH-0001…; or an explicit list of station specs
noise:                       # optional; defaults are the simulator's realistic ones
  gauge_sigma_mm: 0.5
  strapping_error_pct: 0.3   # declared chart vs true geometry
  meter_error_pct: 0.25      # max |error| of each nozzle's meter
  reading_interval_s: 60
faults:
  - {type: leak, station: BH-0002, tank: T2, at: 2d, rate_lph: 0.76}
  - {type: theft, station: BH-0001, tank: T1, at: 36h, volume_l: 60, duration: 10m}
  - {type: meter_bias, station: BH-0003, nozzle: N3, at: 1d, factor: 0.99}
  - {type: hidden_sales, station: BH-0004, nozzle: N1, at: 1d, fraction: 0.03}
  - {type: totalizer_jump, station: BH-0001, nozzle: N2, at: 3d, litres: 500}
  - {type: txn_gap, station: BH-0001, nozzle: N4, at: 3d, count: 5}
  - {type: mainboard_swap, station: BH-0002, nozzle: N5, at: 4d}
  - {type: sensor_stuck, station: BH-0003, tank: T1, at: 5d, for: 6h}
  - {type: sensor_drift, station: BH-0003, tank: T2, at: 5d, mm_per_day: 3}
  - {type: comm_loss, station: BH-0004, at: 6d, for: 30m}
  - {type: water_ingress, station: BH-0002, tank: T3, at: 2d, mm_per_day: 10}
expect:
  - {alert: LEAK, station: BH-0002, tank: T2, within: 7d}
  - {alert: SUDDEN_LOSS, station: BH-0001, tank: T1, within: 30m}
"""

SMALL = """\
name: small
seed: 1
start: "2026-06-01T00:00:00+08:00"
duration: 3d
district: {stations: 2}
"""


def _errors(text: str, source: str = "bad.yaml") -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenario(text=text, source=source)
    return str(info.value)


# --------------------------------------------------------------------------------------------------
# The format


def test_the_issue_example_loads() -> None:
    s = load_scenario(text=ISSUE_EXAMPLE)
    assert (s.name, s.seed, s.start, s.duration) == ("slow-leak", 7, START, 14 * D)
    assert s.district.stations == 4 and s.district.station_ids()[-1] == "BH-0004"
    assert (s.noise.gauge_sigma_mm, s.noise.strapping_error_pct, s.noise.meter_error_pct,
            s.noise.reading_interval_s) == (0.5, 0.3, 0.25, 60.0)
    assert [f["type"] for f in s.faults] == ["leak", "theft", "meter_bias", "hidden_sales", "totalizer_jump",
                                            "txn_gap", "mainboard_swap", "sensor_stuck", "sensor_drift",
                                            "comm_loss", "water_ingress"]
    assert [(e.alert, e.station, e.entity, e.within) for e in s.expect] == [
        ("LEAK", "BH-0002", "T2", 7 * D), ("SUDDEN_LOSS", "BH-0001", "T1", 1800.0)]
    assert s.twin_settings().stale_tank_s == 300.0  # no settings: the twin's defaults
    assert s.seeds(3) == [7, 8, 9]


def test_settings_and_description_are_optional_extras() -> None:
    s = load_scenario(text=SMALL + "description: a test\nsettings: {leak_t: 8, stale_tank_s: 600}\n")
    assert s.description == "a test"
    assert (s.twin_settings().leak_t, s.twin_settings().stale_tank_s) == (8.0, 600.0)
    assert load_scenario(text=SMALL).expect == [] and load_scenario(text=SMALL).faults == []
    plain_ci = load_scenario(text=SMALL + "settings: {leak_ci_lags: null}\n").twin_settings().wetstock()
    assert plain_ci.leak_ci_lags is None and s.twin_settings().wetstock().leak_ci_lags == 4


def test_every_setting_a_scenario_may_override_is_named_in_the_format_doc() -> None:
    """docs/scenarios.md lists the `settings` a tester may change; a new threshold must be listed too."""
    from twin.settings import TwinSettings

    doc = (Path(__file__).resolve().parent.parent / "docs" / "scenarios.md").read_text(encoding="utf-8")
    assert [name for name in TwinSettings.model_fields if f"`{name}`" not in doc] == []


def test_unknown_keys_are_errors_naming_file_and_field() -> None:
    msg = _errors(SMALL + "colour: red\nnoise: {gauge_sigma: 1}\nsettings: {leak_threshold: 2}\n")
    assert "bad.yaml: unknown key 'colour' (allowed: name, description, seed" in msg
    assert "bad.yaml: noise: unknown key 'gauge_sigma' (allowed: gauge_sigma_mm," in msg
    assert "bad.yaml: settings: unknown key 'leak_threshold' (allowed: stale_tank_s," in msg
    msg = _errors(SMALL + "expect:\n  - {alert: LEAK, station: BH-0001, tank: T1, within: 7d, by: me}\n")
    assert "bad.yaml: expect[0]: unknown key 'by'" in msg


def test_bad_durations_and_times() -> None:
    msg = _errors(SMALL.replace("duration: 3d", "duration: 3 days") +
                  "expect:\n  - {alert: LEAK, station: BH-0001, within: -1h}\n")
    assert "bad.yaml: duration: invalid duration '3 days'" in msg
    assert "bad.yaml: expect[0].within: invalid duration '-1h'" in msg
    no_time = SMALL.replace('"2026-06-01T00:00:00+08:00"', "2026-06-01")
    assert "start: 2026-06-01 is a date" in _errors(no_time)
    assert "has no UTC offset" in _errors(SMALL.replace("+08:00", ""))
    msg = _errors(SMALL + "faults:\n  - {type: leak, station: BH-0001, tank: T1, at: soon, rate_lph: 1}\n")
    assert "bad.yaml: faults[0]: leak fault (BH-0001 T1): at: invalid duration 'soon'" in msg


def test_unknown_fault_type_and_bad_parameters() -> None:
    msg = _errors(SMALL + "faults:\n  - {type: leek, station: BH-0001, tank: T1, at: 1d}\n"
                  "  - {type: leak, station: BH-0001, nozzle: N1, at: 1d, rate_lph: 1}\n"
                  "  - {type: theft, station: BH-0001, tank: T1, at: 1d}\n")
    assert "bad.yaml: faults[0]: unknown fault type 'leek'; known types: leak, theft," in msg
    assert "bad.yaml: faults[1]: leak fault (BH-0001): leak acts on a tank" in msg
    assert "bad.yaml: faults[2]: theft fault (BH-0001 T1): missing parameter 'volume_l'" in msg
    msg = _errors(SMALL + "expect: [{alert: LAEK, station: BH-0001, within: 1d}]")
    assert "unknown alert code 'LAEK'" in msg


def test_unknown_stations_tanks_and_nozzles() -> None:
    msg = _errors(SMALL + "faults:\n  - {type: leak, station: BH-0009, tank: T1, at: 1d, rate_lph: 1}\n"
                  "  - {type: leak, station: BH-0001, tank: T1, at: 4d, rate_lph: 1}\n"
                  "expect:\n  - {alert: LEAK, station: BH-0003, tank: T1, within: 7d}\n")
    assert ("bad.yaml: faults[0].station: no station 'BH-0009' in the district "
            "(stations: BH-0001, BH-0002)") in msg
    assert "bad.yaml: faults[1].at: 4d is not before the end of the run (duration 3d)" in msg
    assert "bad.yaml: expect[0].station: no station 'BH-0003'" in msg


def test_synthetic_entities_are_checked_against_every_seed(tmp_path: Path) -> None:
    path = tmp_path / "t9.yaml"
    path.write_text(SMALL + "faults:\n  - {type: leak, station: BH-0001, tank: T9, at: 1d, rate_lph: 1}\n"
                    "expect:\n  - {alert: METER_BIAS, station: BH-0002, nozzle: N99, within: 2d}\n")
    scenarios, problems = load_all([path], seeds=2)
    assert scenarios == []
    assert any(p.startswith(f"{path}: faults[0]: leak fault (BH-0001 T9): station BH-0001 has no tank 'T9'")
               for p in problems), problems
    assert any("expect[0].nozzle: station BH-0002 has no nozzle 'N99'" in p for p in problems), problems


def test_explicit_stations_are_checked_at_load() -> None:
    listed = "district: {stations: [" + json.dumps(_station("X-1")) + "]}"
    text = SMALL.replace("district: {stations: 2}", listed)
    s = load_scenario(text=text)
    assert s.district.station_ids() == ["X-1"] and s.district.stations[0].profile.size == "small"
    msg = _errors(text + "faults: [{type: meter_bias, station: X-1, nozzle: N7, at: 1d, factor: 0.99}]\n")
    assert ("faults[0]: meter_bias fault (X-1 N7): station X-1 has no nozzle 'N7' "
            "(its nozzles: N1, N2, N3)") in msg
    bad = text.replace('"grade": "0#", "declared', '"grade": "0#", "colour": 1, "declared')
    assert "district.stations[0].tanks[1]: unknown key 'colour'" in _errors(bad)


def test_invalid_yaml_and_wrong_shapes() -> None:
    assert "bad.yaml: line 1, column 8: not valid YAML" in _errors("name: [")
    assert "the file is empty" in _errors("")
    assert "expected a mapping of scenario fields" in _errors("- 1\n- 2\n")
    assert "district.stations: Input should be a valid integer" in _errors(
        SMALL.replace("{stations: 2}", "{stations: two}"))


def test_every_shipped_scenario_loads_for_twenty_seeds() -> None:
    scenarios, problems = load_all([ROOT / "scenarios"], seeds=20)
    assert problems == []
    names = {s.name for s in scenarios}
    assert len(names) == len(scenarios) >= 15
    types = {f["type"] for s in scenarios for f in s.faults}
    from simulators.faults import FAULT_TYPES

    assert types == set(FAULT_TYPES)  # the suite covers every fault type
    healthy = [s for s in scenarios if not s.faults]
    assert healthy and all(s.expect == [] and s.duration >= 30 * D for s in healthy)


# --------------------------------------------------------------------------------------------------
# Scoring


def _alert(code: str, entity: str, first_ts: float, station: str = "BH-0001", status: str = "open",
           **metrics: Any) -> dict[str, Any]:
    return {"id": f"{station}/{entity or '-'}/{code}/{first_ts:.0f}", "code": code, "severity": "warning",
            "station": station, "entity": entity, "first_ts": first_ts, "last_ts": first_ts, "status": status,
            "evidence": {}, "metrics": dict(metrics)}


def _scenario(*expect: dict[str, Any]) -> Scenario:
    return parse_scenario({"name": "t", "seed": 1, "start": "2026-06-01T00:00:00+08:00", "duration": "10d",
                           "district": {"stations": 2}, "expect": list(expect)})


LEAK_FAULT = FaultTruth("leak", "BH-0001", "T2", START + 2 * D, START + 10 * D)


def test_an_expectation_is_met_by_the_first_alert_inside_its_deadline() -> None:
    s = _scenario({"alert": "LEAK", "station": "BH-0001", "tank": "T2", "within": "7d"})
    alerts = [_alert("LEAK", "T2", START + 1 * D),  # before the leak began: a false alarm
              _alert("LEAK", "T2", START + 5 * D, rate_lph=0.8),
              _alert("LEAK", "T2", START + 5 * D, status="closed")]  # a later version of the same alert
    results, claimed = match_expectations(s.expect, alerts, [LEAK_FAULT], s.start)
    (r,) = results
    assert r["met"] and not r["late"] and r["onset"] == "fault" and r["fault"] == "leak"
    assert r["time_to_detect_s"] == 3 * D and r["detected_at"] == "2026-06-06T00:00:00+08:00"
    assert r["alert_id"] == "BH-0001/T2/LEAK/1780675200" and r["metrics"] == {"rate_lph": 0.8}
    fas = false_alarms(alerts, claimed)
    assert [(a["code"], a["entity"], a["at"]) for a in fas] == [("LEAK", "T2", "2026-06-02T00:00:00+08:00")]


def test_a_false_alarm_carries_the_messages_it_was_raised_with() -> None:
    first = _alert("SENSOR_DRIFT", "T1", START + D) | {"message_zh": "T1 液位计漂移 +0.9 mm/天",
                                                       "message_en": "T1: gauge drifting +0.9 mm/day"}
    later = first | {"message_zh": "T1 液位计漂移 +1.4 mm/天", "message_en": "T1: gauge drifting +1.4 mm/day"}
    (fa,) = false_alarms([first, later], set())
    assert (fa["message_zh"], fa["message_en"]) == (first["message_zh"], first["message_en"])
    (bare,) = false_alarms([_alert("OVERFILL", "T3", START)], set())  # an alert dict without messages
    assert (bare["message_zh"], bare["message_en"]) == ("", "")


def test_a_late_alert_misses_but_is_no_false_alarm() -> None:
    s = _scenario({"alert": "LEAK", "station": "BH-0001", "tank": "T2", "within": "7d"})
    alerts = [_alert("LEAK", "T2", START + 9.5 * D)]
    (r,), claimed = match_expectations(s.expect, alerts, [LEAK_FAULT], s.start)
    assert not r["met"] and r["late"] and r["time_to_detect_s"] == 7.5 * D
    assert false_alarms(alerts, claimed) == []


def test_the_wrong_entity_misses_and_is_a_false_alarm() -> None:
    s = _scenario({"alert": "LEAK", "station": "BH-0001", "tank": "T2", "within": "7d"},
                  {"alert": "COMM_LOSS", "station": "BH-0002", "within": "15m"})
    alerts = [_alert("LEAK", "T1", START + 3 * D), _alert("LEAK", "T2", START + 3 * D, station="BH-0002")]
    results, claimed = match_expectations(s.expect, alerts, [LEAK_FAULT], s.start)
    assert [r["met"] for r in results] == [False, False]
    assert results[1]["onset"] == "start" and results[1]["onset_ts"] == START  # no comm_loss fault
    assert [(a["station"], a["entity"]) for a in false_alarms(alerts, claimed)] == [
        ("BH-0001", "T1"), ("BH-0002", "T2")]


def test_deliveries_are_never_false_alarms_and_alerts_count_once() -> None:
    alerts = [_alert("DELIVERY_DETECTED", "T1", START + H, status="closed"),
              _alert("OVERFILL", "T3", START + 2 * H),
              _alert("OVERFILL", "T3", START + 2 * H, status="closed")]
    fas = false_alarms(alerts, set())
    assert [(a["code"], a["id"]) for a in fas] == [("OVERFILL", "BH-0001/T3/OVERFILL/1780250400")]


def test_repeats_of_a_detected_fault_are_part_of_its_detection() -> None:
    """A swapped board announces itself on every nozzle it drives; a station-wide outage goes stale on
    every tank: one detection, not a detection and false alarms. The same code elsewhere still counts."""
    s = _scenario({"alert": "MAINBOARD_CHANGED", "station": "BH-0001", "nozzle": "N5", "within": "5m"},
                  {"alert": "COMM_LOSS", "station": "BH-0002", "within": "15m"})
    faults = [FaultTruth("mainboard_swap", "BH-0001", "N5", START + D, START + D, ("N5", "N6", "N7")),
              FaultTruth("comm_loss", "BH-0002", "", START + 2 * D, START + 2 * D + 1800)]
    alerts = [_alert("MAINBOARD_CHANGED", "N6", START + D), _alert("MAINBOARD_CHANGED", "N5", START + D + 30),
              _alert("MAINBOARD_CHANGED", "N7", START + D + 60), _alert("MAINBOARD_CHANGED", "N8", START + D),
              *(_alert("COMM_LOSS", t, START + 2 * D + 300, station="BH-0002") for t in ("T1", "T2", "T3")),
              _alert("COMM_LOSS", "T1", START + 5 * D, station="BH-0002")]  # days later: another outage?
    results, claimed = match_expectations(s.expect, alerts, faults, s.start)
    assert [r["met"] for r in results] == [True, True]
    assert results[0]["alert_entity"] == "N5" and results[0]["time_to_detect_s"] == 30
    assert len(results[0]["repeats"]) == 2 and len(results[1]["repeats"]) == 2
    assert [(a["code"], a["entity"]) for a in false_alarms(alerts, claimed)] == [
        ("MAINBOARD_CHANGED", "N8"), ("COMM_LOSS", "T1")]


def test_hidden_sales_on_the_nozzles_tank_meets_the_nozzle() -> None:
    s = _scenario({"alert": "HIDDEN_SALES", "station": "BH-0001", "nozzle": "N5", "within": "48h"},
                  {"alert": "METER_BIAS", "station": "BH-0001", "nozzle": "N5", "within": "48h"})
    faults = [FaultTruth("hidden_sales", "BH-0001", "N5", START + D, START + 3 * D),
              FaultTruth("meter_bias", "BH-0001", "N5", START + D, START + 3 * D)]
    alerts = [_alert("HIDDEN_SALES", "T2", START + 1.5 * D), _alert("METER_BIAS", "T2", START + 1.5 * D)]
    results, claimed = match_expectations(s.expect, alerts, faults, s.start, {("BH-0001", "N5"): "T2"})
    assert [r["met"] for r in results] == [True, False]  # a tank that names no nozzle says nothing of N5
    assert results[0]["alert_entity"] == "T2"
    assert [a["code"] for a in false_alarms(alerts, claimed)] == ["METER_BIAS"]
    # A tank's METER_BIAS that lists its candidate nozzles (the books saw a meter change, not whose)
    # meets the nozzle's expectation only when the nozzle is among them.
    named = _alert("METER_BIAS", "T2", START + 1.5 * D)
    named["evidence"] = {"candidates": ["N4", "N5"]}
    results, claimed = match_expectations(s.expect, [named], faults, s.start, {("BH-0001", "N5"): "T2"})
    assert results[1]["met"] and results[1]["alert_entity"] == "T2" and false_alarms([named], claimed) == []
    named["evidence"] = {"candidates": ["N4"]}
    results, claimed = match_expectations(s.expect, [named], faults, s.start, {("BH-0001", "N5"): "T2"})
    assert not results[1]["met"] and [a["code"] for a in false_alarms([named], claimed)] == ["METER_BIAS"]
    # A tester may also name the tank: the nozzle's fault still sets the onset.
    s = _scenario({"alert": "HIDDEN_SALES", "station": "BH-0001", "tank": "T2", "within": "48h"})
    (r,), _ = match_expectations(s.expect, alerts, faults, s.start, {("BH-0001", "N5"): "T2"})
    assert r["met"] and r["onset"] == "fault" and r["time_to_detect_s"] == 0.5 * D


def test_two_expectations_of_one_kind_take_their_faults_in_order() -> None:
    s = _scenario({"alert": "SUDDEN_LOSS", "station": "BH-0001", "tank": "T1", "within": "30m"},
                  {"alert": "SUDDEN_LOSS", "station": "BH-0001", "tank": "T1", "within": "30m"})
    faults = [FaultTruth("theft", "BH-0001", "T1", START + 3 * D, START + 3 * D + 600),
              FaultTruth("theft", "BH-0001", "T1", START + D, START + D + 600)]
    alerts = [_alert("SUDDEN_LOSS", "T1", START + D + 900), _alert("SUDDEN_LOSS", "T1", START + 3 * D + 900)]
    results, claimed = match_expectations(s.expect, alerts, faults, s.start)
    assert [(r["met"], r["onset_ts"], r["time_to_detect_s"]) for r in results] == [
        (True, START + D, 900.0), (True, START + 3 * D, 900.0)]
    assert false_alarms(alerts, claimed) == []


def test_deliveries_matched_missed_pending_and_phantom() -> None:
    end = START + 2 * D
    truth = [DeliveryTruth("BH-0001", "T1", START + H, START + 1.5 * H, 10_000.0),
             DeliveryTruth("BH-0001", "T2", START + 5 * H, START + 5.5 * H, 8_000.0),  # missed
             DeliveryTruth("BH-0001", "T1", end - 1200, end - 600, 9_000.0),  # ends in the grace: pending
             DeliveryTruth("BH-0002", "T1", end + H, end + 2 * H, 9_000.0)]  # after the run
    found = [{"station": "BH-0001", "tank": "T1", "start_ts": START + H + 60, "end_ts": START + 1.6 * H,
              "net_l_20c": 10_050.0},
             {"station": "BH-0002", "tank": "T3", "start_ts": START + 9 * H, "end_ts": START + 9.5 * H,
              "net_l_20c": 500.0}]
    faults = [FaultTruth("sensor_stuck", "BH-0001", "T2", START + 4 * H, START + 10 * H)]
    d = score_deliveries(truth, found, end, faults=faults)
    assert (d["count_truth"], d["count_detected"], d["matched"], d["missed"], d["pending"],
            d["unmatched_detected"]) == (2, 2, 1, 1, 1, 1)
    assert d["errors_pct"] == [0.5] and d["median_abs_pct"] == 0.5 and d["p95_abs_pct"] == 0.5
    assert d["missed_items"][0]["during_faults"] == ["sensor_stuck"]


def _run(scenario: str, seed: int, met: list[bool], fas: list[str], errors: list[float], tank_months: float,
         ttd: list[float | None]) -> dict[str, Any]:
    return {"scenario": scenario, "file": f"{scenario}.yaml", "seed": seed,
            "expectations": [{"alert": "LEAK", "station": "BH-0002", "entity": "T2", "within_s": 7 * D,
                              "met": m, "late": not m and t is not None, "time_to_detect_s": t}
                             for m, t in zip(met, ttd, strict=True)],
            "false_alarms": [{"code": c} for c in fas],
            "deliveries": {"errors_pct": errors, "missed": 0, "count_truth": len(errors),
                           "count_detected": len(errors)},
            "figures": {"tank_months": tank_months, "events": 1000, "wall_s": 0.01},
            "passed": all(met) and not fas}


def test_aggregate_over_seeds() -> None:
    runs = [_run("leak", 1, [True], [], [0.1, -0.3], 2.0, [2 * D]),
            _run("leak", 2, [True], ["SUDDEN_LOSS"], [0.2], 2.0, [4 * D]),
            _run("leak", 3, [False], [], [], 2.0, [9 * D]),
            _run("leak", 4, [True], [], [-0.4], 2.0, [3 * D])]
    agg = aggregate(runs)
    (s,) = agg["scenarios"]
    (e,) = s["expectations"]
    assert (e["trials"], e["detections"], e["pd"], e["late"]) == (4, 3, 0.75, 1)
    assert (e["ttd_median_s"], e["ttd_max_s"]) == (3 * D, 4 * D)
    assert s["false_alarms"] == {"count": 1, "tank_months": 8.0, "per_tank_month": 0.125,
                                 "by_code": {"SUDDEN_LOSS": 1}}
    assert s["deliveries"]["matched"] == 4 and s["deliveries"]["median_abs_pct"] == 0.25
    assert not agg["passed"] and s["passed_runs"] == 2
    table = format_table(agg)
    assert "LEAK BH-0002/T2" in table and "3/4" in table and "0.75" in table and "SUDDEN_LOSS×1" in table
    assert fmt_duration(1.5 * D) == "1.5d" and fmt_duration(900) == "15m" and fmt_duration(None) == "-"


# --------------------------------------------------------------------------------------------------
# Real runs


HEALTHY = """\
name: healthy-2x2
seed: 5
start: "2026-06-01T00:00:00+08:00"
duration: 2d
district: {stations: 2}
expect: []
"""

COMM = """\
name: comm
seed: 3
start: "2026-06-01T00:00:00+08:00"
duration: 1d
district: {stations: 2}
faults:
  - {type: comm_loss, station: BH-0002, at: 10h, for: 30m}
expect:
  - {alert: COMM_LOSS, station: BH-0002, within: 15m}
"""


def test_progress_gives_the_rate_so_far_and_since_the_last_line() -> None:
    """A month's run slows as its state fills; the run's mean hides it, the rate since the last line
    does not."""
    import io

    from twin.scenario_runner import Progress

    stream = io.StringIO()
    progress = Progress("healthy seed 5", 30, stream=stream, every_s=0.0)
    progress.update(10.0, 400_000, 10.0)
    progress.update(20.0, 700_000, 20.0)
    first, second = stream.getvalue().splitlines()
    assert first.endswith("day 10.0/30, 400,000 events, 40,000 events/s (40,000 since the last line)")
    assert second.endswith("day 20.0/30, 700,000 events, 35,000 events/s (30,000 since the last line)")


def _without_wall_time(run: dict[str, Any]) -> dict[str, Any]:
    figures = {k: v for k, v in run["figures"].items() if k not in ("wall_s", "events_per_s")}
    return {**run, "figures": figures, "file": None}


@pytest.mark.timeout(120)
def test_scenario_run_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "healthy.yaml").write_text(HEALTHY)
    (tmp_path / "comm.yaml").write_text(COMM)
    out = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "-m", "twin.cli", "scenario", "run",
                           str(tmp_path / "healthy.yaml"), str(tmp_path / "comm.yaml"),
                           "--report", str(out), "--jobs", "2"],
                          capture_output=True, text=True, timeout=110, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "COMM_LOSS BH-0002" in done.stdout and "PASS" in done.stdout
    assert "events/s" in done.stderr  # progress and the runs' figures go to stderr
    report = json.loads(out.read_text())
    assert report["passed"] is True and [r["scenario"] for r in report["runs"]] == ["healthy-2x2", "comm"]
    healthy, comm = report["runs"]

    assert healthy["false_alarms"] == [] and healthy["expectations"] == []
    d = healthy["deliveries"]
    assert d["count_truth"] >= 5 and d["missed"] == 0 and d["unmatched_detected"] == 0
    assert d["matched"] == d["count_truth"] and max(abs(e) for e in d["errors_pct"]) < 1.0
    assert healthy["figures"]["events"] > 30_000 and healthy["figures"]["events_per_s"] > 0
    # The runner's own rate: both runs' events over the command's wall time, which covers both runs.
    t = report["throughput"]
    assert t["events"] == healthy["figures"]["events"] + comm["figures"]["events"] and t["jobs"] == 2
    assert t["wall_s"] >= max(healthy["figures"]["wall_s"], comm["figures"]["wall_s"])
    assert t["events_per_s"] == pytest.approx(t["events"] / t["wall_s"], rel=1e-3)
    assert f"runner: {t['events']:,} events" in done.stdout
    assert healthy["figures"]["tank_months"] == pytest.approx(
        healthy["figures"]["tanks"] * 2 / 30, abs=1e-3)

    (e,) = comm["expectations"]
    assert e["met"] and e["fault"] == "comm_loss" and 0 < e["time_to_detect_s"] <= 900
    assert e["onset_at"] == "2026-06-01T10:00:00+08:00"
    assert comm["false_alarms"] == []

    # Determinism: the same file and seed give the same report in this process, apart from wall time.
    again = run_one(load_scenario(tmp_path / "comm.yaml"), 3)
    assert _without_wall_time(again) == _without_wall_time(comm)


def test_a_run_with_explicit_stations_and_the_exit_status_of_failures(tmp_path: Path) -> None:
    """Explicit stations get a simulated truth behind their declared charts (a cylinder and a strapping
    table here); an expectation nobody meets fails the run (exit 1); a bad file is a usage error (2)."""
    station = _station("X-1")
    path = tmp_path / "explicit.yaml"
    path.write_text(SMALL.replace("duration: 3d", "duration: 1d").replace(
        "district: {stations: 2}", "district: {stations: [" + json.dumps(station) + "]}")
        + "expect: [{alert: LEAK, station: X-1, tank: T1, within: 1h}]\n")
    report = run_one(load_scenario(path), 1)
    assert report["figures"]["stations"] == 1 and report["figures"]["events"] > 5_000
    assert report["figures"]["rejected"] == 0
    (e,) = report["expectations"]
    assert not e["met"] and e["onset"] == "start" and not report["passed"]

    (tmp_path / "bad.yaml").write_text(SMALL + "faults: [{type: leek, station: BH-0001, tank: T1, at: 1d}]\n")
    done = subprocess.run([sys.executable, "-m", "twin.cli", "scenario", "run", str(tmp_path / "bad.yaml")],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and "faults[0]: unknown fault type 'leek'" in done.stderr


def test_scenario_list() -> None:
    done = subprocess.run([sys.executable, "-m", "twin.cli", "scenario", "list", str(ROOT / "scenarios")],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "healthy-30d" in done.stdout and "LEAK≤7d" in done.stdout


def _station(sid: str) -> dict[str, Any]:
    """A small explicit station: a 30 m³ gasoline tank declared as a cylinder, a diesel one as a table."""
    import math

    d, length = 2500.0, 5278.0
    levels = [float(h) for h in range(0, 2501, 10)]
    r = d / 2
    vols = [length * (r * r * math.acos((r - h) / r) - (r - h) * math.sqrt(max(2 * r * h - h * h, 0.0))) / 1e6
            for h in levels]
    return {"id": sid, "name": "测试站", "region": "新港街道", "lon": 117.70, "lat": 39.0,
            "profile": {"size": "small", "fills_per_day": 300},
            "tanks": [{"id": "T1", "grade": "92#", "declared_capacity_l": 25_000,
                       "chart": {"shape": "horizontal_cylinder", "diameter_mm": d, "length_mm": length}},
                      {"id": "T2", "grade": "0#", "declared_capacity_l": 25_000,
                       "chart": {"shape": "strapping", "levels_mm": levels, "volumes_l": vols}}],
            "nozzles": [{"id": "N1", "tank": "T1", "grade": "92#", "dispenser": "D1"},
                        {"id": "N2", "tank": "T1", "grade": "92#", "dispenser": "D1"},
                        {"id": "N3", "tank": "T2", "grade": "0#", "dispenser": "D2"}]}


def test_a_fault_that_never_acted_is_not_scored_and_its_alerts_are_false_alarms() -> None:
    s = _scenario({"alert": "HIDDEN_SALES", "station": "BH-0001", "nozzle": "N5", "within": "48h"})
    idle = [FaultTruth("hidden_sales", "BH-0001", "N5", None)]
    empty = {"tank_months": 1.0, "events": 0, "wall_s": 1.0}
    report = score_run(s, 1, alerts=[], deliveries=[], faults=idle, truth_deliveries=[], figures=empty)
    (r,) = report["expectations"]
    assert r["exercised"] is False and r["met"] is None and report["passed"]
    alerts = [_alert("HIDDEN_SALES", "T2", START + D)]
    report = score_run(s, 1, alerts=alerts, deliveries=[], faults=idle, truth_deliveries=[], figures=empty)
    assert not report["passed"] and [a["code"] for a in report["false_alarms"]] == ["HIDDEN_SALES"]
    pooled = aggregate([report])["pooled"]["expectations"][0]
    assert (pooled["trials"], pooled["idle"], pooled["pd"]) == (0, 1, None)


def test_a_leaks_rate_is_scored_against_the_truth_at_its_first_report_and_its_last_refresh() -> None:
    """The runner scores the estimate a LEAK carries: the relative error of its rate, whether that is
    within ±30 % (issue 3), and whether its 95 % interval holds the injected rate; pooled over seeds and
    printed as a table of its own. Faults with no scored estimate carry none."""
    s = _scenario({"alert": "LEAK", "station": "BH-0001", "tank": "T2", "within": "7d"})
    fault = FaultTruth("leak", "BH-0001", "T2", START + 2 * D, START + 10 * D, params={"rate_lph": 0.76})
    first = {**_alert("LEAK", "T2", START + 4 * D, rate_lph=1.0), "evidence": {"ci95_lph": [0.7, 1.3]}}
    latest = {**first, "metrics": {"rate_lph": 0.8}, "evidence": {"ci95_lph": [0.78, 0.82]}}
    (r,), _ = match_expectations(s.expect, [first, latest], [fault], s.start)
    est = r["estimate"]
    assert est["true"] == 0.76 and est["first"]["error_pct"] == pytest.approx(31.58, abs=0.01)
    assert not est["first"]["within_tolerance"] and est["first"]["ci95_holds_truth"]
    assert est["latest"]["within_tolerance"] and est["latest"]["ci95_holds_truth"] is False
    (plain,), _ = match_expectations(s.expect, [first], [LEAK_FAULT], s.start)  # no params: nothing to score
    assert "estimate" not in plain

    run = {"scenario": "t", "seed": 1, "passed": True, "expectations": [r], "false_alarms": [],
           "deliveries": {"errors_pct": [], "missed": 0, "count_truth": 0, "count_detected": 0},
           "figures": {"tank_months": 1.0, "events": 10, "wall_s": 1.0}}
    agg = aggregate([run, {**run, "seed": 2}])
    pooled = agg["scenarios"][0]["expectations"][0]["estimate"]
    assert pooled["n"] == 2 and pooled["first"]["within_tolerance"] == 0
    assert pooled["latest"] == {"within_tolerance": 2, "error_pct_min": 5.26, "error_pct_max": 5.26,
                                "ci95_holds_truth": 0, "with_ci95": 2}
    table = format_table(agg)
    assert "latest ±30%" in table and "LEAK rate_lph" in table and "0/2" in table


def test_a_scenarios_chart_terms_reach_every_tanks_wetstock_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """``settings: {chart_terms: 2}`` (off by default): each tank's wetstock rows then end in u², u³ of
    its books' fill fraction, which the tank actor passes (a fraction of the chart's capacity, so within
    0–1), after the nozzles' sales; a healthy run stays free of false alarms."""
    from twin.detectors import wetstock

    widths: set[int] = set()
    fills: list[float] = []
    add = wetstock._Segment.add

    def record(self: wetstock._Segment, ts: float, row: list[float], sales: Sequence[float],
               extra_yy: float = 0.0) -> None:
        widths.add(len(row) - len(sales))  # time, drift, the chart terms, the divergence
        u2, u3 = row[-3], row[-2]
        assert u3 == pytest.approx(u2 ** 1.5, rel=1e-9)
        fills.append(math.sqrt(u2))
        add(self, ts, row, sales, extra_yy)

    monkeypatch.setattr(wetstock._Segment, "add", record)
    report = run_one(load_scenario(text=HEALTHY + "settings: {chart_terms: 2}\n"), 5)
    assert widths == {5} and report["false_alarms"] == []
    assert 0.05 < min(fills) < max(fills) <= 1.0 and max(fills) - min(fills) > 0.2


SPREAD = """\
name: spread
seed: 4
start: "2026-06-01T00:00:00+08:00"
duration: 1d
district: {stations: 3}
faults:
  - {type: theft, station: BH-0001, tank: T1, at: 9h, volume_l: 80, duration: 5m}
  - {type: comm_loss, station: BH-0002, at: 10h, for: 30m}
  - {type: totalizer_jump, station: BH-0003, nozzle: N2, at: 12h, litres: 500}
expect:
  - {alert: SUDDEN_LOSS, station: BH-0001, tank: T1, within: 30m}
  - {alert: COMM_LOSS, station: BH-0002, within: 15m}
  - {alert: TOTALIZER_MISMATCH, station: BH-0003, nozzle: N2, within: 1h}
"""


@pytest.mark.timeout(180)
def test_one_run_spread_over_two_processes_gives_the_same_report(capsys: pytest.CaptureFixture[str]) -> None:
    """With fewer runs than jobs, a run's stations are simulated and twinned in several processes; no
    station's events or state depend on another's, so the report is the one process's, to the value."""
    from twin.scenario_runner import run_suite, station_parts

    scn = load_scenario(text=SPREAD)
    groups = station_parts(scn, 4, 2)
    assert len(groups) == 2 and sorted(groups[0] | groups[1]) == ["BH-0001", "BH-0002", "BH-0003"]
    assert not groups[0] & groups[1]

    alone = run_one(scn, 4)
    suite = run_suite([scn], seeds=1, jobs=2, progress=True)
    assert "spread seed 4: 2 processes, stations BH-0" in capsys.readouterr().err
    (spread,) = suite["runs"]
    assert [e["met"] for e in alone["expectations"]] == [True, True, True] and alone["false_alarms"] == []
    assert len(alone["faults"]) == 3 and alone["deliveries"]["matched"] >= 1
    # The theft's detection shows its tank's divergence stepping down by the 80 L, on both sides of the
    # split: the parts' divergence merges as one process's would.
    theft = alone["expectations"][0]["divergence"]
    assert theft["tank"] == "T1" and theft["step_s"] == 600
    points = list(zip(theft["ts"], theft["divergence_l"], strict=True))
    before = [v for ts, v in points if ts < START + 9 * 3600 - 600]
    after = [v for ts, v in points if ts > alone["expectations"][0]["detected_ts"]]
    assert before and after and 60 < sum(before) / len(before) - sum(after) / len(after) < 100
    assert _without_wall_time(spread) == _without_wall_time(alone)
    assert suite["throughput"]["jobs"] == 2 and suite["throughput"]["events"] == alone["figures"]["events"]
