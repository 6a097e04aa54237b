"""A station's vapor-recovery system and its online monitor (GB 20952-2020 §4.5), simulated.

What the monitor reports:

- per gasoline fill, the A/L the nozzle's vapor pump achieved, the litres dispensed and the vapor
  litres returned (``vapor.fill`` at the fill's end). A healthy nozzle has its own mean, drawn in
  1.04–1.16, and varies fill to fill (σ 0.03, more on small fills whose flow never settles):
  §5.3 asks 1.0–1.2, and a healthy system does keep it;
- every ``env_interval_s`` the system sample (``vapor.env``): the ullage pressure, the processing
  unit's state and outlet concentration, and the VOC leak sensor.

The pressure follows a small model, enough to be realistic about what the zero-pressure rule sees:
each fill returns (A/L − 1 + growth) × litres of gas to the tanks' shared ullage (the returned air
takes up vapor and swells, ``growth``), which raises the pressure by p_atm × ΔV / ullage; the
temperature's daily swing moves it up by day and down by night (the ullage relaxes towards a diurnal
target with time constant ``relax_s``); the processing unit starts at +150 Pa and stops at 30 Pa
(§4.6.1: starts at +150 Pa, stops at 0–50 Pa), drawing ``processor_pa_per_h``; the P/V valve caps
both ways. A sealed system thus never sits near zero for long; an unsealed one (``vapor_unsealed``)
does, which is what the rule is for.

Randomness comes from the station's own vapor generator (seeded apart from the station's), so turning
vapor on leaves every other event of the simulation unchanged. Faults act through ``vapor_fill`` and
``vapor_env`` methods (``simulators/vapor_faults.py``), called here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from twin.events import GASOLINE_GRADES
from twin.timeutil import local_hour

if TYPE_CHECKING:
    from simulators.hooks import FillPlan
    from simulators.station import StationSim

P_ATM_PA = 101_325.0


@dataclass(frozen=True, slots=True)
class VaporSimSettings:
    #: A system sample this often (s): minute data, as HJ 212 CN 2051 carries them.
    env_interval_s: float = 60.0
    #: Each nozzle's mean A/L is drawn uniform in this range.
    al_mean: tuple[float, float] = (1.04, 1.16)
    #: Fill-to-fill σ of A/L, plus this many litres / fill litres (small fills are noisier).
    al_sigma: float = 0.03
    al_sigma_litres: float = 0.15
    #: Returned gas swells by this share as it takes up vapor.
    growth: float = 0.12
    #: Shared ullage of the gasoline tanks (L).
    ullage_l: float = 40_000.0
    #: Amplitude range of the daily thermal pressure swing (Pa), and the time constant of the slow loss of
    #: gas from a sealed system (s).
    diurnal_pa: tuple[float, float] = (150.0, 300.0)
    leak_s: float = 12 * 3600.0
    #: Processing unit: start and stop pressures (§4.6.1) and how fast it draws the pressure down.
    processor_start_pa: float = 150.0
    processor_stop_pa: float = 30.0
    processor_pa_per_h: float = 1_500.0
    #: P/V valve: the pressure never goes beyond these (Pa).
    pv_pressure_pa: float = 800.0
    pv_vacuum_pa: float = -1_500.0
    #: Pressure sensor noise (Pa); outlet concentration median (g/m³); VOC sensor background median.
    sensor_sigma_pa: float = 5.0
    outlet_median_g_m3: float = 6.0
    voc_median_umol: float = 60.0


@dataclass(slots=True)
class EnvState:
    """One system sample as it will be reported; faults may change it (``vapor_env``)."""

    ts: float
    pressure: float
    processor_fitted: bool
    processor_on: bool
    outlet_g_m3: float | None
    voc_umol_mol: float | None
    processor_fault: bool = False
    #: An unsealed system vents to the air: the pressure is what the fault says, and no gas builds up.
    vented_pa: float | None = None


class VaporSim:
    def __init__(self, station_id: str, nozzle_ids: list[str], nozzle_grades: list[str],
                 rng: np.random.Generator, start_ts: float, settings: VaporSimSettings | None = None):
        s = self.s = settings or VaporSimSettings()
        self.station = station_id
        self.rng = rng
        self.source = f"sim:{station_id}:vapor"
        self.seq = 0
        self.gasoline = [g in GASOLINE_GRADES for g in nozzle_grades]
        self.nozzle_ids = nozzle_ids
        self.al_mean = rng.uniform(*s.al_mean, len(nozzle_ids)).tolist()
        self.diurnal = float(rng.uniform(*s.diurnal_pa))
        self.phase_h = float(rng.uniform(13.0, 16.0))  # warmest hour of the ullage
        self.gas = float(rng.uniform(0.0, 150.0))
        self.running = False
        self.start_ts = start_ts
        self._next = 0
        self._last_t = start_ts
        #: Gas volume returned by fills (end_ts, litres), not yet in a sample.
        self._returned: list[tuple[float, float]] = []
        #: Faults with vapor_fill / vapor_env methods (registered by the faults themselves).
        self.faults: list[Any] = []

    # ---- fills -----------------------------------------------------------------------------------

    def fill(self, station: StationSim, plan: FillPlan) -> None:
        k = plan.nozzle
        if not self.gasoline[k]:
            return
        s = self.s
        litres = plan.displayed_l
        sigma = s.al_sigma + s.al_sigma_litres / max(litres, 1.0)
        a_l = self.al_mean[k] + sigma * float(self.rng.standard_normal())
        for fault in self.faults:
            a_l = fault.vapor_fill(plan.end_ts, k, a_l, litres)
        a_l = round(min(max(a_l, 0.0), 5.0), 3)
        self._returned.append((plan.end_ts, (a_l - 1.0 + s.growth) * litres))
        station.pending.append({
            "ts": plan.end_ts, "station": self.station, "entity": self.nozzle_ids[k], "kind": "vapor.fill",
            "source": self.source, "seq": self._take(), "quality": "good", "a_l": a_l,
            "liquid_l": litres, "vapor_l": round(a_l * litres, 2), "fill_start_ts": plan.start_ts,
            "fill_end_ts": plan.end_ts})

    def _take(self) -> int:
        seq = self.seq
        self.seq += 1
        return seq

    # ---- system samples --------------------------------------------------------------------------

    def block(self, station: StationSim, b0: float, b1: float) -> None:
        """Every system sample due in [b0, b1), from fills that ended before each sample."""
        s = self.s
        step = s.env_interval_s
        rng = self.rng
        while True:
            t = self.start_ts + self._next * step
            if t >= b1:
                return
            self._next += 1
            dt = max(t - self._last_t, 0.0)
            self._last_t = t
            returned = 0.0
            keep = []
            for end, litres in self._returned:
                if end <= t:
                    returned += litres
                else:
                    keep.append((end, litres))
            self._returned = keep
            # Gas in the ullage (returned by fills, lost slowly, drawn off by the unit) plus the daily
            # thermal swing of the ullage's temperature.
            gas = (self.gas + P_ATM_PA * returned / s.ullage_l) * math.exp(-dt / s.leak_s)
            thermal = self.diurnal * math.sin(2 * math.pi * (local_hour(t) - self.phase_h + 6.0) / 24.0)
            state = EnvState(t, gas + thermal, True, self.running or gas + thermal >= s.processor_start_pa,
                             None, None)
            for fault in self.faults:
                fault.vapor_env(state)
            if state.vented_pa is not None:
                gas, p = 0.0, state.vented_pa
                state.processor_on = False
            else:
                if state.processor_on and not state.processor_fault:
                    gas -= s.processor_pa_per_h * dt / 3600.0
                    if gas + thermal <= s.processor_stop_pa:
                        state.processor_on = False
                p = min(max(gas + thermal, s.pv_vacuum_pa), s.pv_pressure_pa)
                gas = p - thermal
            self.gas = gas
            self.running = state.processor_on
            reported = round(p + s.sensor_sigma_pa * float(rng.standard_normal()), 1)
            outlet = None
            if state.processor_on and not state.processor_fault:
                outlet = round(float(s.outlet_median_g_m3 * math.exp(0.3 * rng.standard_normal())), 2)
            voc = state.voc_umol_mol
            if voc is None:
                voc = round(float(s.voc_median_umol * math.exp(0.4 * rng.standard_normal())), 1)
            proc = ("fault" if state.processor_fault else "running" if state.processor_on else "stopped"
                    ) if state.processor_fitted else "absent"
            station.pending.append({
                "ts": t, "station": self.station, "entity": "", "kind": "vapor.env", "source": self.source,
                "seq": self._take(), "quality": "good", "pressure_pa": reported, "processor_state": proc,
                "outlet_g_m3": outlet, "voc_umol_mol": voc})
