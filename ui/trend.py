"""Sales trend for the wall display: litres and yuan by local hour of a day, day of a month, month of a year.

Read from what the twin wrote, not from what this process happened to see: each station writes a row for
every hour, day and month once it is over (``twin.stats.SalesTotals``), and its running totals of the
current ones with its state. So the trend is the same after a restart of the server, on a read-only
``serve`` and on a replayed day, and agrees with ``/api/v1/stats`` for the same period.

A city's month is ~30,000 closed day rows (``python bench/stats.py``: ≈ 0.2 s to decode and sum for
1,000 stations), so the work runs in a thread (the websockets keep going) and an answer is kept a few
seconds for every wall that asks the same.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from twin.stats import TREND_BUCKETS, history_hash, newest_key, trend
from twin.store import Store

CACHE_S = 5.0


class SalesTrend:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[tuple[str, str | None, tuple[str, ...] | None], tuple[float, dict[str, Any]]] = {}

    async def series(self, period: str, key: str | None = None,
                     stations: list[str] | None = None) -> dict[str, Any]:
        """``key`` defaults to the day, month or year of the newest day any station has reached."""
        ask = (period, key, None if stations is None else tuple(stations))
        hit = self._cache.get(ask)
        if hit is not None and time.monotonic() - hit[0] < CACHE_S:
            return hit[1]
        # The running totals first, then the closed rows: a row that closes in between is then read
        # with its record still showing that period, and a closed row wins over such a record; read the
        # other way round it could be missed on both sides.
        records = await asyncio.to_thread(_decode, await self.store.hgetall_raw("stats"))
        key = key or newest_key(records, period)
        if key is None:
            return {"period": period, "key": None, "buckets": []}
        rows = await self.store.hgetall_raw(history_hash(TREND_BUCKETS[period], key))
        result = await asyncio.to_thread(_trend, records, rows, period, key, stations)
        if len(self._cache) > 64:
            self._cache.clear()
        self._cache[ask] = (time.monotonic(), result)
        return result


def _decode(raw: dict[bytes, bytes]) -> dict[str, Any]:
    return {k.decode(): json.loads(v) for k, v in raw.items()}


def _trend(records: dict[str, Any], rows: dict[bytes, bytes], period: str, key: str,
           stations: list[str] | None) -> dict[str, Any]:
    return trend(records, _decode(rows), period, key, stations)
