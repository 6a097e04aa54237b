"""The temperature of buried fuel: it follows the ground, slowly.

An underground tank's fuel relaxes towards the temperature of the soil around it with a time constant
of days, and the soil at tank depth (1–3 m) follows the seasons with a damped, delayed swing. Tianjin's
air averages ~12.9 °C with January ≈ −3 °C and July ≈ 27 °C; at ~1.5 m depth the annual swing is
roughly halved and lags by about a month, so the ground here runs from ~5.5 °C in mid-February to
~23.5 °C in mid-August (an estimate, not a measurement). A small diurnal swing stands for the fill pipes
and the shallow part of the backfill.
"""

from __future__ import annotations

import math

_YEAR_S = 365.2422 * 86_400.0
#: 2000-01-01T00:00:00Z, the origin of the day-of-year phase below.
_EPOCH_2000 = 946_684_800.0
GROUND_MEAN_C = 14.5
GROUND_AMPLITUDE_C = 9.0
#: Day of year of the coldest ground (≈ 14 February).
GROUND_COLDEST_DOY = 45.0
DIURNAL_AMPLITUDE_C = 0.3
#: Local hour of the diurnal maximum.
DIURNAL_PEAK_HOUR = 15.0


def ground_temp_c(ts: float) -> float:
    """Ground temperature (°C) at tank depth at event time ``ts`` (UTC epoch seconds)."""
    doy = ((ts - _EPOCH_2000) % _YEAR_S) / 86_400.0
    phase = 2.0 * math.pi * (doy - GROUND_COLDEST_DOY) / 365.2422
    seasonal = GROUND_MEAN_C - GROUND_AMPLITUDE_C * math.cos(phase)
    hour = ((ts + 8 * 3600.0) % 86_400.0) / 3600.0  # Asia/Shanghai, UTC+8 without DST
    return seasonal + DIURNAL_AMPLITUDE_C * math.cos(2.0 * math.pi * (hour - DIURNAL_PEAK_HOUR) / 24.0)
