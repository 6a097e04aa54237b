"""How much Redis memory the twin takes per station and day, by key family. Prints figures; not a test.

Feeds N simulated stations for D days through the whole ingest path (local runtime, a private embedded
Redis), then sums ``MEMORY USAGE`` over every key of the twin grouped by family (station ids replaced by
``{station}``), and reads ``used_memory`` (what Redis holds in RAM, the figure that must fit the
machine). Redis keeps everything in memory, so this says how many days a machine holds.

    python bench/redis_memory.py [--stations 10] [--days 2] [--reading-interval 60] [--keep-days 1]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.base import make_runtime  # noqa: E402
from simulators.district import synthetic_district  # noqa: E402
from simulators.feed import DistrictSimulator  # noqa: E402
from twin.app_runner import tune_gc  # noqa: E402
from twin.service import TwinService  # noqa: E402
from twin.store import EmbeddedRedis, Store, connect  # noqa: E402

START = 1_780_243_200.0  # 2026-06-01 00:00 Beijing


async def measure(args: argparse.Namespace) -> None:
    sd = synthetic_district(args.stations, args.seed)
    district = sd.district
    sim = DistrictSimulator(sd, seed=args.seed, start_ts=START, reading_interval_s=args.reading_interval,
                            truth_every=None)
    with tempfile.TemporaryDirectory(prefix="ft-mem-") as tmp:
        redis = EmbeddedRedis(tmp).start()
        client = connect(redis.url)
        store = Store(client, archive_dir=Path(tmp) / "archive")
        service = TwinService(district, store, make_runtime("local", district),
                              checkpoint_every=args.checkpoint_every or None, keep_days=args.keep_days)
        base = int((await client.info("memory"))["used_memory"])
        t, end, events, t0 = START, START + args.days * 86_400, 0, time.perf_counter()
        while t < end:
            t = min(t + 60.0, end)
            raws = sim.advance(t)
            events += len(raws)
            await service.ingest(raws, now=t)
        await service.drain()
        if service._archiving is not None:
            await service._archiving
        await service.checkpoint()
        if service._archiving is not None:
            await service._archiving
        on_disk = store.archive.size_bytes() if store.archive is not None else 0
        used = int((await client.info("memory"))["used_memory"]) - base
        ids = sorted((s.id for s in district.stations), key=len, reverse=True)
        pattern = re.compile("|".join(map(re.escape, ids)))
        families: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        async for key in client.scan_iter(match=f"{store.p}:*", count=1000):
            size = await client.memory_usage(key, samples=0) or 0
            fam = families[pattern.sub("{station}", key.decode())]
            fam[0] += 1
            fam[1] += size
        await service.close()
        await client.aclose()
        redis.stop()
    station_days = args.stations * args.days
    print(f"{args.stations} stations × {args.days:g} days, readings every {args.reading_interval:g} s: "
          f"{events:,} events in {time.perf_counter() - t0:.0f} s")
    print(f"used_memory grew {used / 1e6:.1f} MB = {used / station_days / 1e6:.2f} MB a station-day "
          f"({used / events:.0f} B an input event)")
    if args.keep_days:
        moved = service.archived["events"]
        print(f"keeping {args.keep_days:g} days in Redis: {moved:,} events moved to {on_disk / 1e6:.1f} MB "
              f"of archive files ({on_disk / max(moved, 1):.0f} B an event), "
              f"{service.archived['divergence_entries']:,} divergence entries dropped, in "
              f"{service.archived['seconds']:.1f} s over {service.archived['runs']:.0f} moves "
              f"({moved / max(service.archived['seconds'], 1e-9):,.0f} events/s"
              f"{', ingest running beside them' if args.checkpoint_every else ', alone'})")
    print(f"{'family':<40} {'keys':>6} {'MB':>9} {'MB/station-day':>15}")
    for name, (n, size) in sorted(families.items(), key=lambda kv: -kv[1][1]):
        if size >= 0.001 * used:
            print(f"{name:<40} {n:>6} {size / 1e6:>9.2f} {size / station_days / 1e6:>15.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stations", type=int, default=10)
    ap.add_argument("--days", type=float, default=2.0)
    ap.add_argument("--reading-interval", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep-days", type=float, default=None,
                    help="keep this many days in Redis, the older log in the archive (as serve does)")
    ap.add_argument("--checkpoint-every", type=int, default=50_000,
                    help="events between checkpoints (each starts a move); 0: one move at the end, alone")
    tune_gc()
    asyncio.run(measure(ap.parse_args()))


if __name__ == "__main__":
    main()
