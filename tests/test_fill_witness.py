"""The vapor monitor's fills against the dispenser's transactions (twin/detectors/fill_witness.py)."""

from __future__ import annotations

from twin.detectors.fill_witness import FillWitness

T0 = 1_780_243_200.0  # 2026-06-01 00:00 Beijing


class Nozzle:
    """A dispenser nozzle with its totalizer, reporting to a witness like the station actor does."""

    def __init__(self, witness: FillWitness, name: str = "N5"):
        self.witness, self.name, self.totalizer = witness, name, 10_000.0

    def sale(self, end_ts: float, litres: float, *, reported: bool = True, counted: bool = True,
             vapor_first: bool = False) -> list:
        """One fill: the monitor's record and, unless hidden or lost, the transaction."""
        if counted:
            self.totalizer += litres
        said = []
        if vapor_first:
            said.append(self.witness.fill(self.name, end_ts + 3.0, litres * 1.004))
        if reported:
            said.append(self.witness.txn(self.name, end_ts, litres, self.totalizer))
        if not vapor_first:
            said.append(self.witness.fill(self.name, end_ts + 3.0, litres * 1.004))
        return [f for f in said if f is not None]


def test_fills_the_dispenser_reported_are_matched_whichever_source_speaks_first() -> None:
    witness = FillWitness()
    nozzle = Nozzle(witness)
    for k in range(20):
        assert nozzle.sale(T0 + 600 * k, 30.0 + k, vapor_first=k % 2 == 0) == []
    assert witness.counts["matched"] == 20 and witness.counts["unreported"] == 0
    assert witness.state()["pending"] == 0


def test_a_hidden_fill_is_named_on_its_nozzle_when_the_next_sale_shows_no_totalizer_count() -> None:
    witness = FillWitness()
    nozzle = Nozzle(witness)
    assert nozzle.sale(T0, 40.0) == []
    assert nozzle.sale(T0 + 600, 35.0, reported=False, counted=False) == []  # not yet: the next sale tells
    assert witness.state()["pending"] == 1
    found = nozzle.sale(T0 + 1_200, 20.0)
    assert len(found) == 1
    hidden = found[0]
    assert hidden.code == "HIDDEN_SALES" and hidden.evidence["nozzle"] == "N5"
    assert abs(hidden.metrics["litres"] - 35.14) < 0.01 and hidden.metrics["drops"] == 1
    assert hidden.evidence["reported_l"] == 60.0 and 0.3 < hidden.evidence["fraction"] < 0.4
    # a second one updates the count; fills older than the window drop out of it
    nozzle.sale(T0 + 1_800, 25.0, reported=False, counted=False)
    again = nozzle.sale(T0 + 2_400, 30.0)
    assert again[0].metrics["drops"] == 2
    late = [nozzle.sale(T0 + 50 * 3600 + 600 * k, 30.0) for k in range(2)]
    assert late == [[], []]
    nozzle.sale(T0 + 51 * 3600, 25.0, reported=False, counted=False)
    assert nozzle.sale(T0 + 51 * 3600 + 600, 30.0)[0].metrics["drops"] == 1


def test_records_lost_on_the_way_are_no_hidden_sale_the_totalizer_counted_them() -> None:
    """A dropped link loses the transaction but the dispenser counted the litres: the next transaction's
    totalizer starts past the previous one's end by them."""
    witness = FillWitness()
    nozzle = Nozzle(witness)
    nozzle.sale(T0, 40.0)
    assert nozzle.sale(T0 + 600, 35.0, reported=False, counted=True) == []
    assert nozzle.sale(T0 + 1_200, 20.0) == []
    assert witness.counts["lost_records"] == 1 and witness.counts["unreported"] == 0


def test_a_fill_whose_litres_disagree_with_its_transaction_is_no_hidden_sale() -> None:
    """The monitor's flow meter and the dispenser's disagree by 10 % on one fill: the transaction that
    ended with it is still its record (counted apart), not a fill nobody reported."""
    witness = FillWitness()
    nozzle = Nozzle(witness)
    nozzle.sale(T0, 40.0)
    nozzle.totalizer += 30.0
    assert witness.fill("N5", T0 + 600, 33.0) is None
    assert witness.txn("N5", T0 + 590, 30.0, nozzle.totalizer) is None
    assert nozzle.sale(T0 + 1_200, 20.0) == []
    assert witness.counts["litres_disagree"] == 1 and witness.counts["unreported"] == 0


def test_a_monitor_that_starts_mid_stream_cannot_tell_and_does_not_guess() -> None:
    """The first fill the monitor reports may be before any transaction the witness saw: no totalizer
    to measure from, so no finding; tiny fills (a nozzle lifted and hung up) are not judged."""
    witness = FillWitness()
    assert witness.fill("N1", T0, 30.0) is None
    assert witness.txn("N1", T0 + 900, 25.0, 5_000.0) is None
    assert witness.counts["lost_records"] == 1
    assert witness.fill("N1", T0 + 1_000, 0.4) is None and witness.state()["pending"] == 0


STATION_RUN = """\
name: witness
seed: 5
start: "2026-06-01T00:00:00+08:00"
duration: 14h
vapor: true
district:
  stations:
    - id: BH-0201
      name: 新港二号路加油站
      region: 新港街道
      lon: 117.702
      lat: 39.012
      profile: {size: medium, kind: urban, fills_per_day: 900}
      tanks:
        - {id: T1, grade: "92#", declared_capacity_l: 30000,
           chart: &c30 {shape: horizontal_cylinder, diameter_mm: 2600, length_mm: 6100, ends: flat}}
        - {id: T2, grade: "95#", declared_capacity_l: 30000, chart: *c30}
        - {id: T3, grade: "0#", declared_capacity_l: 30000, chart: *c30}
      nozzles:
        - {id: N1, tank: T3, grade: "0#", dispenser: D1}
        - {id: N2, tank: T3, grade: "0#", dispenser: D1}
        - {id: N3, tank: T1, grade: "92#", dispenser: D2}
        - {id: N4, tank: T2, grade: "95#", dispenser: D2}
        - {id: N5, tank: T1, grade: "92#", dispenser: D3}
        - {id: N6, tank: T2, grade: "95#", dispenser: D3}
faults:
  - {type: hidden_sales, station: BH-0201, nozzle: N3, at: 6h, fraction: 0.15}
expect:
  - {alert: HIDDEN_SALES, station: BH-0201, nozzle: N3, within: 8h}
"""


def test_the_station_twin_names_the_nozzle_whose_fills_the_vapor_monitor_saw_unreported() -> None:
    """Through the simulator and the station actors: the vapor monitor records the hidden fills of N3,
    the twin raises HIDDEN_SALES on N3 itself (not only on its tank), and no other nozzle is blamed."""
    from twin.scenario_runner import run_one
    from twin.scenarios import load_scenario

    report = run_one(load_scenario(text=STATION_RUN), 5)
    (e,) = report["expectations"]
    assert e["met"], e
    named = [e["alert_id"], *e["repeats"]]
    assert any(a.startswith("BH-0201/N3/HIDDEN_SALES/") for a in named), named
    assert report["false_alarms"] == []


def test_where_a_vapor_monitor_covers_the_tank_it_decides_fill_or_theft_not_the_speed() -> None:
    """A 60 L drop in two minutes times like a fill, one over 20 minutes like a theft. With a live
    monitor the speed no longer decides: a fill at one of the tank's nozzles that no transaction matched
    makes the drop an unrecorded sale; none makes it a theft."""
    import numpy as np

    from twin.detectors.losses import LossDetector

    rng = np.random.default_rng(3)
    ts = T0 + 60.0 * np.arange(6 * 60)
    noise = rng.normal(0.0, 8.0, ts.size)
    at = T0 + 3 * 3600

    def codes(minutes: float, fills: list[tuple[str, float, float]] | None) -> list[str]:
        drop = np.clip((ts - at) / (60.0 * minutes), 0.0, 1.0) * 60.0
        asked: list[tuple[float, float]] = []

        def nozzle_fills(t0: float, t1: float) -> list[tuple[str, float, float]]:
            asked.append((t0, t1))
            return [f for f in fills or [] if t0 <= f[1] <= t1]

        detector, found = LossDetector(), []
        for t, d in zip(ts, noise - drop, strict=True):
            f = detector.add(t, d, None if fills is None else nozzle_fills)
            if f is not None and not f.evidence.get("continues"):  # not a theft's total read again
                found.append(f.code)
        if fills is not None and found:
            assert any(t0 <= at + 60.0 * minutes and at <= t1 for t0, t1 in asked)  # the drop's window
        return found

    fill = [("N3", at + 120.0, 60.0)]
    assert codes(2, None) == ["HIDDEN_SALES"] and codes(20, None) == ["SUDDEN_LOSS"]  # the speed decides
    assert codes(2, []) == ["SUDDEN_LOSS"]  # quick, but no nozzle dispensed: a theft
    assert codes(20, fill) == ["HIDDEN_SALES"]  # slow-looking, but a nozzle dispensed it unreported
    assert codes(2, [("N3", at - 3 * 3600.0, 60.0)]) == ["SUDDEN_LOSS"]  # a fill hours before is not it


def test_a_station_checkpoint_from_before_the_witness_starts_one_on_its_first_vapor_fill() -> None:
    """Snapshots pickle the station actor; one from before this module has no witness. It must restore
    and start one when vapor data come, not fail on the first fill."""
    import pickle

    from actors.entities import StationActor
    from simulators.district import synthetic_district
    from twin.events import NozzleTxn, VaporFill
    from twin.outputs import Outputs
    from twin.settings import TwinSettings

    spec = synthetic_district(1, 3).district.stations[0]
    nozzle = next(n for n in spec.nozzles if n.grade in ("92#", "95#"))
    actor = StationActor(spec, TwinSettings())
    del actor.__dict__["fill_witness"]
    actor = pickle.loads(pickle.dumps(actor))
    assert actor.fill_witness is None
    out = Outputs()
    common = {"station": spec.id, "entity": nozzle.id}
    actor.handle(VaporFill(ts=T0, source="vapor", seq=0, a_l=1.1, liquid_l=30.0, vapor_l=33.0,
                           fill_start_ts=T0 - 60, fill_end_ts=T0, **common), out)
    actor.handle(NozzleTxn(ts=T0, source="disp", seq=0, txn_no=1, grade=nozzle.grade, volume_l=30.0,
                           amount_cny=240.0, unit_price=8.0, start_ts=T0 - 60, end_ts=T0,
                           totalizer_l=1_030.0, totalizer_cny=8_240.0, **common), out)
    assert actor.fill_witness is not None and actor.fill_witness.counts["matched"] == 1
    assert actor.state()["vapor"]["fills_vs_transactions"]["matched"] == 1


def test_a_tanks_and_its_nozzles_hidden_sales_name_each_other() -> None:
    """One cheat, two witnesses: the gauge's HIDDEN_SALES on the tank and the vapor monitor's on the
    nozzle point at each other, whichever came first; a nozzle of another tank is left alone; linking
    again changes nothing (no new alert versions)."""
    from twin.alerts import AlertBook, link_hidden_sales

    book = AlertBook("BH-0201")
    book.raise_("HIDDEN_SALES", "alarm", "N3", T0, metrics={"litres": 40.0})
    book.raise_("HIDDEN_SALES", "alarm", "N4", T0, metrics={"litres": 30.0})  # draws from T2
    assert link_hidden_sales(book, "T1", ("N3", "N5"), T0) == []  # no tank alert yet
    tank = book.raise_("HIDDEN_SALES", "alarm", "T1", T0 + 60, metrics={"litres": 41.0})
    assert tank is not None
    changed = link_hidden_sales(book, "T1", ("N3", "N5"), T0 + 60)
    assert {(a.entity, a.last_ts) for a in changed} == {("N3", T0 + 60), ("T1", T0 + 60)}
    assert book.open[("N3", "HIDDEN_SALES")].evidence["tank_alert_id"] == tank.id
    assert tank.evidence["nozzles_named"] == ["N3"]
    assert "tank_alert_id" not in book.open[("N4", "HIDDEN_SALES")].evidence
    assert link_hidden_sales(book, "T1", ("N3", "N5"), T0 + 120) == []
    book.raise_("HIDDEN_SALES", "alarm", "N5", T0 + 180, metrics={"litres": 20.0})
    assert [a.entity for a in link_hidden_sales(book, "T1", ("N3", "N5"), T0 + 180)] == ["N5", "T1"]
    assert tank.evidence["nozzles_named"] == ["N3", "N5"]
