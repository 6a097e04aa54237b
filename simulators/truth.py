"""Ground truth of a simulation: what really happened, for tests and for scoring the twin.

The twin never sees this. Volumes are litres at 20 °C unless named otherwise. Daily figures are split at
local midnight exactly (the simulator's physics blocks never straddle a local day), so a day's
``dispensed_l_20c`` is what left the tank that day even for a fill that ran over midnight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
class FaultRecord:
    """What one injected fault really did, for scoring detections against it.

    Filled in by the fault itself (``simulators.faults``) as the physics is generated. Like the rest of
    the truth, it covers every block generated, which can run up to one block (and the end of a fill
    under way) past the last event released: compare times with the run's end.
    """

    type: str
    station: str
    #: Tank or nozzle id, "" for the whole station.
    entity: str
    #: The fault's parameters, durations in seconds (``at`` is kept separately as ``at_ts``).
    params: dict[str, Any]
    #: When the fault was scheduled to start (absolute event time).
    at_ts: float
    #: First and last time the fault really had an effect (None: it never did). A scenario's deadlines
    #: count from ``first_active_ts``: a cheat switched on only at night is not late by day.
    first_active_ts: float | None = None
    last_active_ts: float | None = None
    #: Product (L at 20 °C) that left the tank because of the fault without the station's reports
    #: accounting for it: leak, theft, hidden fills; for meter bias what left beyond what a healthy meter
    #: would have let out (negative when customers get less than displayed).
    lost_l_20c: float = 0.0
    #: Displayed litres of fills that were never reported (hidden sales).
    hidden_l: float = 0.0
    #: Litres the fault touched: displayed litres of biased or hidden fills, a totalizer jump, the true
    #: volume of water that came in.
    affected_l: float = 0.0
    #: How many things it touched: fills, readings, dropped events, announcements, numbers skipped.
    count: int = 0
    #: Every entity that shows the fault (a swapped board shows on each nozzle it drives).
    entities: list[str] = field(default_factory=list)
    #: Type-specific figures (old and new board ids, totalizers before/after, the frozen level, …).
    details: dict[str, Any] = field(default_factory=dict)

    def touch(self, first_ts: float, last_ts: float | None = None) -> None:
        """Widen the active span to cover [first_ts, last_ts]."""
        last = first_ts if last_ts is None else last_ts
        if self.first_active_ts is None or first_ts < self.first_active_ts:
            self.first_active_ts = first_ts
        if self.last_active_ts is None or last > self.last_active_ts:
            self.last_active_ts = last

    def active_before(self, ts: float) -> bool:
        """Whether the fault had an effect before ``ts`` (e.g. the run's end)."""
        return self.first_active_ts is not None and self.first_active_ts < ts


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
    #: What each injected fault did, in the order the faults first acted on a station.
    faults: list[FaultRecord] = field(default_factory=list)
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
