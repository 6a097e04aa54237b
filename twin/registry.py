"""What the district's stations are: tanks, nozzles, where they stand, what they declared.

The registry is configuration, not measurement: a station's *declared* tank charts and capacities live
here, and the twin holds them against what it observes. Specs are validated on load so that a mistake
in a station file is an error at start-up with the file's own words, not a wrong number weeks later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from twin.events import DIESEL_GRADES, GRADES, EntityDirectory
from twin.physics import TankGeometry, geometry_from_spec

#: Typical densities at 20 °C (kg/m³) when no delivery document has told us better: gasoline
#: 720–775 and diesel 810–845 are the limits of GB 17930-2016 and GB 19147-2016.
DEFAULT_DENSITY_20C = {"92#": 737.0, "95#": 742.0, "98#": 748.0, "0#": 835.0, "-10#": 830.0,
                       "-20#": 825.0, "-35#": 820.0}


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TankSpec(_Spec):
    id: str = Field(min_length=1, max_length=64)
    grade: str
    declared_capacity_l: float = Field(gt=0)
    chart: dict[str, Any] = Field(description="declared geometry or strapping table (twin.physics spec)")
    density_20c: float | None = Field(default=None, ge=600, le=1000)
    safe_fill_pct: float = Field(default=95.0, gt=0, le=100)
    water_limit_mm: float = Field(default=50.0, ge=0)

    @field_validator("grade")
    @classmethod
    def _known_grade(cls, v: str) -> str:
        if v not in GRADES:
            raise ValueError(f"unknown grade {v!r}")
        return v

    @field_validator("chart")
    @classmethod
    def _valid_chart(cls, v: dict[str, Any]) -> dict[str, Any]:
        geometry_from_spec(v)  # raises ValueError with the reason
        return v

    @property
    def density(self) -> float:
        return self.density_20c if self.density_20c is not None else DEFAULT_DENSITY_20C[self.grade]

    @property
    def product(self) -> str:
        return "diesel" if self.grade in DIESEL_GRADES else "gasoline"

    def geometry(self) -> TankGeometry:
        return geometry_from_spec(self.chart)


class NozzleSpec(_Spec):
    id: str = Field(min_length=1, max_length=64)
    tank: str
    grade: str
    dispenser: str = ""


class StationSpec(_Spec):
    id: str = Field(min_length=1, max_length=64)
    name: str
    region: str
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    address: str = ""
    tanks: tuple[TankSpec, ...] = Field(min_length=1)
    nozzles: tuple[NozzleSpec, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> StationSpec:
        tank_ids = [t.id for t in self.tanks]
        if len(set(tank_ids)) != len(tank_ids):
            raise ValueError(f"station {self.id}: duplicate tank ids")
        nozzle_ids = [n.id for n in self.nozzles]
        if len(set(nozzle_ids)) != len(nozzle_ids):
            raise ValueError(f"station {self.id}: duplicate nozzle ids")
        grades = {t.id: t.grade for t in self.tanks}
        for n in self.nozzles:
            if n.tank not in grades:
                raise ValueError(f"station {self.id}: nozzle {n.id} draws from unknown tank {n.tank!r}")
            if grades[n.tank] != n.grade:
                raise ValueError(f"station {self.id}: nozzle {n.id} sells {n.grade} "
                                 f"but tank {n.tank} holds {grades[n.tank]}")
        return self

    def tank(self, tank_id: str) -> TankSpec:
        return next(t for t in self.tanks if t.id == tank_id)


class District(_Spec):
    name: str = "滨海新区"
    timezone: str = "Asia/Shanghai"
    stations: tuple[StationSpec, ...]
    _by_id: dict[str, StationSpec] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _unique(self) -> District:
        ids = [s.id for s in self.stations]
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate station ids in district")
        return self

    def model_post_init(self, __context: Any) -> None:
        self._by_id = {s.id: s for s in self.stations}

    def station(self, station_id: str) -> StationSpec:
        """The spec of one station; KeyError if the district has no such station."""
        return self._by_id[station_id]

    def has_station(self, station_id: str) -> bool:
        return station_id in self._by_id

    def directory(self) -> EntityDirectory:
        return EntityDirectory({s.id: ([t.id for t in s.tanks], [n.id for n in s.nozzles])
                                for s in self.stations})

    def regions(self) -> list[str]:
        return sorted({s.region for s in self.stations})

    def nozzle_tanks(self) -> dict[tuple[str, str], str]:
        """(station, nozzle) -> the tank it draws from."""
        return {(s.id, n.id): n.tank for s in self.stations for n in s.nozzles}


def load_district(path: str | Path) -> District:
    """Read a district YAML (``stations: [...]``); pydantic's errors name the offending field."""
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    return District.model_validate(data)
