"""How long GET /api/v1/stats's work takes for N stations (issue 5: a wall display polling every few
seconds with 1,000 stations): decoding each station's stats record (as read from the Redis hash) and
aggregating district, regions and market; and the wall's month trend from a month of closed day rows.
Prints figures; never a test.

    python bench/stats.py [--stations 1000] [--repeat 50]
"""

from __future__ import annotations

import argparse
import json
import random
import time

from twin.stats import aggregate, market, trend

GRADES = ("92#", "95#", "98#", "0#")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stations", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=50)
    a = ap.parse_args()
    rng = random.Random(1)
    blobs, regions = {}, {}
    for i in range(a.stations):
        sid = f"BH-{i + 1:04d}"
        regions[sid] = f"R{i % 22}"
        sales = {p: {g: [rng.uniform(1e3, 1e5), rng.uniform(7e3, 7e5), rng.randint(10, 9000)] for g in GRADES}
                 for p in ("day", "month", "year")}
        rec = {"keys": {"day": "2026-06-30", "month": "2026-06", "year": "2026"}, "sales": sales,
               "prices": {g: round(7.3 * rng.uniform(0.97, 1.03), 2) for g in GRADES}}
        blobs[sid] = json.dumps(rec).encode()
    t0 = time.perf_counter()
    for _ in range(a.repeat):
        recs = {k: json.loads(v) for k, v in blobs.items()}
        aggregate(recs, regions, "month", "2026-06")
        market(recs)
    per = (time.perf_counter() - t0) / a.repeat
    size = sum(map(len, blobs.values()))
    print(f"{a.stations} stations: {per * 1000:.1f} ms per stats computation "
          f"(decode {size / 1e6:.2f} MB + aggregate + market); cached for 1 s in the app")
    # The wall's month trend: every station's closed day rows of the month (one hash) and its record.
    rows = {f"{sid}|2026-06-{d:02d}": json.dumps({g: [round(rng.uniform(1e3, 1e4), 2),
                                                       round(rng.uniform(7e3, 7e4), 2),
                                                       rng.randint(10, 900)] for g in GRADES}).encode()
            for sid in blobs for d in range(1, 30)}
    repeat = max(1, a.repeat // 10)
    t0 = time.perf_counter()
    for _ in range(repeat):
        recs = {k: json.loads(v) for k, v in blobs.items()}
        trend(recs, {k: json.loads(v) for k, v in rows.items()}, "month", "2026-06")
    per = (time.perf_counter() - t0) / repeat
    size = sum(map(len, rows.values())) + size
    print(f"{a.stations} stations: {per * 1000:.1f} ms per month trend ({len(rows):,} closed day rows, "
          f"decode {size / 1e6:.2f} MB + sum by day); the wall asks every 30 s")


if __name__ == "__main__":
    main()
