"""Vapor-recovery faults a scenario injects (issue 6), acting through the station's vapor system.

Each registers itself with the station's :class:`~simulators.vapor.VaporSim` when the station first
calls it, and from then on changes what the vapor system does (``vapor_fill`` for each gasoline fill,
``vapor_env`` for each system sample). Like every scenario fault they draw only from their own
generator and change nothing before they are active. A station with no vapor data (the simulator's
``vapor`` off) cannot take one: the runner turns vapor on for a scenario that lists such a fault.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulators.faults import _FOR, _REQUIRED, ScenarioFault, _Param, _positive

if TYPE_CHECKING:
    from simulators.station import StationSim
    from simulators.vapor import EnvState

__all__ = ["VAPOR_FAULTS", "ProcessorOff", "VaporBlockage", "VaporUnsealed", "VocLeak"]


class _VaporFault(ScenarioFault):
    def _setup(self, station: StationSim) -> None:
        vapor = getattr(station, "vapor", None)
        if vapor is None:
            raise ValueError(f"{self.label}: station {station.id} sends no vapor data; run the simulator "
                             "with vapor on (a scenario turns it on when it lists a vapor fault)")
        vapor.faults.append(self)
        self.vapor = vapor

    def vapor_fill(self, ts: float, nozzle: int, a_l: float, litres: float) -> float:
        return a_l

    def vapor_env(self, state: EnvState) -> None:
        return None


class VaporBlockage(_VaporFault):
    """The nozzle's vapor path is blocked (a kinked hose, a failed vapor pump): every fill ending while
    active has its A/L centred on ``a_l`` instead of the nozzle's healthy mean, with the same fill-to-fill
    scatter. A/L moves away from normal; below 0.6 (or above 1.5) it is an alarm within a day, in
    0.6–0.9 a warning at each day's close and an alarm after 7 (GB 20952-2020 E.3.3)."""

    TYPE = "vapor_blockage"
    ENTITY = "nozzle"
    PARAMS = {"a_l": _Param(_positive, _REQUIRED, "the A/L the nozzle moves to, e.g. 0.5 (normal 1.0–1.2)"),
              "for": _FOR}

    def _setup(self, station: StationSim) -> None:
        super()._setup(station)
        if not self.vapor.gasoline[self.index]:
            grade = station.nz_grade[self.index]
            raise ValueError(f"{self.label}: nozzle {self.entity} sells {grade}, which has no vapor recovery "
                             "(GB 20952 covers gasoline); pick a gasoline nozzle")

    def vapor_fill(self, ts: float, nozzle: int, a_l: float, litres: float) -> float:
        if nozzle != self.index or not self.active(ts):
            return a_l
        self.record.count += 1
        self.record.affected_l += litres
        self.record.touch(ts)
        return self.params["a_l"] + (a_l - self.vapor.al_mean[nozzle])


class VaporUnsealed(_VaporFault):
    """The system is open to the air (a P/V valve stuck open, a cap off): the pressure stays within a few
    pascal of zero (σ 8 Pa) and the processing unit never starts. E.3.3: more than 12 h near zero in a
    day is a warning, 7 such days an alarm."""

    TYPE = "vapor_unsealed"
    ENTITY = "station"
    PARAMS = {"for": _FOR}

    def vapor_env(self, state: EnvState) -> None:
        if not self.active(state.ts):
            return
        state.vented_pa = 8.0 * float(self.rng.standard_normal())
        self.record.count += 1
        self.record.touch(state.ts)


class ProcessorOff(_VaporFault):
    """The processing unit is switched off: it reports ``stopped`` and draws nothing, so the pressure
    builds up past its +150 Pa start point (§4.6.1) until the P/V valve vents."""

    TYPE = "processor_off"
    ENTITY = "station"
    PARAMS = {"for": _FOR}

    def vapor_env(self, state: EnvState) -> None:
        if not self.active(state.ts):
            return
        state.processor_on = False
        self.record.count += 1
        self.record.touch(state.ts)


class VocLeak(_VaporFault):
    """A leak near the VOC sensor: it reads ``umol_per_mol`` (± 5 %) while active. E.3.3: ≥ 4,000 µmol/mol
    is a warning, ≥ 8,000 an alarm at once."""

    TYPE = "voc_leak"
    ENTITY = "station"
    PARAMS = {"umol_per_mol": _Param(_positive, _REQUIRED, "what the sensor reads, µmol/mol, e.g. 9000"),
              "for": _FOR}

    def vapor_env(self, state: EnvState) -> None:
        if not self.active(state.ts):
            return
        scatter = 1.0 + 0.05 * float(self.rng.standard_normal())
        state.voc_umol_mol = round(self.params["umol_per_mol"] * scatter, 1)
        self.record.count += 1
        self.record.touch(state.ts)


VAPOR_FAULTS: tuple[type[ScenarioFault], ...] = (VaporBlockage, VaporUnsealed, ProcessorOff, VocLeak)
