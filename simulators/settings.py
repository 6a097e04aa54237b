"""Noise and timing settings of the simulator: every figure a scenario may want to vary, in one place.

Defaults are the healthy-station figures the twin must live with (DOMAIN.md): a magnetostrictive gauge
is good to a fraction of a millimetre, and a legal dispenser meter errs by at most ±0.3 % (JJG 443).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NoiseSettings:
    #: Standard deviation of the gauge's level reading around the true level (mm). Probes resolve
    #: ~0.025 mm, but wave, foam and thermal gradients make half a millimetre a realistic scatter.
    gauge_sigma_mm: float = 0.5
    #: The gauge reports level and water to this resolution (mm).
    gauge_resolution_mm: float = 0.1
    #: Thermistor noise (°C); DOMAIN.md: probes read temperature to 0.05 °C.
    temp_sigma_c: float = 0.05
    #: Reported temperature resolution (°C).
    temp_resolution_c: float = 0.01
    #: Each nozzle's meter error is drawn uniform in ±this (%); the legal limit is ±0.3 % (JJG 443).
    meter_error_pct: float = 0.25


@dataclass(frozen=True, slots=True)
class Timing:
    """Event-time cadence of the simulated sources."""

    #: Every tank of a station is read at once, this often (s).
    reading_interval_s: float = 10.0
    #: Each station's clock.tick watermark, this often (s).
    tick_interval_s: float = 60.0
    #: The physics is stepped in blocks of this length (s), aligned on local midnight. Longer blocks
    #: amortise numpy's per-call cost over more readings; events are still released only up to the
    #: requested time, so the block length never shows in the output (it must divide a day).
    block_s: float = 600.0
    #: When set, a fuelling nozzle reports its running volume this often (s), as forecourt controllers
    #: do; the twin then books the tank's loss while the fill is under way. None: only the four states.
    running_update_s: float | None = None
    #: Keep the true tank state of every n-th reading in the ground truth (1 = all; raise it for
    #: week-long runs, ~32 bytes per tank reading). None keeps none: for a feed that runs indefinitely
    #: and never scores (the demo, ``simulate serve``), where the series only grew — about 1.4 MB a
    #: station and day at 10-s readings (bench/memory.py).
    truth_every: int | None = 1

    def __post_init__(self) -> None:
        if self.reading_interval_s <= 0 or self.tick_interval_s <= 0:
            raise ValueError("reading_interval_s and tick_interval_s must be > 0")
        if self.block_s <= 0 or 86_400 % self.block_s:
            raise ValueError(f"block_s={self.block_s} must divide a day (86400 s)")
        if self.running_update_s is not None and self.running_update_s <= 0:
            raise ValueError("running_update_s must be > 0 or None")
        if self.truth_every is not None and self.truth_every < 1:
            raise ValueError("truth_every must be >= 1 or None")
