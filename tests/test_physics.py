"""Tests for twin.physics against values worked by hand (the working is in the comments).

Sources: DOMAIN.md "Gauges, deliveries, temperature" (flat-cylinder formula, Table 54B constants,
CTL form), GB/T 1885 (20 °C reference).
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from twin.physics import (
    REFERENCE_TEMP_C,
    HorizontalCylinder,
    StrappingTable,
    TankGeometry,
    geometry_from_spec,
    gross_to_20c,
    net_volume_20c,
    product_of_grade,
    thermal_expansion_coeff,
    vcf,
)

# Flat cylinder used throughout: D = 2000 mm (r = 1000 mm = 1 m), L = 5000 mm (5 m).
FLAT = HorizontalCylinder(diameter_mm=2000.0, length_mm=5000.0)
# Half full: pi * r^2 / 2 * L = pi * 1^2 / 2 * 5 m^3 = 7.853981634 m^3 = 7853.981634 L.
HALF_L = math.pi / 2.0 * 5.0 * 1000.0
# Full: pi * r^2 * L = pi * 5 m^3 = 15707.963268 L.
FULL_L = math.pi * 5.0 * 1000.0


# --- grades -------------------------------------------------------------------------------------


@pytest.mark.parametrize("grade", ["92#", "95#", "98#", " 92# "])
def test_gasoline_grades(grade: str) -> None:
    assert product_of_grade(grade) == "gasoline"


@pytest.mark.parametrize("grade", ["0#", "-10#", "-20#"])
def test_diesel_grades(grade: str) -> None:
    assert product_of_grade(grade) == "diesel"


@pytest.mark.parametrize("grade", ["", "92", "E92#", "kerosene", "100#"])
def test_unknown_grade_raises(grade: str) -> None:
    with pytest.raises(ValueError, match="unknown fuel grade"):
        product_of_grade(grade)


# --- flat horizontal cylinder ------------------------------------------------------------------


def test_flat_cylinder_half_and_full() -> None:
    assert FLAT.volume_l(1000.0) == pytest.approx(HALF_L, abs=1e-6)  # 7853.98 L
    assert FLAT.volume_l(2000.0) == pytest.approx(FULL_L, abs=1e-6)  # 15707.96 L
    assert FLAT.capacity_l == pytest.approx(FULL_L, abs=1e-6)
    assert FLAT.height_mm == 2000.0
    assert FLAT.volume_l(0.0) == 0.0


def test_flat_cylinder_quarter_height_by_hand() -> None:
    # h = r/2 = 500 mm: (r - h)/r = 0.5, acos(0.5) = pi/3.
    # Segment area = r^2 * pi/3 - (r - h) * sqrt(2rh - h^2)
    #              = 1e6 * 1.0471975512 - 500 * sqrt(1e6 - 2.5e5)
    #              = 1047197.5512 - 500 * 866.0254038 = 1047197.5512 - 433012.7019 = 614184.8493 mm^2.
    # V = 614184.8493 mm^2 * 5000 mm = 3.0709242465e9 mm^3 = 3070.9242 L.
    assert FLAT.volume_l(500.0) == pytest.approx(3070.9242465, abs=1e-6)
    # By symmetry the empty space above h = 1500 mm is the same segment: V(1500) = 15707.963 - 3070.924.
    assert FLAT.volume_l(1500.0) == pytest.approx(FULL_L - 3070.9242465, abs=1e-6)


def test_volume_is_clipped_to_the_tank() -> None:
    assert FLAT.volume_l(-5.0) == 0.0
    assert FLAT.volume_l(2500.0) == pytest.approx(FULL_L)
    assert FLAT.level_mm(-1.0) == 0.0
    assert FLAT.level_mm(FULL_L + 100.0) == pytest.approx(2000.0)
    out = FLAT.volume_l(np.array([-5.0, 1000.0, 2500.0]))
    np.testing.assert_allclose(out, [0.0, HALF_L, FULL_L], atol=1e-6)


def test_scalar_in_float_out_array_in_array_out() -> None:
    assert isinstance(FLAT.volume_l(500.0), float)
    assert isinstance(FLAT.volume_l(500), float)
    assert isinstance(FLAT.level_mm(3000.0), float)
    assert isinstance(FLAT.volume_l(np.float32(500.0)), float)  # a 0-d result goes back as float
    arr = FLAT.volume_l(np.array([500.0, 1000.0]))
    assert isinstance(arr, np.ndarray) and arr.shape == (2,)
    # Scalar (math) and vector (numpy) paths agree.
    levels = np.linspace(0.0, 2000.0, 41)
    np.testing.assert_allclose(FLAT.volume_l(levels), [FLAT.volume_l(float(h)) for h in levels], rtol=1e-12)


def test_dv_dh_flat() -> None:
    # At mid height the liquid surface is D wide and L long: 2000 mm * 5000 mm = 1e7 mm^2 = 10 L/mm.
    assert FLAT.dv_dh(1000.0) == pytest.approx(10.0)
    # At the bottom the surface has zero width.
    assert FLAT.dv_dh(0.0) == 0.0
    # Agrees with a central difference of the volume.
    h = 321.0
    assert FLAT.dv_dh(h) == pytest.approx(
        (FLAT.volume_l(h + 1e-3) - FLAT.volume_l(h - 1e-3)) / 2e-3, rel=1e-6
    )


# --- dished ends ---------------------------------------------------------------------------------


def test_hemispherical_ends_by_hand() -> None:
    # Dish depth a = r = 1000 mm: the two heads make one sphere of radius 1 m.
    tank = HorizontalCylinder(2000.0, 5000.0, ends="dished", dish_depth_mm=1000.0)
    # Heads at h: pi*a*h^2*(3r - h)/(3r) with a = r is the spherical cap pi*h^2*(3r - h)/3.
    # h = 500 mm: pi * 500^2 * (3000 - 500) / 3 = pi * 208333333.3 mm^3 = 654498469.5 mm^3 = 654.4985 L,
    # plus the flat-cylinder 3070.9242 L = 3725.4227 L.
    assert tank.volume_l(500.0) == pytest.approx(3070.9242465 + 654.4984695, abs=1e-6)
    # Half full: half cylinder 7853.9816 L + half sphere 2/3*pi*1 m^3 = 2094.3951 L = 9948.3767 L.
    assert tank.volume_l(1000.0) == pytest.approx(HALF_L + 2.0 / 3.0 * math.pi * 1000.0, abs=1e-6)
    # Full: 15707.9633 L + 4/3*pi*1 m^3 = 4188.7902 L = 19896.7535 L.
    assert tank.capacity_l == pytest.approx(FULL_L + 4.0 / 3.0 * math.pi * 1000.0, abs=1e-6)
    assert tank.volume_l(2000.0) == pytest.approx(tank.capacity_l, abs=1e-6)


def test_elliptical_2_to_1_heads_full_volume() -> None:
    # 2:1 elliptical heads, a = D/4 = 500 mm: full heads = 4/3*pi*r^2*a = 4/3*pi*1e6*500 mm^3 = 2094.3951 L.
    tank = HorizontalCylinder(2000.0, 5000.0, ends="dished", dish_depth_mm=500.0)
    assert tank.capacity_l == pytest.approx(FULL_L + 2094.3951024, abs=1e-6)
    # dv_dh includes the heads: at mid height 10 L/mm (shell) + pi*a*h*(2r - h)/r = pi*500*1000 mm^2
    # = 1.5708 L/mm.
    assert tank.dv_dh(1000.0) == pytest.approx(10.0 + math.pi * 0.5, rel=1e-12)


# --- inverse: level from volume ------------------------------------------------------------------


@pytest.mark.parametrize(
    "tank",
    [
        FLAT,
        HorizontalCylinder(2600.0, 6000.0, ends="dished", dish_depth_mm=650.0),
        HorizontalCylinder(3000.0, 8000.0),
    ],
)
def test_level_volume_round_trip_over_arrays(tank: HorizontalCylinder) -> None:
    rng = np.random.default_rng(7)
    d = tank.height_mm
    # Random levels plus dense levels at the bottom and top, where V(h) ~ h^1.5 is hardest to invert.
    levels = np.concatenate(
        [rng.uniform(0.0, d, 50_000), np.linspace(0.0, 2.0, 2001), d - np.linspace(0.0, 2.0, 2001)]
    )
    back = tank.level_mm(tank.volume_l(levels))
    assert np.max(np.abs(back - levels)) < 2e-4  # the table's spacing is chosen for 1e-4 mm
    # Scalar path too.
    for h in (0.0, 0.013, 1.7, 500.0, d / 2.0, d - 0.02, d):
        assert abs(tank.level_mm(tank.volume_l(h)) - h) < 2e-4
    # Small as well as exact: every simulated tank's true geometry holds its own table.
    volumes, levels_table = tank._table
    assert volumes.nbytes + levels_table.nbytes < 100_000


# --- strapping tables ----------------------------------------------------------------------------

CHART = StrappingTable(levels_mm=(0.0, 100.0, 200.0), volumes_l=(0.0, 150.0, 400.0))


def test_strapping_interpolates_between_rows() -> None:
    # 150 mm is halfway between the 100 mm (150 L) and 200 mm (400 L) rows: 150 + 0.5 * (400 - 150) = 275 L.
    assert CHART.volume_l(150.0) == pytest.approx(275.0)
    assert CHART.level_mm(275.0) == pytest.approx(150.0)
    # 25 mm: 0 + 0.25 * 150 = 37.5 L.
    np.testing.assert_allclose(CHART.volume_l(np.array([25.0, 150.0])), [37.5, 275.0])
    np.testing.assert_allclose(CHART.level_mm(np.array([37.5, 275.0])), [25.0, 150.0])
    assert CHART.capacity_l == 400.0 and CHART.height_mm == 200.0
    # Slope of the 100-200 mm row segment: 250 L / 100 mm = 2.5 L/mm; the first segment 1.5 L/mm.
    assert CHART.dv_dh(150.0) == pytest.approx(2.5)
    assert CHART.dv_dh(50.0) == pytest.approx(1.5)
    assert CHART.dv_dh(200.0) == pytest.approx(2.5)  # top row: last segment


def test_strapping_clamps_outside_the_chart() -> None:
    assert CHART.volume_l(-10.0) == 0.0
    assert CHART.volume_l(250.0) == 400.0
    assert CHART.level_mm(500.0) == 200.0


def test_strapping_accepts_lists_and_stores_tuples() -> None:
    chart = StrappingTable([0, 100, 200], [0, 150, 400])  # type: ignore[arg-type]
    assert chart == CHART
    assert isinstance(chart.levels_mm, tuple) and isinstance(chart.levels_mm[1], float)
    assert hash(chart) == hash(CHART)


@pytest.mark.parametrize(
    ("levels", "volumes", "message"),
    [
        ((0.0, 100.0, 100.0), (0.0, 1.0, 2.0), "levels_mm must be strictly increasing"),
        ((0.0, 200.0, 100.0), (0.0, 1.0, 2.0), "levels_mm must be strictly increasing"),
        ((0.0, 100.0, 200.0), (0.0, 5.0, 5.0), "volumes_l must be strictly increasing"),
        ((0.0, 100.0), (0.0, 1.0, 2.0), "one volume per level"),
        ((0.0,), (0.0,), "at least 2 rows"),
        ((-1.0, 100.0), (0.0, 1.0), "negative"),
        ((0.0, float("nan")), (0.0, 1.0), "not finite"),
        ((0.0, "x"), (0.0, 1.0), "sequence of numbers"),
    ],
)
def test_invalid_strapping_tables_raise(levels: tuple, volumes: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StrappingTable(levels, volumes)


def test_strapping_from_geometry_and_scaled() -> None:
    chart = StrappingTable.from_geometry(FLAT, step_mm=10.0)
    assert len(chart.levels_mm) == 201  # 0, 10, ..., 2000
    assert chart.levels_mm[-1] == 2000.0
    assert chart.volume_l(500.0) == pytest.approx(3070.9242465, abs=1e-6)  # a row: exact
    # Between rows the chord lies below the convex part of V(h): small, bounded error.
    assert chart.volume_l(505.0) == pytest.approx(FLAT.volume_l(505.0), rel=1e-4)
    # Height not a multiple of the step: the top row is still there.
    odd = StrappingTable.from_geometry(FLAT, step_mm=300.0)
    assert odd.levels_mm[-1] == 2000.0 and odd.levels_mm[-2] == 1800.0
    # A chart 5 % small (falsely declared capacity): every volume times 0.95, levels unchanged.
    small = chart.scaled(0.95)
    assert small.levels_mm == chart.levels_mm
    assert small.capacity_l == pytest.approx(0.95 * FULL_L)
    assert small.volume_l(1000.0) == pytest.approx(0.95 * HALF_L)
    with pytest.raises(ValueError):
        chart.scaled(0.0)
    with pytest.raises(ValueError):
        StrappingTable.from_geometry(FLAT, step_mm=0.0)


def test_geometries_satisfy_the_protocol_and_pickle() -> None:
    for g in (FLAT, CHART):
        assert isinstance(g, TankGeometry)
        g.level_mm(1.0)  # build any cached table, which must not be pickled
        clone = pickle.loads(pickle.dumps(g))
        assert clone == g
        assert clone.volume_l(100.0) == g.volume_l(100.0)
    assert len(pickle.dumps(FLAT)) < 1000


# --- geometry specs ------------------------------------------------------------------------------


def test_geometry_from_spec() -> None:
    g = geometry_from_spec({"shape": "horizontal_cylinder", "diameter_mm": 2000, "length_mm": 5000})
    assert g == FLAT
    g = geometry_from_spec(
        {
            "shape": "horizontal_cylinder",
            "diameter_mm": 2000,
            "length_mm": 5000,
            "ends": "dished",
            "dish_depth_mm": 500,
            "tank_id": "T1",  # extra keys are ignored
        }
    )
    assert g == HorizontalCylinder(2000.0, 5000.0, "dished", 500.0)
    g = geometry_from_spec({"shape": "strapping", "levels_mm": [0, 100, 200], "volumes_l": [0, 150, 400]})
    assert g == CHART


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"shape": "sphere"},
        {"shape": "horizontal_cylinder", "diameter_mm": 2000},
        {"shape": "horizontal_cylinder", "diameter_mm": "wide", "length_mm": 5000},
        {"shape": "horizontal_cylinder", "diameter_mm": -2000, "length_mm": 5000},
        {"shape": "horizontal_cylinder", "diameter_mm": 2000, "length_mm": 5000, "ends": "conical"},
        {"shape": "horizontal_cylinder", "diameter_mm": 2000, "length_mm": 5000, "ends": "dished"},
        {"shape": "horizontal_cylinder", "diameter_mm": 2000, "length_mm": 5000, "dish_depth_mm": 300},
        {"shape": "strapping", "levels_mm": [0, 100]},
        {"shape": "strapping", "levels_mm": [0, 100], "volumes_l": [10, 5]},
        {"shape": "strapping", "levels_mm": "0,100", "volumes_l": "0,5"},
    ],
)
def test_bad_specs_raise(spec: dict) -> None:
    with pytest.raises(ValueError):
        geometry_from_spec(spec)


def test_bad_spec_type_raises() -> None:
    with pytest.raises(ValueError, match="mapping"):
        geometry_from_spec([("shape", "strapping")])  # type: ignore[arg-type]


# --- temperature correction ----------------------------------------------------------------------


def test_reference_temperature() -> None:
    assert REFERENCE_TEMP_C == 20.0


@pytest.mark.parametrize(("rho", "product"), [(740.0, "gasoline"), (840.0, "diesel")])
def test_vcf_is_one_at_20c(rho: float, product: str) -> None:
    assert vcf(20.0, rho, product) == 1.0  # type: ignore[arg-type]
    np.testing.assert_array_equal(vcf(np.array([20.0, 20.0]), rho, product), [1.0, 1.0])  # type: ignore[arg-type]


def test_gasoline_alpha_and_ctl_by_hand() -> None:
    # rho = 740 kg/m^3, rho^2 = 547600.
    # alpha = 346.4228 / 547600 + 0.4388 / 740 = 0.000632620161 + 0.000592972973 = 0.001225593134 /°C
    alpha = thermal_expansion_coeff(740.0, "gasoline")
    assert alpha == pytest.approx(0.0012255931336742148, abs=1e-15)
    # 30 °C: dt = 10, alpha*dt = 0.012255931337; 1 + 0.8*alpha*dt = 1.009804745069;
    # exponent = 0.012255931337 * 1.009804745069 = 0.012376097619; CTL = exp(-0.012376097619) = 0.987700171316
    assert vcf(30.0, 740.0, "gasoline") == pytest.approx(0.9877001713155611, abs=1e-9)


def test_diesel_alpha_and_ctl_by_hand() -> None:
    # rho = 840 kg/m^3, rho^2 = 705600.
    # alpha = 186.9696 / 705600 + 0.4862 / 840 = 0.000264979592 + 0.000578809524 = 0.000843789116 /°C
    alpha = thermal_expansion_coeff(840.0, "diesel")
    assert alpha == pytest.approx(0.0008437891156462586, abs=1e-15)
    # 5 °C: dt = -15, alpha*dt = -0.012656836735; 1 + 0.8*alpha*dt = 0.989874530612;
    # exponent = -0.012656836735 * 0.989874530612 = -0.012528680322;
    # CTL = exp(0.012528680322) = 1.012607493033
    assert vcf(5.0, 840.0, "diesel") == pytest.approx(1.0126074930329207, abs=1e-9)


def test_alpha_magnitudes_match_domain() -> None:
    # DOMAIN.md: alpha ~ 1.2e-3 /°C for gasoline, ~ 8.4e-4 /°C for diesel.
    assert thermal_expansion_coeff(740.0, "gasoline") == pytest.approx(1.2e-3, rel=0.05)
    assert thermal_expansion_coeff(840.0, "diesel") == pytest.approx(8.4e-4, rel=0.05)


@pytest.mark.parametrize(("rho", "product"), [(725.0, "gasoline"), (835.0, "diesel")])
def test_vcf_direction(rho: float, product: str) -> None:
    temps = np.array([-20.0, 0.0, 10.0, 19.9, 20.1, 30.0, 45.0])
    f = vcf(temps, rho, product)  # type: ignore[arg-type]
    assert isinstance(f, np.ndarray)
    assert np.all(f[temps < 20.0] > 1.0)  # cold fuel has shrunk: more volume at 20 °C
    assert np.all(f[temps > 20.0] < 1.0)  # warm fuel has expanded
    assert np.all(np.diff(f) < 0.0)
    # Array and scalar paths agree.
    np.testing.assert_allclose(f, [vcf(float(t), rho, product) for t in temps], rtol=1e-14)  # type: ignore[arg-type]


def test_vcf_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="kg/m\\^3"):
        vcf(30.0, 0.74, "gasoline")  # kg/L by mistake
    with pytest.raises(ValueError, match="unknown product"):
        vcf(30.0, 740.0, "kerosene")  # type: ignore[arg-type]


def test_vcf_close_to_rebased_table_54b() -> None:
    # The docstring's claim: rho20 and base 20 °C in the 54B form stay within 0.01 % of the 15 °C
    # correlation rebased to 20 °C (rho15 from rho20 by iteration, VCF20 = CTL15(t) / CTL15(20)).
    def ctl15(t: float, rho15: float, k0: float, k1: float) -> float:
        a = k0 / rho15**2 + k1 / rho15
        dt = t - 15.0
        return math.exp(-a * dt * (1.0 + 0.8 * a * dt))

    for product, rho20, (k0, k1) in (
        ("gasoline", 740.0, (346.4228, 0.4388)),
        ("diesel", 840.0, (186.9696, 0.4862)),
    ):
        rho15 = rho20
        for _ in range(30):
            rho15 = rho20 / ctl15(20.0, rho15, k0, k1)
        for t in (-30.0, -10.0, 0.0, 10.0, 30.0, 40.0, 50.0):
            rebased = ctl15(t, rho15, k0, k1) / ctl15(20.0, rho15, k0, k1)
            assert vcf(t, rho20, product) == pytest.approx(rebased, rel=1e-4)  # type: ignore[arg-type]


# --- net volume ----------------------------------------------------------------------------------


def test_net_volume_subtracts_water() -> None:
    # Level 1000 mm (7853.98 L), water 500 mm (3070.92 L): 4783.06 L of gasoline at 30 °C,
    # times 0.98770017 = 4724.23 L at 20 °C.
    expected = (HALF_L - 3070.9242465) * 0.9877001713155611
    got = net_volume_20c(FLAT, 1000.0, 500.0, 30.0, 740.0, "gasoline")
    assert isinstance(got, float)
    assert got == pytest.approx(expected, abs=1e-6)  # 3070.9242465 is rounded to 1e-7 L
    # No water, 20 °C: the gross volume itself.
    assert net_volume_20c(FLAT, 1000.0, 0.0, 20.0, 740.0, "gasoline") == pytest.approx(HALF_L)


def test_net_volume_clips_to_zero_and_broadcasts() -> None:
    # Water at or above the product level: no product, not a negative stock.
    assert net_volume_20c(FLAT, 300.0, 400.0, 25.0, 740.0, "gasoline") == 0.0
    levels = np.array([1000.0, 300.0, 2000.0])
    got = net_volume_20c(FLAT, levels, np.array([500.0, 400.0, 0.0]), 20.0, 840.0, "diesel")
    assert isinstance(got, np.ndarray)
    np.testing.assert_allclose(got, [HALF_L - 3070.9242465, 0.0, FULL_L], atol=1e-6)
    # Temperatures as an array with a scalar level.
    temps = np.array([10.0, 20.0, 30.0])
    got = net_volume_20c(FLAT, 1000.0, 0.0, temps, 740.0, "gasoline")
    np.testing.assert_allclose(got, HALF_L * np.asarray(vcf(temps, 740.0, "gasoline")), rtol=1e-12)


def test_gross_to_20c() -> None:
    # 50 L of gasoline metered at 30 °C: 50 * 0.98770017 = 49.385009 L at 20 °C.
    assert gross_to_20c(50.0, 30.0, 740.0, "gasoline") == pytest.approx(50.0 * 0.9877001713155611, rel=1e-12)
    got = gross_to_20c(np.array([50.0, 20.0]), np.array([30.0, 20.0]), 740.0, "gasoline")
    np.testing.assert_allclose(got, [50.0 * 0.9877001713155611, 20.0], rtol=1e-12)
