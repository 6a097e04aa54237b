"""Benchmark: the meter-change scan's best change at every scan of whole runs, against its thresholds.

Not a test: it prints figures, for README "Learning the chart does not move it". Each seed of each
scenario goes through the runner's own path (``run_one``) while ``WetstockJudge._best_change`` is
watched: at every scan (every 3 h a tank) the best change over the whole day and the best in some hours
of the day that pass every rule of ``WetstockJudge.meter_change`` but the threshold are kept, with the
station, tank and the scan's time. Then for each window threshold asked for (the whole day keeps
``meter_change_chi2``, 30): the runs whose meter-biased nozzle's tank reached it before the expectation's
deadline (found in time, were that the threshold), and the other tanks that reached it at all (the false
alarms it would raise). Beside them, the largest whole-day and window Δχ² on tanks with no meter fault,
and what the runner itself scored at the settings' thresholds.

    python bench/meter_change_null.py scenarios/healthy-30d.yaml scenarios/healthy-busy-30d.yaml --seeds 10
    python bench/meter_change_null.py scenarios/meter-bias-switched.yaml --seeds 20 --set chart_terms=2
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.meter_bias_bound import first_active  # noqa: E402
from twin.scenario_runner import build_district, run_one  # noqa: E402
from twin.scenarios import Scenario, _seconds, load_scenario  # noqa: E402

#: (station, scan time) of the judgement under way in this worker, and every scan's best changes.
_NOW: dict[str, Any] = {}
_SEEN: list[tuple[str, str, str, float, float]] = []


def _watch() -> None:
    """Wrap the judge once per worker process: TankActor._judge says which station, meter_change when."""
    from actors.entities import TankActor
    from twin.detectors.wetstock_judge import WetstockJudge

    if getattr(WetstockJudge, "_watched", False):
        return
    judge, change, best = TankActor._judge, WetstockJudge.meter_change, WetstockJudge._best_change

    def tank_judge(self: Any, *args: Any, **kwargs: Any) -> Any:
        _NOW["station"] = self.station
        return judge(self, *args, **kwargs)

    def meter_change(self: Any, ts: float, *args: Any, **kwargs: Any) -> Any:
        _NOW["ts"] = ts
        return change(self, ts, *args, **kwargs)

    def best_change(self: Any, scan: Any, windows: slice, threshold: float, bounded: bool) -> Any:
        found = best(self, scan, windows, 0.0, bounded)
        if found is not None:
            kind = "day" if not windows.start else "window"
            _SEEN.append((_NOW["station"], self.tank, kind, float(found[1]), float(_NOW["ts"])))
        return best(self, scan, windows, threshold, bounded)

    TankActor._judge = tank_judge
    WetstockJudge.meter_change = meter_change
    WetstockJudge._best_change = best_change
    WetstockJudge._watched = True


def _target(scn: Scenario, seed: int) -> tuple[tuple[str, str], float] | None:
    """The meter-biased nozzle's (station, tank) and the deadline of its METER_BIAS expectation."""
    faults = [f for f in scn.faults if f["type"] == "meter_bias"]
    within = [e.within for e in scn.expect if e.alert == "METER_BIAS"]
    if len(faults) != 1 or not within:
        return None
    fault = faults[0]
    first, _ = first_active(fault, scn.start + _seconds(fault["at"]))
    station = build_district(scn, seed).district.station(fault["station"])
    (tank,) = [n.tank for n in station.nozzles if n.id == fault["nozzle"]]
    return (fault["station"], tank), first + within[0]


def one_run(scn: Scenario, seed: int) -> dict[str, Any]:
    _watch()
    _SEEN.clear()
    report = run_one(scn, seed)
    return {"scenario": scn.name, "seed": seed, "seen": list(_SEEN), "target": _target(scn, seed),
            "met": all(e["met"] for e in report["expectations"]), "expected": bool(report["expectations"]),
            "false_alarms": len(report["false_alarms"]), "tank_months": report["figures"]["tank_months"]}


def summarise(runs: list[dict[str, Any]], thresholds: list[float], day_threshold: float) -> None:
    by_scenario: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        by_scenario[run["scenario"]].append(run)
    for name, group in by_scenario.items():
        months = sum(r["tank_months"] for r in group)
        met = sum(r["met"] for r in group if r["expected"])
        expected = sum(r["expected"] for r in group)
        print(f"\n{name}: {len(group)} runs, {months:.0f} tank-months; the runner scored "
              f"{met}/{expected} met, {sum(r['false_alarms'] for r in group)} false alarms")
        largest = {"day": 0.0, "window": 0.0}
        for r in group:
            target = tuple(r["target"][0]) if r["target"] else None
            for station, tank, kind, chi2, _ in r["seen"]:
                if (station, tank) != target:
                    largest[kind] = max(largest[kind], chi2)
        print(f"  largest Δχ² on tanks with no meter fault: whole day {largest['day']:.1f}, "
              f"window {largest['window']:.1f}")
        for threshold in thresholds:
            found, others = 0, set()
            for r in group:
                target = tuple(r["target"][0]) if r["target"] else None
                hit = False
                for station, tank, kind, chi2, ts in r["seen"]:
                    if chi2 < (day_threshold if kind == "day" else threshold):
                        continue
                    if (station, tank) == target:
                        hit = hit or ts <= r["target"][1]
                    else:
                        others.add((r["seed"], station, tank))
                found += hit
            found_text = f"found in time {found}/{len(group)}, " if any(r["target"] for r in group) else ""
            print(f"  window threshold {threshold:g}: {found_text}other tanks reaching it {len(others)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenarios", nargs="+")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a TwinSettings field, e.g. chart_terms=2 (repeatable)")
    ap.add_argument("--thresholds", default="25,30,40,65", help="window thresholds to count at")
    args = ap.parse_args()
    overrides = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}
    plan = []
    for path in args.scenarios:
        scn = load_scenario(path)
        scn = scn.model_copy(update={"settings": {**scn.settings, **overrides}})
        plan += [(scn, seed) for seed in scn.seeds(args.seeds)]
    day_threshold = plan[0][0].twin_settings().meter_change_chi2
    with cf.ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        runs = list(pool.map(one_run, *zip(*plan, strict=True)))
    print(f"settings overridden: {overrides or 'none'}; whole-day threshold {day_threshold:g}")
    summarise(runs, [float(t) for t in args.thresholds.split(",")], day_threshold)


if __name__ == "__main__":
    main()
