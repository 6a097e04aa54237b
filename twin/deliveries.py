"""Recognising a delivery (收油) from the tank's own data.

A tank gauge sees a delivery as a level rise; the twin sees it better, as a rise in the divergence,
because metered sales during the drop are already in the books (DOMAIN.md: sales during the drop are a
known source of error for gauges that only look at the level). The drop is over when the divergence is
flat again; what was delivered is the divergence after minus the divergence before.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    #: A rise this large is no noise: 200 L is ~25 σ of a single reading on a 30 m³ tank (0.5 mm ×
    #: 15 L/mm) and a fifth of the smallest delivery we must catch (1,000 L, issue 3).
    rise_threshold_l: float = 200.0
    #: The divergence must stay flat this long before the drop counts as ended.
    settle_s: float = 600.0
    #: ...within this difference between the medians of the settle window's halves.
    settle_tol_l: float = 20.0
    #: The pre-delivery baseline is the median of this much history.
    baseline_s: float = 900.0
    #: A drop that never settles is closed anyway after this long, and flagged.
    max_duration_s: float = 4 * 3600.0
    #: A rise that starts within ``blind_after_s`` of a gap in the readings longer than ``blind_gap_s``
    #: (the link was down) is measured with the gap's sales not all booked yet (a nozzle's unseen litres
    #: are booked at its next transaction), so its volume is less certain (``blind_s``: the gap's length).
    blind_gap_s: float = 300.0
    blind_after_s: float = 3600.0


@dataclass(frozen=True, slots=True)
class DetectedDelivery:
    start_ts: float
    end_ts: float
    net_l_20c: float
    baseline_l: float
    settled: bool
    #: Seconds with no readings just before the rise was seen (0 when the drop was watched throughout).
    blind_s: float = 0.0


@dataclass(slots=True)
class DeliveryDetector:
    """Baseline = running mean of the recent settled divergence (O(1) a reading; gauge noise is
    Gaussian and a 200 L rise is ~25 σ, so a mean is as good as a median here and far cheaper)."""

    settings: DeliverySettings = field(default_factory=DeliverySettings)
    history: deque[tuple[float, float]] = field(default_factory=deque)
    history_sum: float = 0.0
    active_since: float | None = None
    baseline_l: float = 0.0
    window: deque[tuple[float, float]] = field(default_factory=deque)
    last_ts: float | None = None
    #: (end, length) of the last gap in the readings longer than ``blind_gap_s``.
    last_gap: tuple[float, float] | None = None

    @property
    def active(self) -> bool:
        return self.active_since is not None

    def update(self, ts: float, divergence_l: float) -> DetectedDelivery | None:
        s = self.settings
        if self.last_ts is not None and ts - self.last_ts > s.blind_gap_s:
            self.last_gap = (ts, ts - self.last_ts)
        self.last_ts = ts
        if self.active_since is None:
            history = self.history
            if len(history) >= 3:
                baseline = self.history_sum / len(history)
                if divergence_l - baseline > s.rise_threshold_l:
                    self._start(ts, baseline)
                    self.window.append((ts, divergence_l))
                    return None
            history.append((ts, divergence_l))
            self.history_sum += divergence_l
            horizon = ts - s.baseline_s
            while history[0][0] < horizon:
                self.history_sum -= history.popleft()[1]
            return None
        window = self.window
        window.append((ts, divergence_l))
        while window and window[0][0] < ts - s.settle_s:
            window.popleft()
        span = window[-1][0] - window[0][0]
        overdue = ts - self.active_since > s.max_duration_s
        if len(window) >= 4 and span >= s.settle_s * 0.9 or overdue:
            values = [v for _, v in window]
            half = len(values) // 2
            first, second = statistics.median(values[:half]), statistics.median(values[half:])
            if abs(second - first) <= s.settle_tol_l or overdue:
                return self._finish(window[0][0], statistics.median(values), not overdue)
        return None

    def rebase(self, step_l: float) -> None:
        """The books jumped by ``step_l`` (sales the dispenser's totalizer says were made unseen, booked
        at once): the divergence steps up by them, which is no delivery. The readings already seen are
        moved by the same step, so the baseline stays continuous (and a drop under way keeps measuring
        product, not bookkeeping)."""
        if self.active_since is not None:
            self.baseline_l += step_l
            self.window = deque((t, v + step_l) for t, v in self.window)
        self.history = deque((t, v + step_l) for t, v in self.history)
        self.history_sum += step_l * len(self.history)

    def _start(self, ts: float, baseline: float) -> None:
        # The rise began after the last history point that still sat on the baseline.
        start = ts
        for t, v in reversed(self.history):
            start = t
            if v - baseline < 0.1 * self.settings.rise_threshold_l:
                break
        self.active_since = start
        self.baseline_l = baseline
        self.window.clear()

    def _finish(self, end_ts: float, settled_l: float, settled: bool) -> DetectedDelivery:
        assert self.active_since is not None
        gap = self.last_gap  # a gap shortly before the drop, or during it
        blind = gap is not None and self.active_since - gap[0] <= self.settings.blind_after_s
        blind_s = gap[1] if gap is not None and blind else 0.0
        found = DetectedDelivery(self.active_since, end_ts, settled_l - self.baseline_l, self.baseline_l,
                                 settled, blind_s)
        self.active_since = None
        self.history.clear()
        self.history_sum = 0.0
        self.window.clear()
        return found
