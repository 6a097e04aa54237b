"""Volume that leaves a tank outside any transaction: theft (SUDDEN_LOSS) and unrecorded dispensing.

The divergence is averaged in short bins (3 min); a loss is a baseline (bins 15–24 min ago) standing
well above the last 6 minutes. 40 L is ~7 σ of that difference on a 30 m³ tank (gauge σ 0.5 mm ×
15 L/mm per reading, averaged), and under the 50 L that issue 3 asks to catch within 30 minutes.

How fast the volume went tells what it was. A theft (siphon, valve) takes minutes; a fill at a nozzle
runs at 30–80 L/min, so a drop faster than 12 L/min looks like a fill nobody recorded: HIDDEN_SALES
(unrecorded sales, DOMAIN.md 'Dispensers'), raised on the first such drop and updated with each further
one (litres, drops, over the last 48 h). The speed comes from a ramp fitted to the raw readings of the
last half hour — level, then a straight fall from one reading's time to a later one's, then level —
by least squares over every pair of start and end: every reading in the fall counts, where timing the
30 % and 70 % marks leaned on two noisy readings (σ ≈ 7 L each on a 30 m³ tank) and read 5 of 20
ten-minute thefts of 60 L as fills. Measured: no such drop in 42 healthy tank-months (healthy-30d,
healthy-busy-30d with one confirmation), while a cheat switched on 2 h in 8 hides well under one fill a
day — waiting for a second one missed 5 of 6 runs. ``hidden_confirmations`` raises the bar where books
are messier. Known limit: a theft pumped as fast as a nozzle is read as dispensing — except where a
vapor-recovery monitor covers the tank: it records every gasoline fill, reported or not, so there a
drop is a fill exactly when the monitor saw a fill at one of the tank's nozzles that no transaction
matched (``nozzle_fills``; theft-60l-vapor 20/20, hidden-sales-vapor no SUDDEN_LOSS in 20 runs).

A hidden fill can be smaller than the 40 L the short bins resolve: a car's 20 L is ~4 σ of their
difference. :class:`StepTest` looks for those on a longer scale — the hour after a two-minute gap against
the hour before it, about 1.4 L of standard error on a 30 m³ tank — and reports a sharp step of at least
15 L and 7 standard errors as one more unrecorded fill. Measured on captured divergence series: it finds
the three hidden fills of 20–35 L the bins missed in 20 hidden-sales runs, and no step in 5,600
tank-days of the other tanks (meter-bias, leak and busy healthy runs), where a leak, a meter bias or a
slow drift never makes a step. A gross leak does (20 L/h: hour means 20 L apart all the time), so where
the two hours fall steadily the step is read on top of their slope (:func:`_step_on_slope`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from twin.detectors.nozzle import Finding

if TYPE_CHECKING:
    from twin.alerts import Alert

#: The fills a vapor monitor saw with no transaction, at a tank's nozzles, in an event-time window:
#: ``(t0, t1) -> [(nozzle, end ts, litres)]`` (twin/detectors/fill_witness.py).
NozzleFills = Callable[[float, float], list[tuple[str, float, float]]]


@dataclass(frozen=True, slots=True)
class LossSettings:
    bin_s: float = 180.0
    threshold_l: float = 40.0
    baseline_bins: int = 3
    gap_bins: int = 3
    now_bins: int = 2
    #: A drop that went faster than this (L/min, its litres over its fitted ramp) looks like a fill.
    fill_rate_lpm: float = 12.0
    #: ... and this, in a tank where fills went unrecorded within ``hidden_window_s``: there a drop of
    #: a fill's size is far more likely the next hidden fill than a theft (bench/loss_timing.py at σ 12 L:
    #: 99 % of hidden fills time at ≥ 4 L/min, 85 % at ≥ 12).
    fill_rate_known_lpm: float = 4.0
    hidden_confirmations: int = 1
    #: Where a vapor monitor is live, fills it saw without a transaction count for a drop from this
    #: long before the drop's baseline ended (s): the fall shows in the bins a few minutes after a fill.
    fill_window_s: float = 600.0
    hidden_window_s: float = 48 * 3600.0
    #: StepTest: the windows compared (s) either side of a gap (s) the step must fit in, the smallest
    #: step (L) and how many standard errors of the windows' difference it must stand out by.
    step_window_s: float = 3600.0
    step_gap_s: float = 120.0
    step_threshold_l: float = 15.0
    step_sigmas: float = 7.0
    #: ...and where the two hours fall steadily (one slope through both, at least this many standard
    #: errors), the step must reach ``step_threshold_l`` on top of that slope: a leak of 20 L/h makes
    #: hour means 20 L apart all the time.
    step_trend_t: float = 3.0
    #: After a SUDDEN_LOSS the theft is followed for this long (s) from its last report: what it takes
    #: while it goes on is reported as it passes another ``threshold_l``, and at the end its total is
    #: measured again from the level the tank settled at (the mean of ``settle_bins`` bins).
    continue_s: float = 1800.0
    settle_bins: int = 4


@dataclass(slots=True)
class StepTest:
    """A sharp fall of the divergence between two quiet hours: a fill that nobody recorded.

    Three time windows slide over the readings: ``before`` (an hour), ``gap`` (two minutes, where a fill
    happens) and ``after`` (the last hour). Their means' difference is the step at the gap; it is tested
    at every reading, and reported at its largest — once the difference is back under the threshold, or
    30 readings after its peak — so the volume and time are those of the step, not of its first crossing
    of the threshold. The noise comes
    from this tank's own reading-to-reading changes (mean |Δ| / 1.128 for Gaussian noise), so a noisy big
    tank needs a bigger step. A slow fall (a trickle theft) is no fill: the two hours' readings (as
    minute means) must be fitted at least as well by a fall within the gap as by any fall of ten minutes
    or more anywhere in them (least squares, as :meth:`LossDetector._duration_min` times a drop). Judged
    on the half hour around the gap only, the noise chose: a 20 L fall spread over an hour read as a
    step."""

    settings: LossSettings
    before: deque[tuple[float, float]] = field(default_factory=deque)
    gap: deque[tuple[float, float]] = field(default_factory=deque)
    after: deque[tuple[float, float]] = field(default_factory=deque)
    sums: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    abs_change: float = 0.0
    _last: float | None = None
    _best: tuple[float, float, float, list[tuple[float, float]]] | None = None  # step, ts, se, readings
    _since_best: int = 0

    def reset(self) -> None:
        self.before.clear()
        self.gap.clear()
        self.after.clear()
        self.sums = [0.0, 0.0, 0.0]
        self._last = None
        self._best = None
        self._since_best = 0

    def add(self, ts: float, value: float) -> tuple[float, float, float] | None:
        """(litres, ts of the step, standard error) once a step is found, else None.

        Runs at every tank reading (about a tenth of the twin's time in py-spy): each bound is computed
        once, in the same float operations as ever, and the standard error only for a step past the
        litres threshold (below it nothing is found whatever the error)."""
        s = self.settings
        last = self._last
        if last is not None:
            change = abs(value - last)
            self.abs_change = change if not self.abs_change else 0.995 * self.abs_change + 0.005 * change
        self._last = value
        sums = self.sums
        after, gap, before = self.after, self.gap, self.before
        after.append((ts, value))
        sums[2] += value
        window, gap_s = s.step_window_s, s.step_gap_s
        after_from = ts - window
        while after[0][0] <= after_from:
            item = after.popleft()
            sums[2] -= item[1]
            gap.append(item)
            sums[1] += item[1]
        gap_from = ts - window - gap_s
        while gap and gap[0][0] <= gap_from:
            item = gap.popleft()
            sums[1] -= item[1]
            before.append(item)
            sums[0] += item[1]
        before_from = ts - 2 * window - gap_s
        while before and before[0][0] <= before_from:
            sums[0] -= before.popleft()[1]
        n_before, n_after = len(before), len(after)
        if n_before < 10 or n_after < 10 or not gap:
            return None
        if before[0][0] > before_from + 0.1 * window:
            return None  # the before window is not full yet (data since a reset)
        step = sums[0] / n_before - sums[2] / n_after
        best = self._best
        found = False
        if step >= s.step_threshold_l:
            se = self.abs_change / 1.128 * math.sqrt(1.0 / n_before + 1.0 / n_after)
            found = step >= s.step_sigmas * se
            if found and (best is None or step > best[0]):
                self._best = (step, gap[0][0], se, self._around_gap())
                self._since_best = 0
                return None
        if best is None:
            return None
        self._since_best += 1
        if found and self._since_best < 30:
            return None
        self._best = None
        readings, gap_ts = best[3], best[1]
        trend_t = getattr(s, "step_trend_t", 3.0)  # absent in settings from a checkpoint before it
        fit = _step_on_slope(readings, gap_ts, s.step_gap_s)
        falling = fit is not None and fit.slope_t <= -trend_t
        if fit is not None and falling:
            # a steady fall through both hours (a leak): judge what stands out of it
            readings = [(t, v - fit.slope_lph * (t - gap_ts) / 3600.0) for t, v in readings]
        if not _sharp(readings, s.step_gap_s):
            return None  # a slow fall, not a fill
        if fit is not None and falling:
            if fit.step_l < s.step_threshold_l:
                return None
            return fit.step_l, gap_ts, fit.step_se
        return best[0], gap_ts, best[2]

    def _around_gap(self) -> list[tuple[float, float]]:
        """The windows' readings as minute means (a 10-s gauge would make the ramp fit 36 times dearer)."""
        minutes: dict[float, list[float]] = {}
        for window in (self.before, self.gap, self.after):
            for t, v in window:
                minutes.setdefault(t - t % 60.0, []).append(v)
        return [(t + 30.0 if len(vs) > 1 else t, sum(vs) / len(vs)) for t, vs in minutes.items()]


def _ramp_rss(ts: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every falling ramp (level, straight fall from reading i to a later reading j, level) fitted to the
    readings by least squares: each ramp's duration (s) and residual sum of squares (inf for a rise)."""
    i, j = np.triu_indices(len(ts), k=1)
    t0, t1 = ts[i][:, None], ts[j][:, None]
    shape = np.clip((ts[None, :] - t0) / (t1 - t0), 0.0, 1.0)
    n = len(ts)
    s_mean = shape.mean(axis=1)
    v_mean = v.mean()
    sxx = (shape * shape).sum(axis=1) - n * s_mean * s_mean
    sxy = shape @ v - n * s_mean * v_mean
    explained = np.where(sxx > 1e-12, sxy * sxy / np.maximum(sxx, 1e-12), 0.0)
    rss = float(((v - v_mean) ** 2).sum()) - explained
    rss[sxy >= 0] = np.inf  # a rise is no loss
    return ts[j] - ts[i], rss


class StepOnSlope(NamedTuple):
    """:func:`_step_on_slope`: the fall at the gap (L) and its SE, the slope (L/h, negative falling) and
    its t."""

    step_l: float
    step_se: float
    slope_lph: float
    slope_t: float


def _step_on_slope(readings: list[tuple[float, float]], gap_ts: float, gap_s: float) -> StepOnSlope | None:
    """The readings either side of the gap [``gap_ts``, ``gap_ts`` + ``gap_s``) fitted by least squares
    as a level, one slope through both hours and a step after the gap (the gap's own readings left
    out); None with too few on either side.

    A leak of 20 L/h makes the hours' means differ by 20 L all the time, and the step test compares
    means: where the tank falls steadily, what a fill is must be read on top of that slope, and so
    must the ramp test (:func:`_sharp`), which otherwise prefers the slope's slow fall to any fill.
    Measured on the step test alone (σ 8 L a reading, 20 seeds each), judged on the hours' means and
    the ramp test before, on the slope now: a 20 L/h leak made a "fill" in 2 → 0 of 20 hours-long runs;
    a fill on it of 20 L was found in 3 → 19, of 30 L in 11 → 20, of 15 L in 2 → 8 (on a steady tank
    20, 20 and 9, as before). scenarios/leak-20lph.yaml × 20: a HIDDEN_SALES beside the leak in 3 → 0
    runs."""
    ts = np.fromiter((t for t, _ in readings), float, len(readings))
    v = np.fromiter((x for _, x in readings), float, len(readings))
    keep = (ts < gap_ts) | (ts >= gap_ts + gap_s)
    ts, v = ts[keep], v[keep]
    after = ts >= gap_ts + gap_s
    if after.sum() < 3 or (~after).sum() < 3:
        return None
    x = np.column_stack([np.ones(len(ts)), (ts - gap_ts) / 3600.0, after])
    coef, rss, rank, _ = np.linalg.lstsq(x, v, rcond=None)
    if rank < 3 or not len(rss):
        return None
    cov = float(rss[0]) / (len(ts) - 3) * np.linalg.inv(x.T @ x)
    se_slope, se_step = math.sqrt(max(cov[1, 1], 0.0)), math.sqrt(max(cov[2, 2], 0.0))
    return StepOnSlope(-float(coef[2]), se_step, float(coef[1]),
                       float(coef[1]) / se_slope if se_slope > 0 else 0.0)


def _sharp(readings: list[tuple[float, float]], gap_s: float, evidence_sigmas: float = 3.0) -> bool:
    """Whether the readings do not clearly prefer a fall of 10 min or more to one within ``gap_s``: the
    slow fall must fit better by ``evidence_sigmas``² residual variances to call it slow. Below the
    bins' 40 L a fill and a few minutes' trickle fit about alike (a 20 L hidden fill: residuals 8,922
    against 8,893 L² over 122 readings), and a small fall with no transaction is a fill far more often
    than a theft; a fall spread over an hour is told apart clearly."""
    if len(readings) < 4:
        return False
    ts = np.fromiter((t for t, _ in readings), float, len(readings))
    v = np.fromiter((x for _, x in readings), float, len(readings))
    duration, rss = _ramp_rss(ts, v)
    step = duration <= gap_s + 1e-6
    slow = duration >= 600.0
    if not step.any() or not slow.any():
        return bool(step.any())
    best_step, best_slow = float(rss[step].min()), float(rss[slow].min())
    variance = min(best_step, best_slow) / max(len(ts) - 3, 1)
    return best_slow >= best_step - evidence_sigmas ** 2 * variance


@dataclass(slots=True)
class LossDetector:
    settings: LossSettings = field(default_factory=LossSettings)
    bins: deque[tuple[float, float]] = field(default_factory=deque)
    _bin_start: float | None = None
    _sum: float = 0.0
    _n: int = 0
    unrecorded: deque[tuple[float, float]] = field(default_factory=deque)
    #: The raw readings of the last half hour, to time a drop once one is found.
    recent: deque[tuple[float, float]] = field(default_factory=deque)
    #: Running mean of |difference of consecutive bins|: this tank's own bin-to-bin noise.
    bin_noise_l: float = 0.0
    steps: StepTest | None = None
    #: A SUDDEN_LOSS being followed: the level before it, when it began, its total reported so far, the
    #: level that total was read at and when (``_continued``).
    carry: tuple[float, float, float, float, float] | None = None

    def __post_init__(self) -> None:
        self.steps = StepTest(self.settings)

    def reset(self) -> None:
        """Forget the recent past (a gap in the data, a delivery, a stuck gauge): never compare across."""
        self.carry = None
        self.bins.clear()
        self.recent.clear()
        steps = getattr(self, "steps", None)  # absent in a checkpoint from before the step test
        if steps is not None:
            steps.reset()
        self._bin_start = None
        self._sum, self._n = 0.0, 0

    def add(self, ts: float, divergence_l: float, nozzle_fills: NozzleFills | None = None) -> Finding | None:
        """One reading's divergence; a finding once a loss is recognised.

        ``nozzle_fills`` is given where a live vapor-recovery monitor covers this tank's nozzles: asked
        for a window of event time, it lists the fills the monitor recorded there that no transaction
        matched. It then decides fill or theft instead of the drop's speed (see :meth:`_close`)."""
        s = self.settings
        found = None
        if self._bin_start is None:
            self._bin_start = ts - ts % s.bin_s
        elif ts >= self._bin_start + s.bin_s:
            previous = self._bin_start
            found = self._close(nozzle_fills)
            start = ts - ts % s.bin_s
            if start > previous + s.bin_s:  # an empty bin: the data stopped for a while
                self.reset()
            self._bin_start = start
        self._sum += divergence_l
        self._n += 1
        recent = self.recent
        recent.append((ts, divergence_l))
        while recent[0][0] < ts - 1800.0:
            recent.popleft()
        if found is None:
            steps = getattr(self, "steps", None)
            if steps is None:  # a checkpoint from before the step test
                steps = self.steps = StepTest(self.settings)
            step = steps.add(ts, divergence_l)
            if step is not None:
                litres, step_ts, se = step
                self.reset()
                end_ts = step_ts + self.settings.step_gap_s
                found = self._unrecorded(ts, litres, {
                    "volume_l": round(litres, 1), "start_ts": step_ts, "end_ts": end_ts, "se_l": round(se, 2),
                    "no_transaction_in_window": True, "minutes": None, "how": "step between two quiet hours"})
        return found

    def _close(self, nozzle_fills: NozzleFills | None = None) -> Finding | None:
        s = self.settings
        if not self._n or self._bin_start is None:
            return None
        mean = self._sum / self._n
        if self.bins:
            step = abs(mean - self.bins[-1][1])
            self.bin_noise_l = (step if not self.bin_noise_l
                                else 0.98 * self.bin_noise_l + 0.02 * min(step, 50.0))
        self.bins.append((self._bin_start, mean))
        self._sum, self._n = 0.0, 0
        need = s.baseline_bins + s.gap_bins + s.now_bins
        while len(self.bins) > need:
            self.bins.popleft()
        carry = getattr(self, "carry", None)  # absent in a checkpoint from before the continuation
        if carry is not None:
            found = self._continued(carry, nozzle_fills)
            if found is not None or self.carry is not None:
                return found
        if len(self.bins) < need:
            return None
        values = [v for _, v in self.bins]
        baseline = sum(values[: s.baseline_bins]) / s.baseline_bins
        now = sum(values[-s.now_bins:]) / s.now_bins
        drop = baseline - now
        if drop < s.threshold_l:
            return None
        if values[-2] - values[-1] > max(0.25 * drop, 2.0 * self.bin_noise_l):
            return None  # still falling: judge the loss when it has stopped
        first_ts = self.bins[s.baseline_bins - 1][0] + s.bin_s
        last_ts = self.bins[-1][0] + s.bin_s
        minutes = self._duration_min(first_ts, baseline, drop)
        self.reset()
        evidence: dict[str, Any] = {"volume_l": round(drop, 1), "start_ts": first_ts, "end_ts": last_ts,
                                    "baseline_l": round(baseline, 1), "after_l": round(now, 1),
                                    "no_transaction_in_window": True}
        evidence["minutes"] = round(minutes, 1) if math.isfinite(minutes) else None
        found = self._judged(drop, first_ts, last_ts, minutes, evidence, nozzle_fills)
        if found is not None and found.code == "SUDDEN_LOSS":
            self.carry = (baseline, first_ts, drop, now, last_ts)
        return found

    def _judged(self, drop: float, first_ts: float, last_ts: float, minutes: float, evidence: dict[str, Any],
                nozzle_fills: NozzleFills | None) -> Finding | None:
        """A drop found: a theft (SUDDEN_LOSS), or a fill nobody recorded (HIDDEN_SALES)."""
        s = self.settings
        if nozzle_fills is not None:
            # A vapor monitor records every gasoline fill, reported or not: a fill at one of the tank's
            # nozzles that no transaction matched, in the drop's time, is where the product went; no such
            # fill means it did not leave through a nozzle, however fast it went (timing alone misreads a
            # quick theft as a fill and ~15 % of hidden fills as slow, see _fill_rate_lpm).
            fills = nozzle_fills(first_ts - getattr(s, "fill_window_s", 600.0), last_ts)  # old checkpoints
            evidence["vapor_fills_without_transaction"] = [
                {"nozzle": n, "end_ts": t, "volume_l": round(v, 2)} for n, t, v in fills]
            if fills:
                return self._unrecorded(last_ts, drop, evidence)
            return Finding("SUDDEN_LOSS", "alarm", {"volume_l": drop}, evidence)
        if drop / max(minutes, 0.5) >= self._fill_rate_lpm(last_ts):
            return self._unrecorded(last_ts, drop, evidence)
        return Finding("SUDDEN_LOSS", "alarm", {"volume_l": drop}, evidence)

    def _continued(self, carry: tuple[float, float, float, float, float],
                   nozzle_fills: NozzleFills | None) -> Finding | None:
        """A theft after it was found. A slow siphon crosses 40 L long before it ends, and the fresh
        window that followed a finding saw only the rest of it, from baseline bins taken mid-fall, and
        timed that as quick as a fill (HIDDEN_SALES beside the theft's alert). So the level before the
        theft stays the baseline: each further ``threshold_l`` taken reports the total so far, and
        ``continue_s`` after the last report the total is read once more against the level the tank
        settled at — the theft's litres, where adding thresholded increments would only ever add the
        pieces that noise pushed over. Then the tank is watched as usual."""
        s = self.settings
        baseline, start_ts, reported, level, since = carry
        bins = [v for t, v in self.bins if t >= since]
        last_ts = self.bins[-1][0] + s.bin_s
        if len(bins) < s.now_bins:
            return None
        now = sum(bins[-s.now_bins:]) / s.now_bins
        evidence: dict[str, Any] = {"start_ts": start_ts, "end_ts": last_ts, "baseline_l": round(baseline, 1),
                                    "no_transaction_in_window": True, "continues": True}
        if level - now >= s.threshold_l:
            if nozzle_fills is not None:
                fills = nozzle_fills(since - getattr(s, "fill_window_s", 600.0), last_ts)
                if fills:  # not the theft going on: fills nobody recorded, as the monitor saw them
                    self.carry = None
                    return None
            total = baseline - now
            self.carry = (baseline, start_ts, total, now, last_ts)
            return Finding("SUDDEN_LOSS", "alarm", {"volume_l": total},
                           {**evidence, "volume_l": round(total, 1), "after_l": round(now, 1)})
        if last_ts - since < getattr(s, "continue_s", 1800.0):  # settings of an older checkpoint
            return None
        self.carry = None
        settle = bins[-getattr(s, "settle_bins", 4):]
        settled = sum(settle) / len(settle)
        total = baseline - settled
        if abs(total - reported) < 1.0:
            return None
        # ends where the last report saw it still going: less than threshold_l went after that
        return Finding("SUDDEN_LOSS", "alarm", {"volume_l": total}, {
            **evidence, "end_ts": since, "volume_l": round(total, 1), "after_l": round(settled, 1),
            "settled": True})

    def _duration_min(self, since: float, baseline: float, drop: float) -> float:
        """Minutes the loss took: the best ramp (level, straight fall, level) through the recent readings.

        For a start at reading i and an end at reading j > i the shape is s(t) = clip((t − tᵢ)/(tⱼ − tᵢ),
        0, 1) and the readings v ≈ b − D·s; b and D come from ordinary least squares, and the pair with the
        smallest residual wins. A fall between two consecutive readings is a step (as fast as the readings
        can tell). ``since`` and ``baseline`` are unused: the fit finds where the fall begins by itself."""
        if len(self.recent) < 4:
            return math.inf
        ts = np.fromiter((t for t, _ in self.recent), float, len(self.recent))
        v = np.fromiter((x for _, x in self.recent), float, len(self.recent))
        duration, rss = _ramp_rss(ts, v)
        best = int(np.argmin(rss))
        if not math.isfinite(rss[best]):
            return math.inf
        return float(duration[best]) / 60.0

    def unrecorded_l(self, ts: float) -> float:
        """Litres of the unrecorded fills found in the ``hidden_window_s`` before ``ts`` (the deque
        forgets older ones only when a new one comes)."""
        since = ts - self.settings.hidden_window_s
        return sum(v for t, v in self.unrecorded if t >= since)

    def _fill_rate_lpm(self, ts: float) -> float:
        """The speed from which a drop is read as a fill: lower once this tank is known to hide fills.

        The timing alone misreads ~15 % of hidden fills as slow (σ 12 L readings), which in a tank whose
        fills go unrecorded every few hours made a SUDDEN_LOSS beside its HIDDEN_SALES in 4 of 40 hidden-
        sales runs. There the prior odds of fill against theft are many to one, so the boundary moves;
        such a tank's theft would then be counted into its open HIDDEN_SALES (never lost: an alarm with
        its litres either way)."""
        s = self.settings
        if not any(t >= ts - s.hidden_window_s for t, _ in self.unrecorded):
            return s.fill_rate_lpm
        return getattr(s, "fill_rate_known_lpm", 4.0)  # absent in a checkpoint from before it

    def _unrecorded(self, ts: float, drop: float, evidence: dict[str, Any]) -> Finding | None:
        s = self.settings
        self.unrecorded.append((ts, drop))
        while self.unrecorded and self.unrecorded[0][0] < ts - s.hidden_window_s:
            self.unrecorded.popleft()
        if len(self.unrecorded) < s.hidden_confirmations:
            return None
        total = sum(v for _, v in self.unrecorded)
        return Finding("HIDDEN_SALES", "alarm", {"litres": total, "drops": len(self.unrecorded)},
                       {**evidence, "unrecorded_drops": [{"ts": t, "volume_l": round(v, 1)}
                                                         for t, v in self.unrecorded]})


def with_open_theft(open_alert: Alert | None, finding: Finding) -> Finding:
    """A SUDDEN_LOSS while one is open on the tank (``open_alert``; None: none is). The detector's
    later reports of the same theft (``continues``: it went on after it was found, or its total read
    again once the tank settled) replace that theft's litres; another theft before anyone closed the
    alert adds its own. Each theft is kept in the evidence's ``drops``, the alert's volume is their
    sum."""
    if open_alert is None:
        return finding
    before, new = open_alert.evidence, finding.evidence
    drops = list(before.get("drops") or [{k: before.get(k) for k in ("start_ts", "end_ts", "volume_l")}])
    drop = {k: new.get(k) for k in ("start_ts", "end_ts", "volume_l")}
    if new.get("continues"):
        drops[-1] = drop
    else:
        drops.append(drop)
    total = sum(float(d["volume_l"] or 0.0) for d in drops)
    metrics: dict[str, Any] = {"volume_l": total} | ({"drops": len(drops)} if len(drops) > 1 else {})
    # the first report's minutes timed only what had gone by then
    evidence = {**new, "volume_l": round(total, 1), "start_ts": drops[0]["start_ts"], "drops": drops,
                "minutes": new.get("minutes")}
    return Finding("SUDDEN_LOSS", finding.severity, metrics, evidence)
