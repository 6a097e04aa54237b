"""Benchmark: replay a recorded district-day into a fresh twin as fast as it goes.

Not a test: it prints figures. A researcher's replay (``fueltwin replay``, ``ui/replay.py``) reads the
recorded input log back, merges the stations' batches in event time and feeds them to a new twin under
its own key prefix. This records a simulated district-day through the whole ingest path first (as
``bench/ingest.py`` does), then times the replay alone and checks that it gave the recorded twin's alerts
and deliveries; last, it times a restart of the recorded twin with no snapshot to start from (its whole
log read back into its actors, ``TwinService.recover``).

    python bench/replay.py                       # 50 stations, 24 h, readings every 10 s
    python bench/replay.py --stations 20 --hours 12 --profile
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.base import make_runtime  # noqa: E402
from simulators.district import synthetic_district  # noqa: E402
from simulators.feed import DistrictSimulator  # noqa: E402
from twin.app_runner import tune_gc  # noqa: E402
from twin.service import TwinService  # noqa: E402
from twin.store import EmbeddedRedis, Store, connect  # noqa: E402
from ui.replay import ReplaySession, recorded_range  # noqa: E402

START = 1_780_243_200.0  # 2026-06-01 00:00 Beijing


async def outputs(store: Store) -> tuple[list[tuple], list[tuple]]:
    """What a replay must reproduce: every alert (with its metrics) and every delivery."""
    alerts = sorted((a["id"], a["code"], a["first_ts"], a["status"], repr(sorted(a["metrics"].items())))
                    for a in await store.alerts(limit=1_000_000))
    deliveries = sorted((d["station"], d["tank"], d["end_ts"], d["net_l_20c"])
                        for d in await store.deliveries(limit=1_000_000))
    return alerts, deliveries


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sim_district = synthetic_district(args.stations, args.seed)
    district = sim_district.district
    sim = DistrictSimulator(sim_district, seed=args.seed, start_ts=START,
                            reading_interval_s=args.reading_interval, truth_every=None)
    with tempfile.TemporaryDirectory(prefix="ft-bench-") as tmp:
        redis = EmbeddedRedis(tmp).start()
        client = connect(redis.url)
        try:
            source = Store(client, archive_dir=Path(tmp) / "archive")
            live = TwinService(district, source, make_runtime("local", district))
            t0 = time.perf_counter()
            t, end = START, START + args.hours * 3600
            while t < end:
                t = min(t + 60.0, end)
                await live.ingest(sim.advance(t), now=t)
            await live.close()
            record_s = time.perf_counter() - t0
            await source.save_district(district)
            recorded = await outputs(source)

            ids = [s.id for s in district.stations]
            ranges = await recorded_range(source, ids)
            if args.from_archive:  # the whole log moved to files first: replay and recovery read those
                await live.archive(float("inf"))
            first, last = min(a for a, _ in ranges.values()), max(b for _, b in ranges.values())
            target = Store(client, prefix="ft-replay")
            session = ReplaySession(source, target, district, ids, first, last, None)
            if args.profile:
                from pyinstrument import Profiler

                profiler = Profiler()
                profiler.start()
            t0 = time.perf_counter()
            session.start()
            await session.wait()
            replay_s = time.perf_counter() - t0
            if args.profile:
                profiler.stop()
                print(profiler.output_text(unicode=True, color=False, show_all=False))
            if session.status.state != "done":
                raise SystemExit(f"replay ended {session.status.state}: {session.status.error}")
            events = session.status.events
            await session.stop()
            same = await outputs(target) == recorded

            # A restart with no snapshot to start from: the whole log back into the twin's actors.
            restarted = TwinService(district, source, make_runtime("local", district))
            t0 = time.perf_counter()
            recovery = await restarted.recover()
            recover_s = time.perf_counter() - t0
            await restarted.close()
        finally:
            await client.aclose()
            redis.stop()
    return {"record_s": record_s, "replay_s": replay_s, "events": events, "same": same,
            "alerts": len(recorded[0]), "deliveries": len(recorded[1]), "recover_s": recover_s,
            "recovered": recovery.replayed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stations", type=int, default=50)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--reading-interval", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", action="store_true", help="profile the replay with pyinstrument")
    ap.add_argument("--from-archive", action="store_true",
                    help="move the recorded log to the archive's files first (what --keep-days does)")
    args = ap.parse_args()
    tune_gc()  # as `fueltwin replay` does
    r = asyncio.run(run(args))
    print(f"district: {args.stations} stations, {args.hours:g} h simulated, readings every "
          f"{args.reading_interval:g} s")
    print(f"recorded (whole ingest path)  {r['events']:>10,} events in {r['record_s']:7.2f} s")
    rate, speedup = r["events"] / r["replay_s"], args.hours * 3600 / r["replay_s"]
    print(f"replayed (log → fresh twin)   {r['events']:>10,} events in {r['replay_s']:7.2f} s = "
          f"{rate:>9,.0f} events/s, {speedup:,.0f}x real time")
    print(f"same alerts and deliveries    {'yes' if r['same'] else 'NO'} "
          f"({r['alerts']:,} alerts, {r['deliveries']:,} deliveries)")
    print(f"restart, no snapshot          {r['recovered']:>10,} events in {r['recover_s']:7.2f} s = "
          f"{r['recovered'] / r['recover_s']:>9,.0f} events/s (the log back into the actors)")


if __name__ == "__main__":
    main()
