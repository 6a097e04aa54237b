"""Ground truth of a simulation: what really happened, for tests and for scoring the twin.

The twin never sees this. Volumes are litres at 20 °C unless named otherwise. Daily figures are split at
local midnight exactly (the simulator's physics blocks never straddle a local day), so a day's
``dispensed_l_20c`` is what left the tank that day even for a fill that ran over midnight.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(slots=True)
class TrueDelivery:
    station: str
    tank: str
    grade: str
    po_no: str
    po_ts: float
    #: When product started and stopped flowing into the tank (planned at PO time; may lie beyond the
    #: simulated range).
    start_ts: float
    end_ts: float
    #: What really went into the tank, and what the PO (depot meter) says.
    volume_l_20c: float
    po_volume_l_20c: float
    temp_in_c: float


@dataclass(slots=True)
class TankDay:
    """One tank's true flows over one local day."""

    dispensed_l_20c: float = 0.0
    received_l_20c: float = 0.0
    #: Anything else that changed the true stock (leaks, theft: faults), signed.
    other_l_20c: float = 0.0
    #: Sum of displayed volumes of the transactions that ended that day, and their count.
    displayed_l: float = 0.0
    fills: int = 0


@dataclass(slots=True)
class TankSeries:
    ts: np.ndarray
    net_l_20c: np.ndarray
    level_mm: np.ndarray
    temp_c: np.ndarray
    water_mm: np.ndarray


@dataclass
class GroundTruth:
    #: Meter error e of each nozzle: displayed = true × (1 + e).
    meter_error: dict[tuple[str, str], float] = field(default_factory=dict)
    deliveries: list[TrueDelivery] = field(default_factory=list)
    #: (station, tank, local day 'YYYY-MM-DD') -> flows of that day.
    days: dict[tuple[str, str, str], TankDay] = field(default_factory=dict)
    #: Customers who left because no nozzle of their grade was free in time (or the tank was dry).
    balked: dict[str, int] = field(default_factory=dict)
    _chunks: dict[str, list[tuple[np.ndarray, ...]]] = field(default_factory=dict, repr=False)
    _tank_index: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)

    def register_station(self, station: str, tank_ids: list[str]) -> None:
        self._chunks.setdefault(station, [])
        for i, t in enumerate(tank_ids):
            self._tank_index[(station, t)] = i

    def record_readings(self, station: str, ts: np.ndarray, net: np.ndarray, level: np.ndarray,
                        temp: np.ndarray, water: np.ndarray) -> None:
        """True state of every tank of a station at reading times: arrays (n,) and (tanks, n)."""
        self._chunks[station].append((ts, net, level, temp, water))

    def tank_series(self, station: str, tank: str) -> TankSeries:
        """The recorded true state of one tank, oldest first."""
        i = self._tank_index[(station, tank)]
        chunks = self._chunks.get(station, [])
        if not chunks:
            empty = np.empty(0)
            return TankSeries(empty, empty, empty, empty, empty)
        return TankSeries(np.concatenate([c[0] for c in chunks]),
                          *(np.concatenate([c[k][i] for c in chunks]) for k in range(1, 5)))

    def day(self, station: str, tank: str, day: str) -> TankDay:
        key = (station, tank, day)
        entry = self.days.get(key)
        if entry is None:
            entry = self.days[key] = TankDay()
        return entry

    def dispensed_l_20c(self, station: str, tank: str, day: str) -> float:
        entry = self.days.get((station, tank, day))
        return entry.dispensed_l_20c if entry else 0.0
