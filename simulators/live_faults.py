"""Faults a tester injects into the running demo, from the station page or the API.

A scenario file fixes its faults before the run; a person showing or testing the platform wants to pick
a station, open a valve or tamper with a meter now, and watch the twin find it. This wraps the running
:class:`~simulators.feed.DistrictSimulator` of ``fueltwin demo``: a fault is written as an item of a
scenario's ``faults:`` list (the same parser, the same checks, the same messages), its ``at`` counted
from the simulator's present instead of a scenario's start (``0s`` when left out), and attached to its
station, where it acts from the next physics block the station generates (at most one block, 10
simulated minutes, later; the record's ``first_active_ts`` says when it really began).

Not every type can start in a running district: ``capacity_misreport`` is a lie in the registry the
twin was configured with at its start, and the vapor-recovery faults need the stations' vapor monitors
(``fueltwin demo --vapor``). Those are refused with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from simulators.faults import _REQUIRED, FAULT_TYPES, ScenarioFault, build_fault, check_fault
from simulators.vapor_faults import VAPOR_FAULTS
from twin.events import GASOLINE_GRADES

if TYPE_CHECKING:
    from simulators.feed import DistrictSimulator

#: Types that act through the stations' vapor-recovery monitors.
VAPOR_TYPES = frozenset(cls.TYPE for cls in VAPOR_FAULTS)
#: Types that change what the twin was configured with, so they cannot begin in a running district.
AT_START_ONLY = {"capacity_misreport": "it misdeclares a tank in the registry the twin starts with: "
                                       "put it in a scenario file instead"}
#: Values the station page offers first: large enough to be seen within a demo's hour or day, each a
#: plain scenario parameter a tester can change (the issue's detection targets are far smaller). A theft
#: is slower than a nozzle (5 L/min): taken at a pump's speed the twin reads it as a fill nobody
#: recorded (HIDDEN_SALES), as the README's detection table says. Water at 100 mm a day: at 500 a tank
#: floods within days and the books misread its deliveries (seen in scenarios/demo-showcase.yaml).
EXAMPLES: dict[str, dict[str, Any]] = {
    "leak": {"rate_lph": 20}, "theft": {"volume_l": 150, "duration": "30m"},
    "meter_bias": {"factor": 0.97}, "hidden_sales": {"fraction": 0.1},
    "totalizer_jump": {"litres": 500}, "txn_gap": {"count": 5}, "mainboard_swap": {},
    "sensor_stuck": {"for": "2h"}, "sensor_drift": {"mm_per_day": 30}, "comm_loss": {"for": "30m"},
    "water_ingress": {"mm_per_day": 100}, "delivery_without_po": {"volume_l": 6000},
    "po_without_delivery": {"volume_l": 10000}, "underdeclared_sales": {"fraction": 0.1},
    "invoice_inflation": {"fraction": 0.1}, "price_dumping": {"factor": 0.8},
    "hidden_tank": {"volume_l": 8000}, "vapor_blockage": {"a_l": 0.4}, "vapor_unsealed": {},
    "processor_off": {}, "voc_leak": {"umol_per_mol": 9000},
}


class LiveFaults:
    """The demo's injected faults: the catalogue offered, injection, and what each really did."""

    def __init__(self, sim: DistrictSimulator, seed: int) -> None:
        self.sim = sim
        self.seed = seed
        self.vapor = any(st.vapor is not None for st in sim.stations)
        self.faults: list[ScenarioFault] = []

    @property
    def now(self) -> float:
        """The simulated present (event time the district has reached)."""
        return self.sim.now

    def refusal(self, fault_type: str) -> str | None:
        """Why a known type cannot be injected here (None: it can)."""
        if fault_type in AT_START_ONLY:
            return AT_START_ONLY[fault_type]
        if fault_type in VAPOR_TYPES and not self.vapor:
            return "the demo's stations have no vapor-recovery monitors: start it with --vapor"
        return None

    def catalogue(self) -> list[dict[str, Any]]:
        """Every type that can start now: what it acts on, its parameters, values to begin with."""
        out = []
        for name, cls in sorted(FAULT_TYPES.items()):
            if self.refusal(name) is not None:
                continue
            params = [{"name": p, "required": spec.default is _REQUIRED,
                       "default": None if spec.default is _REQUIRED else spec.default, "help": spec.help}
                      for p, spec in cls.PARAMS.items()]
            out.append({"type": name, "entity": cls.ENTITY, "params": params,
                        "example": EXAMPLES.get(name, {}),
                        # vapor recovery is a gasoline matter (GB 20952): its nozzles only
                        "grades": sorted(GASOLINE_GRADES) if name in VAPOR_TYPES else None})
        return out

    def inject(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Attach one fault (a scenario ``faults:`` item, ``at`` from now); ValueError says what is wrong."""
        if not isinstance(spec, Mapping):
            raise ValueError(f"a fault is a mapping such as {{type: leak, station: BH-0001, tank: T1, "
                             f"rate_lph: 20}}, got {spec!r}")
        item = {"at": "0s", **spec}
        reason = self.refusal(str(item.get("type")))
        if reason is not None:
            raise ValueError(f"{item.get('type')} cannot be injected into a running demo: {reason}")
        check_fault(item, self.sim.sim_district)
        # Each fault draws from its own generator (the seed mixed with its type, entity and time).
        station, fault = build_fault(item, self.sim.now, self.seed)
        # Bound to its station now, so the checks that need the station itself (a vapor fault on a
        # diesel nozzle) refuse it here, not inside the running simulation, which they would stop.
        fault.bind(self.sim.station(station))
        self.sim.add_fault(station, fault)
        self.faults.append(fault)
        return self.describe(len(self.faults) - 1)

    def describe(self, index: int) -> dict[str, Any]:
        """A fault as injected and, from the simulator's truth, what it has done so far."""
        f = self.faults[index]
        r = f.record
        return {"id": index + 1, "type": f.TYPE, "station": f.station_id, "entity": f.entity,
                "entity_kind": f.entity_kind, "params": dict(r.params), "at_ts": f.at,
                "first_active_ts": r.first_active_ts, "last_active_ts": r.last_active_ts,
                "lost_l_20c": round(r.lost_l_20c, 1),
                "affected_l": round(r.affected_l, 1), "count": r.count, "entities": list(r.entities)}

    def injected(self, station: str | None = None) -> list[dict[str, Any]]:
        return [self.describe(i) for i, f in enumerate(self.faults) if station in (None, f.station_id)]
