"""Where faults plug into a simulated station (the faults themselves come with the fault scenarios).

A station steps its physics in blocks; in each block it calls every attached fault at exactly these
points, in this order, and nowhere else:

1. :meth:`StationFault.on_block` at the start of the block: may add true flows (a leak is a steady
   negative flow, a theft a short one, an unrecorded delivery a positive one) and may change the
   station's true water bottoms (``station.water_mm``).
2. :meth:`StationFault.on_fill` for each fill as it is planned: may change what the meter displays
   against what leaves the tank (meter bias switched on and off), or suppress its events (hidden sales).
3. :meth:`StationFault.on_gauge` on the block's gauge outputs: may change levels, temperatures and water
   (stuck or drifting gauge) or mark readings as not sent.
4. :meth:`StationFault.on_events` on every event the block emitted: may drop or alter them (comm loss).

Faults get the station itself as first argument, to read its state (time, tank volumes, ids); they
must draw random numbers from their own generator so that attaching one does not change the rest of
the simulation. A fault that makes a device say something new (a swapped mainboard announcing itself)
gets the event from :meth:`StationSim.nozzle_event`, which numbers it in the device's sequence, and
places it in the block's events in :meth:`StationFault.on_events`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from simulators.station import StationSim

#: Kinds of true flow, as recorded in the ground truth.
DISPENSED, RECEIVED, OTHER = 0, 1, 2


class Flow(NamedTuple):
    """Product moving into (+) or out of (−) one tank at a constant rate over [start_ts, end_ts]."""

    tank: int
    start_ts: float
    end_ts: float
    volume_l_20c: float
    kind: int = OTHER
    #: Temperature of product flowing in (°C); ignored for outflows.
    temp_c: float = 0.0


@dataclass(slots=True)
class FillPlan:
    """One fill as the station is about to emit it; faults may change any field."""

    nozzle: int
    tank: int
    grade: str
    lift_ts: float
    start_ts: float
    end_ts: float
    idle_ts: float
    #: What the meter shows (L, 0.01 L resolution) and what it bills.
    displayed_l: float
    amount_cny: float
    unit_price: float
    #: Meter factor 1 + e: what really leaves the tank is displayed_l / meter_factor (at tank temperature).
    meter_factor: float
    #: What really leaves the tank, litres at 20 °C (set by the station from the fields above).
    true_l_20c: float = 0.0
    emit_states: bool = True
    emit_txn: bool = True
    #: False: the station's own software leaves the fill out of the nozzle's totalizers and transaction
    #: numbering (hidden sales, 藏销). With ``emit_txn`` False but this True, the transaction is merely lost
    #: on the way and the totalizers still show it, which is how the twin can book lost data.
    advance_counters: bool = True


@dataclass(slots=True)
class GaugeFrame:
    """The gauge outputs of one block: arrays of shape (tanks, readings); ``send`` False drops one."""

    ts: np.ndarray
    level_mm: np.ndarray
    water_mm: np.ndarray
    temp_c: np.ndarray
    send: np.ndarray


class StationFault:
    """Base class: every hook is a no-op; a fault overrides the ones it needs."""

    def on_block(self, station: StationSim, b0: float, b1: float) -> list[Flow]:
        return []

    def on_fill(self, station: StationSim, fill: FillPlan) -> None:
        return None

    def on_gauge(self, station: StationSim, frame: GaugeFrame) -> None:
        return None

    def on_events(self, station: StationSim, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return events
