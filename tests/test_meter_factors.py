"""Per-nozzle meter factors in the tank's state (the station twin's nozzle cards): a simulated station for
2.6 days through the twin's shard, one nozzle cheating by 2 %, read back from TankActor.state().

The factor is delivered / displayed against the tank's common β, so the cheating nozzle must read ≈ 0.98
and its honest neighbours ≈ 1, each within what the simulator's legal meter errors (±0.25 % each, so
±0.5 % between two nozzles) and the fit's own standard error allow; a tank with two nozzles cannot
separate its chart from its meters and must say so.
"""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from actors.shard import Shard
from simulators.district import synthetic_district
from simulators.faults import build_fault
from simulators.feed import DistrictSimulator
from twin.detectors.wetstock_judge import meter_reference
from twin.events import Validator
from twin.outputs import Outputs
from twin.settings import TwinSettings
from ui.app import TankView

START = 1_780_243_200.0  # 2026-06-01 00:00 Beijing
SEED = 7
CHEAT = ("T1", "N5", 0.98)  # tank, nozzle, true / displayed


@pytest.fixture(scope="module")
def station() -> dict:
    sd = synthetic_district(1, SEED)
    sim = DistrictSimulator(sd, seed=SEED, start_ts=START, reading_interval_s=60.0)
    sid = sd.district.stations[0].id
    _, fault = build_fault({"type": "meter_bias", "station": sid, "nozzle": CHEAT[1], "at": "0s",
                            "factor": CHEAT[2]}, START, SEED)
    sim.add_fault(sid, fault)
    validator = Validator(sd.district.directory())
    shard = Shard(sd.district.stations, TwinSettings())
    early = None
    out = Outputs()
    t = START
    while t < START + 3 * 86_400:
        t += 6 * 3600
        events, bad = validator.validate(sim.advance(t), t)
        assert not bad
        groups: dict[str, list] = defaultdict(list)
        for ev in events:
            groups[ev.station].append(ev)
        out.extend(shard.process(groups, with_states=False))
        if early is None:
            early = shard.stations[sid].instance.state()
    actor = shard.stations[sid].instance
    return {"spec": sd.district.stations[0], "actor": actor, "early": early, "state": actor.state(),
            "out": out}


def test_no_factors_before_the_first_fit(station: dict) -> None:
    assert all(t["meter_factors"] is None for t in station["early"]["tanks"])


def test_state_shape_and_arithmetic(station: dict) -> None:
    spec, actor = station["spec"], station["actor"]
    state = json.loads(json.dumps(station["state"]))  # plain JSON: what the API and the websocket carry
    settings = TwinSettings().wetstock()
    for tank in state["tanks"]:
        TankView.model_validate(tank)  # the REST model documents exactly this shape
        fit = actor.tanks[tank["id"]].judge.last_fit
        assert fit is not None
        factors = tank["meter_factors"]
        assert set(factors) == {n.id for n in spec.nozzles if n.tank == tank["id"]}
        _, median = meter_reference(fit, settings.meter_min_sales_l)
        for nozzle, mf in factors.items():
            beta, se, sold = fit.meter[nozzle]
            want = 1.0 - (beta - (0.0 if median is None else median))
            assert mf["factor"] == pytest.approx(want, abs=1e-5)
            assert mf["ci95"] == pytest.approx([want - 1.96 * se, want + 1.96 * se], abs=2e-5)
            assert mf["sold_l"] == pytest.approx(sold, abs=0.05) and mf["sold_l"] > 0
            assert mf["judged"] == (mf["reason"] is None)


def test_the_cheating_nozzle_stands_out_and_a_two_nozzle_tank_is_not_judged(station: dict) -> None:
    tanks = {t["id"]: t for t in station["state"]["tanks"]}
    tank, cheat, factor = CHEAT
    for nozzle, mf in tanks[tank]["meter_factors"].items():
        # A nozzle this far out of true can make the tank's divergence trend by itself (the common-factor
        # fit then moves), which leaves the nozzles unjudged for METER_BIAS; the factor still shows.
        assert mf["judged"] or mf["reason"] == "trend", (nozzle, mf)
        want = factor if nozzle == cheat else 1.0
        assert abs(mf["factor"] - want) <= 0.005 + 3 * mf["se"], (nozzle, mf)
        if nozzle == cheat:
            assert mf["ci95"][1] < 0.995  # told apart from an honest meter
    two = [t for t in tanks.values() if len(t["meter_factors"]) < 3]
    assert two, "the simulated station has a tank with two nozzles"
    for t in two:
        assert {mf["reason"] for mf in t["meter_factors"].values()} == {"few_nozzles"}
    # The alarm the same helper drives: METER_BIAS on the cheating nozzle only.
    biased = {a["entity"] for a in station["out"].alerts if a["code"] == "METER_BIAS"}
    assert biased <= {cheat}
