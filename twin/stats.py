"""Sales statistics and market monitoring: running aggregates per station, summed per region and district.

Each station keeps its sales by grade for the current local hour, day, month and year as running totals
(updated per transaction, reset when the period changes) and its posted prices, and writes one row for
each period once it is over. That compact record and those rows are all a wall display and a report
need: district and region figures are sums over at most a few thousand of them, never a scan of
transactions.

Market monitoring compares each station's posted price of a grade with the district's reference for it:
the median of the stations' posted prices (robust to the few far away ones it is meant to find), and
reports the spread (max − min) and the stations further than ``far_pct`` from the reference.
"""

from __future__ import annotations

import calendar
import statistics
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from twin.timeutil import local_day, local_hour_key

PERIODS = ("day", "month", "year")
#: What a station keeps running totals of: the statistics' periods and the hour (the wall's day trend).
TRACKED = ("hour", *PERIODS)
#: Where a closed period's row is kept: a hash per enclosing period, so one read gives a trend's buckets
#: (the hours of a day, the days of a month, the months of a year).
_PARENT = {"hour": slice(0, 10), "day": slice(0, 7), "month": slice(0, 4), "year": slice(0, 0)}

Sales = dict[str, list[float]]  # grade -> [litres, CNY, transactions]
_KEY_FORMAT = {"hour": "%Y-%m-%d %H", "day": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}


def valid_key(period: str, key: str) -> bool:
    """Whether ``key`` names a real hour, day, month or year in the form the twin writes (the API checks
    keys it is given, so a typo answers 422 instead of an empty report)."""
    try:
        parsed = datetime.strptime(key, _KEY_FORMAT[period])
    except ValueError:
        return False
    return parsed.strftime(_KEY_FORMAT[period]) == key  # strptime takes "2026-6"; the twin writes "2026-06"


def key_problem(period: str, key: str | None) -> str | None:
    """What is wrong with a key a person gave for ``period`` (None: nothing, or no key)."""
    if key is None or valid_key(period, key):
        return None
    return f"key {key!r} is not a {period} (2026-06-01, 2026-06 or 2026)"


def period_keys(ts: float) -> dict[str, str]:
    day = local_day(ts)
    return {"hour": local_hour_key(ts), "day": day, "month": day[:7], "year": day[:4]}


def history_hash(period: str, key: str) -> str:
    """The hash holding the closed rows of ``period`` whose key is ``key``: ``sales:hour:2026-06-01``,
    ``sales:day:2026-06``, ``sales:month:2026``, ``sales:year``; each row's field is ``station|key``."""
    parent = key[_PARENT[period]]
    return f"sales:{period}:{parent}" if parent else f"sales:{period}"


class SalesTotals:
    """One station's sales by grade for the current hour, day, month and year: [litres, CNY, transactions].

    Why closed periods are written out: the running totals alone answer only "this day so far"; a
    regulator's monthly report, yesterday's figures and the wall's trend after a restart need each
    period once it is over. Each closed period becomes one row (``take_closed``), written by the store
    like the ledger's rows; rewriting a row is idempotent, so a restart that replays the log writes the
    same rows again. A transaction that arrives after its period closed is added to that period if it is
    the one just left (the row is written again), else counted in ``late_dropped``.
    """

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}
        self.totals: dict[str, Sales] = {p: {} for p in TRACKED}
        #: period -> (key, totals) of the one left last, for transactions arriving after it closed.
        self.previous: dict[str, tuple[str, Sales]] = {}
        #: Rows to write: (period, key) -> totals (closed, or amended by a late transaction).
        self.closed: dict[tuple[str, str], Sales] = {}
        self.late_dropped: dict[str, int] = {}
        self.changed = False

    def __setstate__(self, state: dict[str, Any]) -> None:
        # a checkpoint from before the hour and the closed rows: its day, month and year go on from here
        state.setdefault("previous", {})
        state.setdefault("closed", {})
        state.setdefault("late_dropped", {})
        state["totals"].setdefault("hour", {})
        self.__dict__.update(state)

    def add(self, ts: float, grade: str, litres: float, amount_cny: float) -> None:
        keys = period_keys(ts)
        for p in TRACKED:
            key, current = keys[p], self.keys.get(p)
            if key == current:
                totals = self.totals[p]
            elif current is not None and key < current:
                prev = self.previous.get(p)
                if prev is None or prev[0] != key:
                    self.late_dropped[p] = self.late_dropped.get(p, 0) + 1
                    continue
                totals = prev[1]
                self.closed[(p, key)] = totals
            else:
                if current is not None:
                    self.previous[p] = (current, self.totals[p])
                    self.closed[(p, current)] = self.totals[p]
                self.keys[p] = key
                totals = self.totals[p] = {}
            t = totals.setdefault(grade, [0.0, 0.0, 0])
            t[0] += litres
            t[1] += amount_cny
            t[2] += 1
        self.changed = True

    def take_closed(self) -> list[tuple[str, str, Sales]]:
        """The rows closed or amended since the last call: (period, key, rounded totals)."""
        rows = [(p, key, _rounded_sales(totals)) for (p, key), totals in self.closed.items()]
        self.closed = {}
        return rows

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "keys": dict(self.keys),
            "sales": {p: _rounded_sales(self.totals[p]) for p in TRACKED},
        }
        if self.late_dropped:
            rec["late_dropped"] = dict(self.late_dropped)
        return rec


def _rounded_sales(totals: Sales) -> Sales:
    return {g: [round(v[0], 2), round(v[1], 2), int(v[2])] for g, v in totals.items()}


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
    closed: Mapping[str, Sales] | None = None,
) -> dict[str, Any]:
    """District, region and (optionally listed) station totals by grade for one period: each station's
    running record if its current period is ``key``, plus its closed row for ``key`` (``closed``, by
    station) if that period is over."""
    district: dict[str, dict[str, float]] = {}
    by_region: dict[str, dict[str, dict[str, float]]] = {r: {} for r in sorted(set(regions.values()))}
    by_station: dict[str, dict[str, dict[str, float]]] = {}
    wanted = None if stations is None else set(stations)
    closed = closed or {}
    for sid in {*records, *closed}:
        # A closed row wins: a record still showing that period as current was written before it closed
        # (station states are paced, the rows are not).
        sales = closed[sid] if sid in closed else station_sales(records[sid], period, key)
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


#: A trend's period -> the period of its buckets.
TREND_BUCKETS = {"day": "hour", "month": "day", "year": "month"}


def trend_keys(period: str, key: str) -> list[str]:
    """The bucket keys of a trend: the 24 hours of a day, the days of a month, the 12 months of a year."""
    if period == "day":
        return [f"{key} {h:02d}" for h in range(24)]
    if period == "month":
        year, month = int(key[:4]), int(key[5:7])
        return [f"{key}-{d:02d}" for d in range(1, calendar.monthrange(year, month)[1] + 1)]
    return [f"{key}-{m:02d}" for m in range(1, 13)]


def newest_key(records: Mapping[str, Mapping[str, Any]], period: str) -> str | None:
    """The trend key holding the newest day any station has reached (its day, month or year)."""
    day = max((k for rec in records.values() if (k := rec.get("keys", {}).get("day"))), default=None)
    if day is None:
        return None
    return {"day": day, "month": day[:7], "year": day[:4]}[period]


def trend(
    records: Mapping[str, Mapping[str, Any]],
    rows: Mapping[str, Sales],
    period: str,
    key: str,
    stations: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Sales by hour of a day, day of a month or month of a year: the closed rows of the enclosing
    period's hash (``rows``: ``station|key`` -> sales, from ``history_hash``) plus each station's
    running totals of the bucket it is in now.

    Buckets after the newest one any station has reached are marked ``future``: a wall drawing the
    rest of today as zeros would show sales stopping at the current hour."""
    src = TREND_BUCKETS[period]
    wanted = None if stations is None else set(stations)
    buckets: dict[str, dict[str, dict[str, float]]] = {k: {} for k in trend_keys(period, key)}
    now = max((k for rec in records.values() if (k := rec.get("keys", {}).get(src))), default=None)
    for name, sales in rows.items():
        sid, _, k = name.partition("|")
        if k in buckets and (wanted is None or sid in wanted):
            _add(buckets[k], sales)
    for sid, rec in records.items():
        k = rec.get("keys", {}).get(src)
        # a row already closed wins over a record written before it closed (states are paced, rows not)
        if k in buckets and (wanted is None or sid in wanted) and f"{sid}|{k}" not in rows:
            _add(buckets[k], rec.get("sales", {}).get(src, {}))
    return {"period": period, "key": key,
            "buckets": [{"key": k, **_rounded(v), **({"future": True} if now is not None and k > now else {})}
                        for k, v in buckets.items()]}


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
