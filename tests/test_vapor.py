"""GB 20952-2020 vapor-recovery judgement (twin/vapor.py), rule by rule, with hand-computed cases.

Every case builds the fills and pressure samples by hand so the expected outcome can be counted on a
finger: e.g. 8 fills with 2 outside 0.9–1.3 is 25 % (not more than 25 %: no warning), 3 is 37.5 %.
"""

from __future__ import annotations

import pickle
from datetime import datetime

import pytest
from conftest import station_spec

from actors.entities import StationActor
from twin.alerts import MESSAGES, AlertBook
from twin.events import parse
from twin.outputs import Outputs
from twin.registry import StationSpec
from twin.settings import TwinSettings
from twin.timeutil import CST
from twin.vapor import VAPOR_CODES, VaporMonitor, VaporSettings

#: 2026-06-01 00:00 Beijing time: a local midnight.
D0 = datetime(2026, 6, 1, tzinfo=CST).timestamp()
DAY = 86_400.0
H = 3600.0
S = VaporSettings()


def monitor(nozzles: tuple[str, ...] = ("N1", "N2")) -> VaporMonitor:
    return VaporMonitor("BH-0001", list(nozzles), S)


def fills(m: VaporMonitor, day: int, a_ls: list[float], nozzle: str = "N1", litres: float = 30.0,
          start_h: float = 8.0) -> list:
    """Fills one every 10 minutes from ``start_h`` on local day ``day``."""
    actions = []
    for i, a in enumerate(a_ls):
        ts = D0 + day * DAY + start_h * H + i * 600.0
        actions += m.fill(ts, nozzle, a, litres, ts)
    return actions


def close(m: VaporMonitor, day: int) -> list:
    """Move the monitor's clock past the close of ``day`` (its end + the 1 h delay) with a pressure
    sample far from zero."""
    return m.env(D0 + (day + 1) * DAY + S.close_delay_s + 1.0, 300.0, "absent", None, None)


def codes(actions: list, op: str = "raise") -> list[tuple[str, str, str]]:
    return [(a.code, a.entity, a.severity) for a in actions if a.op == op]


def record(m: VaporMonitor, day_index: int, nozzle: str = "N1") -> dict:
    return next(r for r in m.history[day_index]["nozzles"] if r["nozzle"] == nozzle)


# ---- A/L: valid fills, the 5-fill minimum and carry-over (E.3.3) -------------------------------------

def test_fills_under_15_l_do_not_count() -> None:
    m = monitor()
    fills(m, 0, [1.1] * 5, litres=14.99)  # five fills, none valid
    fills(m, 0, [1.1] * 4, litres=15.0, start_h=12)  # four valid: still below five
    close(m, 0)
    rec = record(m, 0)
    assert rec["fills"] == 9 and rec["valid_fills"] == 4
    assert rec["judged"] is False and rec["status"] == "not_judged"


def test_fewer_than_five_carry_into_the_next_day() -> None:
    m = monitor()
    # Day 0: 3 valid fills, two of them out of band; day 1: 2 more, one out. Judged on day 1 over 5 fills:
    # 3 of 5 = 60 % > 25 % → warning day.
    fills(m, 0, [0.8, 1.4, 1.1])
    assert codes(close(m, 0)) == []
    assert record(m, 0)["judged"] is False
    fills(m, 1, [1.1, 0.85])
    acts = close(m, 1)
    assert codes(acts) == [("VAPOR_AL_WARNING", "N1", "warning")]
    rec = record(m, 1)
    assert rec["judged"] and rec["carried_in"] == 3 and rec["fills_judged"] == 5
    assert rec["share_out_of_band"] == pytest.approx(0.6)
    assert rec["pooled_since"] == "2026-06-01"


def test_exactly_25_percent_is_no_warning_and_more_is() -> None:
    m = monitor()
    fills(m, 0, [1.1] * 6 + [0.85, 1.35])  # 2 of 8 = 25 %: "more than 25 %" is not met
    assert codes(close(m, 0)) == []
    assert record(m, 0)["status"] == "compliant"
    fills(m, 1, [1.1] * 5 + [0.85, 1.35, 1.31])  # 3 of 8 = 37.5 %
    assert codes(close(m, 1)) == [("VAPOR_AL_WARNING", "N1", "warning")]
    # The band is closed: 0.9 and 1.3 themselves are inside it.
    fills(m, 2, [0.9, 1.3, 0.9, 1.3, 1.1])
    acts = close(m, 2)
    assert codes(acts) == [] and ("VAPOR_AL_WARNING", "N1", "warning") in codes(acts, "close")


def test_share_in_range_and_median_follow_section_5_3() -> None:
    m = monitor()
    fills(m, 0, [0.95, 1.0, 1.05, 1.2, 1.25])  # 1.0, 1.05, 1.2 in 1.0–1.2: 3 of 5
    close(m, 0)
    rec = record(m, 0)
    assert rec["share_in_range"] == pytest.approx(0.6)
    assert rec["median_a_l"] == pytest.approx(1.05)
    st = m.history[0]["station"]
    assert st["valid_fills"] == 5 and st["nozzles_judged"] == 1 and st["status"] == "compliant"


def test_seven_consecutive_warning_days_make_an_alarm() -> None:
    m = monitor()
    bad = [1.1, 1.1, 0.7, 0.7, 0.7]  # 60 % out of band
    raised = []
    for d in range(6):
        fills(m, d, bad)
        raised += codes(close(m, d))
    assert ("VAPOR_AL_ALARM", "N1", "alarm") not in raised
    assert m.nozzles["N1"].warning_days == 6
    # A day without enough fills neither extends nor breaks the run (it carries over).
    fills(m, 6, [1.1, 1.1])
    assert codes(close(m, 6)) == []
    fills(m, 7, [0.7, 0.7, 0.7])  # with the 2 carried: 3 of 5 out → the 7th warning day
    acts = close(m, 7)
    assert ("VAPOR_AL_ALARM", "N1", "alarm") in codes(acts)
    assert record(m, 7)["status"] == "alarm"
    assert m.history[-1]["station"]["status"] == "alarm"
    # A good judged day ends the warning and the 7-day alarm.
    fills(m, 8, [1.1] * 5)
    acts = close(m, 8)
    assert {c for c, *_ in codes(acts, "close")} == {"VAPOR_AL_WARNING", "VAPOR_AL_ALARM"}
    assert m.nozzles["N1"].warning_days == 0


def test_a_good_day_breaks_the_run_of_warning_days() -> None:
    m = monitor()
    for d in range(5):
        fills(m, d, [0.7] * 5)
        close(m, d)
    fills(m, 5, [1.1] * 5)
    close(m, 5)
    for d in range(6, 12):
        fills(m, d, [0.7] * 5)
        acts = close(m, d)
        assert ("VAPOR_AL_ALARM", "N1", "alarm") not in codes(acts)
    assert m.nozzles["N1"].warning_days == 6


def test_extreme_a_l_for_more_than_24_h_is_an_alarm_at_once() -> None:
    m = monitor()
    t0 = D0 + 8 * H
    assert m.fill(t0, "N1", 0.5, 30.0, t0) == []
    # 24 h exactly is not "more than 24 h".
    assert codes(m.fill(t0 + DAY, "N1", 0.55, 30.0, t0 + DAY)) == []
    acts = m.fill(t0 + DAY + 60.0, "N1", 1.6, 30.0, t0 + DAY + 60.0)  # > 1.5 counts as well
    assert codes(acts) == [("VAPOR_AL_ALARM", "N1", "alarm")]
    assert acts[0].metrics["hours"] == pytest.approx(24 + 1 / 60)


def test_extreme_stretch_is_judged_between_fills_on_the_monitors_clock() -> None:
    """An extreme fill at 08:00 and no fill since: at 08:00 + 24 h + a minute (by the minute samples)
    the A/L has been extreme continuously for more than 24 h — the alarm does not wait for a fill."""
    m = monitor()
    t0 = D0 + 8 * H
    m.fill(t0, "N1", 0.4, 30.0, t0)
    assert codes(m.env(t0 + DAY, 300.0, "absent", None, None)) == []
    acts = m.env(t0 + DAY + 60.0, 300.0, "absent", None, None)
    assert ("VAPOR_AL_ALARM", "N1", "alarm") in codes(acts)
    alarm = next(a for a in acts if a.code == "VAPOR_AL_ALARM")
    assert alarm.evidence["last_fill_ts"] == t0 and alarm.metrics["a_l"] == 0.4


def test_a_normal_fill_restarts_the_extreme_stretch() -> None:
    m = monitor()
    t0 = D0 + 8 * H
    m.fill(t0, "N1", 0.5, 30.0, t0)
    m.fill(t0 + 12 * H, "N1", 1.0, 30.0, t0 + 12 * H)  # back in 0.6–1.5
    m.fill(t0 + 13 * H, "N1", 0.5, 30.0, t0 + 13 * H)
    assert codes(m.fill(t0 + 30 * H, "N1", 0.5, 30.0, t0 + 30 * H)) == []  # 17 h since the restart
    assert codes(m.fill(t0 + 37.5 * H, "N1", 0.5, 30.0, t0 + 37.5 * H)) == [("VAPOR_AL_ALARM", "N1", "alarm")]
    # Small fills are not valid fills and do not count for or against the stretch.
    m2 = monitor()
    m2.fill(t0, "N1", 0.5, 30.0, t0)
    m2.fill(t0 + H, "N1", 1.1, 5.0, t0 + H)
    assert codes(m2.fill(t0 + 25 * H, "N1", 0.5, 30.0, t0 + 25 * H)) == [("VAPOR_AL_ALARM", "N1", "alarm")]


def test_diesel_nozzles_are_not_judged() -> None:
    m = monitor(("N1",))
    m.fill(D0 + H, "N3", 0.5, 30.0)  # N3 is not a gasoline nozzle here
    assert m.ignored_fills == 1


# ---- pressure: the zero-pressure rule (E.3.3) -------------------------------------------------------

def pressure(m: VaporMonitor, t_from: float, t_to: float, p: float, step: float = 60.0) -> list:
    acts = []
    t = t_from
    while t <= t_to:
        acts += m.env(t, p, "absent", None, None)
        t += step
    return acts


def test_pressure_near_zero_for_more_than_12_h_is_a_warning() -> None:
    m = monitor()
    pressure(m, D0, D0 + 2 * H, 400.0)
    # From 02:01 the pressure sits at 10 Pa; 12 h later (14:01) is not yet "more than"; 14:02 is.
    assert codes(pressure(m, D0 + 2 * H + 60, D0 + 14 * H + 60, 10.0)) == []
    acts = pressure(m, D0 + 14 * H + 120, D0 + 14 * H + 120, -20.0)
    assert codes(acts) == [("VAPOR_PRESSURE", "", "warning")]
    assert acts[0].metrics["hours"] == pytest.approx(12 + 1 / 60)


def test_pressure_stretch_is_clipped_at_midnight_and_broken_by_gaps() -> None:
    m = monitor()
    # 18:00 → 11:00 next day at 0 Pa: 6 h on day 0 and 11 h on day 1, neither more than 12 h in a day.
    acts = pressure(m, D0 + 18 * H, D0 + DAY + 11 * H, 0.0)
    assert codes(acts) == []
    # A 10-minute hole in the data (over the 5-minute gap limit) restarts the stretch.
    m2 = monitor()
    pressure(m2, D0 + H, D0 + 7 * H, 0.0)
    acts = pressure(m2, D0 + 7 * H + 600, D0 + 14 * H, 0.0)
    assert codes(acts) == []
    assert m2.days[max(m2.days)].zero_longest_s == pytest.approx(7 * H - 600)


def test_seven_days_not_sealed_make_a_pressure_alarm() -> None:
    m = monitor()
    sev = []
    for d in range(7):
        acts = pressure(m, D0 + d * DAY, D0 + d * DAY + 13 * H, 5.0, step=300.0)
        acts += pressure(m, D0 + d * DAY + 13 * H + 300, D0 + (d + 1) * DAY - 300, 500.0, step=300.0)
        sev += [a.severity for a in acts if a.code == "VAPOR_PRESSURE" and a.op == "raise"]
    acts = close(m, 6)
    sev += [a.severity for a in acts if a.code == "VAPOR_PRESSURE" and a.op == "raise"]
    assert sev.count("alarm") == 1 and sev[-1] == "alarm"
    assert m.pressure_warning_days == 7
    assert m.history[-1]["station"]["pressure"]["warning"] is True
    # A sealed day ends it.
    pressure(m, D0 + 7 * DAY + H, D0 + 8 * DAY - 300, 300.0, step=300.0)
    acts = close(m, 7)
    assert ("VAPOR_PRESSURE", "", "warning") in codes(acts, "close")


# ---- VOC leak sensor (E.3.3) -------------------------------------------------------------------------

def test_voc_warning_at_4000_and_alarm_at_8000() -> None:
    m = monitor()
    assert codes(m.env(D0 + H, 300.0, "absent", None, 3999.0)) == []
    assert codes(m.env(D0 + 2 * H, 300.0, "absent", None, 4000.0)) == [("VAPOR_VOC", "", "warning")]
    assert codes(m.env(D0 + 3 * H, 300.0, "absent", None, 8000.0)) == [("VAPOR_VOC", "", "alarm")]


def test_seven_voc_warning_days_make_an_alarm() -> None:
    m = monitor()
    severities = []
    for d in range(7):
        acts = m.env(D0 + d * DAY + 10 * H, 300.0, "absent", None, 5000.0)
        acts += m.env(D0 + d * DAY + 12 * H, 300.0, "absent", None, 100.0)
        severities += [a.severity for a in acts if a.code == "VAPOR_VOC" and a.op == "raise"]
    severities += [a.severity for a in close(m, 6) if a.code == "VAPOR_VOC" and a.op == "raise"]
    assert severities[-1] == "alarm" and "alarm" not in severities[:-1]
    assert m.voc_warning_days == 7


# ---- processing unit (§4.6.1, §5.4) -------------------------------------------------------------------

def test_processor_fault_is_an_alarm() -> None:
    m = monitor()
    acts = m.env(D0 + H, 100.0, "fault", None, None)
    assert codes(acts) == [("VAPOR_PROCESSOR", "", "alarm")]
    assert acts[0].evidence["rule"].startswith("GB 20952-2020 §4.5.4")


def test_processor_stopped_above_start_pressure() -> None:
    m = monitor()
    t = D0 + H
    acts = []
    for i in range(31):  # 200 Pa, stopped, for 30 min (grace) → alarm at the 30th minute
        acts += m.env(t + 60.0 * i, 200.0, "stopped", None, None)
    assert codes(acts) == [("VAPOR_PROCESSOR", "", "alarm")]
    assert acts[0].metrics["rule"] == "§4.6.1"
    # stopped below +150 Pa is what the standard asks (it stops at 0–50 Pa): no alarm.
    m2 = monitor()
    assert codes(pressure(m2, t, t + 2 * H, 120.0)) == []


def test_processor_outlet_hourly_average_over_25() -> None:
    m = monitor()
    t = D0 + 10 * H
    acts = []
    for i in range(60):  # hour 10:00–11:00: average (20 + 31) / 2 = 25.5 g/m³
        acts += m.env(t + 60.0 * i, 200.0, "running", 20.0 if i % 2 else 31.0, None)
    assert codes(acts) == []  # judged when the hour is complete
    acts = m.env(t + H, 100.0, "running", 5.0, None)
    assert codes(acts) == [("VAPOR_PROCESSOR", "", "alarm")]
    assert acts[0].evidence["hourly_avg_g_m3"] == pytest.approx(25.5)


# ---- days, late data, restarts -------------------------------------------------------------------------

def test_data_for_a_closed_day_is_counted_late() -> None:
    m = monitor()
    fills(m, 0, [1.1] * 5)
    close(m, 0)
    m.fill(D0 + 20 * H, "N1", 0.5, 30.0, D0 + 20 * H)
    assert m.late_events == 1
    # Within the close delay, the previous day's last hour still lands in its day.
    m2 = monitor()
    m2.env(D0 + DAY + 1800.0, 300.0, "absent", None, None)
    m2.fill(D0 + DAY - 60.0, "N1", 1.1, 30.0, D0 + DAY - 60.0)
    assert m2.late_events == 0


def station_actor() -> StationActor:
    return StationActor(StationSpec.model_validate(station_spec("BH-0001")), TwinSettings())


def vapor_events() -> list:
    """Four days of vapor data for a station whose N1 recovers too little air (A/L 0.5) and whose N2 is
    fine except on the third day (A/L 0.7)."""
    evs = []
    seq = 0
    for d in range(4):
        for i in range(8):
            ts = D0 + d * DAY + 8 * H + i * 1800.0
            for nz, a in (("N1", 0.5), ("N2", 0.7 if d == 2 else 1.1)):
                evs.append(parse({"kind": "vapor.fill", "ts": ts, "station": "BH-0001", "entity": nz,
                                  "source": "hj212", "seq": seq, "a_l": a, "liquid_l": 30.0,
                                  "vapor_l": 30.0 * a, "fill_end_ts": ts}))
                seq += 1
        for k in range(0, 24 * 60, 10):
            evs.append(parse({"kind": "vapor.env", "ts": D0 + d * DAY + k * 60.0 + 1.0, "station": "BH-0001",
                              "source": "hj212-env", "seq": seq, "pressure_pa": 250.0,
                              "processor_state": "running", "outlet_g_m3": 5.0}))
            seq += 1
    evs.sort(key=lambda e: e.ts)
    return evs


def test_actor_raises_vapor_alerts_with_messages() -> None:
    actor = station_actor()
    out = Outputs()
    for ev in vapor_events():
        actor.handle(ev, out)
    got = {(a["code"], a["entity"]) for a in out.alerts}
    assert ("VAPOR_AL_ALARM", "N1") in got and ("VAPOR_AL_WARNING", "N1") in got
    assert {c for c, e in got if e == "N2"} == {"VAPOR_AL_WARNING"}
    for a in out.alerts:
        assert a["code"] in VAPOR_CODES and a["message_zh"] != f"{a['code']} {a['entity']}"
        assert "A/L" in a["message_en"]
    state = actor.state()["vapor"]
    assert state["status"] == "alarm"
    assert [h["day"] for h in state["history"]] == ["2026-06-01", "2026-06-02", "2026-06-03"]
    n2 = next(r for r in state["history"][0]["nozzles"] if r["nozzle"] == "N2")
    assert n2["status"] == "compliant" and n2["median_a_l"] == pytest.approx(1.1)


def test_messages_exist_for_every_vapor_code() -> None:
    assert set(VAPOR_CODES) <= set(MESSAGES)


def test_state_survives_a_snapshot_restore() -> None:
    """E.3.4: after a power loss the warning/alarm state is kept and judgement continues. The station
    actor is pickled by its supervisor; a restored copy must carry on exactly like the original."""
    evs = vapor_events()
    cut = len(evs) // 2
    a, b = station_actor(), station_actor()
    out_a, out_b = Outputs(), Outputs()
    for ev in evs[:cut]:
        a.handle(ev, out_a)
        b.handle(ev, out_b)
    restored: StationActor = pickle.loads(pickle.dumps(b, pickle.HIGHEST_PROTOCOL))
    tail_a, tail_r = Outputs(), Outputs()
    for ev in evs[cut:]:
        a.handle(ev, tail_a)
        restored.handle(ev, tail_r)
    assert tail_a.alerts == tail_r.alerts and tail_a.alerts
    assert a.vapor.state() == restored.vapor.state()
    assert restored.vapor.nozzles["N1"].warning_days == a.vapor.nozzles["N1"].warning_days >= 2


def test_alert_book_escalates_pressure_warning_to_alarm() -> None:
    """VAPOR_PRESSURE is one alert whose severity rises from warning to alarm (the issue's 'by severity')."""
    book = AlertBook("BH-0001")
    w = book.raise_("VAPOR_PRESSURE", "warning", "", D0, metrics={"hours": 12.5, "days": 1})
    a = book.raise_("VAPOR_PRESSURE", "alarm", "", D0 + 7 * DAY, metrics={"hours": 13.0, "days": 7})
    assert w is not None and a is not None and a.id == w.id and a.severity == "alarm"
