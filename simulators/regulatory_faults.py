"""Regulatory faults (issue 5): fuel without paper, paper without fuel, bent declarations, invoices and
prices, a misdeclared tank, storage nobody declared. Same rules as ``simulators.faults`` (own generator,
nothing changes before ``at``, only through the station's hooks); registered in its FAULT_TYPES.

- ``delivery_without_po {tank, volume_l=6000, duration=15m}``: a tanker drops ``volume_l`` litres at 20 °C
  into the tank (capped to the room below 90 % of its size; it waits for room) with no order or invoice.
- ``po_without_delivery {tank, volume_l=10000}``: an order and its purchase invoice for the tank's grade,
  planned to arrive 4 h later; nothing ever comes. Onset: the planned arrival.
- ``underdeclared_sales {fraction}``: every daily declaration filed from ``at`` reports (1 − fraction) of
  the litres and revenue the station's own POS recorded. Onset: the first such declaration.
- ``invoice_inflation {fraction, direction=purchase}``: purchase invoices from ``at`` claim (1 + fraction)
  of the order's litres and amount; with ``direction: sales`` the daily sales invoice claims (1 + fraction)
  of the declared sales instead. Onset: the first inflated invoice.
- ``price_dumping {factor}``: from ``at`` the station posts (and charges) ``factor`` × its price.
- ``capacity_misreport {tank, declared_factor}``: the registry the twin is configured with holds the tank
  with ``declared_factor`` × its declared capacity (the chart is the gauge's, right). Onset: ``at``.
- ``hidden_tank {nozzle, volume_l}``: from ``at`` the nozzle draws from an undeclared tank holding
  ``volume_l`` litres until it runs dry: its sales are metered but leave no declared tank.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from simulators.faults import _REQUIRED, ScenarioFault, _fraction, _Param, _positive, _span
from simulators.hooks import RECEIVED, FillPlan, Flow
from twin.physics import vcf
from twin.timeutil import local_day

if TYPE_CHECKING:
    from simulators.station import StationSim
    from twin.registry import District


def _direction(value: Any) -> str:
    if value not in ("purchase", "sales"):
        raise ValueError(f"must be 'purchase' or 'sales', got {value!r}")
    return str(value)


def _factor(value: Any) -> float:
    x = _positive(value)
    if not 0.1 <= x <= 10 or x == 1.0:
        raise ValueError(f"must be a ratio in 0.1–10 other than 1, got {value!r}")
    return x


class DeliveryWithoutPo(ScenarioFault):
    TYPE = "delivery_without_po"
    PARAMS = {
        "volume_l": _Param(_positive, 6000.0, "litres at 20 °C dropped, default 6000"),
        "duration": _Param(_span, 900.0, "how long the drop takes, default 15m"),
    }

    def _setup(self, station: StationSim) -> None:
        self._done = False

    def _block(self, station: StationSim, b0: float, b1: float) -> list[Flow]:
        if self._done or b1 <= self.at:
            return []
        i = self.index
        if b0 < station.order_until[i]:
            return []  # a regular drop is on its way: the unrecorded one comes after it
        gross = float(station.net[i]) / vcf(float(station.temp[i]), station.density[i], station.product[i])
        room = 0.9 * float(station.nominal_l[i]) - gross
        volume = min(self.params["volume_l"], room)
        if volume < 1000.0:
            return []
        self._done = True
        s = max(self.at, b0)
        e = s + self.params["duration"]
        self.record.affected_l = volume
        self.record.count = 1
        self.record.touch(s, e)
        station.order_until[i] = e
        return [Flow(i, s, e, volume, RECEIVED, float(station.temp[i]))]


class PoWithoutDelivery(ScenarioFault):
    TYPE = "po_without_delivery"
    PARAMS = {"volume_l": _Param(_positive, 10_000.0, "litres at 20 °C on the order, default 10000")}

    def _setup(self, station: StationSim) -> None:
        self._done = False

    def _events(self, station: StationSim, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self._done or self._b1 <= self.at:
            return events
        self._done = True
        ts = max(self.at, self._b0)
        tank = station.tanks[self.index]
        volume = self.params["volume_l"]
        day = local_day(ts)
        po_no = f"{station.id}-PO{day.replace('-', '')[2:]}-X{int(self.rng.integers(1000, 9999))}"
        invoice = f"{day[2:4]}12{int(self.rng.integers(0, 10**16)):016d}"
        arrive = ts + 4 * 3600.0
        po = station._base(ts, "", "doc.purchase", station.src_docs, station.seq_docs)
        po.update(
            po_no=po_no,
            supplier="天津滨港石油贸易有限公司",
            depot="南疆油库",
            grade=tank.grade,
            volume_l_20c=volume,
            density_20c=tank.density_20c,
            invoice_no=invoice,
            vehicle="津R·00000",
            seals=["TJ00000000"],
            depart_ts=arrive - 3600.0,
            arrive_ts=arrive,
            route=[(117.770, 38.965), (station.spec.lon, station.spec.lat)],
        )
        inv = station._base(ts, "", "doc.invoice", station.src_docs, station.seq_docs + 1)
        unit = round(station.prices.price(tank.grade, ts) * 0.88, 2)
        inv.update(
            invoice_no=invoice,
            direction="purchase",
            grade=tank.grade,
            volume_l=volume,
            amount_cny=round(volume * unit, 2),
            day=day,
        )
        station.seq_docs += 2
        self.record.details = {"po_no": po_no, "invoice_no": invoice}
        self.record.affected_l = volume
        self.record.count = 1
        self.record.touch(arrive)
        return [*events, po, inv]


class UnderdeclaredSales(ScenarioFault):
    TYPE = "underdeclared_sales"
    ENTITY = "station"
    PARAMS = {"fraction": _Param(_fraction, _REQUIRED, "share of sales left out, e.g. 0.05")}

    def _events(self, station: StationSim, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        f = self.params["fraction"]
        for ev in events:
            if ev["kind"] == "doc.declaration" and ev["ts"] >= self.at and ev["volume_l"] > 0:
                hidden = round(ev["volume_l"] * f)
                ev["volume_l"] = float(ev["volume_l"] - hidden)
                ev["revenue_cny"] = float(round(ev["revenue_cny"] * (1 - f)))
                self.record.affected_l += hidden
                self.record.count += 1
                self.record.touch(ev["ts"])
        return events


class InvoiceInflation(ScenarioFault):
    TYPE = "invoice_inflation"
    ENTITY = "station"
    PARAMS = {
        "fraction": _Param(_fraction, _REQUIRED, "share added to the invoiced litres, e.g. 0.1"),
        "direction": _Param(_direction, "purchase", "'purchase' (default) or 'sales'"),
    }

    def _events(self, station: StationSim, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        f, direction = self.params["fraction"], self.params["direction"]
        declared = {
            (ev["grade"], ev["day"]): ev["volume_l"] for ev in events if ev["kind"] == "doc.declaration"
        }
        for ev in events:
            if ev["kind"] != "doc.invoice" or ev["direction"] != direction or ev["ts"] < self.at:
                continue
            if direction == "purchase":
                scale = 1 + f
            else:
                base = declared.get((ev["grade"], ev["day"]))
                if not base or ev["volume_l"] <= 0:
                    continue
                scale = base * (1 + f) / ev["volume_l"]
            extra = ev["volume_l"] * (scale - 1)
            ev["volume_l"] = round(ev["volume_l"] * scale, 2)
            ev["amount_cny"] = round(ev["amount_cny"] * scale, 2)
            self.record.affected_l += extra
            self.record.count += 1
            self.record.touch(ev["ts"])
        return events


class PriceDumping(ScenarioFault):
    TYPE = "price_dumping"
    ENTITY = "station"
    PARAMS = {"factor": _Param(_positive, _REQUIRED, "posted price × factor, e.g. 0.8")}

    def _setup(self, station: StationSim) -> None:
        self._posted = False

    def _events(self, station: StationSim, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        factor = self.params["factor"]
        if self._b1 <= self.at:
            return events
        for ev in events:
            if ev["ts"] < self.at:
                continue
            if ev["kind"] == "price.posted":
                ev["unit_price"] = round(ev["unit_price"] * factor, 2)
                self.record.touch(ev["ts"])
            elif ev["kind"] == "nozzle.txn":
                ev["unit_price"] = round(ev["unit_price"] * factor, 2)
                ev["amount_cny"] = round(ev["volume_l"] * ev["unit_price"], 2)
                self.record.touch(ev["ts"])
        if not self._posted:
            self._posted = True
            ts = max(self.at, self._b0)
            for grade in sorted({t.grade for t in station.tanks}):
                ev = station._base(ts, "", "price.posted", station.src_pos, station.seq_pos)
                ev.update(grade=grade, unit_price=round(station.prices.price(grade, ts) * factor, 2))
                station.seq_pos += 1
                events.append(ev)
            self.record.count = 1
            self.record.touch(ts)
        return events


class CapacityMisreport(ScenarioFault):
    TYPE = "capacity_misreport"
    PARAMS = {"declared_factor": _Param(_factor, _REQUIRED, "declared / true capacity, e.g. 1.25")}

    def declare(self, district: District) -> District:
        """The registry as the station filed it: this tank's capacity scaled (the runner applies it)."""
        from twin.registry import District as _District

        data = district.model_dump()
        for st in data["stations"]:
            if st["id"] == self.station_id:
                for t in st["tanks"]:
                    if t["id"] == self.entity:
                        t["declared_capacity_l"] = round(
                            t["declared_capacity_l"] * self.params["declared_factor"]
                        )
        return _District.model_validate(data)

    def _block(self, station: StationSim, b0: float, b1: float) -> list[Flow]:
        if self.record.first_active_ts is None and b1 > self.at:
            self.record.touch(max(self.at, b0))
            self.record.details = {"declared_factor": self.params["declared_factor"]}
        return []


class HiddenTank(ScenarioFault):
    TYPE = "hidden_tank"
    ENTITY = "nozzle"
    PARAMS = {"volume_l": _Param(_positive, _REQUIRED, "litres in the undeclared tank, e.g. 8000")}

    def _setup(self, station: StationSim) -> None:
        self._left = self.params["volume_l"]

    def _fill(self, station: StationSim, fill: FillPlan) -> None:
        if fill.nozzle != self.index or fill.start_ts < self.at:
            return
        litres = fill.displayed_l / fill.meter_factor
        if litres > self._left:
            return
        self._left -= litres
        fill.meter_factor = 1e12  # what leaves the declared tank: nothing
        self.record.affected_l += fill.displayed_l
        self.record.count += 1
        self.record.touch(fill.start_ts, fill.end_ts)


FAULT_TYPES: dict[str, type[ScenarioFault]] = {
    cls.TYPE: cls
    for cls in (
        DeliveryWithoutPo,
        PoWithoutDelivery,
        UnderdeclaredSales,
        InvoiceInflation,
        PriceDumping,
        CapacityMisreport,
        HiddenTank,
    )
}
