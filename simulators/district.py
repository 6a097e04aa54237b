"""A synthetic district of Binhai fuel stations: the declared view the twin gets, and the truth behind it.

The twin only ever sees :attr:`SimDistrict.district` (what the stations declared: tank charts, capacities,
nozzle layout). The simulator runs on :attr:`SimDistrict.truth_tanks` (the tanks as built), so a declared
chart that is slightly wrong, as every real calibration is, is part of what the twin must live with.

Everything is drawn from ``numpy`` generators seeded by (seed, station index), so station *i* is the same
whatever the district's size: a 10-station district is the first 10 stations of a 50-station one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from simulators.demand import mean_fill_l
from simulators.places import (
    BRANDS,
    DISPENSER_MODELS,
    PRIVATE_NAMES,
    REGIONS,
    Region,
)
from twin.physics import HorizontalCylinder, Product, StrappingTable, product_of_grade
from twin.registry import District, NozzleSpec, StationSpec, TankSpec

Size = Literal["small", "medium", "busy"]

#: Nominal capacity (L) -> internal diameter (mm) of the double-walled (SF) steel tanks used here;
#: heads are 2:1 ellipsoidal (depth D/4).
TANK_DIAMETER_MM = {20_000: 2200.0, 30_000: 2500.0, 50_000: 2800.0}

#: Fills per day by station size: small ≈ 200–400, busy ≈ 1,500+ (the brief's classes).
FILLS_PER_DAY: dict[Size, tuple[float, float]] = {
    "small": (200.0, 400.0), "medium": (500.0, 1000.0), "busy": (1500.0, 2200.0)}

#: Density at 20 °C (kg/m³) of delivered product, within GB 17930-2016 / GB 19147-2016 limits.
DENSITY_RANGE = {"92#": (728.0, 745.0), "95#": (733.0, 750.0), "98#": (740.0, 755.0), "0#": (828.0, 842.0)}

#: Market shares by region kind; trucks (diesel) dominate port and highway stations.
GRADE_SHARE = {
    "urban": {"92#": 0.60, "95#": 0.27, "98#": 0.03, "0#": 0.10},
    "port": {"92#": 0.52, "95#": 0.20, "98#": 0.02, "0#": 0.26},
    "highway": {"92#": 0.52, "95#": 0.20, "98#": 0.02, "0#": 0.26},
}
#: A tank should not need to sell more than this share of its nominal volume a day: with reorders at
#: 35 % and loads of at most 20,000 L it then never runs dry while the tanker is on its way.
MAX_DAILY_SHARE = 0.45
#: Probability that a diesel customer is a truck (the rest are vans and pick-ups filled like cars).
TRUCK_SHARE = {"urban": 0.3, "port": 0.7, "highway": 0.7}


@dataclass(frozen=True, slots=True)
class StationProfile:
    """How busy a station is and who buys there: drives the customer model."""

    size: Size
    kind: str
    fills_per_day: float
    grade_share: dict[str, float]
    truck_share: float
    brand: str


@dataclass(frozen=True, slots=True)
class TrueTank:
    """A tank as built (the truth); the declared chart in the registry approximates it."""

    station: str
    tank_id: str
    grade: str
    product: Product
    nominal_l: float
    geometry: HorizontalCylinder
    declared_geometry: HorizontalCylinder
    density_20c: float
    #: Water bottom (mm); small and constant unless a fault adds water.
    water_mm: float
    #: Time constant (s) with which the fuel follows the ground temperature.
    thermal_tau_s: float

    @property
    def capacity_l(self) -> float:
        return self.geometry.capacity_l


@dataclass(frozen=True, slots=True)
class TrueNozzle:
    """A nozzle's physical device: which tank it draws from and the dispenser's identity."""

    station: str
    nozzle_id: str
    dispenser: str
    tank_id: str
    grade: str
    model: str
    serial: str
    firmware: str
    mainboard_id: str


@dataclass(slots=True)
class SimDistrict:
    """The declared district plus the truth the simulator runs on."""

    district: District
    truth_tanks: dict[tuple[str, str], TrueTank]
    truth_nozzles: dict[tuple[str, str], TrueNozzle]
    profiles: dict[str, StationProfile]
    seed: int
    strapping_error_pct: float
    extra: dict[str, Any] = field(default_factory=dict)

    def station_tanks(self, station_id: str) -> list[TrueTank]:
        """The true tanks of a station, in the order of its declared spec."""
        spec = self.district.station(station_id)
        return [self.truth_tanks[(station_id, t.id)] for t in spec.tanks]

    def station_nozzles(self, station_id: str) -> list[TrueNozzle]:
        spec = self.district.station(station_id)
        return [self.truth_nozzles[(station_id, n.id)] for n in spec.nozzles]


def synthetic_district(n_stations: int, seed: int, strapping_error_pct: float = 0.3) -> SimDistrict:
    """Build ``n_stations`` plausible Binhai stations (``BH-0001``…), reproducible from ``seed``."""
    if n_stations < 1:
        raise ValueError("n_stations must be >= 1")
    specs: list[StationSpec] = []
    tanks: dict[tuple[str, str], TrueTank] = {}
    nozzles: dict[tuple[str, str], TrueNozzle] = {}
    profiles: dict[str, StationProfile] = {}
    names: set[str] = set()
    for i in range(n_stations):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0, i)))
        sid = f"BH-{i + 1:04d}"
        spec, st_tanks, st_nozzles, profile = _station(rng, sid, names, strapping_error_pct)
        specs.append(spec)
        profiles[sid] = profile
        tanks.update({(sid, t.tank_id): t for t in st_tanks})
        nozzles.update({(sid, n.nozzle_id): n for n in st_nozzles})
    district = District(stations=tuple(specs))
    return SimDistrict(district, tanks, nozzles, profiles, seed, strapping_error_pct)


# --------------------------------------------------------------------------------------------------


def _pick(rng: np.random.Generator, items: list[Any] | tuple[Any, ...],
          weights: list[float] | None = None) -> Any:
    if weights is None:
        return items[int(rng.integers(len(items)))]
    p = np.asarray(weights, dtype=float)
    return items[int(rng.choice(len(items), p=p / p.sum()))]


def _station(rng: np.random.Generator, sid: str, names: set[str], strap_pct: float
             ) -> tuple[StationSpec, list[TrueTank], list[TrueNozzle], StationProfile]:
    size: Size = _pick(rng, ("small", "medium", "busy"), [0.4, 0.4, 0.2])
    # Busy stations are the port and highway ones: trucks keep them going all night.
    pool = [r for r in REGIONS if size != "busy" or r.kind in ("port", "highway")]
    region: Region = _pick(rng, pool, [2.0 if r.kind == "urban" else 1.0 for r in pool])
    brand = _pick(rng, [b for b, _ in BRANDS], [w for _, w in BRANDS])
    road = _pick(rng, region.roads)
    name = _unique_name(brand, road, region, rng, names)
    lon = region.lon + float(rng.uniform(-1, 1)) * region.scatter_deg
    lat = region.lat + float(rng.uniform(-1, 1)) * region.scatter_deg
    address = f"天津市滨海新区{road}{int(rng.integers(1, 999))}号"

    grades = _tank_grades(rng, size, region.kind)
    lo, hi = FILLS_PER_DAY[size]
    fills_per_day = float(rng.uniform(lo, hi))
    raw_share = {g: s for g, s in GRADE_SHARE[region.kind].items() if g in grades}
    share = {g: s / sum(raw_share.values()) for g, s in raw_share.items()}
    truck_share = TRUCK_SHARE[region.kind]
    demand = {g: fills_per_day * share[g] * mean_fill_l(product_of_grade(g) == "diesel", truck_share)
              for g in share}
    for g, litres in demand.items():  # one more tank of a grade that a 50 m³ tank cannot carry
        while litres / grades.count(g) > MAX_DAILY_SHARE * 50_000:
            grades.insert(max(i for i, x in enumerate(grades) if x == g) + 1, g)
    true_tanks: list[TrueTank] = []
    tank_specs: list[TankSpec] = []
    for k, grade in enumerate(grades, start=1):
        per_tank = demand[grade] / grades.count(grade)
        tank, spec = _tank(rng, sid, f"T{k}", grade, size, strap_pct, per_tank)
        true_tanks.append(tank)
        tank_specs.append(spec)
    true_nozzles = _nozzles(rng, sid, size, true_tanks)
    nozzle_specs = [NozzleSpec(id=n.nozzle_id, tank=n.tank_id, grade=n.grade, dispenser=n.dispenser)
                    for n in true_nozzles]
    spec = StationSpec(id=sid, name=name, region=region.name, lon=round(lon, 6), lat=round(lat, 6),
                       address=address, tanks=tuple(tank_specs), nozzles=tuple(nozzle_specs))
    profile = StationProfile(size=size, kind=region.kind, fills_per_day=fills_per_day, grade_share=share,
                             truck_share=truck_share, brand=brand)
    return spec, true_tanks, true_nozzles, profile


def _unique_name(brand: str, road: str, region: Region, rng: np.random.Generator, names: set[str]) -> str:
    prefix = _pick(rng, PRIVATE_NAMES) if brand == "民营" else brand
    base = f"{prefix}{road}"
    name = f"{base}加油站"
    n = 2
    while name in names:
        name = f"{base}第{_CN_NUM[n]}加油站" if n < len(_CN_NUM) else f"{base}{n}号加油站"
        n += 1
    names.add(name)
    return name


_CN_NUM = ("零", "一", "二", "三", "四", "五", "六", "七", "八", "九", "十")


def _tank_grades(rng: np.random.Generator, size: Size, kind: str) -> list[str]:
    """Three tanks (92#, 95#, 0#) and sometimes a fourth: 98# in town, a second 92# or 0# where busy."""
    grades = ["92#", "95#", "0#"]
    if size == "busy":
        grades.insert(1, "92#")
        if kind in ("port", "highway"):
            grades.append("0#")
    elif rng.random() < 0.35:
        grades.insert(2, "98#" if kind == "urban" or rng.random() < 0.5 else "92#")
    return grades


def _nominal(rng: np.random.Generator, grade: str, size: Size, daily_l: float) -> int:
    """A customary size for the station, raised until the tank holds its demand with room to spare."""
    if grade == "98#":
        usual = 20_000
    elif size == "busy":
        usual = 50_000
    elif size == "medium":
        usual = int(_pick(rng, (30_000, 50_000), [0.5, 0.5])) if grade == "92#" else 30_000
    else:
        usual = 30_000 if grade == "92#" else int(_pick(rng, (20_000, 30_000)))
    for nominal in (20_000, 30_000, 50_000):
        if nominal >= usual and daily_l <= MAX_DAILY_SHARE * nominal:
            return nominal
    return 50_000


def _tank(rng: np.random.Generator, sid: str, tid: str, grade: str, size: Size, strap_pct: float,
          daily_l: float) -> tuple[TrueTank, TankSpec]:
    nominal = _nominal(rng, grade, size, daily_l)
    d_nom = TANK_DIAMETER_MM[nominal]
    diameter = d_nom * (1.0 + float(np.clip(rng.normal(0.0, 0.002), -0.005, 0.005)))
    dish = diameter / 4.0
    # Built a little larger than rated (0–3 %): a tank is sold by its nominal volume.
    target_l = nominal * float(rng.uniform(1.0, 1.03))
    r = diameter / 2.0
    length = target_l / (math.pi * r * r * 1e-6) - 4.0 * dish / 3.0
    geometry = HorizontalCylinder(diameter, length, "dished", dish)
    declared, chart = _declared_chart(rng, geometry, strap_pct)
    lo, hi = DENSITY_RANGE[grade]
    density = round(float(rng.uniform(lo, hi)), 1)
    water = 0.0 if rng.random() < 0.4 else round(float(rng.uniform(0.5, 5.0)), 1)
    tau = float(rng.uniform(1.5, 3.5)) * 86_400.0
    tank = TrueTank(sid, tid, grade, product_of_grade(grade), float(nominal), geometry, declared, density,
                    water, tau)
    spec = TankSpec(id=tid, grade=grade, declared_capacity_l=float(nominal), chart=chart, density_20c=density)
    return tank, spec


def chart_error_pct(true_geometry: HorizontalCylinder, chart: StrappingTable) -> float:
    """Largest relative error (%) of a chart's rows against the true tank, over levels both can hold."""
    top = min(true_geometry.height_mm, chart.height_mm)
    levels = np.asarray(chart.levels_mm)
    volumes = np.asarray(chart.volumes_l)
    mask = (levels > 0) & (levels <= top + 1e-9)
    truth = np.asarray(true_geometry.volume_l(levels[mask]))
    return float(np.max(np.abs(volumes[mask] / truth - 1.0)) * 100.0)


def _declared_chart(rng: np.random.Generator, geometry: HorizontalCylinder, strap_pct: float
                    ) -> tuple[HorizontalCylinder, dict[str, Any]]:
    """A 10 mm strapping table from a geometry whose diameter and length are slightly off.

    At any level the relative volume error is about |ε_L| + (½…2)·|ε_D|, so drawing ε_D within a quarter
    and ε_L within half of the allowance keeps the chart within ``strap_pct``; the loop checks it and
    shrinks the errors in the rare case the first draw is over.
    """
    eps_d = float(rng.uniform(-1, 1)) * strap_pct / 100.0 / 4.0
    eps_l = float(rng.uniform(-1, 1)) * strap_pct / 100.0 / 2.0
    for _ in range(20):
        declared = HorizontalCylinder(geometry.diameter_mm * (1 + eps_d), geometry.length_mm * (1 + eps_l),
                                      "dished", geometry.dish_depth_mm * (1 + eps_d))
        table = StrappingTable.from_geometry(declared, step_mm=10.0)
        levels, volumes = list(table.levels_mm), [round(v, 3) for v in table.volumes_l]
        if levels[-1] - levels[-2] < 1.0:  # the top row a hair above a 10 mm row: keep the top only
            del levels[-2], volumes[-2]
        table = StrappingTable(tuple(levels), tuple(volumes))
        if strap_pct <= 0 or chart_error_pct(geometry, table) <= strap_pct * 0.98:
            break
        eps_d *= 0.5
        eps_l *= 0.5
    chart = {"shape": "strapping", "levels_mm": [round(x, 3) for x in table.levels_mm],
             "volumes_l": list(table.volumes_l)}
    return declared, chart


def _nozzles(rng: np.random.Generator, sid: str, size: Size, tanks: list[TrueTank]) -> list[TrueNozzle]:
    """Dispensers of 2–4 nozzles, one diesel lane or more, every tank served, at least 8 nozzles."""
    n_disp = {"small": int(rng.integers(3, 5)), "medium": int(rng.integers(4, 6)),
              "busy": int(rng.integers(6, 9))}[size]
    n_diesel = int(rng.integers(2, 4)) if size == "busy" else 1
    counts = [int(_pick(rng, (2, 3, 4), [0.35, 0.15, 0.5])) for _ in range(n_disp)]
    if size != "busy":
        counts[0] = 2  # one two-nozzle diesel lane in town; truck lanes only where trucks come
    while sum(counts) < 8:
        counts[counts.index(min(counts))] += 1 if min(counts) < 4 else 0
        if min(counts) >= 4:
            counts.append(2)
    grades_present = {t.grade for t in tanks}
    layout: list[list[str]] = []
    for d, m in enumerate(counts):
        if d < n_diesel:
            layout.append(["0#"] * m)
        else:
            pattern = ["92#", "95#", "92#", "95#"][:m] if m != 3 else ["92#", "95#", "92#"]
            layout.append(pattern)
    if "98#" in grades_present:  # the premium grade on the last nozzle of one or two gasoline dispensers
        gas = [row for row in layout if row[0] != "0#"]
        for row in gas[-max(1, len(gas) // 3):]:
            row[-1] = "98#"
    by_grade: dict[str, list[TrueTank]] = {}
    for t in tanks:
        by_grade.setdefault(t.grade, []).append(t)
    turn = dict.fromkeys(by_grade, 0)
    out: list[TrueNozzle] = []
    k = 0
    for d, row in enumerate(layout, start=1):
        maker, model = _pick(rng, DISPENSER_MODELS)
        prefix = model.split()[-1].split("-")[0][:3].upper()
        serial = f"{prefix}{int(rng.integers(2016, 2026))}{int(rng.integers(0, 1_000_000)):06d}"
        board = f"{int(rng.integers(0, 2**48)):012X}"
        firmware = f"v{int(rng.integers(2, 5))}.{int(rng.integers(0, 10))}.{int(rng.integers(0, 20))}"
        for side, grade in enumerate(row, start=1):
            k += 1
            pool = by_grade[grade]
            tank = pool[turn[grade] % len(pool)]
            turn[grade] += 1
            out.append(TrueNozzle(sid, f"N{k}", f"D{d}", tank.tank_id, grade, f"{maker} {model}",
                                  f"{serial}-{side}", firmware, board))
    served = {n.tank_id for n in out}
    missing = [t for t in tanks if t.tank_id not in served]
    if missing:  # a grade with more tanks than nozzles: give each missing tank a nozzle of its own
        last = out[-1]
        for t in missing:
            k += 1
            out.append(TrueNozzle(sid, f"N{k}", last.dispenser, t.tank_id, t.grade, last.model,
                                  f"{last.serial}-{k}", last.firmware, last.mainboard_id))
    return out
