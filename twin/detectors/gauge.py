"""Gauge health and level limits: a frozen probe, water at the bottom, product above the safe level.

A frozen probe is recognised by repetition: a magnetostrictive probe with a few tenths of a millimetre of
noise and several thermistors (DOMAIN.md) never reports the same level *and* temperature reading after
reading for minutes. While a gauge is stuck, the tank's divergence means nothing, so the tank actor
keeps its loss and delivery detectors out of it (issue 3: gauge faults must not become leak or theft
alarms).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class StuckCheck:
    stuck_after_s: float = 600.0
    min_repeats: int = 5
    last: tuple[float, float, float] | None = None
    since_ts: float | None = None
    repeats: int = 0
    stuck: bool = False

    def update(self, ts: float, level_mm: float, water_mm: float, temp_c: float) -> bool | None:
        """True when the probe has just frozen, False when it has just recovered, None otherwise."""
        values = (level_mm, water_mm, temp_c)
        if values == self.last:
            self.repeats += 1
            if self.since_ts is None:
                self.since_ts = ts
            if (not self.stuck and self.repeats >= self.min_repeats
                    and ts - self.since_ts >= self.stuck_after_s):
                self.stuck = True
                return True
            return None
        self.last = values
        self.repeats = 0
        self.since_ts = ts
        if self.stuck:
            self.stuck = False
            return False
        return None


@dataclass(slots=True)
class LimitCheck:
    """Above a limit for ``confirm`` readings in a row → raised; below limit − hysteresis → cleared."""

    limit: float
    hysteresis: float
    confirm: int = 3
    above: int = 0
    raised: bool = False

    def update(self, value: float) -> bool | None:
        if value > self.limit:
            self.above += 1
            if not self.raised and self.above >= self.confirm:
                self.raised = True
                return True
            return None
        self.above = 0
        if self.raised and value < self.limit - self.hysteresis:
            self.raised = False
            return False
        return None


@dataclass(slots=True)
class WindowRange:
    """Highest minus lowest of the values of the last ``window_s``: the water bottom's movement over the
    meter-change scan's days (TankActor._water_steady). Two monotonic deques — the window's extreme
    first, then the values that may become it as older ones leave — so a value costs O(1) amortised where
    scanning the window cost O(window) at every tank's half-hourly judgement (profiled)."""

    window_s: float
    highs: deque[tuple[float, float]] = field(default_factory=deque)
    lows: deque[tuple[float, float]] = field(default_factory=deque)

    def add(self, ts: float, value: float) -> None:
        highs, lows = self.highs, self.lows
        while highs and highs[-1][1] <= value:
            highs.pop()
        highs.append((ts, value))
        while lows and lows[-1][1] >= value:
            lows.pop()
        lows.append((ts, value))

    def span(self, now: float) -> float | None:
        """The range of the values since ``now − window_s``; None if there are none."""
        for marks in (self.highs, self.lows):
            while marks and marks[0][0] < now - self.window_s:
                marks.popleft()
        return self.highs[0][1] - self.lows[0][1] if self.highs else None
