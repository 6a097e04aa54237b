"""Statistical wetstock reconciliation of one tank: leak rate, per-nozzle meter factors, gauge drift.

The twin sees every metered transaction, so instead of waiting for idle hours (the blind spot of
continuous in-tank leak detection, DOMAIN.md) it explains the divergence by regression on 30-minute bin
means:

    divergence_i = a_segment(i) + λ·t_i + Σ_n β_n·S_n,i + residual

- ``a_segment``: one intercept per stretch between breaks (a booked delivery, a gap in the data, a
  recovered gauge, a recognised loss), which absorbs each delivery's measurement error;
- ``λ`` (L/h): a steady gain or loss; a leak is λ < 0 and is reported as leak rate −λ;
- ``β_n``: the share of nozzle n's booked sales (L at 20 °C, cumulative) that the tank did *not* lose
  (β = 1 − f for a nozzle that gives f × what it displays; a legal meter error e gives β ≈ e). Chart
  error inside a segment is a function of the volume, which falls with the sales, so it ends up in the β
  too; that is why a METER_BIAS needs a margin over the legal ±0.3 % (JJG 443).

Time and sales separate because sales follow the daily profile while time does not, so this works on a
busy station with no idle hour. A drifting gauge shows as λ too; it is told apart by refitting with the
drift regressor D_i = Σ dV/dh × Δt (litres per mm·day) in place of t: a level drift in mm/day fits that
shape better than a constant L/h.

Bins are 30 min, the window 14 days, and the fit runs every 2 hours: a few hundred rows, well under a
millisecond with numpy. Standard errors are OLS ones; bins are not independent (chart error is smooth in
volume), so the decision thresholds are conservative t values, settings a researcher can change.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class WetstockSettings:
    bin_s: float = 1800.0
    window_bins: int = 672
    fit_every_bins: int = 4
    min_bins: int = 24
    #: LEAK when the estimated loss exceeds this (L/h) with t ≥ leak_t. 0.76 L/h is the EPA's 0.2 gal/h.
    leak_min_lph: float = 0.3
    leak_t: float = 6.0
    #: METER_BIAS when |1 − factor| exceeds this with t ≥ meter_t and the nozzle sold enough in the window.
    meter_min: float = 0.0045
    meter_t: float = 6.0
    meter_min_sales_l: float = 500.0
    #: SENSOR_DRIFT instead of LEAK when the drift shape fits this much better (residual sum of squares).
    drift_rss_gain: float = 0.1


@dataclass(frozen=True, slots=True)
class WetstockFit:
    bins: int
    days: float
    leak_lph: float
    leak_se_lph: float
    drift_mm_per_day: float | None
    drift_preferred: bool
    meter: dict[str, tuple[float, float, float]]  # nozzle -> (β, se, litres sold in window)


@dataclass(slots=True)
class WetstockModel:
    nozzles: tuple[str, ...]
    settings: WetstockSettings = field(default_factory=WetstockSettings)
    rows: deque[tuple[float, float, tuple[float, ...], float, int]] = field(default_factory=deque)
    segment: int = 0
    _break: bool = False
    _bin_start: float | None = None
    _sum: float = 0.0
    _n: int = 0
    _t_sum: float = 0.0
    _dvdh_sum: float = 0.0
    _sales_start: tuple[float, ...] | None = None
    _drift_acc: float = 0.0
    _since_fit: int = 0

    def brk(self) -> None:
        """The books jumped (delivery booked, data gap, gauge recovered, loss found): new intercept."""
        self._break = True
        self._n = 0
        self._sum = self._t_sum = self._dvdh_sum = 0.0
        self._sales_start = None

    def add(self, ts: float, divergence_l: float, sales: tuple[float, ...],
            dvdh: float) -> WetstockFit | None:
        """One trusted reading; ``sales`` = cumulative booked litres at 20 °C per nozzle (model order)."""
        s = self.settings
        if self._bin_start is None:
            self._bin_start = ts - ts % s.bin_s
        fit = None
        if ts >= self._bin_start + s.bin_s:
            fit = self._close(sales)
            start = ts - ts % s.bin_s
            if start > self._bin_start + s.bin_s:
                self.brk()
            self._bin_start = start
        if self._sales_start is None:
            self._sales_start = sales
        self._sum += divergence_l
        self._t_sum += ts
        self._dvdh_sum += dvdh
        self._n += 1
        return fit

    def _close(self, sales_end: tuple[float, ...]) -> WetstockFit | None:
        s = self.settings
        if not self._n or self._sales_start is None:
            return None
        if self._break:
            self.segment += 1
            self._break = False
        mid_sales = tuple((a + b) / 2 for a, b in zip(self._sales_start, sales_end, strict=True))
        dvdh = self._dvdh_sum / self._n
        self._drift_acc += dvdh * s.bin_s / 86_400.0
        self.rows.append((self._t_sum / self._n / 3600.0, self._sum / self._n, mid_sales, self._drift_acc,
                          self.segment))
        while len(self.rows) > s.window_bins:
            self.rows.popleft()
        self._n = 0
        self._sum = self._t_sum = self._dvdh_sum = 0.0
        self._sales_start = None
        self._since_fit += 1
        if self._since_fit < s.fit_every_bins or len(self.rows) < s.min_bins:
            return None
        self._since_fit = 0
        return self.fit()

    def fit(self) -> WetstockFit | None:
        rows = list(self.rows)
        n = len(rows)
        t = np.array([r[0] for r in rows])
        y = np.array([r[1] for r in rows])
        sales = np.array([r[2] for r in rows]).reshape(n, len(self.nozzles))
        drift = np.array([r[3] for r in rows])
        segments = np.array([r[4] for r in rows])
        seg_ids, seg_index = np.unique(segments, return_inverse=True)
        intercepts = np.zeros((n, len(seg_ids)))
        intercepts[np.arange(n), seg_index] = 1.0
        # Centre within segments isn't needed with per-segment intercepts; scale sales to kL for conditioning.
        sold = sales[-1] - sales[0]
        active = [i for i in range(len(self.nozzles)) if sold[i] > 1.0]
        base = [intercepts, (t - t[0])[:, None]]
        design = np.hstack([*base, sales[:, active] / 1000.0])
        k = design.shape[1]
        if n <= k + 2:
            return None
        coef, rss, se = _ols(design, y)
        if coef is None:
            return None
        lam_i = len(seg_ids)
        meter: dict[str, tuple[float, float, float]] = {}
        for j, i in enumerate(active):
            col = lam_i + 1 + j
            meter[self.nozzles[i]] = (coef[col] / 1000.0, se[col] / 1000.0, float(sold[i]))
        drift_coef, drift_rss, drift_ok = None, math.inf, False
        alt = np.hstack([intercepts, (drift - drift[0])[:, None], sales[:, active] / 1000.0])
        dcoef, drss, _ = _ols(alt, y)
        if dcoef is not None:
            drift_coef, drift_rss = float(dcoef[lam_i]), drss
            drift_ok = drift_rss < rss * (1.0 - self.settings.drift_rss_gain)
        return WetstockFit(n, (t[-1] - t[0]) / 24.0, -float(coef[lam_i]), float(se[lam_i]), drift_coef,
                           drift_ok, meter)


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray | None, float, np.ndarray]:
    coef, _, rank, _ = np.linalg.lstsq(x, y, rcond=None)
    if rank < x.shape[1]:
        return None, math.inf, np.zeros(x.shape[1])
    resid = y - x @ coef
    dof = max(len(y) - x.shape[1], 1)
    rss = float(resid @ resid)
    sigma2 = rss / dof
    try:
        cov = np.linalg.inv(x.T @ x) * sigma2
    except np.linalg.LinAlgError:
        return None, math.inf, np.zeros(x.shape[1])
    return coef, rss, np.sqrt(np.maximum(np.diag(cov), 0.0))
