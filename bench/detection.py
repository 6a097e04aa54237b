"""Detection quality against the simulator's ground truth, over seeds. Not a test: it prints figures.

    python bench/detection.py healthy --stations 6 --days 30 --seeds 21 22
    python bench/detection.py leak --rate 0.76 --days 9 --seeds 1 2 3 4 5 6 7 8
    python bench/detection.py meter_bias --factor 0.99 --days 4 --seeds 1 2 3 4 5 6

``healthy`` counts false alarms per tank-month; the fault modes inject one fault (a leak on BH-0002 T2
from day 2, or a meter bias on BH-0002 N3 from day 1) into a 3-station district and report, per seed,
whether and when the expected alert came, its estimate, and every other alert (false alarms). The twin
runs in process through the station actors, as the scenario runner will (issue 3); no Redis.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.shard import Shard  # noqa: E402
from simulators.district import synthetic_district  # noqa: E402
from simulators.faults import build_fault  # noqa: E402
from simulators.feed import DistrictSimulator  # noqa: E402
from twin.app_runner import tune_gc  # noqa: E402
from twin.events import Validator  # noqa: E402
from twin.outputs import Outputs  # noqa: E402
from twin.settings import TwinSettings  # noqa: E402

START = 1_780_243_200.0  # 2026-06-01 00:00 Beijing


def run(stations: int, seed: int, days: float,
        faults: list[dict]) -> tuple[DistrictSimulator, Outputs, float]:
    sim_district = synthetic_district(stations, seed)
    attached: dict[str, list] = defaultdict(list)
    built = []
    for spec in faults:
        sid, fault = build_fault(spec, START, seed)
        attached[sid].append(fault)
        built.append(fault)
    sim = DistrictSimulator(sim_district, seed=seed, start_ts=START, reading_interval_s=60.0,
                            faults=dict(attached))
    district = sim_district.district
    validator = Validator(district.directory())
    shard = Shard(district.stations, TwinSettings())
    out, t, n, t0 = Outputs(), START, 0, time.perf_counter()
    while t < START + days * 86_400:
        t += 3600
        events, _ = validator.validate(sim.advance(t), t)
        n += len(events)
        groups: dict[str, list] = defaultdict(list)
        for ev in events:
            groups[ev.station].append(ev)
        out.extend(shard.process(groups, with_states=False))
    return sim, out, n / (time.perf_counter() - t0)


def delivery_errors(sim: DistrictSimulator, out: Outputs) -> list[float]:
    """(detected − true) / true in %, for each true delivery matched by station, tank and time."""
    errors = []
    for truth in sim.truth.deliveries:
        for found in out.deliveries:
            if (found["station"], found["tank"]) == (truth.station, truth.tank) and \
                    found["start_ts"] <= truth.end_ts and found["end_ts"] >= truth.start_ts:
                errors.append(100.0 * (found["net_l_20c"] / truth.volume_l_20c - 1.0))
                break
    return errors


def alarms(out: Outputs) -> dict[str, dict]:
    """Every alert but the informational deliveries, first version of each."""
    found: dict[str, dict] = {}
    for alert in out.alerts:
        if alert["code"] != "DELIVERY_DETECTED":
            found.setdefault(alert["id"], alert)
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["healthy", "leak", "meter_bias", "theft"])
    ap.add_argument("--stations", type=int, default=None)
    ap.add_argument("--days", type=float, default=None)
    ap.add_argument("--rate", type=float, default=0.76, help="leak rate, L/h")
    ap.add_argument("--factor", type=float, default=0.99, help="meter factor (true = displayed × factor)")
    ap.add_argument("--within-days", type=float, default=7.0, help="deadline counted from the fault's onset")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = ap.parse_args()
    tune_gc()
    if args.mode == "healthy":
        stations, days = args.stations or 6, args.days or 30.0
        total_fa, total_tm, errors = 0, 0.0, []
        for seed in args.seeds:
            sim, out, rate = run(stations, seed, days, [])
            tanks = sum(len(s.tanks) for s in sim.district.stations)
            fa = alarms(out)
            errors += delivery_errors(sim, out)
            total_fa += len(fa)
            total_tm += tanks * days / 30.0
            print(f"seed {seed}: {tanks} tanks × {days:g} d, {len(fa)} false alarms ({rate:,.0f} events/s)")
            for a in fa.values():
                at = (a["first_ts"] - START) / 86400
                print(f"   {a['code']} {a['station']} {a['entity']} at {at:.2f} d")
        print(f"false alarms: {total_fa} in {total_tm:.0f} healthy tank-months")
        if errors:
            err = np.sort(np.abs(np.asarray(errors)))
            print(f"deliveries: {len(err)} matched, |net volume error| median {np.median(err):.3f} %, "
                  f"p95 {err[int(0.95 * (len(err) - 1))]:.3f} %, max {err[-1]:.3f} %")
        return
    stations, days = args.stations or 3, args.days or (9.0 if args.mode == "leak" else 4.0)
    if args.mode == "leak":
        spec = {"type": "leak", "station": "BH-0002", "tank": "T2", "at": "2d", "rate_lph": args.rate}
        code, entity = "LEAK", "T2"
    elif args.mode == "theft":
        spec = {"type": "theft", "station": "BH-0002", "tank": "T1", "at": "36h", "volume_l": 60,
                "duration": "10m"}
        code, entity = "SUDDEN_LOSS", "T1"
        days = args.days or 2.0
    else:
        spec = {"type": "meter_bias", "station": "BH-0002", "nozzle": "N3", "at": "1d", "factor": args.factor}
        code, entity = "METER_BIAS", "N3"
    met = 0
    for seed in args.seeds:
        sim, out, _ = run(stations, seed, days, [spec])
        onset = sim.truth.faults[0].first_active_ts if sim.truth.faults else START
        found = alarms(out)
        target = (code, "BH-0002", entity)
        hits = [a for a in found.values() if (a["code"], a["station"], a["entity"]) == target]
        others = [a for a in found.values() if a not in hits]
        ttd = (hits[0]["first_ts"] - onset) / 86400 if hits else None
        ok = ttd is not None and ttd <= args.within_days
        met += ok
        estimate = {k: round(float(v), 4) for k, v in hits[0]["metrics"].items()} if hits else None
        print(f"seed {seed}: {'met' if ok else 'MISSED'} "
              f"{'' if ttd is None else f'after {ttd:.2f} d '}{estimate or ''} "
              f"false alarms {[(a['code'], a['station'], a['entity']) for a in others]}")
    print(f"{code}: detected {met}/{len(args.seeds)} within {args.within_days:g} d")


if __name__ == "__main__":
    main()
