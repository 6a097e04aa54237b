"""A scenario run's divergence, kept as 10-minute means per tank, cut into windows around alerts.

Why: a tester reading a report's false alarm wants to see the shape that raised it — a step, a slope,
a frozen line — without rerunning the scenario with the UI open. The runner cannot keep every reading
(a 30-day run reads each tank 43,200 times), and does not need to: the station page itself draws the
divergence at about 300 points, and 10-minute means keep a 60 L theft's step and a day's slope.

A delivery shows in the divergence as a rise of thousands of litres until the twin books it (about
ten minutes after the drop settles); the bins keep it as it was, and a window lists the recognised
deliveries of its tank so that a chart can mark them and scale to the rest.

The bins are plain dicts of floats, so a run spread over processes sends its parts' bins back by pickle
and merges them (a tank lives in one part).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["AFTER_S", "BIN_S", "MAX_BEFORE_S", "MAX_POINTS", "MIN_BEFORE_S", "DivergenceBins"]

#: Width of a kept bin (s).
BIN_S = 600.0
#: A window is drawn at no more points than this (bins are merged into wider ones), as the station page.
MAX_POINTS = 300
#: Before an alert: the days of data its fit used (``evidence.days_of_data``), within these bounds; a day
#: where the alert names none (a step, a frozen gauge, a silence).
MIN_BEFORE_S = 86_400.0
MAX_BEFORE_S = 14 * 86_400.0
#: After an alert: enough to see whether the shape went on.
AFTER_S = 6 * 3600.0


class DivergenceBins:
    """Sum and count of the divergence readings in each ``BIN_S`` bin, per (station, tank)."""

    def __init__(self, bin_s: float = BIN_S) -> None:
        self.bin_s = bin_s
        self._bins: dict[tuple[str, str], dict[int, list[float]]] = {}
        self._deliveries: dict[tuple[str, str], list[tuple[float, float]]] = {}

    def add_deliveries(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Note the twin's recognised deliveries (its ``deliveries`` output records)."""
        for rec in records:
            self._deliveries.setdefault((rec["station"], rec["tank"]), []).append(
                (float(rec["start_ts"]), float(rec["end_ts"])))

    def add(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Fold in the twin's divergence output records (one columnar record per tank and batch)."""
        width = self.bin_s
        for rec in records:
            bins = self._bins.setdefault((rec["station"], rec["tank"]), {})
            for ts, div in zip(rec["ts"], rec["divergence_l"], strict=True):
                if div is None or not math.isfinite(div):
                    continue
                k = int(ts // width)
                cell = bins.get(k)
                if cell is None:
                    bins[k] = [div, 1.0]
                else:
                    cell[0] += div
                    cell[1] += 1.0

    def merge(self, other: DivergenceBins) -> None:
        """Take another part's tanks (parts of a run never share a tank)."""
        for key, bins in other._bins.items():
            self._bins.setdefault(key, {}).update(bins)
        for key, spans in other._deliveries.items():
            self._deliveries.setdefault(key, []).extend(spans)

    def has(self, station: str, tank: str) -> bool:
        return (station, tank) in self._bins

    def window(self, station: str, tank: str, from_ts: float, to_ts: float,
               max_points: int = MAX_POINTS) -> dict[str, Any] | None:
        """The tank's divergence means over [from_ts, to_ts), at most ``max_points`` of them; each point at
        the middle of its (possibly merged) bin, and the [start, end] of the tank's recognised deliveries
        that overlap the window. None when the tank had no reading there."""
        bins = self._bins.get((station, tank))
        if not bins or to_ts <= from_ts:
            return None
        width = self.bin_s
        first, last = int(from_ts // width), int(math.ceil(to_ts / width))
        per = max(1, math.ceil((last - first) / max_points))
        step = per * width
        ts: list[float] = []
        values: list[float] = []
        for start in range(first, last, per):
            total = count = 0.0
            for k in range(start, min(start + per, last)):
                cell = bins.get(k)
                if cell is not None:
                    total += cell[0]
                    count += cell[1]
            if count:
                ts.append(start * width + step / 2.0)
                values.append(round(total / count, 2))
        if not ts:
            return None
        lo, hi = first * width, last * width
        deliveries = sorted([a, b] for a, b in self._deliveries.get((station, tank), ()) if a < hi and b > lo)
        return {"tank": tank, "from_ts": lo, "to_ts": hi, "step_s": step, "ts": ts, "divergence_l": values,
                "deliveries": deliveries}

    def around(self, alert: Mapping[str, Any], tank: str) -> dict[str, Any] | None:
        """The window an alert is read in: its fit's days of data (or a day) before it, ``AFTER_S`` after."""
        days = (alert.get("evidence") or {}).get("days_of_data")
        before = MIN_BEFORE_S
        if isinstance(days, int | float) and math.isfinite(days):
            before = min(MAX_BEFORE_S, max(MIN_BEFORE_S, float(days) * 86_400.0))
        first = float(alert["first_ts"])
        return self.window(alert["station"], tank, first - before, first + AFTER_S)
