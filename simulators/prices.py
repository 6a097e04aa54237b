"""Posted prices: district-wide adjustments on a ~10-day rhythm, each station a little above or below.

China adjusts retail fuel price ceilings every ten working days (NDRC), effective at 24:00; stations
follow on the same night. Reference levels are Tianjin-like for 2026 (92# ≈ 7.30, 95# ≈ 7.80,
98# ≈ 8.80, 0# ≈ 7.00 CNY/L). An adjustment moves gasoline by normal(0, 0.12) CNY/L and diesel by 1.15×
that (the same CNY per tonne, diesel being denser); one below 0.04 CNY/L is not applied (a "搁浅" round).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from twin.physics import product_of_grade

REFERENCE_PRICE = {"92#": 7.30, "95#": 7.80, "98#": 8.80, "0#": 7.00, "-10#": 7.40, "-20#": 7.80,
                   "-35#": 8.20}
_DAY_S = 86_400.0
_OFFSET_S = 8 * 3600.0


@dataclass(slots=True)
class PriceBoard:
    """District-wide adjustment schedule, generated lazily but always in the same order."""

    rng: np.random.Generator
    start_ts: float
    #: (effective ts, cumulative gasoline delta, cumulative diesel delta), ascending.
    steps: list[tuple[float, float, float]] = field(default_factory=list)
    _next_ts: float = 0.0

    @classmethod
    def create(cls, seed: int, start_ts: float) -> PriceBoard:
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2,)))
        board = cls(rng, start_ts)
        first_midnight = ((start_ts + _OFFSET_S) // _DAY_S + 1) * _DAY_S - _OFFSET_S
        board._next_ts = first_midnight + float(rng.integers(1, 10)) * _DAY_S
        return board

    def _extend(self, until_ts: float) -> None:
        while self._next_ts < until_ts:
            gas = round(float(self.rng.normal(0.0, 0.12)), 2)
            ts = self._next_ts
            self._next_ts += float(self.rng.integers(9, 12)) * _DAY_S
            if abs(gas) < 0.04:
                continue
            g0, d0 = (self.steps[-1][1], self.steps[-1][2]) if self.steps else (0.0, 0.0)
            self.steps.append((ts, round(g0 + gas, 2), round(d0 + round(gas * 1.15, 2), 2)))

    def changes_in(self, b0: float, b1: float) -> list[float]:
        """Effective times of adjustments in [b0, b1)."""
        self._extend(b1)
        return [ts for ts, _, _ in self.steps if b0 <= ts < b1]

    def delta(self, ts: float, grade: str) -> float:
        """Cumulative adjustment (CNY/L) in force at ``ts`` for ``grade``."""
        self._extend(ts + 1.0)
        diesel = product_of_grade(grade) == "diesel"
        out = 0.0
        for t, gas, dsl in self.steps:
            if t > ts:
                break
            out = dsl if diesel else gas
        return out


@dataclass(slots=True)
class StationPrices:
    """One station's posted prices: the district level times its own margin (±2 %)."""

    board: PriceBoard
    factor: dict[str, float]

    @classmethod
    def draw(cls, board: PriceBoard, rng: np.random.Generator, grades: list[str]) -> StationPrices:
        base = float(rng.uniform(-0.02, 0.02))
        return cls(board, {g: 1.0 + base + float(rng.uniform(-0.003, 0.003)) for g in grades})

    def price(self, grade: str, ts: float) -> float:
        return round((REFERENCE_PRICE[grade] + self.board.delta(ts, grade)) * self.factor[grade], 2)
