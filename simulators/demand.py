"""Who comes to fill up, when, and how much they take.

Arrivals are a non-homogeneous Poisson process whose rate follows a daily profile in local time
(Asia/Shanghai). Town stations see the commuter peaks (7–9 h and 17–19 h) and quiet nights; port and
highway stations keep trucks coming all night, so they never have an idle hour (the blind spot of
continuous in-tank leak detection, DOMAIN.md).

Fill sizes (choices stated here because the twin's statistics depend on them):

* cars: 35 % pay a round amount (150/200/250/300/350 CNY, the pump stops at that amount); the others
  fill up, volume normal(38 L, 9 L) clipped to 20–60 L;
* trucks (diesel only): log-normal with median 160 L and σ_log 0.4, clipped to 100–400 L;
* flow: cars uniform 30–40 L/min, trucks uniform 50–80 L/min.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Relative arrival rate at the middle of each local hour 0..23 (normalised to mean 1 below).
_URBAN = (0.15, 0.10, 0.07, 0.06, 0.08, 0.25, 0.70, 1.60, 1.80, 1.40, 1.20, 1.20,
          1.10, 1.00, 1.00, 1.10, 1.40, 1.90, 2.00, 1.60, 1.10, 0.80, 0.50, 0.30)
_ROUND_THE_CLOCK = (0.55, 0.50, 0.45, 0.45, 0.50, 0.65, 0.90, 1.30, 1.45, 1.30, 1.15, 1.10,
                    1.05, 1.00, 1.05, 1.10, 1.25, 1.45, 1.45, 1.25, 1.05, 0.90, 0.75, 0.65)


def _normalised(weights: tuple[float, ...]) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return w / w.mean()


PROFILES: dict[str, np.ndarray] = {
    "urban": _normalised(_URBAN), "port": _normalised(_ROUND_THE_CLOCK),
    "highway": _normalised(_ROUND_THE_CLOCK),
}
_CENTRES = np.arange(-1, 25, dtype=float) + 0.5

PRESET_AMOUNTS_CNY = np.array([150.0, 200.0, 250.0, 300.0, 350.0])
PRESET_SHARE = 0.35


def mean_fill_l(diesel: bool, truck_share: float) -> float:
    """Expected litres per fill under the distributions above (for sizing tanks to their demand).

    Cars ≈ 36 L (round amounts of 150–350 CNY at ~7.5 CNY/L ≈ 33 L, fill-ups 38 L); trucks ≈ 172 L (the
    clipped log-normal's mean).
    """
    car = PRESET_SHARE * float(PRESET_AMOUNTS_CNY.mean()) / 7.5 + (1.0 - PRESET_SHARE) * 38.0
    return truck_share * 172.0 + (1.0 - truck_share) * car if diesel else car


def relative_rate(kind: str, local_hour: float) -> float:
    """Arrival rate at ``local_hour`` relative to the day's mean (piecewise linear between hour centres)."""
    w = PROFILES[kind]
    ext = np.concatenate(([w[-1]], w, [w[0]]))
    return float(np.interp(local_hour, _CENTRES, ext))


@dataclass(slots=True)
class CustomerDraws:
    """Every random number a block's customers need, drawn at once (cheap, and order-independent)."""

    t_arrive: np.ndarray
    u_grade: np.ndarray
    u_truck: np.ndarray
    u_pick: np.ndarray
    patience_s: np.ndarray
    u_preset: np.ndarray
    preset_cny: np.ndarray
    car_l: np.ndarray
    truck_l: np.ndarray
    car_flow_lpm: np.ndarray
    truck_flow_lpm: np.ndarray
    auth_s: np.ndarray
    hangup_s: np.ndarray
    gap_s: np.ndarray


def draw_customers(rng: np.random.Generator, b0: float, b1: float, expected: float) -> CustomerDraws:
    """Arrivals in [b0, b1) with ``expected`` mean count, and their per-customer random numbers.

    Three generator calls per block whatever the count (a numpy call costs far more than a number).
    """
    n = int(rng.poisson(expected)) if expected > 0 else 0
    u = rng.random((12, n))
    z = rng.standard_normal((2, n))
    return CustomerDraws(
        t_arrive=np.sort(b0 + u[0] * (b1 - b0)),
        u_grade=u[1],
        u_truck=u[2],
        u_pick=u[3],
        patience_s=60.0 + 240.0 * u[4],
        u_preset=u[5],
        preset_cny=PRESET_AMOUNTS_CNY[np.minimum((u[6] * len(PRESET_AMOUNTS_CNY)).astype(np.int64),
                                                 len(PRESET_AMOUNTS_CNY) - 1)],
        car_l=np.clip(38.0 + 9.0 * z[0], 20.0, 60.0),
        truck_l=np.clip(160.0 * np.exp(0.4 * z[1]), 100.0, 400.0),
        car_flow_lpm=30.0 + 10.0 * u[7],
        truck_flow_lpm=50.0 + 30.0 * u[8],
        auth_s=8.0 + 17.0 * u[9],
        hangup_s=3.0 + 7.0 * u[10],
        gap_s=20.0 + 40.0 * u[11],
    )
