"""The twin's comparison: what a tank holds against what its books say it should hold.

Observed net volume at 20 °C comes from the gauge through the declared chart and the volume correction
(GB/T 1885 reference temperature). Expected volume is book inventory: the observed volume at an anchor,
plus deliveries recognised since, minus metered sales since (converted to 20 °C at the tank's
temperature), minus what nozzles are dispensing right now — as of the gauge reading's own time (a
controller reports a running fill every few seconds; :meth:`TankBook.lag_l`). Divergence = observed −
expected; on a healthy tank it is noise, and every fault of DESIGN.md 'The twin's comparison' shows as
a shape in it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from twin.physics import Product, TankGeometry, vcf


@dataclass(slots=True)
class TankBook:
    """Book inventory of one tank, all volumes in litres at 20 °C."""

    geometry: TankGeometry
    density_20c: float
    product: Product
    anchor_ts: float | None = None
    anchor_l: float = 0.0
    receipts_l: float = 0.0
    sales_l: float = 0.0
    in_progress: dict[str, float] = field(default_factory=dict)
    in_progress_l: float = 0.0
    #: nozzle -> (time of its last running update, litres then, litres/s since the update before, the
    #: seconds between the two) for each fill still flowing: what :meth:`lag_l` extrapolates.
    flowing: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    #: Time of the last gauge reading (:meth:`observe`): the moment :attr:`expected_l` is for.
    observed_ts: float = math.nan
    temp_c: float = 20.0
    observed_l: float = math.nan
    gross_l: float = math.nan
    # Memo of the last water level and temperature: both change slowly, and their volume and
    # correction factor are a third of the cost of a reading.
    _water_mm: float = math.nan
    _water_l: float = 0.0
    _vcf_temp: float = math.nan
    _vcf: float = 1.0

    def observe(self, ts: float, level_mm: float, water_mm: float, temp_c: float) -> float:
        """Net product volume at 20 °C from one gauge reading; the water below it is not product."""
        if water_mm != self._water_mm:
            self._water_mm = water_mm
            self._water_l = float(self.geometry.volume_l(water_mm))
        if temp_c != self._vcf_temp:
            self._vcf_temp = temp_c
            self._vcf = float(vcf(temp_c, self.density_20c, self.product))
        gross = max(float(self.geometry.volume_l(level_mm)) - self._water_l, 0.0)
        self.observed_ts = ts
        self.temp_c = temp_c
        self.gross_l = gross
        self.observed_l = gross * self._vcf
        if self.anchor_ts is None:
            self.reanchor(self.observed_l, ts)
        return self.observed_l

    def reanchor(self, volume_l: float, ts: float) -> None:
        """Start the books again from a measured volume (first reading, or after a gauge repair)."""
        self.anchor_ts = ts
        self.anchor_l = volume_l
        self.receipts_l = 0.0
        self.sales_l = 0.0

    def to_20c(self, volume_l: float) -> float:
        """Dispensers meter at the fuel's temperature, which is the tank's within a degree."""
        if self.temp_c != self._vcf_temp:
            self._vcf_temp = self.temp_c
            self._vcf = float(vcf(self.temp_c, self.density_20c, self.product))
        return volume_l * self._vcf

    def book_sale(self, nozzle: str, volume_l: float) -> float:
        self.in_progress_l -= self.in_progress.pop(nozzle, 0.0)
        self.flowing.pop(nozzle, None)
        sale = self.to_20c(volume_l)
        self.sales_l += sale
        return sale

    def book_unseen(self, volume_l: float) -> float:
        """Litres a totalizer says were sold in transactions we never received (lost data)."""
        sale = self.to_20c(volume_l)
        self.sales_l += sale
        return sale

    def running(self, nozzle: str, volume_l: float, ts: float, flowing: bool) -> None:
        """A fill under way: the tank has already lost what the nozzle shows so far. ``flowing``: the
        nozzle reports fuel running (not a fill just finished), so its rate can be carried forward."""
        self.in_progress_l -= self.in_progress.pop(nozzle, 0.0)
        last = self.flowing.pop(nozzle, None)
        if flowing:
            rate = span = 0.0
            if last is not None and ts > last[0] and volume_l >= last[1]:
                span = ts - last[0]
                rate = (volume_l - last[1]) / span
            self.flowing[nozzle] = (ts, volume_l, rate, span)
        if volume_l > 0:
            now = self.to_20c(volume_l)
            self.in_progress[nozzle] = now
            self.in_progress_l += now
        if not self.in_progress:
            self.in_progress_l = 0.0  # no float residue once every fill is booked

    def book_receipt(self, volume_l: float) -> None:
        self.receipts_l += volume_l

    def lag_l(self, ts: float) -> float:
        """Litres at 20 °C the flowing fills have dispensed between their last running update and
        ``ts``, at the rate of their last update interval and for at most one such interval.

        The gauge reads the tank at its own moment; the forecourt controller last reported each running
        fill up to an update interval before (10 s in the simulator), so the tank has already lost
        a few litres more than the books show: half an interval at full flow on average, ~7 L for a
        truck nozzle at 80 L/min. That lag follows how many fills run, which follows the hour; on a tank
        refilled several times a day it correlated with the time since each delivery, and the
        wetstock fit read it as a steady gain (measured: 5 SENSOR_DRIFT in 30 tank-months of
        healthy-turnover-30d, 7 with exact charts and meters, 0 with the lag carried forward).
        The cap keeps a fill that stopped without a word from running on."""
        lag = 0.0
        for t, _, rate, span in self.flowing.values():
            if rate > 0.0 and ts > t:
                lag += rate * min(ts - t, span)
        return self.to_20c(lag) if lag else 0.0

    @property
    def expected_l(self) -> float:
        """Book inventory at the last reading's time (:attr:`observed_ts`)."""
        expected = self.anchor_l + self.receipts_l - self.sales_l - self.in_progress_l
        return expected - self.lag_l(self.observed_ts) if self.flowing else expected

    @property
    def divergence_l(self) -> float:
        return self.observed_l - self.expected_l

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        """Restore a pickled book, also one from before :attr:`flowing` and :attr:`observed_ts`."""
        _, slots = state  # object.__getstate__ of a class with __slots__: (None, {slot: value})
        self.flowing, self.observed_ts = {}, math.nan
        for name, value in slots.items():
            setattr(self, name, value)
