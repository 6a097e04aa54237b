"""The purchase–sales–inventory ledger (进、销、存台账) of one tank per local day, with month and year.

A day's row (volumes in litres at 20 °C unless named otherwise, GB/T 1885):

- ``opening_measured_l``: the tank's observed net volume at its first trusted reading of the day;
- ``receipts_documented_l``: purchase-order volume matched to the deliveries recognised that day;
- ``receipts_detected_l``: what the twin recognised from the tank itself (``twin.deliveries``);
- ``receipts_undocumented_l``: the part of those receipts that no purchase order matched within the
  paper trail's window (DELIVERY_UNDOCUMENTED, 无票油), taken back out if the order comes later. The
  rest, detected − documented − undocumented, is paperwork still within its window: a drop's order is
  often filed after the drop, so "not documented yet" is not "undocumented";
- ``sales_metered_l`` (displayed litres, the meters' own figure) and ``sales_metered_l_20c``: the
  transactions that *ended* that local day (the calendar the declarations and tax use);
- ``closing_book_l`` = opening measured + detected receipts − metered sales at 20 °C *between the two
  measurements* (``book_sales_l_20c``: the calendar's sales shifted by the minutes between midnight and
  the measurement);
- ``closing_measured_l``: the observed volume at the first trusted reading of the next day with no drop
  in progress (a delivery straddling midnight closes the day when it has settled, and its receipt is in
  that day), so that the next day's opening is the same number and month and year rows chain exactly;
- ``variance_l`` = closing measured − closing book, and ``variance_pct`` of throughput (metered sales at
  20 °C): the figure an "investigate at ±0.5 % of throughput" rule reads (DOMAIN.md, APEA 2005).

Sales follow the calendar exactly (what the declarations and tax use); the book and the variance use
what was booked between the two measurements, so the variance is exactly the change of the tank's
divergence and never holds a boundary effect. Month and year rows are running aggregates
updated when a day closes (and by delta when a late document changes a closed day): no scan of days.
"""

from __future__ import annotations

from typing import Any

from twin.timeutil import local_day

SUMS = (
    "receipts_documented_l",
    "receipts_detected_l",
    "receipts_undocumented_l",
    "sales_metered_l",
    "sales_metered_l_20c",
    "txns",
    "book_sales_l_20c",
)
#: Closed day rows kept in the actor so that a late purchase order can still be booked against its day.
KEEP_CLOSED_DAYS = 45


def new_row(period: str, key: str, tank: str, grade: str) -> dict[str, Any]:
    return {
        "period": period,
        "key": key,
        "tank": tank,
        "grade": grade,
        "opening_measured_l": None,
        "receipts_documented_l": 0.0,
        "receipts_detected_l": 0.0,
        "receipts_undocumented_l": 0.0,
        "sales_metered_l": 0.0,
        "sales_metered_l_20c": 0.0,
        "txns": 0,
        "book_sales_l_20c": 0.0,
        "closing_book_l": None,
        "closing_measured_l": None,
        "variance_l": None,
        "variance_pct": None,
        "days": 0,
        "complete": False,
    }


def finish(row: dict[str, Any]) -> dict[str, Any]:
    """Fill the derived fields (book, variance) from the others; returns the row, rounded for people."""
    opening = row["opening_measured_l"]
    if opening is not None:
        row["closing_book_l"] = opening + row["receipts_detected_l"] - row["book_sales_l_20c"]
    closing = row["closing_measured_l"]
    if closing is not None and row["closing_book_l"] is not None:
        row["variance_l"] = closing - row["closing_book_l"]
        thr = row["sales_metered_l_20c"]
        row["variance_pct"] = 100.0 * row["variance_l"] / thr if thr > 0 else None
    return row


def rounded(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for k, v in row.items():
        if isinstance(v, float):
            out[k] = round(v, 4 if k == "variance_pct" else 2)
    return out


def roll(agg: dict[str, Any] | None, day: dict[str, Any], period: str, key: str) -> dict[str, Any]:
    """A month or year row with one more closed (or open) day in it; ``agg`` is not changed."""
    out = dict(agg) if agg is not None else new_row(period, key, day["tank"], day["grade"])
    if out["opening_measured_l"] is None:
        out["opening_measured_l"] = day["opening_measured_l"]
    for k in SUMS:
        out[k] += day[k]
    out["days"] += 1
    out["closing_measured_l"] = day["closing_measured_l"]
    out["complete"] = bool(day["complete"])
    return finish(out)


def combine(rows: list[dict[str, Any]], tank: str, grade: str) -> dict[str, Any] | None:
    """Several tanks' rows of one period as one (a grade's, a station's total)."""
    if not rows:
        return None
    out = new_row(rows[0]["period"], rows[0]["key"], tank, grade)
    for k in SUMS:  # .get: rows the store kept from before a column
        out[k] = sum(r.get(k, 0.0) for r in rows)
    for k in ("opening_measured_l", "closing_measured_l"):
        vals = [r[k] for r in rows]
        out[k] = None if any(v is None for v in vals) else sum(vals)
    out["days"] = max(r["days"] for r in rows)
    out["complete"] = all(r["complete"] for r in rows)
    return finish(out)


class TankLedger:
    """Rows of one tank; fed in event-time order by the station actor."""

    def __init__(self, tank: str, grade: str):
        self.tank = tank
        self.grade = grade
        self.day: str | None = None
        self.row: dict[str, Any] | None = None
        #: Flows booked for a day whose first reading has not come yet (a fill ending at 00:00:03).
        self.ahead: dict[str, dict[str, float]] = {}
        self.closed: dict[str, dict[str, Any]] = {}
        self.months: dict[str, dict[str, Any]] = {}
        self.years: dict[str, dict[str, Any]] = {}
        #: Rows changed since the last :meth:`take_changed` (to be written to the store).
        self.changed: list[dict[str, Any]] = []

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rows pickled before a column existed get it at 0, once, so every sum reads without a default."""
        self.__dict__.update(state)
        for row in (self.row, *self.closed.values(), *self.months.values(), *self.years.values()):
            if row is not None:
                for k in SUMS:
                    row.setdefault(k, 0.0)

    def observe(self, ts: float, observed_l: float, settled: bool = True) -> dict[str, Any] | None:
        """A trusted reading (``settled``: no drop in progress); returns the day row it closed, if any."""
        day = local_day(ts)
        if self.day == day or (self.day is not None and not settled):
            return None
        closed = None
        if self.row is not None:
            closed = self._close(observed_l)
        self.day = day
        self.row = new_row("day", day, self.tank, self.grade)
        self.row["opening_measured_l"] = observed_l
        self.row["days"] = 1
        for k, v in self.ahead.pop(day, {}).items():
            self.row[k] += v
        for old in [d for d in self.ahead if d < day]:  # a day with no reading at all: nowhere to book
            del self.ahead[old]
        return closed

    def _close(self, closing_l: float) -> dict[str, Any]:
        row = self.row
        assert row is not None
        row["closing_measured_l"] = closing_l
        row["complete"] = True
        finish(row)
        self.closed[row["key"]] = row
        if len(self.closed) > KEEP_CLOSED_DAYS:
            del self.closed[min(self.closed)]
        month, year = row["key"][:7], row["key"][:4]
        self.months[month] = roll(self.months.get(month), row, "month", month)
        self.years[year] = roll(self.years.get(year), row, "year", year)
        self.changed.extend((row, self.months[month], self.years[year]))
        return row

    def book(self, field: str, value: float) -> str | None:
        """Book a flow on the day now open (between its measurements): receipts, the book's sales."""
        if self.row is None:
            return None
        self.row[field] += value
        return self.day

    def add(self, ts: float, field: str, value: float) -> None:
        """Book a flow (metered sales) on the local day of ``ts``."""
        day = local_day(ts)
        if self.row is not None and day == self.day:
            self.row[field] += value
        elif self.day is None or day > self.day:
            bucket = self.ahead.setdefault(day, {})
            bucket[field] = bucket.get(field, 0.0) + value
        else:
            self.amend(day, field, value)

    def amend(self, day: str, field: str, value: float) -> None:
        """A late change to a closed day (a document that arrived after the day closed)."""
        if self.row is not None and day == self.day:
            self.row[field] += value
            return
        row = self.closed.get(day)
        if row is None:
            return
        row[field] += value
        finish(row)
        month, year = day[:7], day[:4]
        for agg in (self.months.get(month), self.years.get(year)):
            if agg is not None:
                agg[field] += value
                finish(agg)
        self.changed.extend(r for r in (row, self.months.get(month), self.years.get(year)) if r is not None)

    def open_row(self) -> dict[str, Any] | None:
        """Today's row so far (closing and variance still empty)."""
        return None if self.row is None else finish(dict(self.row))

    def take_changed(self) -> list[dict[str, Any]]:
        out, self.changed = self.changed, []
        seen: dict[tuple[str, str], dict[str, Any]] = {}
        for r in out:
            seen[(r["period"], r["key"])] = r
        return [rounded(r) for r in seen.values()]
