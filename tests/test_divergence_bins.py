"""The scenario report's divergence around alerts: 10-minute means per tank, windows cut around an alert."""

from __future__ import annotations

import math
from typing import Any

import pytest

from twin.divergence_bins import AFTER_S, BIN_S, MAX_BEFORE_S, MIN_BEFORE_S, DivergenceBins
from twin.scoring import attach_divergence

T0 = 1_780_000_200.0  # a multiple of BIN_S
H = 3600.0


def _record(station: str, tank: str, ts: list[float], div: list[float | None]) -> dict[str, Any]:
    return {"station": station, "tank": tank, "ts": ts, "divergence_l": div}


def _alert(code: str, entity: str | None, first_ts: float, station: str = "S1",
           **evidence: Any) -> dict[str, Any]:
    return {"id": f"{station}/{entity}/{code}/{int(first_ts)}", "code": code, "station": station,
            "entity": entity, "first_ts": first_ts, "evidence": evidence}


def test_bins_keep_means_and_a_wide_window_merges_them() -> None:
    bins = DivergenceBins()
    # Two batches of one tank: readings every minute, the divergence = the minute index; a NaN is skipped.
    minutes = list(range(60))
    bins.add([_record("S1", "T1", [T0 + 60 * m for m in minutes[:30]], [float(m) for m in minutes[:30]])])
    bins.add([_record("S1", "T1", [T0 + 60 * m for m in minutes[30:]],
                      [float(m) if m != 45 else math.nan for m in minutes[30:]])])
    w = bins.window("S1", "T1", T0, T0 + H)
    assert w is not None and w["step_s"] == BIN_S and len(w["ts"]) == 6
    assert w["ts"][0] == T0 + BIN_S / 2
    assert w["divergence_l"][0] == pytest.approx(4.5)  # minutes 0…9
    assert w["divergence_l"][4] == round((40 + 41 + 42 + 43 + 44 + 46 + 47 + 48 + 49) / 9, 2)  # to 10 mL
    # At most two points: three 10-minute bins in each, means over all their readings.
    two = bins.window("S1", "T1", T0, T0 + H, max_points=2)
    assert two is not None and two["step_s"] == 3 * BIN_S and len(two["ts"]) == 2
    assert two["divergence_l"][0] == pytest.approx(14.5) and two["ts"][1] == T0 + 1.5 * 1800
    assert bins.window("S1", "T9", T0, T0 + H) is None
    assert bins.window("S1", "T1", T0 + 2 * H, T0 + 3 * H) is None


def test_an_alert_is_read_over_its_fits_days_within_bounds_and_parts_merge() -> None:
    part_a, part_b = DivergenceBins(), DivergenceBins()
    span = [T0 + k * BIN_S for k in range(int(20 * 86_400 / BIN_S))]
    part_a.add([_record("S1", "T1", span, [-0.5 * k for k in range(len(span))])])
    part_b.add([_record("S2", "T1", span[:10], [1.0] * 10)])
    part_a.merge(part_b)
    assert part_a.has("S2", "T1") and part_a.has("S1", "T1") and not part_a.has("S1", "T2")
    at = T0 + 16 * 86_400
    for days, before in ((3.5, 3.5 * 86_400), (0.2, MIN_BEFORE_S), (30, MAX_BEFORE_S), (None, MIN_BEFORE_S)):
        w = part_a.around(_alert("LEAK", "T1", at, days_of_data=days), "T1")
        assert w is not None and w["from_ts"] == at - before and w["to_ts"] == at + AFTER_S
        assert len(w["ts"]) <= 300 and w["divergence_l"][0] > w["divergence_l"][-1]  # the falling line


def test_detections_and_false_alarms_get_their_tanks_divergence() -> None:
    bins = DivergenceBins()
    bins.add([_record("S1", "T1", [T0 + 60 * m for m in range(600)], [0.0] * 300 + [-60.0] * 300)])
    loss = _alert("SUDDEN_LOSS", "T1", T0 + 5 * H)
    later = loss | {"first_ts": loss["first_ts"], "evidence": {"volume_l": 61}}  # a refresh of the same alert
    meter = _alert("METER_BIAS", "N3", T0 + 6 * H)
    offline = _alert("COMM_LOSS", None, T0 + 7 * H)
    results = [{"alert_id": loss["id"]}, {"alert_id": None}]
    fas = [{"id": meter["id"]}, {"id": offline["id"]}]
    attach_divergence(results, fas, [loss, later, meter, offline], bins, {("S1", "N3"): "T1"})
    shape = results[0]["divergence"]
    assert shape["tank"] == "T1" and min(shape["divergence_l"]) == -60.0 and max(shape["divergence_l"]) == 0.0
    assert "divergence" not in results[1]  # nothing detected, nothing to draw
    assert fas[0]["divergence"]["tank"] == "T1"  # a nozzle's alert: the tank it draws from
    assert fas[1]["divergence"] is None  # station-wide
