"""Paper that travels with fuel: purchase orders, their invoices, the tanker, its seals and route.

Only the look of the numbers is made up (PO and invoice formats, plates); what matters to the twin is
that every delivery has a PO with the depot-metered volume at 20 °C, a density, an invoice and a route
from a real depot of the station's supplier to the station.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from simulators.places import DEPOTS, TRADER, Depot

#: Plate letters of Tianjin (津A…津R); I and O are never used on Chinese plates.
_PLATE_LETTERS = "ABCDEFGHJKLMNPQR"
#: Average tanker speed on Binhai roads (km/h) and road/straight-line distance ratio.
TANKER_SPEED_KMH = 35.0
ROAD_FACTOR = 1.3


@dataclass(frozen=True, slots=True)
class Trip:
    supplier: str
    depot: str
    vehicle: str
    seals: list[str]
    route: list[tuple[float, float]]
    travel_s: float


def supplier_depot(brand: str, rng: np.random.Generator) -> tuple[str, Depot]:
    """The majors load at their own depot; Shell and private stations buy from a trader at any of them."""
    if brand in DEPOTS:
        return DEPOTS[brand].supplier, DEPOTS[brand]
    depot = list(DEPOTS.values())[int(rng.integers(len(DEPOTS)))]
    return TRADER, depot


def distance_km(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance; good enough at district scale."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dlat = p2 - p1
    dlon = math.radians(lon2 - lon1)
    a = math.sin(dlat / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dlon / 2) ** 2
    return 6371.0 * 2 * math.asin(math.sqrt(a))


def plan_trip(rng: np.random.Generator, brand: str, lon: float, lat: float, volume_l: float) -> Trip:
    """A tanker (plate, one seal per 5,000 L compartment) and a 3–5 point route depot → station."""
    supplier, depot = supplier_depot(brand, rng)
    plate = f"津{_PLATE_LETTERS[int(rng.integers(len(_PLATE_LETTERS)))]}·{int(rng.integers(10000, 100000))}"
    compartments = max(1, math.ceil(volume_l / 5000.0))
    seal0 = int(rng.integers(10_000_000, 99_000_000))
    seals = [f"TJ{seal0 + k:08d}" for k in range(compartments)]
    n_mid = int(rng.integers(1, 4))
    route = [(depot.lon, depot.lat)]
    for k in range(1, n_mid + 1):
        f = k / (n_mid + 1)
        jitter = rng.uniform(-0.008, 0.008, 2)
        route.append((round(depot.lon + f * (lon - depot.lon) + float(jitter[0]), 6),
                      round(depot.lat + f * (lat - depot.lat) + float(jitter[1]), 6)))
    route.append((lon, lat))
    km = distance_km(depot.lon, depot.lat, lon, lat) * ROAD_FACTOR
    travel_s = max(900.0, km / TANKER_SPEED_KMH * 3600.0)
    return Trip(supplier, depot.depot, plate, seals, route, travel_s)


def invoice_number(rng: np.random.Generator, year2: int) -> str:
    """A 20-digit fully digital invoice number (全电发票): year, region code 12 (Tianjin), serial."""
    return f"{year2:02d}12{int(rng.integers(0, 10**16)):016d}"
