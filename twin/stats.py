"""Sales statistics and market monitoring: running aggregates per station, summed per region and district.

Each station keeps its sales by grade for the current local day, month and year as running totals
(updated per transaction, reset when the period changes) and its posted prices. That compact record is
all a wall display needs: district and region figures are sums over at most a few thousand such
records, never a scan of transactions.

Market monitoring compares each station's posted price of a grade with the district's reference for it:
the median of the stations' posted prices (robust to the few far away ones it is meant to find), and
reports the spread (max − min) and the stations further than ``far_pct`` from the reference.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from typing import Any

from twin.timeutil import local_day

PERIODS = ("day", "month", "year")


def period_keys(ts: float) -> dict[str, str]:
    day = local_day(ts)
    return {"day": day, "month": day[:7], "year": day[:4]}


class SalesTotals:
    """One station's sales by grade for the current day, month and year: [litres, CNY, transactions]."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}
        self.totals: dict[str, dict[str, list[float]]] = {p: {} for p in PERIODS}
        self.changed = False

    def add(self, ts: float, grade: str, litres: float, amount_cny: float) -> None:
        keys = period_keys(ts)
        for p in PERIODS:
            if self.keys.get(p) != keys[p]:
                if self.keys.get(p) is not None and keys[p] < self.keys[p]:
                    continue  # a late transaction of a period already left behind
                self.keys[p] = keys[p]
                self.totals[p] = {}
            t = self.totals[p].setdefault(grade, [0.0, 0.0, 0])
            t[0] += litres
            t[1] += amount_cny
            t[2] += 1
        self.changed = True

    def record(self) -> dict[str, Any]:
        return {
            "keys": dict(self.keys),
            "sales": {
                p: {g: [round(v[0], 2), round(v[1], 2), int(v[2])] for g, v in self.totals[p].items()}
                for p in PERIODS
            },
        }


def station_sales(rec: Mapping[str, Any], period: str, key: str) -> dict[str, list[float]]:
    """A station record's sales of ``period`` if its current period is ``key`` (else nothing yet)."""
    if rec.get("keys", {}).get(period) != key:
        return {}
    return rec.get("sales", {}).get(period, {})


def _add(into: dict[str, dict[str, float]], sales: Mapping[str, list[float]]) -> None:
    for grade, (litres, cny, count) in sales.items():
        g = into.setdefault(grade, {"volume_l": 0.0, "amount_cny": 0.0, "count": 0})
        g["volume_l"] += litres
        g["amount_cny"] += cny
        g["count"] += int(count)


def _rounded(by_grade: dict[str, dict[str, float]]) -> dict[str, Any]:
    grades = {
        g: {
            "volume_l": round(v["volume_l"], 2),
            "amount_cny": round(v["amount_cny"], 2),
            "count": int(v["count"]),
        }
        for g, v in sorted(by_grade.items())
    }
    return {
        "by_grade": grades,
        "volume_l": round(sum(v["volume_l"] for v in by_grade.values()), 2),
        "amount_cny": round(sum(v["amount_cny"] for v in by_grade.values()), 2),
        "count": int(sum(v["count"] for v in by_grade.values())),
    }


def aggregate(
    records: Mapping[str, Mapping[str, Any]],
    regions: Mapping[str, str],
    period: str,
    key: str,
    stations: Iterable[str] | None = None,
) -> dict[str, Any]:
    """District, region and (optionally listed) station totals by grade for one period."""
    district: dict[str, dict[str, float]] = {}
    by_region: dict[str, dict[str, dict[str, float]]] = {r: {} for r in sorted(set(regions.values()))}
    by_station: dict[str, dict[str, dict[str, float]]] = {}
    wanted = None if stations is None else set(stations)
    for sid, rec in records.items():
        sales = station_sales(rec, period, key)
        _add(district, sales)
        region = regions.get(sid)
        if region is not None:
            _add(by_region.setdefault(region, {}), sales)
        if wanted is None or sid in wanted:
            _add(by_station.setdefault(sid, {}), sales)
    return {
        "period": period,
        "key": key,
        "district": _rounded(district),
        "regions": {r: _rounded(v) for r, v in by_region.items()},
        "stations": {s: _rounded(v) for s, v in sorted(by_station.items())},
    }


def market(records: Mapping[str, Mapping[str, Any]], far_pct: float = 3.0) -> dict[str, Any]:
    """Posted prices by grade across the district: reference (median), min, max, spread, far stations."""
    prices: dict[str, dict[str, float]] = {}
    for sid, rec in records.items():
        for grade, price in (rec.get("prices") or {}).items():
            prices.setdefault(grade, {})[sid] = float(price)
    out: dict[str, Any] = {}
    for grade, by_station in sorted(prices.items()):
        values = list(by_station.values())
        ref = statistics.median(values)
        far = sorted(
            (
                {"station": s, "price": p, "off_pct": round(100.0 * (p / ref - 1.0), 2)}
                for s, p in by_station.items()
                if abs(p / ref - 1.0) * 100.0 > far_pct
            ),
            key=lambda x: -abs(x["off_pct"]),
        )
        out[grade] = {
            "reference": round(ref, 3),
            "min": min(values),
            "max": max(values),
            "mean": round(statistics.fmean(values), 3),
            "spread": round(max(values) - min(values), 3),
            "stations": len(values),
            "far": far,
        }
    return {"far_pct": far_pct, "grades": out}
