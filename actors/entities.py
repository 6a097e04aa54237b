"""Station, tank and nozzle actors: thin owners of state that call the domain in twin/.

A station's actors live together (DESIGN.md: all actors of one station share a shard), so a nozzle's
sale reaches its tank as a direct, ordered call in the same event-time sequence as the gauge readings:
the tank's expected volume at a reading includes exactly the sales metered before it.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from twin.alerts import AlertBook
from twin.deliveries import DeliveryDetector
from twin.events import EventBase
from twin.outputs import Outputs
from twin.physics import vcf
from twin.reconcile import DriftEstimator, TankBook
from twin.registry import NozzleSpec, StationSpec, TankSpec
from twin.settings import TwinSettings
from twin.timeutil import local_day


def _r(x: float, nd: int = 2) -> float | None:
    return None if x is None or math.isnan(x) else round(x, nd)


class TankActor:
    def __init__(self, station: str, spec: TankSpec, settings: TwinSettings):
        self.station = station
        self.id = spec.id
        self.grade = spec.grade
        self.declared_capacity_l = spec.declared_capacity_l
        self.book = TankBook(spec.geometry(), spec.density, spec.product)  # type: ignore[arg-type]
        self.drift = DriftEstimator(settings.drift_bin_s, settings.drift_window_bins)
        self.deliveries = DeliveryDetector(settings.delivery())
        self.stale_after_s = settings.stale_tank_s
        self.last_ts: float | None = None
        self.level_mm = math.nan
        self.water_mm = math.nan
        self.stale = False
        self._ts: list[float] = []
        self._obs: list[float] = []
        self._exp: list[float] = []
        self._div: list[float] = []

    def reading(self, ev: Any, alerts: AlertBook, out: Outputs) -> None:
        if self.last_ts is not None and ev.ts <= self.last_ts:
            return  # a late reading cannot move a tank back in time; the log still has it
        self.last_ts = ev.ts
        self.level_mm, self.water_mm = ev.level_mm, ev.water_mm
        book = self.book
        observed = book.observe(ev.ts, ev.level_mm, ev.water_mm, ev.temp_c)
        divergence = observed - book.expected_l
        found = self.deliveries.update(ev.ts, divergence)
        if found is not None:
            book.book_receipt(found.net_l_20c)
            divergence -= found.net_l_20c
            gross = found.net_l_20c / float(vcf(book.temp_c, book.density_20c, book.product))
            delivery = {"station": self.station, "tank": self.id, "grade": self.grade,
                        "start_ts": found.start_ts, "end_ts": found.end_ts,
                        "net_l_20c": round(found.net_l_20c, 1), "gross_l": round(gross, 1),
                        "settled": found.settled, "po_no": None}
            out.deliveries.append(delivery)
            alert = alerts.event("DELIVERY_DETECTED", self.id, found.end_ts, evidence=delivery,
                                 metrics={"net_l": found.net_l_20c})
            out.alerts.append(alert.to_dict())
        self.drift.add(ev.ts, divergence, settled=not self.deliveries.active)
        self._ts.append(ev.ts)
        self._obs.append(observed)
        self._exp.append(observed - divergence)
        self._div.append(divergence)
        if self.stale:
            self.stale = False
            closed = alerts.close("COMM_LOSS", self.id, ev.ts)
            if closed is not None:
                out.alerts.append(closed.to_dict())

    def tick(self, ts: float, alerts: AlertBook, out: Outputs) -> None:
        if self.last_ts is None or self.stale or ts - self.last_ts < self.stale_after_s:
            return
        self.stale = True
        alert = alerts.raise_("COMM_LOSS", "warning", self.id, ts,
                              evidence={"last_seen_ts": self.last_ts},
                              metrics={"minutes": (ts - self.last_ts) / 60.0})
        if alert is not None:
            out.alerts.append(alert.to_dict())

    def flush(self, out: Outputs) -> None:
        """Emit this batch's divergence points as one columnar record."""
        if not self._ts:
            return
        rate = self.drift.estimate()
        out.divergence.append({
            "station": self.station, "tank": self.id, "ts": self._ts,
            "observed_l": self._obs, "expected_l": self._exp, "divergence_l": self._div,
            "leak_rate_lph": None if rate is None else round(rate[0], 4),
            "leak_rate_se_lph": None if rate is None else round(rate[1], 4),
        })
        self._ts, self._obs, self._exp, self._div = [], [], [], []

    def state(self) -> dict[str, Any]:
        book = self.book
        rate = self.drift.estimate()
        return {"id": self.id, "grade": self.grade, "declared_capacity_l": self.declared_capacity_l,
                "level_mm": _r(self.level_mm, 1), "water_mm": _r(self.water_mm, 1),
                "temp_c": _r(book.temp_c, 2), "observed_l": _r(book.observed_l, 1),
                "expected_l": _r(book.expected_l, 1), "divergence_l": _r(book.divergence_l, 1),
                "leak_rate_lph": None if rate is None else round(rate[0], 3),
                "leak_rate_se_lph": None if rate is None else round(rate[1], 3),
                "delivering": self.deliveries.active, "stale": self.stale, "last_ts": self.last_ts}


class NozzleActor:
    def __init__(self, station: str, spec: NozzleSpec, settings: TwinSettings):
        self.station = station
        self.id = spec.id
        self.tank = spec.tank
        self.grade = spec.grade
        self.stale_after_s = settings.stale_nozzle_s
        self.state_name = "idle"
        self.running_l = 0.0
        self.running_cny = 0.0
        self.last_txn_no: int | None = None
        self.totalizer_l: float | None = None
        self.totalizer_cny: float | None = None
        self.model = ""
        self.mainboard_id = ""
        self.last_ts: float | None = None
        self.stale = False

    def seen(self, ts: float, alerts: AlertBook, out: Outputs) -> None:
        self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)
        if self.stale:
            self.stale = False
            closed = alerts.close("COMM_LOSS", self.id, ts)
            if closed is not None:
                out.alerts.append(closed.to_dict())

    def state_event(self, ev: Any) -> float:
        """Track the live state; return the litres dispensed so far in this fill."""
        self.state_name = ev.state
        self.running_l = ev.volume_l if ev.state in ("fuelling", "finished") else 0.0
        self.running_cny = ev.amount_cny if ev.state in ("fuelling", "finished") else 0.0
        return self.running_l

    def txn(self, ev: Any) -> None:
        self.last_txn_no = ev.txn_no
        self.totalizer_l = ev.totalizer_l
        self.totalizer_cny = ev.totalizer_cny
        self.running_l = 0.0
        self.running_cny = 0.0

    def device(self, ev: Any) -> None:
        self.model = ev.model
        self.mainboard_id = ev.mainboard_id

    def tick(self, ts: float, alerts: AlertBook, out: Outputs) -> None:
        if self.last_ts is None or self.stale or ts - self.last_ts < self.stale_after_s:
            return
        self.stale = True
        alert = alerts.raise_("COMM_LOSS", "warning", self.id, ts, evidence={"last_seen_ts": self.last_ts},
                              metrics={"minutes": (ts - self.last_ts) / 60.0})
        if alert is not None:
            out.alerts.append(alert.to_dict())

    def state(self) -> dict[str, Any]:
        return {"id": self.id, "tank": self.tank, "grade": self.grade, "state": self.state_name,
                "running_l": round(self.running_l, 2), "running_cny": round(self.running_cny, 2),
                "last_txn_no": self.last_txn_no, "totalizer_l": self.totalizer_l,
                "mainboard_id": self.mainboard_id, "stale": self.stale, "last_ts": self.last_ts}


class StationActor:
    """Owns a station's tanks and nozzles and routes each event to them in event-time order."""

    def __init__(self, spec: StationSpec, settings: TwinSettings):
        self.id = spec.id
        self.name = spec.name
        self.region = spec.region
        self.alerts = AlertBook(spec.id)
        self.tanks = {t.id: TankActor(spec.id, t, settings) for t in spec.tanks}
        self.nozzles = {n.id: NozzleActor(spec.id, n, settings) for n in spec.nozzles}
        self.recent_txns: deque[dict[str, Any]] = deque(maxlen=settings.recent_transactions)
        self.prices: dict[str, float] = {}
        self.purchase_orders: dict[str, dict[str, Any]] = {}
        self.watermark: float | None = None
        self.day: str | None = None
        self.sales_today: dict[str, list[float]] = {}
        self.events = 0

    #: Handler method per event kind, by name so that the actor pickles (snapshots) as plain data.
    HANDLERS = {"tank.reading": "_reading", "nozzle.state": "_nozzle_state", "nozzle.txn": "_txn",
                "device.info": "_device", "price.posted": "_price", "doc.purchase": "_purchase",
                "clock.tick": "_tick"}

    def handle(self, ev: EventBase, out: Outputs) -> None:
        self.events += 1
        name = self.HANDLERS.get(ev.kind)  # type: ignore[attr-defined]
        if name is not None:
            getattr(self, name)(ev, out)
        # Other kinds (vapor, invoices, declarations, inspections) are logged and reach the station;
        # their detectors come with the issues that own them.

    def flush(self, out: Outputs, with_state: bool = True) -> None:
        for tank in self.tanks.values():
            tank.flush(out)
        if with_state:
            out.states[self.id] = self.state()

    # ---- handlers -------------------------------------------------------------------------------

    def _reading(self, ev: Any, out: Outputs) -> None:
        self.tanks[ev.entity].reading(ev, self.alerts, out)

    def _nozzle_state(self, ev: Any, out: Outputs) -> None:
        nozzle = self.nozzles[ev.entity]
        nozzle.seen(ev.ts, self.alerts, out)
        running = nozzle.state_event(ev)
        self.tanks[nozzle.tank].book.running(nozzle.id, running)

    def _txn(self, ev: Any, out: Outputs) -> None:
        nozzle = self.nozzles[ev.entity]
        nozzle.seen(ev.ts, self.alerts, out)
        nozzle.txn(ev)
        sale_20c = self.tanks[nozzle.tank].book.book_sale(nozzle.id, ev.volume_l)
        day = local_day(ev.end_ts)
        if day != self.day:
            self.day = day
            self.sales_today = {}
        totals = self.sales_today.setdefault(ev.grade, [0.0, 0.0, 0])
        totals[0] += ev.volume_l
        totals[1] += ev.amount_cny
        totals[2] += 1
        self.recent_txns.append({"nozzle": nozzle.id, "txn_no": ev.txn_no, "grade": ev.grade,
                                 "volume_l": ev.volume_l, "amount_cny": ev.amount_cny,
                                 "unit_price": ev.unit_price, "end_ts": ev.end_ts,
                                 "volume_l_20c": round(sale_20c, 2)})

    def _device(self, ev: Any, out: Outputs) -> None:
        if ev.entity in self.nozzles:
            self.nozzles[ev.entity].device(ev)

    def _price(self, ev: Any, out: Outputs) -> None:
        self.prices[ev.grade] = ev.unit_price

    def _purchase(self, ev: Any, out: Outputs) -> None:
        self.purchase_orders[ev.po_no] = {"po_no": ev.po_no, "grade": ev.grade, "ts": ev.ts,
                                          "volume_l_20c": ev.volume_l_20c, "supplier": ev.supplier}

    def _tick(self, ev: Any, out: Outputs) -> None:
        if self.watermark is not None and ev.ts <= self.watermark:
            return
        self.watermark = ev.ts
        for tank in self.tanks.values():
            tank.tick(ev.ts, self.alerts, out)
        for nozzle in self.nozzles.values():
            nozzle.tick(ev.ts, self.alerts, out)

    # ---- view -----------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "station": self.id, "name": self.name, "region": self.region, "watermark": self.watermark,
            "tanks": [t.state() for t in self.tanks.values()],
            "nozzles": [n.state() for n in self.nozzles.values()],
            "recent_transactions": list(self.recent_txns)[::-1],
            "prices": dict(self.prices),
            "sales_today": {"day": self.day, "by_grade": {g: {"volume_l": round(v[0], 2),
                                                              "amount_cny": round(v[1], 2),
                                                              "count": int(v[2])}
                                                          for g, v in self.sales_today.items()}},
            "open_alerts": [a.to_dict() for a in self.alerts.open.values()],
            "events": self.events,
        }
