"""Benchmark: what keeping stations live costs in memory, day after simulated day.

Not a test: it prints figures. A city is a thousand stations or more on one machine, so the twin's
memory per station matters as much as its speed. The simulated district is fed to the local runtime
(no Redis: its log lives in another process) for ``--days`` simulated days, and each day it prints

* the twin's resident memory, and its growth per station since the start; the simulator runs in a
  process of its own (as a field bridge would), without its per-reading ground truth, as in
  ``fueltwin demo``, and its resident memory is printed apart;
* the events the stations' supervisors hold in their journals (every event since each station's last
  snapshot, kept to replay a station that crashes), the stations' pickled state now, and the snapshots
  the supervisors hold (compressed, taken at their last checkpoints);
* the events per second the twin handled that day, over its own time (validating and processing the
  batches; not waiting for the simulator, not these measurements): whether it slows as state fills.

    python bench/memory.py                                # 10 stations, 14 days, readings every 60 s
    python bench/memory.py --stations 20 --days 21 --reading-interval 10
    python bench/memory.py --days 14 --reading-interval 10 --tracemalloc   # what holds it, by line
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import os
import pickle
import sys
import time
import tracemalloc
from multiprocessing.connection import Connection
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


def print_allocations(stations: int) -> None:
    """What the twin's live allocations are, by line of code (slow: run it on a few days)."""
    gc.collect()
    top = tracemalloc.take_snapshot().statistics("lineno")
    print(f"live allocations: {sum(s.size for s in top) / 2**20 / stations:.2f} MB a station; largest:")
    for stat in top[:15]:
        frame = stat.traceback[0]
        print(f"  {stat.size / 2**20 / stations:6.2f} MB a station {stat.count:9,} blocks  "
              f"{frame.filename}:{frame.lineno}")


def feed(conn: Connection, args: argparse.Namespace) -> None:
    """The simulated district in its own process: a batch of raw events (and this process's resident
    memory) per ``--batch-s`` simulated seconds, then None. The pipe's buffer paces it to the twin."""
    sim = DistrictSimulator(synthetic_district(args.stations, args.seed), seed=args.seed, start_ts=START,
                            reading_interval_s=args.reading_interval, truth_every=None)
    t, end = START, START + args.days * 86_400
    while t < end:
        t = min(t + args.batch_s, end)
        conn.send((t, sim.advance(t), rss_mb()))
    conn.send(None)
    conn.close()


async def run(args: argparse.Namespace) -> None:
    district = synthetic_district(args.stations, args.seed).district
    validator = Validator(district.directory())
    runtime = make_runtime("local", district)
    gc.collect()
    base = rss_mb()
    print(f"{args.stations} stations, {args.days:g} days, readings every {args.reading_interval:g} s; "
          f"twin starts at {base:.0f} MB resident")
    print("  day   twin resident   per station   journals (events)   pickled state   snapshots held"
          "   simulator   events/s (that day, twin's own time)")
    receiver, sender = multiprocessing.get_context("spawn").Pipe(duplex=False)
    simulator = multiprocessing.get_context("spawn").Process(target=feed, args=(sender, args), daemon=True)
    simulator.start()
    sender.close()
    if args.tracemalloc:
        tracemalloc.start()
    end, mark = START + args.days * 86_400, START + 86_400
    day_events, busy = 0, 0.0  # the twin's own time: not waiting for the simulator, not measuring
    while (batch := receiver.recv()) is not None:
        t, raw, sim_rss = batch
        t0 = time.perf_counter()
        accepted, _ = validator.validate(raw, t)
        groups: dict[str, list] = {}
        for ev in accepted:
            groups.setdefault(ev.station, []).append(ev)
        await runtime.process(groups, False)
        busy += time.perf_counter() - t0
        day_events += len(accepted)
        if t >= mark or t >= end:
            mark += 86_400
            gc.collect()
            sups = supervisors(runtime)
            journal = sum(s._journal_weight for s in sups)
            state = sum(len(pickle.dumps(s.instance, pickle.HIGHEST_PROTOCOL)) for s in sups)
            held = sum(len(s._snapshot) for s in sups)
            now = rss_mb()
            print(f"  {(t - START) / 86_400:3.0f} {now:11.0f} MB {(now - base) / args.stations:9.1f} MB"
                  f" {journal:14,} {state / 2**20:15.1f} MB {held / 2**20:12.1f} MB {sim_rss:8.0f} MB"
                  f" {day_events / busy:10,.0f}", flush=True)
            day_events, busy = 0, 0.0
    simulator.join(timeout=30)
    if args.tracemalloc:
        print_allocations(args.stations)
    await runtime.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stations", type=int, default=10)
    ap.add_argument("--days", type=float, default=14.0)
    ap.add_argument("--reading-interval", type=float, default=60.0)
    ap.add_argument("--batch-s", type=float, default=60.0, help="simulated seconds per batch")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tracemalloc", action="store_true",
                    help="at the end, the twin's live allocations by line of code (several times slower)")
    args = ap.parse_args()
    tune_gc()  # as `fueltwin demo` does
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
