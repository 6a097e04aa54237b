"""The simulated district: reproducible, valid for the twin, and physically consistent with its truth."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import numpy as np
import pytest

from simulators.district import chart_error_pct, synthetic_district
from simulators.feed import DistrictSimulator, NoiseSettings, run_live
from simulators.hooks import OTHER, Flow, StationFault
from simulators.places import BINHAI_BOX
from twin.events import Validator
from twin.physics import geometry_from_spec
from twin.timeutil import local_hour

#: 2026-01-01 00:00 in Asia/Shanghai.
START = 1_767_225_600.0 - 8 * 3600.0
DAY = 86_400.0
SEED = 11


@pytest.fixture(scope="module")
def run() -> tuple[DistrictSimulator, list[dict[str, Any]]]:
    """Two stations, two days (and the reading at the end of day 2)."""
    sim = DistrictSimulator(synthetic_district(2, SEED), SEED, START)
    return sim, sim.advance(START + 2 * DAY + 1)


def _kind(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["kind"] == kind]


# --------------------------------------------------------------------------------------------------
# The district


def test_district_layout_is_plausible() -> None:
    sd = synthetic_district(30, 5)
    lon0, lat0, lon1, lat1 = BINHAI_BOX
    ids = [s.id for s in sd.district.stations]
    assert ids[:2] == ["BH-0001", "BH-0002"]
    assert len({s.name for s in sd.district.stations}) == 30
    for s in sd.district.stations:
        assert len(s.tanks) >= 3 and len(s.nozzles) >= 8, s.id
        assert lon0 <= s.lon <= lon1 and lat0 <= s.lat <= lat1, (s.id, s.lon, s.lat)
        assert {t.id for t in s.tanks} == {n.tank for n in s.nozzles}, "every tank has a nozzle"
        dispensers = defaultdict(int)
        for n in s.nozzles:
            dispensers[n.dispenser] += 1
        assert all(2 <= c <= 4 for c in dispensers.values()), dispensers
        for t in s.tanks:
            assert t.declared_capacity_l in (20_000, 30_000, 50_000)
            true = sd.truth_tanks[(s.id, t.id)]
            assert chart_error_pct(true.geometry, geometry_from_spec(t.chart)) <= 0.3
            assert true.capacity_l >= t.declared_capacity_l
    sizes = {p.size for p in sd.profiles.values()}
    assert sizes == {"small", "medium", "busy"}


def test_district_is_reproducible_and_prefix_stable() -> None:
    a, b = synthetic_district(5, 9), synthetic_district(8, 9)
    assert a.district.stations == b.district.stations[:5]
    assert synthetic_district(5, 10).district.stations != a.district.stations


# --------------------------------------------------------------------------------------------------
# Determinism


def test_same_seed_same_events_whatever_the_chunking() -> None:
    sd = synthetic_district(2, 3)
    whole = DistrictSimulator(sd, 3, START).advance(START + DAY)
    sim = DistrictSimulator(sd, 3, START)
    chunked: list[dict[str, Any]] = []
    t = START
    for step in [0.5, 1, 7, 59.9, 600, 601, 3333.3] * 30:
        t = min(t + step, START + DAY)
        chunked.extend(sim.advance(t))
    chunked.extend(sim.advance(START + DAY))
    assert len(whole) > 50_000
    assert chunked == whole
    other = DistrictSimulator(sd, 4, START).advance(START + 3600)
    assert other != whole[: len(other)]


def test_some_stations_alone_make_exactly_their_events_in_the_whole_district() -> None:
    """What lets the scenario runner spread one run's stations over processes."""
    sd = synthetic_district(3, 8)
    whole = DistrictSimulator(sd, 8, START, vapor=True).advance(START + DAY / 2)
    part = DistrictSimulator(sd, 8, START, vapor=True, only={"BH-0003", "BH-0001"})
    mine = part.advance(START + DAY / 4) + part.advance(START + DAY / 2)
    assert {e["station"] for e in mine} == {"BH-0001", "BH-0003"} and len(mine) > 10_000
    assert mine == [e for e in whole if e["station"] != "BH-0002"]
    assert [s.id for s in part.stations] == ["BH-0001", "BH-0003"]


def test_a_feed_that_keeps_no_true_readings_sends_the_same_events() -> None:
    """The demo and `simulate serve` run until stopped and score nothing: they keep no true state per
    reading (it only grew), and that changes nothing they send; a scoring run's series is unchanged."""
    sd = synthetic_district(2, 5)
    scoring, endless = DistrictSimulator(sd, 5, START), DistrictSimulator(sd, 5, START, truth_every=None)
    assert endless.advance(START + DAY / 4) == scoring.advance(START + DAY / 4)
    assert len(scoring.truth.tank_series("BH-0001", "T1").ts) == DAY / 4 / 10  # one per 10-s reading
    assert len(endless.truth.tank_series("BH-0001", "T1").ts) == 0
    assert endless.truth.deliveries == scoring.truth.deliveries  # the rest of the truth is kept


def test_events_are_sorted_and_never_repeated(run) -> None:
    sim, events = run
    ts = [e["ts"] for e in events]
    assert ts == sorted(ts)
    assert max(ts) < START + 2 * DAY + 1
    assert sim.advance(START + DAY) == []


# --------------------------------------------------------------------------------------------------
# What the twin receives


def test_events_validate_without_rejections(run) -> None:
    sim, events = run
    day1 = [e for e in events if e["ts"] < START + DAY]
    accepted, rejected = Validator(sim.district.directory()).validate(day1, now=START + DAY)
    assert rejected == []
    assert len(accepted) == len(day1)
    kinds = {e["kind"] for e in day1}
    assert {"tank.reading", "nozzle.state", "nozzle.txn", "device.info", "price.posted", "doc.purchase",
            "doc.invoice", "clock.tick"} <= kinds


def test_per_source_seqs_are_consecutive(run) -> None:
    _, events = run
    seqs: dict[str, list[int]] = defaultdict(list)
    for e in events:
        seqs[e["source"]].append(e["seq"])
    assert any(s.endswith(":atg") for s in seqs) and any(s.endswith(":clock") for s in seqs)
    for source, got in seqs.items():
        assert got == list(range(len(got))), source


def test_cadence_and_entities(run) -> None:
    sim, events = run
    for station in sim.district.stations:
        readings = [e for e in events if e["station"] == station.id and e["kind"] == "tank.reading"]
        assert len(readings) == len(station.tanks) * (2 * 8640 + 1)
        assert {e["entity"] for e in readings} == {t.id for t in station.tanks}
        ticks = [e["ts"] for e in events if e["station"] == station.id and e["kind"] == "clock.tick"]
        assert np.allclose(np.diff(ticks), 60.0)
    for e in events:
        if e["kind"] in ("clock.tick", "price.posted", "doc.purchase", "doc.invoice"):
            assert e["entity"] == ""


def test_fill_lifecycle_totalizers_and_amounts(run) -> None:
    _, events = run
    by_nozzle: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e["kind"] in ("nozzle.state", "nozzle.txn"):
            by_nozzle[e["source"]].append(e)
    assert len(by_nozzle) >= 16
    n_txn = 0
    for source, evs in by_nozzle.items():
        states = [e["state"] if e["kind"] == "nozzle.state" else "txn" for e in evs]
        # running-volume updates repeat 'fuelling' during a fill: one lifecycle step however many
        states = [s for i, s in enumerate(states) if not (s == "fuelling" and states[i - 1] == "fuelling")]
        states = states[: len(states) - len(states) % 5]  # a fill may be under way at the end
        assert states == ["lifted", "fuelling", "finished", "txn", "idle"] * (len(states) // 5), source
        txns = [e for e in evs if e["kind"] == "nozzle.txn"]
        n_txn += len(txns)
        for prev, cur in zip(txns, txns[1:], strict=False):
            assert cur["txn_no"] == prev["txn_no"] + 1
            assert round(cur["totalizer_l"] - prev["totalizer_l"], 2) == cur["volume_l"]
            assert round(cur["totalizer_cny"] - prev["totalizer_cny"], 2) == cur["amount_cny"]
            assert cur["start_ts"] >= prev["end_ts"]
        for t in txns:
            assert t["amount_cny"] == round(t["volume_l"] * t["unit_price"], 2)
            assert t["volume_l"] == round(t["volume_l"], 2)
            lpm = t["volume_l"] / (t["end_ts"] - t["start_ts"]) * 60
            assert 29.9 <= lpm <= 80.1
            assert 10 <= t["volume_l"] <= 400
    assert n_txn > 500


def test_transactions_use_posted_prices() -> None:
    sd = synthetic_district(1, 2)
    sim = DistrictSimulator(sd, 2, START, reading_interval_s=3600, tick_interval_s=3600)
    events = sim.advance(START + 25 * DAY)
    posted: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for e in _kind(events, "price.posted"):
        posted[e["grade"]].append((e["ts"], e["unit_price"]))
    assert any(len(v) > 1 for v in posted.values()), "a price adjustment within 25 days"
    reference = {"92#": 7.30, "95#": 7.80, "98#": 8.80, "0#": 7.00}
    for grade, first in ((g, v[0][1]) for g, v in posted.items()):
        assert abs(first / reference[grade] - 1) <= 0.025
    lifted: dict[str, float] = {}
    n = 0
    for e in events:  # the price is fixed when the nozzle is lifted
        if e["kind"] == "nozzle.state" and e["state"] == "lifted":
            lifted[e["source"]] = e["ts"]
        elif e["kind"] == "nozzle.txn":
            in_force = [p for ts, p in posted[e["grade"]] if ts <= lifted[e["source"]]][-1]
            assert e["unit_price"] == in_force
            n += 1
    assert n > 3000


# --------------------------------------------------------------------------------------------------
# Physics against its truth


def test_mass_balance_per_tank(run) -> None:
    sim, _ = run
    days = ["2026-01-01", "2026-01-02"]
    for station in sim.district.stations:
        for tank in station.tanks:
            series = sim.truth.tank_series(station.id, tank.id)
            i_end = int(np.searchsorted(series.ts, START + 2 * DAY))
            assert series.ts[0] == START and series.ts[i_end] == START + 2 * DAY
            flows = [sim.truth.days.get((station.id, tank.id, d)) for d in days]
            change = sum(f.received_l_20c - f.dispensed_l_20c + f.other_l_20c for f in flows if f)
            start, end = series.net_l_20c[0], series.net_l_20c[i_end]
            assert end == pytest.approx(start + change, rel=1e-6), (station.id, tank.id)
            assert end > 0


def test_true_dispensed_matches_metered_sales(run) -> None:
    """What left the tanks (20 °C) is what the meters showed, within meter error and temperature."""
    sim, events = run
    shown: dict[tuple[str, str], float] = defaultdict(float)
    tank_of = {(s.id, n.id): n.tank for s in sim.district.stations for n in s.nozzles}
    for t in _kind(events, "nozzle.txn"):
        shown[(t["station"], tank_of[(t["station"], t["entity"])])] += t["volume_l"]
    for (sid, tid), displayed in shown.items():
        true = sum(sim.truth.dispensed_l_20c(sid, tid, d) for d in ("2026-01-01", "2026-01-02"))
        assert true == pytest.approx(displayed, rel=0.02)
        assert true / displayed > 1.0, "winter fuel is below 20 °C, so it is more at 20 °C than metered"


def test_gauge_noise_matches_the_setting(run) -> None:
    sim, events = run
    station = sim.district.stations[0]
    tank = station.tanks[0]
    series = sim.truth.tank_series(station.id, tank.id)
    gauge = {e["ts"]: e for e in events if e["kind"] == "tank.reading" and e["station"] == station.id
             and e["entity"] == tank.id}
    keep = series.ts < START + 2 * DAY + 1  # the truth also holds the block generated past the end
    series = type(series)(*(a[keep] for a in (series.ts, series.net_l_20c, series.level_mm, series.temp_c,
                                                series.water_mm)))
    diffs = np.array([gauge[t]["level_mm"] - lvl for t, lvl in zip(series.ts, series.level_mm, strict=True)])
    temps = np.array([gauge[t]["temp_c"] - tc for t, tc in zip(series.ts, series.temp_c, strict=True)])
    sigma = NoiseSettings().gauge_sigma_mm
    assert len(diffs) > 10_000
    assert abs(diffs.std() - sigma) < 0.2 * sigma
    assert abs(diffs.mean()) < 0.05
    assert abs(temps.std() - 0.05) < 0.02
    levels = np.array([e["level_mm"] for e in gauge.values()])
    assert np.allclose(levels, np.round(levels, 1))
    assert all(e["water_mm"] == series.water_mm[0] for e in gauge.values())


def test_deliveries_happen_match_their_po_and_never_overfill(run) -> None:
    sim, events = run
    end = START + 2 * DAY
    done = [d for d in sim.truth.deliveries if d.end_ts < end]
    assert done, "at least one delivery in two station-days"
    pos = {e["po_no"]: e for e in _kind(events, "doc.purchase")}
    invoices = {e["invoice_no"]: e for e in _kind(events, "doc.invoice")}
    parts: dict[str, list[Any]] = {}
    for d in sim.truth.deliveries:
        parts.setdefault(d.po_no, []).append(d)
    for d in sim.truth.deliveries:
        po = pos[d.po_no]
        # issue 5's paperwork noise: an order may be split over two tanks of its grade (one order, two
        # drops), and may reach the platform only after the drop (then its ts is after the drops end).
        assert po["volume_l_20c"] == sum(x.po_volume_l_20c for x in parts[d.po_no])
        assert 2_000 <= d.po_volume_l_20c <= 20_000 and 8_000 <= po["volume_l_20c"] <= 30_000
        assert -0.002 <= d.volume_l_20c / d.po_volume_l_20c - 1 <= 0.0005
        assert po["depart_ts"] < po["arrive_ts"] <= d.start_ts < d.end_ts
        assert po["ts"] < po["depart_ts"] or po["ts"] > max(x.end_ts for x in parts[d.po_no])
        assert 600 / 60 * 0.99 <= d.volume_l_20c / (d.end_ts - d.start_ts) <= 1000 / 60 * 1.01
        assert 3 <= len(po["route"]) <= 5 and tuple(po["route"][-1]) == (
            sim.district.station(d.station).lon, sim.district.station(d.station).lat)
        assert po["vehicle"].startswith("津") and po["seals"]
        if po["invoice_no"] in invoices:  # an invoice may come up to 36 h late, after the run
            assert invoices[po["invoice_no"]]["volume_l"] == po["volume_l_20c"]
    for station in sim.district.stations:
        for tank in station.tanks:
            true = sim.sim_district.truth_tanks[(station.id, tank.id)]
            series = sim.truth.tank_series(station.id, tank.id)
            gross = true.geometry.volume_l(series.level_mm)
            assert gross.max() <= 0.9 * true.capacity_l
            assert gross.min() > 0.03 * true.capacity_l
    d = done[0]
    series = sim.truth.tank_series(d.station, d.tank)
    before = series.net_l_20c[np.searchsorted(series.ts, d.start_ts) - 1]
    after = series.net_l_20c[np.searchsorted(series.ts, d.end_ts)]
    assert after - before == pytest.approx(d.volume_l_20c, abs=400.0), "rise ≈ drop, less sales meanwhile"


def test_delivery_changes_the_fuel_temperature(run) -> None:
    sim, _ = run
    d = next(d for d in sim.truth.deliveries if d.end_ts < START + 2 * DAY)
    series = sim.truth.tank_series(d.station, d.tank)
    i0 = np.searchsorted(series.ts, d.start_ts) - 1
    i1 = np.searchsorted(series.ts, d.end_ts)
    t0, t1 = series.temp_c[i0], series.temp_c[i1]
    assert np.sign(t1 - t0) == np.sign(d.temp_in_c - t0)
    assert abs(t1 - t0) > 0.5
    assert series.temp_c.min() > 0 and series.temp_c.max() < 20, "January in Tianjin"


def test_arrivals_follow_the_daily_profile(run) -> None:
    _, events = run
    hours = np.array([local_hour(t["start_ts"]) for t in _kind(events, "nozzle.txn")])
    morning = np.count_nonzero((hours >= 7) & (hours < 9))
    night = np.count_nonzero((hours >= 2) & (hours < 4))
    assert morning > 2 * night


# --------------------------------------------------------------------------------------------------
# Fault hooks and live feed


class _Leak(StationFault):
    """A 2 L/h leak from the first tank, and the gauge's comm link dropping every reading of tank 2."""

    def on_block(self, station, b0, b1):
        return [Flow(0, b0, b1, -2.0 * (b1 - b0) / 3600.0, OTHER)]

    def on_events(self, station, events):
        return [e for e in events if not (e["kind"] == "tank.reading" and e["entity"] == "T2")]


def test_fault_hooks_change_truth_and_events() -> None:
    sd = synthetic_district(1, 4)
    sim = DistrictSimulator(sd, 4, START, faults={"BH-0001": [_Leak()]})
    events = sim.advance(START + DAY + 1)
    assert not [e for e in events if e["kind"] == "tank.reading" and e["entity"] == "T2"]
    day = sim.truth.days[("BH-0001", "T1", "2026-01-01")]
    assert day.other_l_20c == pytest.approx(-48.0)
    series = sim.truth.tank_series("BH-0001", "T1")
    change = day.received_l_20c - day.dispensed_l_20c + day.other_l_20c
    i_end = int(np.searchsorted(series.ts, START + DAY))
    assert series.net_l_20c[i_end] == pytest.approx(series.net_l_20c[0] + change, rel=1e-6)


def test_run_live_feeds_the_same_events() -> None:
    sd = synthetic_district(1, 6)
    expected = DistrictSimulator(sd, 6, START).advance(START + 1800)
    got: list[dict[str, Any]] = []
    nows: list[float] = []

    async def sink(events: list[dict[str, Any]], now: float) -> None:
        assert all(e["ts"] < now for e in events)
        got.extend(events)
        nows.append(now)

    sim = DistrictSimulator(sd, 6, START)
    asyncio.run(run_live(sim, sink, speed=None, step_s=7.0, until_ts=START + 1800))
    assert got == expected and nows[-1] == START + 1800
    paced = DistrictSimulator(sd, 6, START)
    asyncio.run(run_live(paced, sink, speed=600_000.0, step_s=60.0, until_ts=START + 600))
    assert paced.now == START + 600


def test_running_volume_updates_are_optional_and_valid() -> None:
    sd = synthetic_district(1, 8)
    sim = DistrictSimulator(sd, 8, START, running_update_s=5.0)
    events = sim.advance(START + 6 * 3600)
    _, rejected = Validator(sd.district.directory()).validate(events, now=START + 6 * 3600)
    assert rejected == []
    running = [e for e in _kind(events, "nozzle.state") if e["state"] == "fuelling" and e["volume_l"]]
    assert running
    finished = {}
    for e in events:
        if e["kind"] == "nozzle.state" and e["state"] == "finished":
            finished.setdefault(e["source"], []).append(e)
    for e in running:
        nxt = next((f for f in finished[e["source"]] if f["ts"] > e["ts"]), None)
        assert nxt is None or e["volume_l"] < nxt["volume_l"]  # None: still fuelling at the end


def test_chart_error_follows_the_setting() -> None:
    sd = synthetic_district(6, 1, strapping_error_pct=0.05)
    for (sid, tid), true in sd.truth_tanks.items():
        chart = geometry_from_spec(sd.district.station(sid).tank(tid).chart)
        assert chart_error_pct(true.geometry, chart) <= 0.05
