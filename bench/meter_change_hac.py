"""Benchmark: would a variance robust to correlated rows tell a meter change better than OLS does?

Not a test: it prints figures, for README "METER_BIAS: a change is seen, not always whose". The scan's
Δχ² (``WetstockModel.change_scan``) takes the rows as independent; the divergence's errors are not (the
chart's error follows the volume, the books' timing the hour), which is why the thresholds sit far
above a χ² table's (30 for the whole day, 65 for a window). The LEAK interval already takes a
Newey–West error over 3-hour chunk sums (``WetstockModel.trend_hac``). This asks whether the same for
the meter-change test would separate faults from healthy tanks better: each scan's best whole-day
change that passes every other rule (Δχ² from 0) is refitted here as an explicit column from the
chunks' sums, with its t² by OLS (equal to the scan's Δχ², checked) and by Newey–West over the chunk
scores at several lags; the best trend from an onset the same way. Then per statistic: its largest
value on tanks with no meter fault, and the meter-biased tanks that reach that value (and 30) in time
with the change ≥ 9 ahead of the trend — what a threshold just above the healthy logs would find.

    python bench/meter_change_hac.py scenarios/meter-bias-1pct.yaml scenarios/meter-bias-0.5pct.yaml \
        scenarios/meter-bias-switched.yaml scenarios/sensor-drift.yaml scenarios/water-ingress.yaml \
        scenarios/hidden-sales-switched.yaml scenarios/healthy-30d.yaml:10 scenarios/healthy-busy-30d.yaml:10
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.meter_change_null import _target  # noqa: E402
from twin.detectors.wetstock import newey_west_meat  # noqa: E402
from twin.scenario_runner import run_one  # noqa: E402
from twin.scenarios import load_scenario  # noqa: E402

LAGS = (0, 2, 4, 8)
_NOW: dict[str, Any] = {}
_SEEN: list[tuple[str, str, float, float, float, list[float], list[float], int]] = []


def change_t2(model: Any, base: list[int], col: int, tau: float) -> list[float]:
    """[OLS t², Newey–West t² at each of LAGS] of column ``col`` (0 time, 2 + i nozzle i) from onset
    ``tau``, over the model's segments, with the base columns and an intercept per segment.

    As ``_change_sums`` builds it: a nozzle's column is its sales since the first row of τ's chunk (0
    before), time the hours since τ; a segment wholly after τ holds the column up to a constant its
    intercept takes. Each chunk's sums of the extra column come from the chunk's own sums."""
    segments = [g for g in model.segments if g.n >= 2]
    kb = len(base)
    parts = []
    for g in segments:
        start, n_c, sx_c, _, sxy_c, sxx_c, sy_c, _, first = g.chunks.arrays()
        after = (start >= tau).astype(float)
        origin = 0.0
        if after.any() and g.first_ts < tau:
            origin = ((tau - model.data_start_ts) / 3600.0 - g.x0[0] if col == 0
                      else float(first[int(np.argmax(start >= tau))][col]))
        sx = np.concatenate([sx_c[:, base], (after * (sx_c[:, col] - n_c * origin))[:, None]], axis=1)
        sxx = np.zeros((len(n_c), kb + 1, kb + 1))
        sxx[:, :kb, :kb] = sxx_c[:, base][:, :, base]
        cross = after[:, None] * (sxx_c[:, base, col] - origin * sx_c[:, base])
        sxx[:, :kb, kb] = sxx[:, kb, :kb] = cross
        sxx[:, kb, kb] = after * (sxx_c[:, col, col] - 2.0 * origin * sx_c[:, col] + n_c * origin * origin)
        sxy = np.concatenate([sxy_c[:, base], (after * (sxy_c[:, col] - origin * sy_c))[:, None]], axis=1)
        parts.append((n_c, sx, sxx, sxy, sy_c, g))
    cxx, cxy, cyy = np.zeros((kb + 1, kb + 1)), np.zeros(kb + 1), 0.0
    for n_c, sx, sxx, sxy, sy_c, g in parts:
        n = n_c.sum()
        mx, my = sx.sum(0) / n, sy_c.sum() / n
        cxx += sxx.sum(0) - n * np.outer(mx, mx)
        cxy += sxy.sum(0) - n * mx * my
        cyy += g.syy - n * my * my
    dof = sum(g.n for g in segments) - len(segments) - kb - 1
    coef = np.linalg.solve(cxx, cxy)
    bread = np.linalg.inv(cxx)
    rss = max(float(cyy - coef @ cxy), 0.0)
    out = [float(coef[-1] ** 2 / (bread[-1, -1] * rss / dof))]
    scores = []
    for n_c, sx, sxx, sxy, sy_c, _ in parts:  # Σ over each chunk of (x − x̄)(y − ȳ − (x − x̄)·coef)
        n = n_c.sum()
        xb, yb = sx.sum(0) / n, sy_c.sum() / n
        c_xy = sxy - yb * sx - np.outer(sy_c, xb) + np.outer(n_c, xb * yb)
        c_xx = (sxx - xb[None, :, None] * sx[:, None, :] - sx[:, :, None] * xb[None, None, :]
                + n_c[:, None, None] * np.outer(xb, xb))
        scores.append(c_xy - c_xx @ coef)
    for lags in LAGS:
        variance = float((bread @ newey_west_meat(np.vstack(scores), lags) @ bread)[-1, -1])
        out.append(float(coef[-1] ** 2 / variance) if variance > 0 else float("inf"))
    return out


def _watch() -> None:
    """Wrap the judge once per worker: every scan's best whole-day change that passes the other rules,
    with its column and the best trend's refitted here."""
    from actors.entities import TankActor
    from twin.detectors.wetstock_judge import WetstockJudge

    if getattr(WetstockJudge, "_hac_watched", False):
        return
    judge, change, best = TankActor._judge, WetstockJudge.meter_change, WetstockJudge._best_change

    def tank_judge(self: Any, *args: Any, **kwargs: Any) -> Any:
        _NOW["station"] = self.station
        return judge(self, *args, **kwargs)

    def meter_change(self: Any, ts: float, model: Any, *args: Any, **kwargs: Any) -> Any:
        _NOW["ts"], _NOW["model"] = ts, model
        return change(self, ts, model, *args, **kwargs)

    def best_change(self: Any, scan: Any, windows: slice, threshold: float, bounded: bool) -> Any:
        found = best(self, scan, windows, 0.0, bounded)
        if found is not None and not windows.start:
            model = _NOW["model"]
            (tau, _, col), chi2, time_chi2 = found[0], found[1], found[2]
            active = [2 + list(model.nozzles).index(n) for n in scan.nozzles]
            base = model._base(active)
            meter = change_t2(model, base, active[col], float(scan.taus[tau]))
            after = sum(int((g.chunks.starts >= scan.taus[tau]).sum()) for g in model.segments if g.n >= 2)
            trend = change_t2(model, base, 0, float(scan.taus[int(np.argmax(scan.time_gain))]))
            _SEEN.append((_NOW["station"], self.tank, float(_NOW["ts"]), float(chi2), float(chi2 - time_chi2),
                          meter, trend, after))
        return best(self, scan, windows, threshold, bounded)

    TankActor._judge = tank_judge
    WetstockJudge.meter_change = meter_change
    WetstockJudge._best_change = best_change
    WetstockJudge._hac_watched = True


def one_run(path: str, seed: int) -> dict[str, Any]:
    _watch()
    _SEEN.clear()
    scn = load_scenario(path)
    run_one(scn, seed)
    return {"scenario": scn.name, "seed": seed, "seen": list(_SEEN), "target": _target(scn, seed)}


def summarise(runs: list[dict[str, Any]]) -> None:
    checks = [abs(meter[0] - chi2) / max(chi2, 1e-9) for r in runs for *_, chi2, _, meter, _, _ in r["seen"]]
    print(f"{len(checks)} scans refitted; OLS t² against the scan's Δχ²: largest relative difference "
          f"{max(checks, default=0.0):.1e}")
    targets = sum(r["target"] is not None for r in runs)
    bystanders = [(r["seed"], s[0], s[1]) for r in runs for s in r["seen"]
                  if r["target"] is None or (s[0], s[1]) != tuple(r["target"][0])]
    print(f"scans passing every other rule on tanks with no meter fault: {len(bystanders)}, on "
          f"{len(set(bystanders))} tanks")
    names = ["OLS", *(f"HAC lags {lags}" for lags in LAGS)]
    for i, name in enumerate(names):
        null, found_at_null, found_at_30 = 0.0, 0, 0
        for r in runs:
            target = tuple(r["target"][0]) if r["target"] else None
            for station, tank, _, _, _, meter, trend, _ in r["seen"]:
                if (station, tank) != target and meter[i] - trend[i] >= 9.0:
                    null = max(null, meter[i])
        for r in runs:
            if r["target"] is None:
                continue
            hits = [meter[i] for station, tank, ts, _, _, meter, trend, _ in r["seen"]
                    if (station, tank) == tuple(r["target"][0]) and ts <= r["target"][1]
                    and meter[i] - trend[i] >= 9.0]
            found_at_null += any(v > null for v in hits)
            found_at_30 += any(v >= 30.0 for v in hits)
        print(f"  {name:12} largest on tanks with no meter fault {null:7.1f}; meter-biased tanks found in "
              f"time above it {found_at_null}/{targets}, at ≥ 30 {found_at_30}/{targets}")


def largest_robust(runs: list[dict[str, Any]], lag_index: int = 3, count: int = 5) -> None:
    """The bystander scans with the largest robust t² (lags LAGS[lag_index - 1], ≥ 9 ahead of the
    trend's): how many chunks their change column had after its onset."""
    rows = sorted(((s[5][lag_index], s[5][0], s[7], r["scenario"], r["seed"], s[0], s[1]) for r in runs
                   for s in r["seen"] if (r["target"] is None or (s[0], s[1]) != tuple(r["target"][0]))
                   and s[5][lag_index] - s[6][lag_index] >= 9.0),
                  reverse=True)[:count]
    print(f"largest robust t² (lags {LAGS[lag_index - 1]}) on tanks with no meter fault:")
    for robust, ols, after, scenario, seed, station, tank in rows:
        print(f"  {robust:8.1f} (OLS {ols:5.1f}) {scenario} seed {seed} {station} {tank}: "
              f"{after} chunks after the onset")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenarios", nargs="+", help="scenario files, each FILE or FILE:SEEDS")
    ap.add_argument("--seeds", type=int, default=20, help="seeds of a file given without its own")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    plan = []
    for item in args.scenarios:
        path, _, seeds = item.partition(":")
        plan += [(path, seed) for seed in load_scenario(path).seeds(int(seeds or args.seeds))]
    with cf.ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        runs = list(pool.map(one_run, *zip(*plan, strict=True)))
    print(f"{len(runs)} runs of {', '.join(args.scenarios)}; whole-day changes only (windows keep OLS)")
    summarise(runs)
    largest_robust(runs)


if __name__ == "__main__":
    main()
