"""A healthy station-week: the twin's divergence stays inside the band the simulator's own parameters
justify, every delivery is recognised, and nothing else is raised.

The band, per tank and reading, is the sum of what the simulator really does to a healthy tank
(DESIGN.md 'The twin's comparison'):

- gauge noise, at the reading and at the anchor: 6 σ × dV/dh (σ = ``gauge_sigma_mm``);
- the declared chart against the true tank: its measured relative error ε (bounded by
  ``strapping_error_pct``) times the volumes at the reading, the anchor and each delivery's start and
  end (each enters the divergence once: see the telescoping sum in the test's docstring below);
- meter error: Σ |e_n| × litres sold through nozzle n so far (|e_n| ≤ ``meter_error_pct``, JJG 443);
- fills under way between running-volume updates: each nozzle of the tank at 80 L/min × the update
  interval;
- temperature probe noise: 6 × 0.05 °C × α × V.

Readings from a delivery's start until it is booked (its end + the settle time) are outside the
comparison: the books cannot know a drop's volume before it settles.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest

from actors.shard import Shard
from simulators.district import chart_error_pct, synthetic_district
from simulators.feed import DistrictSimulator
from simulators.settings import NoiseSettings
from twin.events import Validator
from twin.outputs import Outputs
from twin.physics import thermal_expansion_coeff
from twin.settings import TwinSettings

START = 1_780_243_200.0  # 2026-06-01 00:00 Beijing
DAYS = 7
SEED = 7
STATIONS = ("BH-0001", "BH-0002")  # a small urban station and a busy highway one (no idle hour)


@pytest.fixture(scope="module")
def week() -> dict:
    sim_district = synthetic_district(2, SEED)
    noise = NoiseSettings()
    sim = DistrictSimulator(sim_district, seed=SEED, start_ts=START, reading_interval_s=60.0, noise=noise)
    district = sim_district.district
    validator = Validator(district.directory())
    shard = Shard(district.stations, TwinSettings())
    out = Outputs()
    sales: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)  # (station, nozzle)
    rejected = 0
    t = START
    while t < START + DAYS * 86_400:
        t += 3600
        events, bad = validator.validate(sim.advance(t), t)
        rejected += len(bad)
        groups: dict[str, list] = defaultdict(list)
        for ev in events:
            groups[ev.station].append(ev)
            if ev.kind == "nozzle.txn":
                sales[(ev.station, ev.entity)].append((ev.end_ts, ev.volume_l))
        out.extend(shard.process(groups, with_states=False))
    return {"sim": sim, "sim_district": sim_district, "out": out, "sales": sales, "noise": noise,
            "rejected": rejected, "end": t}


def _series(out: Outputs, station: str, tank: str) -> dict[str, np.ndarray]:
    recs = [r for r in out.divergence if r["station"] == station and r["tank"] == tank]
    return {k: np.concatenate([np.asarray(r[k], dtype=float) for r in recs])
            for k in ("ts", "observed_l", "expected_l", "divergence_l")}


def test_week_is_clean(week: dict) -> None:
    assert week["rejected"] == 0
    codes = {a["code"] for a in week["out"].alerts}
    assert codes <= {"DELIVERY_DETECTED"}, codes
    assert week["out"].rejected == []


def test_every_delivery_is_recognised_with_its_volume(week: dict) -> None:
    truth = [d for d in week["sim"].truth.deliveries if d.end_ts + 900 < week["end"]]
    found = week["out"].deliveries
    assert len(truth) >= 4
    for d in truth:
        matches = [f for f in found if f["station"] == d.station and f["tank"] == d.tank
                   and f["start_ts"] <= d.end_ts and f["end_ts"] >= d.start_ts]
        assert len(matches) == 1, (d, matches)
        err = matches[0]["net_l_20c"] / d.volume_l_20c - 1
        assert abs(err) < 0.01, (d, matches[0], err)
    assert len(found) == len(truth)


@pytest.mark.parametrize("station", STATIONS)
def test_divergence_stays_in_the_justified_band(week: dict, station: str) -> None:
    """divergence = E(L_t) − E(L_anchor) − Σ_k [E(L_end,k) − E(L_start,k)] + meter error × sales + noise,
    where E(L) is the declared chart's error at level L, since the books are anchored on the chart and
    deliveries are measured through it; |E(L)| ≤ ε V(L)."""
    sim_district, out, noise = week["sim_district"], week["out"], week["noise"]
    spec = sim_district.district.station(station)
    checked = 0
    for tank_spec in spec.tanks:
        true_tank = sim_district.truth_tanks[(station, tank_spec.id)]
        chart = tank_spec.geometry()
        eps = chart_error_pct(true_tank.geometry, chart) / 100.0
        assert eps <= 0.003 + 1e-9  # the simulator's strapping_error_pct
        s = _series(out, station, tank_spec.id)
        ts, observed, divergence = s["ts"], s["observed_l"], s["divergence_l"]
        nozzles = [n for n in spec.nozzles if n.tank == tank_spec.id]
        meter = {n.id: abs(week["sim"].truth.meter_error[(station, n.id)]) for n in nozzles}
        fills = sorted((end, vol * meter[nid]) for (sid, nid), txns in week["sales"].items()
                       if sid == station and nid in meter for end, vol in txns)
        fill_ts = np.array([f[0] for f in fills])
        meter_cum = np.concatenate([[0.0], np.cumsum([f[1] for f in fills])])
        deliveries = [d for d in out.deliveries if d["station"] == station and d["tank"] == tank_spec.id]
        excluded = np.zeros(len(ts), dtype=bool)
        chart_at_deliveries = np.zeros(len(ts))
        booked_after = TwinSettings().delivery_settle_s + 60
        for d in deliveries:
            excluded |= (ts >= d["start_ts"] - 60) & (ts <= d["end_ts"] + booked_after)
            before = observed[np.searchsorted(ts, d["start_ts"]) - 1]
            after = observed[min(np.searchsorted(ts, d["end_ts"]), len(ts) - 1)]
            chart_at_deliveries += np.where(ts > d["end_ts"], eps * (before + after), 0.0)
        level = np.asarray(chart.level_mm(observed))
        dvdh = np.array([chart.dv_dh(h) for h in level])
        alpha = thermal_expansion_coeff(tank_spec.density, tank_spec.product)  # type: ignore[arg-type]
        band = (6 * noise.gauge_sigma_mm * (dvdh + dvdh[0])
                + eps * (observed + observed[0]) + chart_at_deliveries
                + meter_cum[np.searchsorted(fill_ts, ts, side="right")]
                + len(nozzles) * 80.0 / 60.0 * 10.0
                + 6 * noise.temp_sigma_c * alpha * observed)
        inside = np.abs(divergence) <= band
        bad = ~inside & ~excluded
        assert not bad.any(), (tank_spec.id, ts[bad][:5], divergence[bad][:5], band[bad][:5])
        checked += int((~excluded).sum())
        assert math.isfinite(float(np.max(np.abs(divergence[~excluded]))))
    assert checked > DAYS * 1440 * len(spec.tanks) * 0.9
