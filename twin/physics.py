"""Tank physics for the twin: tank geometry (level <-> volume) and temperature correction to 20 °C.

Everything the twin knows about stock goes through here: a gauge reports a level, a water level and a
temperature, and the bureaus compare *net volume at 20 °C* (GB/T 1885) with what was bought and sold.
A wrong volume here turns into a false "fuel without invoices" or "falsely declared capacity" finding
downstream, so the formulas are the standard ones, cited where used (see /work/shared/DOMAIN.md,
section "Gauges, deliveries, temperature").

Pure domain code: no I/O, no clock. Every function that takes a level, volume or temperature accepts a
Python float (fast scalar path, plain ``math``) or a numpy array (vectorised path); a float in gives a
float out, an array in gives an array out.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from functools import cached_property, lru_cache
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "REFERENCE_TEMP_C",
    "HorizontalCylinder",
    "Product",
    "StrappingTable",
    "TankGeometry",
    "geometry_from_spec",
    "gross_to_20c",
    "net_volume_20c",
    "product_of_grade",
    "thermal_expansion_coeff",
    "vcf",
]

Product = Literal["gasoline", "diesel"]
FloatOrArray = float | np.ndarray

# GB/T 1885-1998 (equivalent to ISO 91-2): Chinese standard volumes are stated at 20 °C.
REFERENCE_TEMP_C = 20.0

# 1 mm^3 = 1e-6 L. Geometry is computed in millimetres (the unit gauges report), volumes in litres.
_MM3_TO_L = 1e-6

# Grades sold in China. Gasoline: GB 17930-2016 (89#, 92#, 95#, 98#, research octane number).
# Diesel: GB 19147-2016 (5#, 0#, -10#, -20#, -35#, -50#, cold filter plugging point in °C).
_GRADE_PRODUCT: dict[str, Product] = {
    "89#": "gasoline",
    "92#": "gasoline",
    "95#": "gasoline",
    "98#": "gasoline",
    "5#": "diesel",
    "0#": "diesel",
    "-10#": "diesel",
    "-20#": "diesel",
    "-35#": "diesel",
    "-50#": "diesel",
}

# Thermal expansion constants (K0, K1) of API MPMS 11.1-1980 / ASTM D1250 metric Table 54B, per
# DOMAIN.md: alpha = K0/rho^2 + K1/rho, rho in kg/m^3, alpha per °C. "gasoline" uses the gasolines row,
# "diesel" the fuel-oils row (the table prints K1 = 0.43884 and 0.48618; DOMAIN.md rounds to 4 places).
_EXPANSION_K: dict[str, tuple[float, float]] = {
    "gasoline": (346.4228, 0.4388),
    "diesel": (186.9696, 0.4862),
}

# Plausible density band, used only as a unit guard: a density in kg/L (0.74) instead of kg/m^3 (740)
# would give alpha ~ 600/°C and silently wipe out the stock. Not a range taken from a standard.
_DENSITY_MIN_KGM3 = 500.0
_DENSITY_MAX_KGM3 = 1200.0


def product_of_grade(grade: str) -> Product:
    """Map a Chinese fuel grade label ("92#", "0#", ...) to its product family.

    The family picks the thermal expansion constants, so an unknown grade is an error rather than a
    silent default (a gasoline corrected as diesel is off by ~0.4 % per 10 °C).
    """
    if not isinstance(grade, str):
        raise ValueError(f"fuel grade must be a string like '92#' or '0#', got {grade!r}")
    product = _GRADE_PRODUCT.get(grade.strip())
    if product is None:
        known = ", ".join(_GRADE_PRODUCT)
        raise ValueError(f"unknown fuel grade {grade!r}; known grades: {known}")
    return product


def thermal_expansion_coeff(density_20c_kgm3: float, product: Product) -> float:
    """Coefficient of thermal expansion alpha (per °C) for a product of the given density.

    API MPMS 11.1 / ASTM D1250 Table 54B form, alpha = K0/rho^2 + K1/rho (DOMAIN.md); about 1.2e-3 /°C
    for gasoline and 8.4e-4 /°C for diesel. Applied with the density at 20 °C: see :func:`vcf` for why
    that is close enough.
    """
    try:
        k0, k1 = _EXPANSION_K[product]
    except (KeyError, TypeError):
        raise ValueError(f"unknown product {product!r}; expected 'gasoline' or 'diesel'") from None
    rho = float(density_20c_kgm3)
    if not _DENSITY_MIN_KGM3 <= rho <= _DENSITY_MAX_KGM3:  # also rejects NaN
        raise ValueError(
            f"density {density_20c_kgm3!r} kg/m^3 is outside {_DENSITY_MIN_KGM3:g}-{_DENSITY_MAX_KGM3:g}; "
            "density must be in kg/m^3 (e.g. 740), not kg/L"
        )
    return k0 / (rho * rho) + k1 / rho


def vcf(temp_c: FloatOrArray, density_20c_kgm3: float, product: Product) -> FloatOrArray:
    """Volume correction factor from ``temp_c`` to 20 °C: V20 = V_observed * vcf.

    CTL = exp(-alpha*dt*(1 + 0.8*alpha*dt)), dt = temp_c - 20, alpha from :func:`thermal_expansion_coeff`
    (API MPMS 11.1-1980 / ASTM D1250 Table 54B form, DOMAIN.md). Below 1 above 20 °C (warm fuel has
    expanded), above 1 below 20 °C.

    Approximation, stated: Table 54B is defined with rho at 15 °C and base 15 °C. The 20 °C tables of
    GB/T 1885 (= ISO 91-2) are in effect that correlation rebased: rho15 is recovered from rho20 and
    VCF20(t) = CTL15(t) / CTL15(20). Here the same form is applied directly with rho20 and base 20 °C.
    Checked numerically against the rebased form (rho15 solved by fixed-point iteration): the two agree
    within 0.0041 % for -10..+40 °C and within 0.0096 % for -30..+50 °C, over 700-780 kg/m^3 (gasoline)
    and 800-870 kg/m^3 (diesel). The reason it is so close: rho20 ~ rho15*(1 - 5*alpha), so
    alpha(rho20) ~ alpha15 + 5*alpha*(alpha + K0/rho^2), which nearly equals the 8*alpha^2 cross term
    that rebasing produces. GB/T 1885 prints VCF to 4 decimals (0.01 %), so the difference is below the
    tables' own resolution. Not reproduced: the printed tables' rounding/truncation steps, the
    54B "transition zone" (770.5-787.5 kg/m^3 at 15 °C) and the API 11.1-2004 revision.
    """
    alpha = thermal_expansion_coeff(density_20c_kgm3, product)
    if isinstance(temp_c, float | int):
        dt = temp_c - REFERENCE_TEMP_C
        return math.exp(-alpha * dt * (1.0 + 0.8 * alpha * dt))
    dt_arr = np.asarray(temp_c, dtype=float) - REFERENCE_TEMP_C
    out = np.exp(-alpha * dt_arr * (1.0 + 0.8 * alpha * dt_arr))
    return float(out) if out.ndim == 0 else out


@runtime_checkable
class TankGeometry(Protocol):
    """What the twin needs from a tank: level <-> volume both ways, and the local slope.

    ``capacity_l`` and ``height_mm`` are read-only (a frozen dataclass provides them as properties).
    """

    @property
    def capacity_l(self) -> float:
        """Brim volume in litres (volume at ``height_mm``)."""
        ...

    @property
    def height_mm(self) -> float:
        """Maximum level in mm (the internal diameter for a horizontal cylinder)."""
        ...

    def volume_l(self, level_mm: FloatOrArray) -> FloatOrArray:
        """Volume in litres below ``level_mm``; the level is clipped to [0, height_mm]."""
        ...

    def level_mm(self, volume_l: FloatOrArray) -> FloatOrArray:
        """Inverse of :meth:`volume_l`; the volume is clipped to [0, capacity_l]."""
        ...

    def dv_dh(self, level_mm: float) -> float:
        """Litres per mm at that level, to turn a level noise (mm) into a volume noise (L)."""
        ...


def _is_scalar(x: object) -> bool:
    """True for Python/numpy float64 and ints, the inputs that take the cheap ``math`` path."""
    return isinstance(x, float | int)


def _as_result(out: np.ndarray) -> FloatOrArray:
    """A 0-d result (from a numpy scalar that is not float64, or a 0-d array) goes back as float."""
    return float(out) if out.ndim == 0 else out


def _interp_scalar(x: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    """``np.interp`` for one float over Python sequences, clamped at the ends (no numpy overhead)."""
    if x != x:  # NaN in, NaN out (like np.interp)
        return math.nan
    if x <= xs[0]:
        return float(ys[0])
    if x >= xs[-1]:
        return float(ys[-1])
    i = bisect_right(xs, x) - 1
    x0, x1 = xs[i], xs[i + 1]
    y0, y1 = ys[i], ys[i + 1]
    return float(y0 + (y1 - y0) * (x - x0) / (x1 - x0))


def _check_positive(name: str, value: float) -> float:
    v = float(value)
    if not (math.isfinite(v) and v > 0.0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


# The inverse table's levels are spaced evenly in the angle θ of the liquid surface's chord,
# h = r(1 - cos θ): their spacing dh = r sin θ dθ shrinks towards the bottom and the top, where V(h)
# grows like h^1.5 and its inverse is steepest. Linear interpolation of h(V) between two such levels
# errs by about dh²/8 · V''/V', and V''/V' = (r - h)/(2rh - h²) for the straight shell, so by at most
# r·dθ²/8 whatever the level: the step below keeps it under _TABLE_ERROR_MM. The table is ~70 kB for
# D = 3 m; an even 0.05 mm grid (0.001 mm in the first and last mm) had needed 1 MB, and a simulated
# tank's true geometry is its own (strapping error), so every simulated tank held one: 3.7 MB a station
# in bench/memory.py (tracemalloc, session 15).
_TABLE_ERROR_MM = 1e-4


@lru_cache(maxsize=128)
def _cylinder_table(
    diameter_mm: float, length_mm: float, dish_depth_mm: float
) -> tuple[np.ndarray, np.ndarray]:
    """Volume (L) and level (mm) arrays for the inverse of a horizontal cylinder, built once.

    Cached by dimensions so tanks of the same model share one table (about 70 kB for D = 3 m).
    """
    r = diameter_mm / 2.0
    n = max(16, math.ceil(math.pi / math.sqrt(8.0 * _TABLE_ERROR_MM / r)) + 1)
    theta = np.linspace(0.0, math.pi, n)
    levels = 2.0 * r * np.sin(theta / 2.0) ** 2  # r(1 - cos θ) without cancellation near the bottom
    levels[-1] = diameter_mm
    volumes = _cylinder_volume_array(levels, r, length_mm, dish_depth_mm)
    if not np.all(np.diff(volumes) > 0.0):  # would make np.interp's inverse ill-defined
        raise ValueError(f"cylinder D={diameter_mm} mm L={length_mm} mm gives a non-increasing volume table")
    # Left writeable on purpose: np.interp copies read-only inputs (measured: ~190 µs per scalar call on a
    # 54k-row table instead of ~0.7 µs). The arrays are private to this module; do not mutate them.
    return volumes, levels


def _cylinder_volume_array(h: np.ndarray, r: float, length_mm: float, dish_depth_mm: float) -> np.ndarray:
    """Vectorised volume (L) of a horizontal cylinder at levels ``h`` (mm, already clipped to [0, 2r]).

    Flat part (DOMAIN.md): V = L*(r^2*acos((r-h)/r) - (r-h)*sqrt(2rh - h^2)).
    Two ellipsoidal heads of depth a together form one ellipsoid with semi-axes r, r, a, i.e. a sphere
    of radius r stretched by a/r along the tank axis, so their liquid volume is the spherical cap
    pi*h^2*(3r-h)/3 times a/r: V_heads = pi*a*h^2*(3r-h)/(3r).
    """
    rh = r - h
    segment = r * r * np.arccos(rh / r) - rh * np.sqrt(np.maximum(2.0 * r * h - h * h, 0.0))
    vol = length_mm * segment
    if dish_depth_mm > 0.0:
        vol = vol + math.pi * dish_depth_mm * h * h * (3.0 * r - h) / (3.0 * r)
    return vol * _MM3_TO_L


@dataclass(frozen=True)
class HorizontalCylinder:
    """Horizontal cylindrical tank, the usual underground tank at Chinese stations.

    ``ends="flat"``: a plain cylinder. ``ends="dished"``: two ellipsoidal heads of depth
    ``dish_depth_mm`` each (hemispherical when it equals the radius, 2:1 elliptical at D/4); their
    volume is added to the cylinder of length ``length_mm`` (the straight shell, heads excluded).
    """

    diameter_mm: float
    length_mm: float
    ends: Literal["flat", "dished"] = "flat"
    dish_depth_mm: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "diameter_mm", _check_positive("diameter_mm", self.diameter_mm))
        object.__setattr__(self, "length_mm", _check_positive("length_mm", self.length_mm))
        if self.ends == "flat":
            if self.dish_depth_mm != 0:
                raise ValueError(f"dish_depth_mm={self.dish_depth_mm!r} given with ends='flat'; use 'dished'")
            object.__setattr__(self, "dish_depth_mm", 0.0)
        elif self.ends == "dished":
            object.__setattr__(self, "dish_depth_mm", _check_positive("dish_depth_mm", self.dish_depth_mm))
        else:
            raise ValueError(f"ends must be 'flat' or 'dished', got {self.ends!r}")

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the dimensions only: the cached inverse table (~70 kB) is rebuilt where it is used."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def height_mm(self) -> float:
        """The internal diameter: the highest level a gauge can read."""
        return self.diameter_mm

    @property
    def capacity_l(self) -> float:
        """Brim volume: pi*r^2*L plus the full ellipsoid of the heads, 4/3*pi*r^2*a."""
        r = self.diameter_mm / 2.0
        return math.pi * r * r * (self.length_mm + 4.0 * self.dish_depth_mm / 3.0) * _MM3_TO_L

    @cached_property
    def _table(self) -> tuple[np.ndarray, np.ndarray]:
        return _cylinder_table(self.diameter_mm, self.length_mm, self.dish_depth_mm)

    def volume_l(self, level_mm: FloatOrArray) -> FloatOrArray:
        """Volume (L) below ``level_mm``, closed form; ``math`` for a float (sub-µs), numpy for arrays."""
        d = self.diameter_mm
        r = d / 2.0
        if _is_scalar(level_mm):
            h = float(level_mm)
            if h != h:
                return math.nan
            h = 0.0 if h < 0.0 else (d if h > d else h)
            rh = r - h
            vol = self.length_mm * (r * r * math.acos(rh / r) - rh * math.sqrt(max(2.0 * r * h - h * h, 0.0)))
            a = self.dish_depth_mm
            if a > 0.0:
                vol += math.pi * a * h * h * (3.0 * r - h) / (3.0 * r)
            return vol * _MM3_TO_L
        h_arr = np.clip(np.asarray(level_mm, dtype=float), 0.0, d)
        return _as_result(_cylinder_volume_array(h_arr, r, self.length_mm, self.dish_depth_mm))

    def level_mm(self, volume_l: FloatOrArray) -> FloatOrArray:
        """Level (mm) holding ``volume_l``, by interpolation in a precomputed table (no closed form).

        The table (levels evenly spaced in the surface chord's angle, see ``_TABLE_ERROR_MM``) is built
        on first use and shared by tanks with the same dimensions. Round-trip error is below ~1e-4 mm.
        """
        volumes, levels = self._table
        if _is_scalar(volume_l):
            return float(np.interp(float(volume_l), volumes, levels))
        return _as_result(np.interp(np.asarray(volume_l, dtype=float), volumes, levels))

    def dv_dh(self, level_mm: float) -> float:
        """Litres per mm: 2*L*sqrt(2rh - h^2) (the liquid surface area) plus the heads' pi*a*h*(2r-h)/r."""
        d = self.diameter_mm
        r = d / 2.0
        h = min(max(float(level_mm), 0.0), d)
        width = 2.0 * math.sqrt(max(2.0 * r * h - h * h, 0.0))
        area = self.length_mm * width + math.pi * self.dish_depth_mm * h * (2.0 * r - h) / r
        return area * _MM3_TO_L


@dataclass(frozen=True)
class StrappingTable:
    """A tank calibration chart (容积表): volume at given levels, linear in between.

    Real charts come from calibrating the installed tank, so they capture dents, tilt and head shapes
    that a nominal geometry misses. Both columns must be strictly increasing. Levels below the first row
    read the first row's volume, above the last row the last one's (``np.interp`` clamping).
    Lists or arrays given to the constructor are stored as tuples of floats (hashable, immutable).
    """

    levels_mm: tuple[float, ...]
    volumes_l: tuple[float, ...]

    def __post_init__(self) -> None:
        levels = _float_tuple("levels_mm", self.levels_mm)
        volumes = _float_tuple("volumes_l", self.volumes_l)
        if len(levels) != len(volumes):
            raise ValueError(
                f"strapping table needs one volume per level: {len(levels)} levels, {len(volumes)} volumes"
            )
        if len(levels) < 2:
            raise ValueError(f"strapping table needs at least 2 rows, got {len(levels)}")
        if levels[0] < 0.0 or volumes[0] < 0.0:
            raise ValueError(
                f"strapping table starts at a negative value: level {levels[0]} mm, volume {volumes[0]} L"
            )
        for name, col, unit in (("levels_mm", levels, "mm"), ("volumes_l", volumes, "L")):
            for i in range(1, len(col)):
                if not col[i] > col[i - 1]:
                    raise ValueError(
                        f"strapping table {name} must be strictly increasing: row {i} has {col[i]} {unit} "
                        f"after {col[i - 1]} {unit}"
                    )
        object.__setattr__(self, "levels_mm", levels)
        object.__setattr__(self, "volumes_l", volumes)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the two columns only; the numpy copies are rebuilt on use."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_geometry(cls, geometry: TankGeometry, step_mm: float = 10.0) -> StrappingTable:
        """Chart of ``geometry`` every ``step_mm`` from 0 to its height (the top row always included).

        This is how a nominal chart is issued for a tank model; the twin uses it to test what a chart
        (or a scaled, falsely declared one) does to the inventory.
        """
        step = _check_positive("step_mm", step_mm)
        height = float(geometry.height_mm)
        k = int(math.floor(height / step + 1e-9))
        levels = [i * step for i in range(k + 1)]
        if height - levels[-1] > 1e-6 * step:
            levels.append(height)
        else:
            levels[-1] = height
        volumes = np.asarray(geometry.volume_l(np.asarray(levels, dtype=float)), dtype=float)
        return cls(tuple(levels), tuple(volumes.tolist()))

    def scaled(self, factor: float) -> StrappingTable:
        """The same chart with every volume times ``factor``: a chart that is off by a percentage.

        A tank declared smaller than it is (虚报罐容) is ``scaled(0.9)`` of the true chart.
        """
        f = _check_positive("factor", factor)
        return StrappingTable(self.levels_mm, tuple(v * f for v in self.volumes_l))

    @property
    def height_mm(self) -> float:
        """Level of the last row."""
        return self.levels_mm[-1]

    @property
    def capacity_l(self) -> float:
        """Volume of the last row."""
        return self.volumes_l[-1]

    @cached_property
    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        levels = np.asarray(self.levels_mm, dtype=float)
        volumes = np.asarray(self.volumes_l, dtype=float)
        return levels, volumes  # writeable: np.interp copies read-only arrays (see _cylinder_table)

    def volume_l(self, level_mm: FloatOrArray) -> FloatOrArray:
        """Volume (L) at ``level_mm`` by linear interpolation between rows."""
        if _is_scalar(level_mm):
            return _interp_scalar(float(level_mm), self.levels_mm, self.volumes_l)
        levels, volumes = self._arrays
        return _as_result(np.interp(np.asarray(level_mm, dtype=float), levels, volumes))

    def level_mm(self, volume_l: FloatOrArray) -> FloatOrArray:
        """Level (mm) for ``volume_l`` by inverse linear interpolation (exact inverse of volume_l)."""
        if _is_scalar(volume_l):
            return _interp_scalar(float(volume_l), self.volumes_l, self.levels_mm)
        levels, volumes = self._arrays
        return _as_result(np.interp(np.asarray(volume_l, dtype=float), volumes, levels))

    def dv_dh(self, level_mm: float) -> float:
        """Slope (L/mm) of the row segment containing ``level_mm`` (the upper segment at a row)."""
        lv, vo = self.levels_mm, self.volumes_l
        h = min(max(float(level_mm), lv[0]), lv[-1])
        i = min(bisect_right(lv, h) - 1, len(lv) - 2)
        return (vo[i + 1] - vo[i]) / (lv[i + 1] - lv[i])


def _float_tuple(name: str, values: Any) -> tuple[float, ...]:
    """Coerce a column to a tuple of finite floats, with a message that says which column is wrong."""
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"strapping table {name} must be a sequence of numbers: {exc}") from None
    for i, v in enumerate(out):
        if not math.isfinite(v):
            raise ValueError(f"strapping table {name} row {i} is not finite: {v}")
    return out


def geometry_from_spec(spec: Mapping[str, Any]) -> TankGeometry:
    """Build a geometry from a config dict (scenario YAML, station registry).

    ``{"shape": "horizontal_cylinder", "diameter_mm", "length_mm", "ends": "flat"|"dished",
    "dish_depth_mm"}`` or ``{"shape": "strapping", "levels_mm": [...], "volumes_l": [...]}``.
    Keys other than these (an id, a declared capacity, ...) are ignored so a tank record can be passed
    whole. Anything malformed raises ValueError naming the problem, so a bad scenario fails at load.
    """
    if not isinstance(spec, Mapping):
        raise ValueError(f"tank geometry spec must be a mapping, got {type(spec).__name__}")
    shape = spec.get("shape")
    if shape == "horizontal_cylinder":
        missing = [k for k in ("diameter_mm", "length_mm") if k not in spec]
        if missing:
            raise ValueError(f"horizontal_cylinder spec is missing {', '.join(missing)}")
        try:
            diameter = float(spec["diameter_mm"])
            length = float(spec["length_mm"])
            dish = float(spec.get("dish_depth_mm", 0.0) or 0.0)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"horizontal_cylinder spec has a non-numeric dimension: {exc}") from None
        ends = spec.get("ends", "flat")
        if ends not in ("flat", "dished"):
            raise ValueError(f"horizontal_cylinder ends must be 'flat' or 'dished', got {ends!r}")
        return HorizontalCylinder(diameter, length, ends, dish)
    if shape == "strapping":
        missing = [k for k in ("levels_mm", "volumes_l") if k not in spec]
        if missing:
            raise ValueError(f"strapping spec is missing {', '.join(missing)}")
        if isinstance(spec["levels_mm"], str | bytes) or isinstance(spec["volumes_l"], str | bytes):
            raise ValueError("strapping spec levels_mm and volumes_l must be lists of numbers")
        return StrappingTable(tuple(spec["levels_mm"]), tuple(spec["volumes_l"]))
    raise ValueError(f"unknown tank shape {shape!r}; expected 'horizontal_cylinder' or 'strapping'")


def net_volume_20c(
    geometry: TankGeometry,
    level_mm: FloatOrArray,
    water_mm: FloatOrArray,
    temp_c: FloatOrArray,
    density_20c_kgm3: float,
    product: Product,
) -> FloatOrArray:
    """Net product volume at 20 °C from a gauge reading: (V(level) - V(water)) * vcf(temp).

    The water lies under the product, so its volume is the tank volume up to the water level; what is
    above it is product at ``temp_c``, corrected to 20 °C (GB/T 1885). A reading with water at or above
    the product level gives 0, not a negative stock. Arrays broadcast against each other.
    """
    if _is_scalar(level_mm) and _is_scalar(water_mm) and _is_scalar(temp_c):
        gross = float(geometry.volume_l(level_mm)) - float(geometry.volume_l(water_mm))
        return max(gross, 0.0) * float(vcf(temp_c, density_20c_kgm3, product))
    gross_arr = np.asarray(geometry.volume_l(np.asarray(level_mm, dtype=float)), dtype=float) - np.asarray(
        geometry.volume_l(np.asarray(water_mm, dtype=float)), dtype=float
    )
    factor = np.asarray(vcf(np.asarray(temp_c, dtype=float), density_20c_kgm3, product), dtype=float)
    return _as_result(np.maximum(gross_arr, 0.0) * factor)


def gross_to_20c(
    volume_l: FloatOrArray, temp_c: FloatOrArray, density_20c_kgm3: float, product: Product
) -> FloatOrArray:
    """Observed volume at ``temp_c`` to volume at 20 °C (metered sales, delivery notes): volume * vcf."""
    if _is_scalar(volume_l) and _is_scalar(temp_c):
        return float(volume_l) * float(vcf(temp_c, density_20c_kgm3, product))
    out = np.asarray(volume_l, dtype=float) * np.asarray(
        vcf(np.asarray(temp_c, dtype=float), density_20c_kgm3, product), dtype=float
    )
    return _as_result(out)
