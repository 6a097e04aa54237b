"""Benchmark: a simulated district-day pushed through the twin as fast as it goes.

Not a test: it prints figures. Stages are timed apart so the README can say where the time goes:

1. generation of the events by the simulator (not part of the twin; reported for context);
2. the runtime alone (validated events → station actors → outputs);
3. the whole ingest path (raw dicts → validation → dedup → runtime → Redis log and outputs), with the
   per-batch latency from a batch entering ``ingest`` to its divergence outputs being ready.

    python bench/ingest.py                       # 50 stations, 24 h, readings every 10 s
    python bench/ingest.py --stations 10 --hours 6 --profile
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.base import make_runtime  # noqa: E402
from simulators.district import synthetic_district  # noqa: E402
from simulators.feed import DistrictSimulator  # noqa: E402
from twin.app_runner import tune_gc  # noqa: E402
from twin.events import Validator  # noqa: E402
from twin.service import TwinService  # noqa: E402
from twin.store import EmbeddedRedis, Store, connect  # noqa: E402

START = 1_780_243_200.0  # 2026-06-01 00:00 Beijing


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def simulator(args: argparse.Namespace) -> tuple[object, DistrictSimulator]:
    sim_district = synthetic_district(args.stations, args.seed)
    return sim_district, DistrictSimulator(sim_district, seed=args.seed, start_ts=START,
                                           reading_interval_s=args.reading_interval, truth_every=None,
                                           vapor=args.vapor)


def batches(args: argparse.Namespace, sim: DistrictSimulator) -> Iterator[tuple[list[dict], float]]:
    """The district-day, one batch at a time: holding a day of raw dicts would dwarf the twin itself."""
    t, end = START, START + args.hours * 3600
    while t < end:
        t = min(t + args.batch_s, end)
        yield sim.advance(t), t


def generation(args: argparse.Namespace) -> tuple[int, float]:
    _, sim = simulator(args)
    t0 = time.perf_counter()
    n = sum(len(raws) for raws, _ in batches(args, sim))
    return n, time.perf_counter() - t0


async def runtime_only(args: argparse.Namespace) -> tuple[float, int]:
    """Only runtime.process is timed; generation and validation happen between the timed calls."""
    sim_district, sim = simulator(args)
    district = sim_district.district  # type: ignore[attr-defined]
    validator = Validator(district.directory())
    runtime = make_runtime(args.runtime, district, shards=args.shards)
    elapsed, n = 0.0, 0
    for raws, now in batches(args, sim):
        events, _ = validator.validate(raws, now)
        groups: dict[str, list] = {}
        for ev in events:
            groups.setdefault(ev.station, []).append(ev)
        n += len(events)
        t0 = time.perf_counter()
        await runtime.process(groups, False)
        elapsed += time.perf_counter() - t0
    await runtime.stop()
    return elapsed, n


async def full_path(args: argparse.Namespace) -> dict[str, float]:
    """Only service.ingest is timed (plus the final drain), with live-mode state updates."""
    sim_district, sim = simulator(args)
    district = sim_district.district  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory(prefix="ft-bench-") as tmp:
        redis = EmbeddedRedis(tmp).start()
        client = connect(redis.url)
        store = Store(client)
        service = TwinService(district, store, make_runtime(args.runtime, district, shards=args.shards))
        latencies = []
        for raws, now in batches(args, sim):
            b0 = time.perf_counter()
            await service.ingest(raws, now=now)
            latencies.append(time.perf_counter() - b0)
        d0 = time.perf_counter()
        await service.drain()
        elapsed = sum(latencies) + time.perf_counter() - d0
        counters = await store.counters()
        await service.close()
        await client.aclose()
        redis.stop()
    latencies.sort()
    return {"elapsed": elapsed, "accepted": counters.get("accepted", 0),
            "rejected": counters.get("rejected", 0), "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))], "max_ms": 1000 * latencies[-1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stations", type=int, default=50)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--reading-interval", type=float, default=10.0)
    ap.add_argument("--batch-s", type=float, default=60.0, help="simulated seconds per ingested batch")
    ap.add_argument("--runtime", choices=["local", "ray"], default="local")
    ap.add_argument("--shards", type=int, default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", action="store_true", help="profile the full path with pyinstrument")
    ap.add_argument("--vapor", action="store_true",
                    help="with the stations' vapor-recovery monitors (as the demo has)")
    args = ap.parse_args()
    tune_gc()  # as `fueltwin demo` does

    n_events, gen_s = generation(args)
    print(f"district: {args.stations} stations, {args.hours:g} h simulated, readings every "
          f"{args.reading_interval:g} s, batches of {args.batch_s:g} s simulated"
          + (", vapor-recovery monitors" if args.vapor else ""))
    print(f"generation       {n_events:>10,} events in {gen_s:7.2f} s = {n_events / gen_s:>10,.0f} events/s")

    rt_s, rt_n = asyncio.run(runtime_only(args))
    print(f"runtime only     {rt_n:>10,} events in {rt_s:7.2f} s = {rt_n / rt_s:>10,.0f} events/s "
          f"({args.runtime})")

    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler()
        profiler.start()
    full = asyncio.run(full_path(args))
    if args.profile:
        profiler.stop()
        print(profiler.output_text(unicode=True, color=False, show_all=False))
    print(f"full ingest path {full['accepted']:>10,.0f} events in {full['elapsed']:7.2f} s = "
          f"{full['accepted'] / full['elapsed']:>10,.0f} events/s (validate, dedup, runtime, Redis)")
    print(f"rejected         {full['rejected']:>10,.0f}")
    print(f"batch latency    p50 {full['p50_ms']:.1f} ms, p99 {full['p99_ms']:.1f} ms, "
          f"max {full['max_ms']:.1f} ms (a batch's arrival to its divergence outputs)")
    print(f"simulated day    replayed at {args.hours * 3600 / full['elapsed']:,.0f}x real time")
    print(f"peak memory      {peak_rss_mb():.0f} MB (RSS of this process; Redis is a separate process)")


if __name__ == "__main__":
    main()
