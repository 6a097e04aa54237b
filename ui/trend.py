"""Sales trend for the wall display: litres and yuan by local hour, day and month, from the live states.

Why from states: each station's state carries its sales of the current local day by grade (running totals
the station actor keeps from every transaction). The growth of those totals between two states is what
was sold in between, so summing the growth into the bucket of the station's watermark gives a trend
without scanning transactions. It counts what this process has seen since it started (``since_ts``);
a day that began before the start shows only its part from then on — the response says so, the page
shows it, and nothing is invented. Bounded: the last 48 hours, 62 days and 24 months are kept.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from twin.outputs import Outputs
from twin.timeutil import to_local

KEEP = {"hour": 48, "day": 62, "month": 24}


class SalesTrend:
    def __init__(self) -> None:
        #: station -> (local day, {grade: (litres, yuan)}) as last seen.
        self._last: dict[str, tuple[str, dict[str, tuple[float, float]]]] = {}
        self._buckets: dict[str, OrderedDict[str, dict[str, list[float]]]] = {p: OrderedDict() for p in KEEP}
        self.since_ts: float | None = None
        self.newest_ts: float | None = None

    def on_outputs(self, outputs: Outputs) -> None:
        """A service listener: synchronous and cheap (a few dict operations per station state)."""
        for sid, state in outputs.states.items():
            self.add_state(sid, state)

    def add_state(self, sid: str, state: dict[str, Any]) -> None:
        sales = state.get("sales_today") or {}
        day = sales.get("day")
        ts = state.get("watermark") or max((t.get("last_ts") or 0.0 for t in state.get("tanks", [])),
                                           default=0.0)
        if not day or not ts:
            return
        now = {g: (float(v.get("volume_l", 0.0)), float(v.get("amount_cny", 0.0)))
               for g, v in (sales.get("by_grade") or {}).items()}
        last = self._last.get(sid)
        self._last[sid] = (day, now)
        if self.since_ts is None:
            self.since_ts = ts
        self.newest_ts = ts if self.newest_ts is None else max(self.newest_ts, ts)
        if last is None:
            return  # the first state seen: its totals were sold before we started counting
        if last[0] > day:
            return  # an older day's state arriving late
        before = last[1] if last[0] == day else {}
        local = to_local(ts)
        keys = {"hour": local.strftime("%Y-%m-%d %H"), "day": day, "month": day[:7]}
        for grade, (litres, yuan) in now.items():
            old_l, old_y = before.get(grade, (0.0, 0.0))
            d_l, d_y = litres - old_l, yuan - old_y
            if d_l <= 0 and d_y <= 0:
                continue
            for period, key in keys.items():
                self._bucket(period, key).setdefault(grade, [0.0, 0.0])
                cell = self._buckets[period][key][grade]
                cell[0] += max(d_l, 0.0)
                cell[1] += max(d_y, 0.0)

    def _bucket(self, period: str, key: str) -> dict[str, list[float]]:
        buckets = self._buckets[period]
        if key not in buckets:
            buckets[key] = {}
            if len(buckets) > KEEP[period]:
                # keys sort as time: drop the oldest, wherever a late one was inserted
                del buckets[min(buckets)]
        return buckets[key]

    def series(self, period: str) -> dict[str, Any]:
        """period 'day': the hours of the newest day; 'month': its month's days; 'year': its year's months."""
        if self.newest_ts is None:
            return {"period": period, "key": None, "since_ts": None, "buckets": []}
        local = to_local(self.newest_ts)
        if period == "day":
            key, src = local.strftime("%Y-%m-%d"), "hour"
            keys = [f"{key} {h:02d}" for h in range(24)]
        elif period == "month":
            key, src = local.strftime("%Y-%m"), "day"
            keys = [k for k in sorted(self._buckets["day"]) if k.startswith(key)]
        else:
            key, src = local.strftime("%Y"), "month"
            keys = [f"{key}-{m:02d}" for m in range(1, 13)]
        out = []
        for k in keys:
            cell = self._buckets[src].get(k, {})
            out.append({"key": k, "volume_l": round(sum(v[0] for v in cell.values()), 2),
                        "amount_cny": round(sum(v[1] for v in cell.values()), 2),
                        "by_grade": {g: {"volume_l": round(v[0], 2), "amount_cny": round(v[1], 2)}
                                     for g, v in sorted(cell.items())}})
        return {"period": period, "key": key, "since_ts": self.since_ts, "buckets": out}
