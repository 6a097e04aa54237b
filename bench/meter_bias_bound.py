"""Benchmark: how well the gauge can tell that one nozzle's meter changed, told where and when.

Not a test: it prints figures, for README "METER_BIAS: a change is seen, not always whose". Each seed
of a meter-bias scenario is simulated and fed to the twin up to the expectation's deadline (the first
biased sale plus ``within``); then the biased nozzle's tank's own wetstock statistics (what the twin
kept, the same sums its detectors fit) are fitted by an *oracle* that knows what no detector knows —
which nozzle changed and when — and that there is nothing else: the divergence against each nozzle's
sales (one factor each, an intercept per stretch between deliveries) plus that nozzle's sales since the
onset (for a cheat switched on in some hours of the day, its sales in the smallest of the scan's
windows that holds those hours, the column ``WetstockModel.change_scan`` builds). The onset is taken on
the 3-hour grid the statistics keep (the boundary before and the one after it, the better fit). The
change column's t-statistic is the best any detector could do on these data; the twin's own test must
also find the onset, the hours and the nozzle among many (WetstockJudge.meter_change: Δχ² ≥ 30 against
no change, 65 for a window of hours, and ≥ 9 against a trend), and that costs its false alarms.
Beside it, what the twin's own scan (``WetstockModel.change_scan``, onsets of the last 7 days, not told
the nozzle) says: how far the culprit's change is behind the best nozzle's, and how many nozzles fit
within Δχ² 9 of the best — the candidates a tank's METER_BIAS lists.

    python bench/meter_bias_bound.py                                    # meter-bias-1pct, 20 seeds
    python bench/meter_bias_bound.py scenarios/meter-bias-0.5pct.yaml --seeds 20 --jobs 2
    python bench/meter_bias_bound.py scenarios/meter-bias-switched.yaml
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import multiprocessing
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.base import make_runtime  # noqa: E402
from actors.supervision import thaw  # noqa: E402
from simulators.faults import Schedule  # noqa: E402
from twin.detectors.wetstock import CHANGE_WINDOWS, ChangeScan, _Segment  # noqa: E402
from twin.detectors.wetstock_judge import CANDIDATE_CHI2  # noqa: E402
from twin.scenario_runner import _feed, build_district, build_simulator  # noqa: E402
from twin.scenarios import Scenario, _seconds, load_scenario  # noqa: E402


def _fault(scn: Scenario) -> dict[str, Any]:
    faults = [f for f in scn.faults if f["type"] == "meter_bias"]
    if len(faults) != 1:
        raise SystemExit(f"{scn.name}: needs exactly one meter_bias fault, has {len(faults)}")
    return faults[0]


def first_active(fault: dict[str, Any], onset: float) -> tuple[float, int]:
    """When the fault first biases a sale (a switched cheat's first hour on) and the scan's window
    (CHANGE_WINDOWS) the oracle fits: the smallest that holds all the cheat's hours, the whole day for
    a steady bias or one cycling on and off (whose hours move from day to day)."""
    schedule = Schedule(fault.get("schedule"), onset)
    first = next(float(t) for t in np.arange(onset, onset + 8 * 86_400.0, 60.0) if schedule.active(float(t)))
    if schedule.kind != "hours":
        return first, 0
    midnight = first - (first + 8 * 3600) % 86_400.0
    on = {h for h in range(24) if schedule.active(midnight + h * 3600 + 1800)}
    fits = [w for w in range(len(CHANGE_WINDOWS))
            if on <= {(ChangeScan.window_hours(w)[0] + j) % 24 for j in range(ChangeScan.window_hours(w)[1])}]
    return first, min(fits, key=lambda w: ChangeScan.window_hours(w)[1])


def one_seed(path: str, seed: int) -> dict[str, Any]:
    """Simulate ``seed`` to the deadline and fit the oracle on the biased nozzle's tank."""
    scn = load_scenario(path)
    fault = _fault(scn)
    onset, window = first_active(fault, scn.start + _seconds(fault["at"]))
    (deadline,) = [e.within for e in scn.expect if e.alert == "METER_BIAS"] or [2 * 86_400.0]
    scn = scn.model_copy(update={"duration": onset + deadline - scn.start})
    sim = build_simulator(scn, seed, build_district(scn, seed))

    async def go() -> bytes:
        twin = make_runtime("local", sim.district, scn.twin_settings(), None)
        try:
            await _feed(scn, sim, twin, None)
            return (await twin.snapshot())[fault["station"]]
        finally:
            await twin.stop()

    station = thaw(asyncio.run(go()))
    nozzle = station.nozzles[fault["nozzle"]]
    tank = station.tanks[nozzle.tank]
    return {"seed": seed, "factor": float(fault["factor"]), "nozzle": fault["nozzle"], "tank": tank.id,
            "hours": ChangeScan.window_hours(window),
            **oracle(tank.wetstock, fault["nozzle"], onset, window), **whose(tank.wetstock, fault["nozzle"])}


def whose(model: Any, nozzle: str) -> dict[str, Any]:
    """What the twin's own scan (not told the nozzle or the onset) says at the deadline: how many
    residual variances the culprit's best change is behind the best nozzle's, and how many nozzles
    fit within 9 of the best (the candidates METER_BIAS lists)."""
    now = model.segments[-1].last_ts
    scan = model.change_scan(now - 7 * 86_400.0, now - 6 * 3600.0)
    if scan is None or nozzle not in scan.nozzles:
        return {"behind": None, "candidates": None, "nozzles": None}
    per_nozzle = scan.nozzle_gain.max(axis=(0, 1))
    variance = (scan.rss - per_nozzle.max()) / scan.dof
    behind = (per_nozzle.max() - per_nozzle) / variance
    return {"behind": float(behind[scan.nozzles.index(nozzle)]),
            "candidates": int((behind < CANDIDATE_CHI2).sum()), "nozzles": len(scan.nozzles)}


def oracle(model: Any, nozzle: str, onset_ts: float, window: int) -> dict[str, Any]:
    """The change column's estimate (% of the nozzle's sales in the window's hours since the onset), its
    SE and t, at the better of the grid's onsets either side of the true one."""
    grid = onset_ts - onset_ts % _Segment.CHUNK_S
    scan = model.change_scan(grid, grid + _Segment.CHUNK_S)
    if scan is None or nozzle not in scan.nozzles:
        return {"change_pct": None, "se_pct": None, "t": None}
    col = scan.nozzles.index(nozzle)
    tau = int(np.argmax(scan.nozzle_gain[:, window, col]))
    # Columns are kL of sales; the coefficient is litres of divergence per kL: 10 L/kL = 1 %.
    change, se = scan.nozzle_coef[tau, window, col] / 10.0, scan.nozzle_se[tau, window, col] / 10.0
    return {"change_pct": float(change), "se_pct": float(se), "t": float(change / se) if se > 0 else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", nargs="?", default="scenarios/meter-bias-1pct.yaml")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    scn = load_scenario(args.scenario)
    seeds = list(scn.seeds(args.seeds))
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=max(args.jobs, 1), mp_context=ctx) as pool:
        rows = list(pool.map(one_seed, [args.scenario] * len(seeds), seeds))
    fault = _fault(scn)
    # true = displayed × factor: the books lose (1 − factor) of each displayed litre too much
    true_pct = (1.0 - float(fault["factor"])) * 100.0
    print(f"{scn.name}: {fault['station']} {fault['nozzle']} factor {fault['factor']} from {fault['at']}; "
          f"the oracle fitted at the deadline, {len(rows)} seeds")
    first_hour, hours = rows[0]["hours"]
    told = ("" if hours == 24 else
            f", in {first_hour:02d}:00–{(first_hour + hours) % 24:02d}:00 (the scan's window for its hours)")
    print(f"true change of the divergence per litre sold since the onset{told} ≈ {true_pct:+.2f} %\n")
    print("                 the oracle             the twin's scan")
    print(" seed  tank  change %   SE %      t  culprit behind best (Δχ²)  candidates / nozzles")
    ts, first, within = [], 0, 0
    for r in rows:
        if r["t"] is None:
            print(f"{r['seed']:5d}  {r['tank']:4s}  the nozzle sold nothing")
            continue
        ts.append(abs(r["t"]) if r["change_pct"] * true_pct > 0 else 0.0)
        scan = (f"{r['behind']:25.1f}  {r['candidates']:10d} / {r['nozzles']}" if r["behind"] is not None
                else "  (no scan)")
        oracle_cols = f"{r['change_pct']:+7.2f}  {r['se_pct']:5.2f}  {r['t']:+6.1f}"
        print(f"{r['seed']:5d}  {r['tank']:4s}  {oracle_cols}{scan}")
        if r["behind"] is not None:
            first += r["behind"] == 0.0
            within += r["behind"] < 9.0
    if ts:
        print(f"\n|t| in the true direction: median {statistics.median(ts):.1f}; "
              + ", ".join(f"≥ {c}: {sum(t >= c for t in ts)}/{len(ts)}" for c in (3, 4, 6, 10)))
        print(f"the scan's best nozzle is the culprit in {first}/{len(ts)}; the culprit is within Δχ² 9 of "
              f"the best (among the candidates) in {within}/{len(ts)}")


if __name__ == "__main__":
    main()
