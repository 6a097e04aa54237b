"""Benchmark: what keeping stations live costs in memory, day after simulated day.

Not a test: it prints figures. A city is a thousand stations or more on one machine, so the twin's
memory per station matters as much as its speed. The simulated district is fed to the local runtime
(no Redis: its log lives in another process) for ``--days`` simulated days, and each day it prints

* the process's resident memory, and its growth per station since the start (the simulator's own
  state is in it too, without its per-reading ground truth, as in ``fueltwin demo``);
* the events the stations' supervisors hold in their journals (every event since each station's last
  snapshot, kept to replay a station that crashes) and the stations' pickled state (that snapshot).

    python bench/memory.py                                # 10 stations, 14 days, readings every 60 s
    python bench/memory.py --stations 20 --days 21 --reading-interval 10
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import pickle
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.base import make_runtime  # noqa: E402
from simulators.district import synthetic_district  # noqa: E402
from simulators.feed import DistrictSimulator  # noqa: E402
from twin.app_runner import tune_gc  # noqa: E402
from twin.events import Validator  # noqa: E402

START = 1_780_243_200.0  # 2026-06-01 00:00 Beijing


def rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def supervisors(runtime: object) -> list:
    """Every station's supervisor in the local runtime (its shards' cells)."""
    cells = runtime.system._cells  # type: ignore[attr-defined]
    return [s for c in cells.values() for s in c.supervised.instance.shard.stations.values()]


async def run(args: argparse.Namespace) -> None:
    sim_district = synthetic_district(args.stations, args.seed)
    district = sim_district.district
    # As the demo: no true state per reading (the simulator's scoring series is not the twin's memory).
    sim = DistrictSimulator(sim_district, seed=args.seed, start_ts=START,
                            reading_interval_s=args.reading_interval, truth_every=None)
    validator = Validator(district.directory())
    runtime = make_runtime("local", district)
    gc.collect()
    base = rss_mb()
    print(f"{args.stations} stations, {args.days:g} days, readings every {args.reading_interval:g} s; "
          f"start {base:.0f} MB resident")
    print("  day   resident   per station   journals (events)   pickled state   events/s")
    t, end, mark, events = START, START + args.days * 86_400, START + 86_400, 0
    t0 = time.perf_counter()
    while t < end:
        t = min(t + args.batch_s, end)
        accepted, _ = validator.validate(sim.advance(t), t)
        groups: dict[str, list] = {}
        for ev in accepted:
            groups.setdefault(ev.station, []).append(ev)
        await runtime.process(groups, False)
        events += len(accepted)
        if t >= mark or t >= end:
            mark += 86_400
            gc.collect()
            sups = supervisors(runtime)
            journal = sum(s._journal_weight for s in sups)
            state = sum(len(pickle.dumps(s.instance, pickle.HIGHEST_PROTOCOL)) for s in sups)
            now = rss_mb()
            print(f"  {(t - START) / 86_400:3.0f} {now:8.0f} MB {(now - base) / args.stations:9.1f} MB"
                  f" {journal:14,} {state / 2**20:12.1f} MB {events / (time.perf_counter() - t0):10,.0f}",
                  flush=True)
    await runtime.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stations", type=int, default=10)
    ap.add_argument("--days", type=float, default=14.0)
    ap.add_argument("--reading-interval", type=float, default=60.0)
    ap.add_argument("--batch-s", type=float, default=60.0, help="simulated seconds per batch")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    tune_gc()  # as `fueltwin demo` does
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
