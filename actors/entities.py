"""Station, tank and nozzle actors: thin owners of state that call the domain in twin/.

A station's actors live together (DESIGN.md: all actors of one station share a shard), so a nozzle's
sale reaches its tank as a direct, ordered call in the same event-time sequence as the gauge readings:
the tank's expected volume at a reading includes exactly the sales metered before it.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from twin.alerts import AlertBook
from twin.deliveries import DeliveryDetector
from twin.detectors.gauge import LimitCheck, StuckCheck
from twin.detectors.losses import LossDetector
from twin.detectors.nozzle import Finding, NozzleLedger
from twin.detectors.wetstock import WetstockFit, WetstockModel
from twin.events import GASOLINE_GRADES, EventBase
from twin.outputs import Outputs
from twin.physics import vcf
from twin.reconcile import TankBook
from twin.registry import NozzleSpec, StationSpec, TankSpec
from twin.regulatory import DOC_KINDS, StationRegulator
from twin.safety import SafetyMonitor
from twin.settings import TwinSettings
from twin.timeutil import local_day
from twin.vapor import VaporAction, VaporMonitor


def _r(x: float, nd: int = 2) -> float | None:
    return None if x is None or math.isnan(x) else round(x, nd)


def report(alerts: AlertBook, entity: str, ts: float, finding: Finding, out: Outputs,
           refresh: bool = False) -> None:
    alert = alerts.raise_(finding.code, finding.severity, entity, ts,  # type: ignore[arg-type]
                          evidence=finding.evidence, metrics=finding.metrics, refresh=refresh)
    if alert is not None:
        out.alerts.append(alert.to_dict())


def clear(alerts: AlertBook, code: str, entity: str, ts: float, out: Outputs) -> None:
    closed = alerts.close(code, entity, ts)
    if closed is not None:
        out.alerts.append(closed.to_dict())


#: A tank's common β (its chart's share of every nozzle's β) needs at least this many nozzles that sold
#: enough: with fewer, the median is not a robust reference and a nozzle cannot be told from the chart.
MIN_METER_NOZZLES = 3


def meter_reference(fit: WetstockFit, min_sales_l: float) -> tuple[list[float], float | None]:
    """The β of the tank's nozzles that sold at least ``min_sales_l`` in the fit's window (sorted) and
    their median, the tank's common β, or None with fewer than MIN_METER_NOZZLES of them.

    The chart's error inside a segment moves every nozzle's β alike (it follows the volume, which
    follows the tank's sales), so a nozzle's own meter error is its β against this common one: what
    METER_BIAS judges and what the station twin shows as the nozzle's meter factor."""
    betas = sorted(b for b, _, sold in fit.meter.values() if sold >= min_sales_l)
    return betas, (betas[len(betas) // 2] if len(betas) >= MIN_METER_NOZZLES else None)


class TankActor:
    #: Event time the open LEAK's estimate was last refreshed (class default: checkpoints from before it).
    _leak_refreshed_ts: float = -math.inf
    #: Litres of divergence the booked sales made through the nozzles' fitted β (meter and chart error),
    #: and those β, capped: what the loss detectors take out before looking for unrecorded falls (class
    #: defaults: checkpoints from before it).
    _sales_bias_l: float = 0.0
    _sales_factor: dict[str, float] = {}  # noqa: RUF012 — replaced, never mutated
    sales_factor_max: float = 0.006
    #: (event time, Δχ², best nozzle) of the last _meter_change_chi2 test (class default: checkpoints from
    #: before it).
    _meter_change_verdict: tuple[float, float, str | None] | None = None

    def __init__(self, station: str, spec: TankSpec, settings: TwinSettings, nozzles: tuple[str, ...] = ()):
        self.station = station
        self.id = spec.id
        self.grade = spec.grade
        self.declared_capacity_l = spec.declared_capacity_l
        self.book = TankBook(spec.geometry(), spec.density, spec.product)  # type: ignore[arg-type]
        self.deliveries = DeliveryDetector(settings.delivery())
        self.stale_after_s = settings.stale_tank_s
        self.losses = LossDetector(settings.losses())
        self.sales_factor_max = settings.loss_sales_factor_max
        self.nozzles = nozzles
        self.sold = [0.0] * len(nozzles)
        self.wetstock = WetstockModel(nozzles, settings.wetstock())
        self.wetstock_settings = settings.wetstock()
        self.last_fit: WetstockFit | None = None
        #: issue 5: set when a regulatory finding (HIDDEN_TANK) already explains the tank's trend, so the
        #: wetstock judgement does not blame the gauge or a leak for it (as HIDDEN_SALES does for LEAK).
        self.trend_explained: str | None = None
        self.stuck = StuckCheck(settings.gauge_stuck_after_s)
        self.water = LimitCheck(spec.water_limit_mm, hysteresis=5.0)
        self.overfill = LimitCheck(spec.declared_capacity_l * spec.safe_fill_pct / 100.0,
                                   hysteresis=0.01 * spec.declared_capacity_l)
        self.last_ts: float | None = None
        self.level_mm = math.nan
        self.water_mm = math.nan
        self.stale = False
        self._ts: list[float] = []
        self._obs: list[float] = []
        self._exp: list[float] = []
        self._div: list[float] = []

    def reading(self, ev: Any, alerts: AlertBook, out: Outputs) -> None:
        if self.last_ts is not None and ev.ts <= self.last_ts:
            return  # a late reading cannot move a tank back in time; the log still has it
        ts = ev.ts
        self.last_ts = ts
        self.level_mm, self.water_mm = ev.level_mm, ev.water_mm
        book = self.book
        observed = book.observe(ts, ev.level_mm, ev.water_mm, ev.temp_c)
        divergence = observed - book.expected_l
        trusted = self._gauge_checks(ev, alerts, out)
        if trusted:
            found = self.deliveries.update(ts, divergence)
            if found is not None:
                divergence -= found.net_l_20c
                self._delivered(found, alerts, out)
            if self.deliveries.active:
                self.losses.reset()
                self.wetstock.brk()
            else:
                finding = self.losses.add(ts, divergence - self._sales_bias_l)
                if finding is not None:  # each further unrecorded fill updates an open HIDDEN_SALES
                    report(alerts, self.id, ts, finding, out, refresh=finding.code == "HIDDEN_SALES")
                    self.wetstock.brk()
                wetstock = self.wetstock
                if wetstock.closes_bin(ts):
                    progress = book.in_progress
                    dispensed = [v + progress.get(n, 0.0)
                                 for n, v in zip(self.nozzles, self.sold, strict=True)]
                    fits = wetstock.close_bin(ts, dispensed, float(book.geometry.dv_dh(ev.level_mm)))
                    if fits:
                        self._judge(fits, ts, alerts, out)
                wetstock.add(ts, divergence)
        else:
            self.wetstock.brk()
        self._ts.append(ts)
        self._obs.append(observed)
        self._exp.append(observed - divergence)
        self._div.append(divergence)
        if self.stale:
            self.stale = False
            clear(alerts, "COMM_LOSS", self.id, ts, out)

    def _gauge_checks(self, ev: Any, alerts: AlertBook, out: Outputs) -> bool:
        """Probe health and level limits; False while the reading cannot be trusted for the books."""
        ts = ev.ts
        change = self.stuck.update(ts, ev.level_mm, ev.water_mm, ev.temp_c)
        if change is True:
            report(alerts, self.id, ts, Finding("SENSOR_STUCK", "warning",
                                                {"minutes": (ts - (self.stuck.since_ts or ts)) / 60.0},
                                                {"since_ts": self.stuck.since_ts, "level_mm": ev.level_mm}),
                   out)
        elif change is False:
            clear(alerts, "SENSOR_STUCK", self.id, ts, out)
            self.deliveries.history.clear()
            self.losses.reset()
            self.wetstock.brk()
        water = self.water.update(ev.water_mm)
        if water is True:
            report(alerts, self.id, ts, Finding("WATER_HIGH", "warning", {"water_mm": ev.water_mm},
                                                {"water_mm": ev.water_mm, "limit_mm": self.water.limit}), out)
        elif water is False:
            clear(alerts, "WATER_HIGH", self.id, ts, out)
        fill = self.overfill.update(self.book.gross_l)
        if fill is True:
            pct = 100.0 * self.book.gross_l / self.declared_capacity_l
            evidence = {"gross_l": round(self.book.gross_l, 1), "safe_l": self.overfill.limit,
                        "level_mm": ev.level_mm}
            report(alerts, self.id, ts, Finding("OVERFILL", "alarm", {"fill_pct": pct}, evidence), out)
        elif fill is False:
            clear(alerts, "OVERFILL", self.id, ts, out)
        # Two repeats in a row are already suspicious: keep them out of the books' detectors.
        return not self.stuck.stuck and self.stuck.repeats < 2

    def sale(self, nozzle: str, sale_20c: float) -> None:
        """Cumulative litres at 20 °C booked per nozzle: the wetstock model's regressors."""
        self.sold[self.nozzles.index(nozzle)] += sale_20c
        factor = self._sales_factor.get(nozzle)
        if factor:
            self._sales_bias_l += factor * sale_20c

    def _judge(self, fits: list[WetstockFit], ts: float, alerts: AlertBook, out: Outputs) -> None:
        """Turn wetstock fits (shortest window first) into LEAK / SENSOR_DRIFT / METER_BIAS findings.

        Order of explanations for a trend in the divergence: a gauge drift (if its shape fits clearly
        better, or if the tank steadily *gains*, which no tank does by itself), a loss in L/h (leak),
        then single nozzles, judged on the longest window and only when no
        window shows a trend. Where the loss detector has seen fill-like drops with no transaction, a
        steady loss is those hidden sales, not a leak.
        """
        s = self.wetstock_settings
        fits = [f for f in fits if f.days >= s.min_days]
        if not fits:
            return
        if self.trend_explained is not None:
            return
        self.last_fit = fit = fits[-1]
        self._learn_sales_factors(fit)
        trending = False
        for f in fits:
            trend_t, plain_t, common_t = f.leak_t, f.plain_t, f.common_t
            # A trend keeps the nozzles unjudged: a steady seller's β absorbs it. A tank-wide one (the
            # common-factor fit) counts too, either way (measured: METER_BIAS at 1.7 % on a nozzle of a
            # leaking tank in 7 of 20 leak-0.76 runs, in the first days, with the common-factor fit
            # gaining). The price: a nozzle far out of true makes such a trend itself and waits.
            trending |= f.trending()
            evidence = {"rows": f.rows, "days_of_data": round(f.days, 2),
                        "divergence_trend_lph": round(f.trend_lph, 3)}
            plain_significant = abs(plain_t) >= s.leak_t and abs(f.trend_lph) >= s.leak_min_lph
            # A closed tank cannot gain product steadily: a significant gain not explained by sales or
            # deliveries is the gauge (level or temperature probe) drifting, whatever its shape. The gain
            # must show with one factor for all sales too: a single nozzle that gives short makes its tank
            # "gain" in step with that nozzle's sales, which a steady seller makes look like time in the
            # per-nozzle fit (measured: 7 SENSOR_DRIFT false alarms in meter-bias scenarios over 20 seeds).
            gaining = f.leak_lph < 0 and trend_t >= s.leak_t and plain_t > 0 and common_t >= 3.0
            if plain_significant and (f.drift_preferred or gaining) and f.drift_mm_per_day is not None:
                if (self.id, "SENSOR_DRIFT") not in alerts.open:
                    if self._meter_change_chi2(f, ts) >= s.drift_meter_chi2:
                        return  # a nozzle whose meter changed tells the gain better than a gauge does
                    evidence.update(self._meter_change_evidence())
                report(alerts, self.id, ts, Finding("SENSOR_DRIFT", "warning",
                                                    {"mm_per_day": f.drift_mm_per_day},
                                                    {**evidence, "mm_per_day": round(f.drift_mm_per_day, 2)}),
                       out)
                return
            # The divergence itself must fall: where a busy nozzle sells as steadily as time passes, the
            # joint fit can trade the two off, and a model-only trend is no evidence. Measured cost: a
            # tank whose meters all read ~0.5 % high rises by +0.5 L/h while leaking 0.38 L/h, and is
            # missed (2 of 20 leak-0.38 runs). Asking the common-factor fit instead found those two but
            # raised LEAK in 15 of 100 meter-bias and sensor-drift runs (a nozzle giving short, a gauge
            # drifting), so the raw divergence stays the judge.
            if trend_t >= s.leak_t and f.leak_lph >= s.leak_min_lph and (plain_t <= -3.0
                                                                         or self._common_loss(f)):
                if self.losses.unrecorded:
                    return  # the loss is the unrecorded fills HIDDEN_SALES already reports
                if (self.id, "SENSOR_DRIFT") in alerts.open:
                    return  # a gauge known to drift cannot tell a loss (gauge faults are no leak alarms)
                if (self.id, "LEAK") not in alerts.open:
                    if self._meter_change_chi2(f, ts) >= s.leak_meter_chi2:
                        return  # one nozzle's meter changing tells this loss clearly better than a leak
                    evidence.update(self._meter_change_evidence())
                self._report_leak(f, evidence, ts, alerts, out)
                return
        if (self.id, "LEAK") in alerts.open:  # keep the open alarm's estimate current as data grow
            last = fits[-1]
            self._report_leak(last, {"rows": last.rows, "days_of_data": round(last.days, 2),
                                     "divergence_trend_lph": round(last.trend_lph, 3)}, ts, alerts, out)
            return
        evidence = {"rows": fit.rows, "days_of_data": round(fit.days, 2),
                    "divergence_trend_lph": round(fit.trend_lph, 3)}
        plain_t = fit.plain_t
        if trending:
            return  # a trend (leak, drift) not yet well separated from the sales would leak into the β
        # A nozzle is judged against the median β of its tank's nozzles (meter_reference), or against 0
        # where the tank has too few nozzles for a median.
        betas, median = meter_reference(fit, s.meter_min_sales_l)
        common = 0.0 if median is None else median
        # One cheating nozzle stands out alone; several far out in opposite directions is the fit trading
        # collinear nozzles off against each other (a trend it cannot place), not evidence.
        if sum(abs(b - common) >= s.meter_min for b in betas) > 1:
            return
        for nozzle, (beta, se, sold) in fit.meter.items():
            rel = beta - common
            if sold < s.meter_min_sales_l or se <= 0 or abs(rel) < s.meter_min or abs(rel) / se < s.meter_t:
                continue
            if rel * plain_t < 3.0 * abs(rel):  # the divergence must drift the way the bias says
                continue
            # A nozzle that gives *more* than it shows makes its tank lose more than booked — early on,
            # exactly what a young leak does to a steady seller's β (measured: 0.9–1.9 % "in the
            # customers' favour" on a leaking tank's nozzle in 4 of 20 leak-0.76 runs, a day or two
            # before the LEAK). Such a bias waits for a window long enough for a leak to show as one.
            if rel < 0 and fit.days < s.meter_favour_min_days:
                continue
            factor = 1.0 - rel
            ci = (factor - 1.96 * se, factor + 1.96 * se)
            report(alerts, nozzle, ts, Finding("METER_BIAS", "alarm", {"bias_pct": -100.0 * rel},
                                               {**evidence, "tank": self.id, "factor": round(factor, 5),
                                                "ci95": [round(ci[0], 5), round(ci[1], 5)],
                                                "tank_common_beta": round(common, 5),
                                                "litres_affected": round(abs(rel) * sold, 1)}), out)

    def _meter_change_chi2(self, f: WetstockFit, ts: float) -> float:
        """How much better (Δχ², in residual variances) one nozzle's sales since some onset fit the
        window's trend than time since one (WetstockModel.change_rss); −inf where it cannot be told.

        A gauge drifts through the night and a tank leaks through it; a meter only moves the books
        while its nozzle sells. With one constant β per nozzle, a meter that changes looks like a trend
        over the days after: its tank gains or, traded off against the other nozzles, loses. Measured on
        the runner: the biased nozzle named in every such false alarm, at +3.5 … +6.5 for the gains
        called SENSOR_DRIFT and +17.5, +28 for the losses called LEAK; real drifts at −29 … −1,099
        (8 runs), real leaks at −4 … −49 (12 runs). So a drift waits at ≥ 0 (``drift_meter_chi2``) and
        a leak only at ≥ 9 (``leak_meter_chi2``): a missed leak costs more than a late warning. Where the
        nozzles sell round the clock the two explanations look alike (synthetic tanks: ±11 for a drift
        with flat sales) and a trend is reported as before. About 0.1 s a test, so asked every 6 h."""
        last = self._meter_change_verdict
        if last is not None and ts - last[0] < 6 * 3600.0:
            return last[1]
        out = self.wetstock.change_rss(f.window_days)
        chi2, nozzle = -math.inf, None
        if out is not None:
            time_rss, nozzle_rss, nozzle = out
            variance = time_rss / max(f.rows - len(self.nozzles) - 2, 1)
            chi2 = (time_rss - nozzle_rss) / variance if variance > 0 else -math.inf
        self._meter_change_verdict = (ts, chi2, nozzle)
        return chi2

    def _meter_change_evidence(self) -> dict[str, Any]:
        """The alternative that was weighed and lost, for the alert's evidence: the nozzle whose meter
        changing would explain the trend best, and by how much time since an onset explains it better."""
        last = self._meter_change_verdict
        if last is None or not math.isfinite(last[1]):
            return {}
        return {"meter_change_nozzle": last[2], "time_vs_meter_change_chi2": round(-last[1], 1)}

    def _common_loss(self, f: WetstockFit) -> bool:
        """A loss the raw divergence hides: the tank's meters all read high (a legal +0.25 % on a busy
        tank lifts the divergence by more than a 0.38 L/h leak takes), so the divergence rises while the
        per-nozzle and the one-factor fits both see a loss. Trusted only when no nozzle stands apart from
        the others: one nozzle far out of true is what made the one-factor fit show a loss in meter-bias
        runs (15 false LEAKs in 100 meter-bias and sensor-drift runs when that fit judged alone)."""
        s = self.wetstock_settings
        if f.common_t > -s.leak_t or -f.common_lph < s.leak_min_lph or f.drift_preferred:
            return False
        judged = sum(sold >= s.meter_min_sales_l for *_, sold in f.meter.values())
        return judged >= 2 and not self._nozzles_apart(f)

    def _nozzles_apart(self, f: WetstockFit) -> bool:
        """Whether one of the tank's nozzles (that sold enough) stands ``meter_min`` apart from another:
        then a tank-wide loss may be that nozzle's meter, not the tank. (Not a test for SENSOR_DRIFT: a
        drifting gauge spreads the β of a tank's steady sellers too — asking it there cut sensor-drift
        detection from 20 to 8 of 20 runs to save 3 false drifts in 60 meter-bias runs.)"""
        s = self.wetstock_settings
        betas = [b for b, _, sold in f.meter.values() if sold >= s.meter_min_sales_l]
        return len(betas) >= 2 and max(betas) - min(betas) >= s.meter_min

    def _report_leak(self, f: WetstockFit, evidence: dict[str, Any], ts: float, alerts: AlertBook,
                     out: Outputs) -> None:
        """LEAK with the rate fitted from the most likely onset (the window's plain λ as a fallback).

        An open LEAK's estimate is refreshed every ``leak_refresh_s`` of event time, not at every fit:
        the onset search refits the window once per 3-hour chunk, and doing it every 30 minutes took an
        eighth of a leak scenario's run time (py-spy)."""
        refresh_s = self.wetstock_settings.leak_refresh_s
        if (self.id, "LEAK") in alerts.open and ts - self._leak_refreshed_ts < refresh_s:
            return
        self._leak_refreshed_ts = ts
        rate, se, onset_ts = f.leak_lph, f.leak_se_lph, None
        onset = self.wetstock.onset_rate(f.window_days)
        if onset is not None and onset[1] > 0:
            onset_ts, rate, se = onset
        ci = (rate - 1.96 * se, rate + 1.96 * se)
        evidence = {**evidence, "rate_lph": round(rate, 3), "ci95_lph": [round(ci[0], 3), round(ci[1], 3)],
                    "window_rate_lph": round(f.leak_lph, 3), "onset_ts": onset_ts}
        alert = alerts.raise_("LEAK", "alarm", self.id, ts, evidence=evidence,
                              metrics={"rate_lph": round(rate, 4)}, refresh=True)
        if alert is not None:
            out.alerts.append(alert.to_dict())

    def _delivered(self, found: Any, alerts: AlertBook, out: Outputs) -> None:
        book = self.book
        book.book_receipt(found.net_l_20c)
        gross = found.net_l_20c / float(vcf(book.temp_c, book.density_20c, book.product))
        delivery = {"station": self.station, "tank": self.id, "grade": self.grade,
                    "start_ts": found.start_ts, "end_ts": found.end_ts,
                    "net_l_20c": round(found.net_l_20c, 1), "gross_l": round(gross, 1),
                    "settled": found.settled, "blind_s": found.blind_s, "po_no": None}
        out.deliveries.append(delivery)
        alert = alerts.event("DELIVERY_DETECTED", self.id, found.end_ts, evidence=delivery,
                             metrics={"net_l": found.net_l_20c})
        out.alerts.append(alert.to_dict())

    def tick(self, ts: float, alerts: AlertBook, out: Outputs) -> None:
        if self.last_ts is None or self.stale or ts - self.last_ts < self.stale_after_s:
            return
        self.stale = True
        alert = alerts.raise_("COMM_LOSS", "warning", self.id, ts,
                              evidence={"last_seen_ts": self.last_ts},
                              metrics={"minutes": (ts - self.last_ts) / 60.0})
        if alert is not None:
            out.alerts.append(alert.to_dict())

    def _learn_sales_factors(self, fit: WetstockFit) -> None:
        """Each nozzle's β from the latest fit, within ±``sales_factor_max``, for the loss detectors.

        Every litre sold moves the divergence by the meter's error and the chart's slope error at that
        level; an hour of truck fills on a diesel lane (2,400 L in 45 min) thus steps it by ~5 L, which
        the step test took for a hidden fill in a healthy month (healthy-30d seed 7, BH-0006 T4, with
        the gauge noise's share). The cap is the legal meter error plus a chart's (0.3 % each): a β
        beyond it is a finding of its own (METER_BIAS, or the hidden fills a nozzle's β absorbs), not an
        error to take out before looking for unrecorded fills. Applied to sales as they are booked, so a
        new fit changes the next litres' share, never the past's."""
        cap = self.sales_factor_max
        self._sales_factor = {n: min(cap, max(-cap, beta)) for n, (beta, _, _) in fit.meter.items()}

    def _trend(self) -> tuple[float, float] | None:
        """The divergence's trend not explained by sales (L/h, negative = loss) and its SE, from the
        latest wetstock fit over the longest window (none before its first fit, ~2 days in)."""
        fit = self.last_fit
        return None if fit is None else (-fit.leak_lph, fit.leak_se_lph)

    def flush(self, out: Outputs) -> None:
        """Emit this batch's divergence points as one columnar record."""
        if not self._ts:
            return
        rate = self._trend()
        out.divergence.append({
            "station": self.station, "tank": self.id, "ts": self._ts,
            "observed_l": self._obs, "expected_l": self._exp, "divergence_l": self._div,
            "leak_rate_lph": None if rate is None else round(rate[0], 4),
            "leak_rate_se_lph": None if rate is None else round(rate[1], 4),
        })
        self._ts, self._obs, self._exp, self._div = [], [], [], []

    def meter_factors(self) -> dict[str, dict[str, Any]] | None:
        """Each nozzle's delivered / displayed factor from the latest wetstock fit (None before the first,
        ~2 days in): 1 − (β − the tank's common β), with its 95 % interval and the litres it sold in the
        fit's window. ``judged`` is False where the number cannot be read as the meter's own error:
        ``reason`` "few_nozzles" (fewer than MIN_METER_NOZZLES nozzles of the tank sold enough, so the
        chart's share is not separable: the factor is then 1 − β, chart error included), "low_sales" (this
        nozzle sold too little) or "trend" (the tank's divergence trends, which the β would absorb).
        Built from the cached fit only: the state is asked for after every batch."""
        fit = self.last_fit
        if fit is None:
            return None
        s = self.wetstock_settings
        _, median = meter_reference(fit, s.meter_min_sales_l)
        common = 0.0 if median is None else float(median)
        trending = fit.trending()
        out = {}
        for nozzle, (beta, se, sold) in fit.meter.items():
            factor = 1.0 - (float(beta) - common)
            se = float(se)
            reason = ("trend" if trending else "few_nozzles" if median is None
                      else "low_sales" if sold < s.meter_min_sales_l or se <= 0 else None)
            out[nozzle] = {"factor": round(factor, 5), "se": round(se, 5),
                           "ci95": [round(factor - 1.96 * se, 5), round(factor + 1.96 * se, 5)],
                           "sold_l": round(float(sold), 1), "judged": reason is None, "reason": reason}
        return out

    def state(self) -> dict[str, Any]:
        book = self.book
        rate = self._trend()
        return {"id": self.id, "grade": self.grade, "declared_capacity_l": self.declared_capacity_l,
                "level_mm": _r(self.level_mm, 1), "water_mm": _r(self.water_mm, 1),
                "temp_c": _r(book.temp_c, 2), "observed_l": _r(book.observed_l, 1),
                "expected_l": _r(book.expected_l, 1), "divergence_l": _r(book.divergence_l, 1),
                "leak_rate_lph": None if rate is None else round(rate[0], 3),
                "leak_rate_se_lph": None if rate is None else round(rate[1], 3),
                "meter_factors": self.meter_factors(),
                "delivering": self.deliveries.active, "stale": self.stale, "last_ts": self.last_ts}


class NozzleActor:
    def __init__(self, station: str, spec: NozzleSpec, settings: TwinSettings):
        self.station = station
        self.id = spec.id
        self.tank = spec.tank
        self.grade = spec.grade
        self.stale_after_s = settings.stale_nozzle_s
        self.state_name = "idle"
        self.running_l = 0.0
        self.running_cny = 0.0
        self.last_txn_no: int | None = None
        self.totalizer_l: float | None = None
        self.totalizer_cny: float | None = None
        self.model = ""
        self.mainboard_id = ""
        self.ledger = NozzleLedger()
        self.last_ts: float | None = None
        self.stale = False

    def seen(self, ts: float, alerts: AlertBook, out: Outputs) -> None:
        self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)
        if self.stale:
            self.stale = False
            closed = alerts.close("COMM_LOSS", self.id, ts)
            if closed is not None:
                out.alerts.append(closed.to_dict())

    def state_event(self, ev: Any) -> float:
        """Track the live state; return the litres dispensed so far in this fill.

        A fill's last state and its transaction carry the same device time, and a controller may publish
        them in either order (over OPC UA the transaction record often arrives first). A state no later
        than the last booked transaction's end belongs to that booked fill, so it counts as nothing
        running: counting it would take the fill from the tank twice until the next state, and the
        readings in between would look like a small delivery."""
        self.state_name = ev.state
        last_end = self.ledger.last_end_ts
        running = ev.state in ("fuelling", "finished") and (last_end is None or ev.ts > last_end)
        self.running_l = ev.volume_l if running else 0.0
        self.running_cny = ev.amount_cny if running else 0.0
        return self.running_l

    def txn(self, ev: Any, link_lost: bool, alerts: AlertBook, out: Outputs) -> float:
        """Check the transaction against the dispenser's own counters; return litres sold unseen."""
        check = self.ledger.on_txn(ev.txn_no, ev.volume_l, ev.totalizer_l, ev.totalizer_cny, ev.end_ts,
                                   link_lost)
        for finding in check.findings:
            report(alerts, self.id, ev.ts, finding, out)
        self.last_txn_no = ev.txn_no
        self.totalizer_l = ev.totalizer_l
        self.totalizer_cny = ev.totalizer_cny
        self.running_l = 0.0
        self.running_cny = 0.0
        return check.unseen_l

    def device(self, ev: Any, alerts: AlertBook, out: Outputs) -> None:
        self.model = ev.model
        self.mainboard_id = ev.mainboard_id
        finding = self.ledger.on_device(ev.mainboard_id, ev.firmware, ev.ts)
        if finding is not None:
            report(alerts, self.id, ev.ts, finding, out)

    def tick(self, ts: float, alerts: AlertBook, out: Outputs) -> None:
        """A nozzle speaks only when used: a day of silence marks it stale in the twin's state, but is no
        COMM_LOSS alarm (a 98# nozzle at a quiet station can go unused that long; the station's link is
        judged by its gauges, which report all the time). Measured: the scenario suite raised such a
        false COMM_LOSS on an unused nozzle."""
        if self.last_ts is None or self.stale or ts - self.last_ts < self.stale_after_s:
            return
        self.stale = True

    def state(self) -> dict[str, Any]:
        return {"id": self.id, "tank": self.tank, "grade": self.grade, "state": self.state_name,
                "running_l": round(self.running_l, 2), "running_cny": round(self.running_cny, 2),
                "last_txn_no": self.last_txn_no, "totalizer_l": self.totalizer_l,
                "mainboard_id": self.mainboard_id, "stale": self.stale, "last_ts": self.last_ts}


class StationActor:
    """Owns a station's tanks and nozzles and routes each event to them in event-time order."""

    def __init__(self, spec: StationSpec, settings: TwinSettings):
        self.id = spec.id
        self.name = spec.name
        self.region = spec.region
        self.alerts = AlertBook(spec.id)
        self.tanks = {t.id: TankActor(spec.id, t, settings,
                                      tuple(n.id for n in spec.nozzles if n.tank == t.id))
                      for t in spec.tanks}
        self.nozzles = {n.id: NozzleActor(spec.id, n, settings) for n in spec.nozzles}
        self.recent_txns: deque[dict[str, Any]] = deque(maxlen=settings.recent_transactions)
        self.prices: dict[str, float] = {}
        self.purchase_orders: dict[str, dict[str, Any]] = {}
        self.watermark: float | None = None
        #: When the station's data last came back after a communication loss (event time).
        self.link_restored_ts: float | None = None
        self.day: str | None = None
        self.sales_today: dict[str, list[float]] = {}
        self.events = 0
        # issue 6: vapor recovery (GB 20952-2020), judged on gasoline nozzles; plain data, so it is part
        # of every supervision snapshot and comes back with the station after a crash (E.3.4).
        self.vapor = VaporMonitor(spec.id, [n.id for n in spec.nozzles if n.grade in GASOLINE_GRADES],
                                  settings.vapor)
        self.safety = SafetyMonitor(settings.safety)  # issue 6: safety devices and inspections
        # Issue 5: ledger, lots, statistics and the tax and market checks (twin/regulatory.py).
        self.reg = StationRegulator(spec, settings.regulatory(),
                                    {t.id: float(t.geometry().capacity_l) for t in spec.tanks})

    #: Handler method per event kind, by name so that the actor pickles (snapshots) as plain data.
    HANDLERS = {"tank.reading": "_reading", "nozzle.state": "_nozzle_state", "nozzle.txn": "_txn",
                "device.info": "_device", "price.posted": "_price", "doc.purchase": "_purchase",
                "alert.action": "_alert_action", "clock.tick": "_tick",
                "vapor.fill": "_vapor_fill", "vapor.env": "_vapor_env",
                "safety.reading": "_safety", "inspection.report": "_inspection",
                "doc.invoice": "_document", "doc.declaration": "_document"}

    def handle(self, ev: EventBase, out: Outputs) -> None:
        self.events += 1
        name = self.HANDLERS.get(ev.kind)  # type: ignore[attr-defined]
        if name is not None:
            getattr(self, name)(ev, out)
        # Other kinds (invoices, declarations) are logged and reach the station;
        # their detectors come with the issues that own them.

    def flush(self, out: Outputs, with_state: bool = True) -> None:
        for tank in self.tanks.values():
            tank.flush(out)
        self.reg.flush(out)
        if with_state:
            out.states[self.id] = self.state()

    # ---- handlers -------------------------------------------------------------------------------

    def _reading(self, ev: Any, out: Outputs) -> None:
        tank = self.tanks[ev.entity]
        if tank.stale:
            self.link_restored_ts = ev.ts
        seen = len(out.deliveries)
        tank.reading(ev, self.alerts, out)
        if tank.last_ts == ev.ts and not tank.stuck.stuck and tank.stuck.repeats < 2:  # issue 5 hook
            for found in out.deliveries[seen:]:
                self.reg.delivery(tank, found, self.alerts, out)
            idle = all(self.nozzles[n].state_name != "fuelling" for n in tank.nozzles)
            self.reg.reading(tank, ev.ts, self.alerts, out, idle)

    def _nozzle_state(self, ev: Any, out: Outputs) -> None:
        nozzle = self.nozzles[ev.entity]
        nozzle.seen(ev.ts, self.alerts, out)
        running = nozzle.state_event(ev)
        self.tanks[nozzle.tank].book.running(nozzle.id, running)

    def _txn(self, ev: Any, out: Outputs) -> None:
        nozzle = self.nozzles[ev.entity]
        was_stale = nozzle.stale
        nozzle.seen(ev.ts, self.alerts, out)
        last = nozzle.ledger.last_end_ts
        link_lost = was_stale or (last is not None and self.link_restored_ts is not None
                                  and self.link_restored_ts > last)
        unseen = nozzle.txn(ev, link_lost, self.alerts, out)
        tank = self.tanks[nozzle.tank]
        book = tank.book
        if unseen > 0:
            unseen_20c = book.book_unseen(unseen)
            tank.sale(nozzle.id, unseen_20c)
            tank.wetstock.brk()
            tank.deliveries.rebase(unseen_20c)  # measured: else a ~1,200 L "delivery" after a comm loss
            self.reg.unseen(tank.id, ev.end_ts, unseen, unseen_20c)
        sale_20c = book.book_sale(nozzle.id, ev.volume_l)
        tank.sale(nozzle.id, sale_20c)
        self.reg.sale(tank.id, nozzle.id, ev, sale_20c, self.alerts, out)
        day = local_day(ev.end_ts)
        if day != self.day:
            self.day = day
            self.sales_today = {}
        totals = self.sales_today.setdefault(ev.grade, [0.0, 0.0, 0])
        totals[0] += ev.volume_l
        totals[1] += ev.amount_cny
        totals[2] += 1
        self.recent_txns.append({"nozzle": nozzle.id, "txn_no": ev.txn_no, "grade": ev.grade,
                                 "volume_l": ev.volume_l, "amount_cny": ev.amount_cny,
                                 "unit_price": ev.unit_price, "end_ts": ev.end_ts,
                                 "volume_l_20c": round(sale_20c, 2)})

    def _device(self, ev: Any, out: Outputs) -> None:
        if ev.entity in self.nozzles:
            self.nozzles[ev.entity].device(ev, self.alerts, out)

    def _price(self, ev: Any, out: Outputs) -> None:
        if ev.entity != "reference":
            self.prices[ev.grade] = ev.unit_price
        self.reg.price(ev, self.alerts, out)

    def _purchase(self, ev: Any, out: Outputs) -> None:
        self.purchase_orders[ev.po_no] = {"po_no": ev.po_no, "grade": ev.grade, "ts": ev.ts,
                                          "volume_l_20c": ev.volume_l_20c, "supplier": ev.supplier}
        self.reg.document(ev, self.alerts, out)

    def _document(self, ev: Any, out: Outputs) -> None:
        if ev.kind in DOC_KINDS:
            self.reg.document(ev, self.alerts, out)

    def _alert_action(self, ev: Any, out: Outputs) -> None:
        """A person's decision on one of this station's alerts (the store already shows it)."""
        alert = self.alerts.open.get((ev.entity, ev.code))
        if alert is None or alert.id != ev.alert_id:
            return  # already closed by the twin, or a decision on an older instance
        if ev.action == "closed":
            self.alerts.close(ev.code, ev.entity, ev.ts, by=ev.by)
        else:
            self.alerts.acknowledge(ev.alert_id, ev.code, ev.entity, ev.ts, ev.by)

    # issue 6: vapor recovery (twin/vapor.py) ---------------------------------------------------------

    def _vapor_fill(self, ev: Any, out: Outputs) -> None:
        self._vapor_apply(self.vapor.fill(ev.ts, ev.entity, ev.a_l, ev.liquid_l, ev.fill_end_ts), ev.ts, out)

    def _vapor_env(self, ev: Any, out: Outputs) -> None:
        self._vapor_apply(self.vapor.env(ev.ts, ev.pressure_pa, ev.processor_state, ev.outlet_g_m3,
                                         ev.voc_umol_mol), ev.ts, out)

    def _vapor_apply(self, actions: list[VaporAction], ts: float, out: Outputs) -> None:
        for a in actions:
            if a.op == "raise":
                report(self.alerts, a.entity, ts, Finding(a.code, a.severity, a.metrics, a.evidence), out)
            else:
                clear(self.alerts, a.code, a.entity, ts, out)

    def _safety(self, ev: Any, out: Outputs) -> None:
        delivering = any(t.deliveries.active for t in self.tanks.values())
        self._vapor_apply(self.safety.reading(ev, delivering), ev.ts, out)

    def _inspection(self, ev: Any, out: Outputs) -> None:
        self._vapor_apply(self.safety.report(ev), ev.ts, out)

    def _tick(self, ev: Any, out: Outputs) -> None:
        if self.watermark is not None and ev.ts <= self.watermark:
            return
        self.watermark = ev.ts
        if self.safety.behaviour_last:
            self._vapor_apply(self.safety.tick(ev.ts), ev.ts, out)
        self.reg.tick(ev.ts, self.alerts, out)
        for tank in self.tanks.values():
            tank.tick(ev.ts, self.alerts, out)
        for nozzle in self.nozzles.values():
            nozzle.tick(ev.ts, self.alerts, out)

    # ---- view -----------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "station": self.id, "name": self.name, "region": self.region, "watermark": self.watermark,
            "tanks": [t.state() for t in self.tanks.values()],
            "nozzles": [n.state() for n in self.nozzles.values()],
            "recent_transactions": list(self.recent_txns)[::-1],
            "prices": dict(self.prices),
            "sales_today": {"day": self.day, "by_grade": {g: {"volume_l": round(v[0], 2),
                                                              "amount_cny": round(v[1], 2),
                                                              "count": int(v[2])}
                                                          for g, v in self.sales_today.items()}},
            "open_alerts": [a.to_dict() for a in self.alerts.open.values()],
            "events": self.events,
            "vapor": self.vapor.state() if self.vapor.active else None,
            "safety": self.safety.state() if self.safety.last_readings or self.safety.reports else None,
            "regulatory": self.reg.state(),
        }
