"""Station, tank and nozzle actors: thin owners of state that call the domain in twin/.

A station's actors live together (DESIGN.md: all actors of one station share a shard), so a nozzle's
sale reaches its tank as a direct, ordered call in the same event-time sequence as the gauge readings:
the tank's expected volume at a reading includes exactly the sales metered before it.
"""

from __future__ import annotations

import math
from collections import deque
from functools import partial
from typing import Any

from twin.alerts import AlertBook, link_hidden_sales
from twin.deliveries import DeliveryDetector
from twin.detectors.fill_witness import FillWitness
from twin.detectors.gauge import LimitCheck, StuckCheck, WindowRange
from twin.detectors.losses import LossDetector, NozzleFills, with_open_theft
from twin.detectors.nozzle import Finding, NozzleLedger
from twin.detectors.wetstock import WetstockFit, WetstockModel
from twin.detectors.wetstock_judge import WetstockJudge
from twin.events import GASOLINE_GRADES, EventBase
from twin.outputs import Outputs
from twin.physics import vcf
from twin.reconcile import TankBook
from twin.registry import NozzleSpec, StationSpec, TankSpec
from twin.regulatory import DOC_KINDS, StationRegulator
from twin.safety import SafetyMonitor
from twin.settings import TwinSettings
from twin.timeutil import local_day
from twin.vapor import VaporAction, VaporMonitor

#: A tank's water bottom moving more than this (mm) over the meter-change scan's days keeps its meters
#: from being judged by a change (TankActor._water_steady).
WATER_STEADY_MM = 5.0


def _r(x: float, nd: int = 2) -> float | None:
    return None if x is None or math.isnan(x) else round(x, nd)


def report(alerts: AlertBook, entity: str, ts: float, finding: Finding, out: Outputs,
           refresh: bool = False) -> None:
    alert = alerts.raise_(finding.code, finding.severity, entity, ts,  # type: ignore[arg-type]
                          evidence=finding.evidence, metrics=finding.metrics, refresh=refresh)
    if alert is not None:
        out.alerts.append(alert.to_dict())


def clear(alerts: AlertBook, code: str, entity: str, ts: float, out: Outputs) -> None:
    closed = alerts.close(code, entity, ts)
    if closed is not None:
        out.alerts.append(closed.to_dict())


class TankActor:
    #: Litres of divergence the booked sales made through the nozzles' fitted β (meter and chart error):
    #: what the loss detectors take out before looking for unrecorded falls (class default: checkpoints
    #: from before it).
    _sales_bias_l: float = 0.0

    def __init__(self, station: str, spec: TankSpec, settings: TwinSettings, nozzles: tuple[str, ...] = ()):
        self.station = station
        self.id = spec.id
        self.grade = spec.grade
        self.declared_capacity_l = spec.declared_capacity_l
        self.book = TankBook(spec.geometry(), spec.density, spec.product)  # type: ignore[arg-type]
        self.deliveries = DeliveryDetector(settings.delivery())
        self.stale_after_s = settings.stale_tank_s
        self.losses = LossDetector(settings.losses())
        self.nozzles = nozzles
        self.sold = [0.0] * len(nozzles)
        self.wetstock = WetstockModel(nozzles, settings.wetstock())
        self.judge = WetstockJudge(spec.id, settings.wetstock(), settings.loss_sales_factor_max)
        #: issue 5: set when a regulatory finding (HIDDEN_TANK) already explains the tank's trend, so the
        #: wetstock judgement does not blame the gauge or a leak for it (as HIDDEN_SALES does for LEAK).
        self.trend_explained: str | None = None
        self.stuck = StuckCheck(settings.gauge_stuck_after_s)
        self.water = LimitCheck(spec.water_limit_mm, hysteresis=5.0)
        self.overfill = LimitCheck(spec.declared_capacity_l * spec.safe_fill_pct / 100.0,
                                   hysteresis=0.01 * spec.declared_capacity_l)
        self.last_ts: float | None = None
        self.level_mm = math.nan
        self.water_mm = math.nan
        self.stale = False
        self._water_marks: deque[tuple[float, float]] = deque()
        self._ts: list[float] = []
        self._obs: list[float] = []
        self._exp: list[float] = []
        self._div: list[float] = []

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint, also one taken before the wetstock judgement moved to WetstockJudge
        (its state then sat in the actor's own attributes)."""
        if "judge" not in state:
            judge = WetstockJudge(state["id"], state.pop("wetstock_settings"),
                                  state.pop("sales_factor_max", 0.006))
            judge.last_fit = state.pop("last_fit", None)
            judge.leak_refreshed_ts = state.pop("_leak_refreshed_ts", -math.inf)
            judge.meter_change_verdict = state.pop("_meter_change_verdict", None)
            judge.sales_factors = state.pop("_sales_factor", {})
            state["judge"] = judge
        self.__dict__.update(state)

    def reading(self, ev: Any, alerts: AlertBook, out: Outputs,
                nozzle_fills: NozzleFills | None = None) -> None:
        """One gauge reading. ``nozzle_fills``: where a live vapor monitor covers the tank's nozzles, the
        fills it saw with no transaction (LossDetector.add)."""
        if self.last_ts is not None and ev.ts <= self.last_ts:
            return  # a late reading cannot move a tank back in time; the log still has it
        ts = ev.ts
        self.last_ts = ts
        self.level_mm, self.water_mm = ev.level_mm, ev.water_mm
        book = self.book
        observed = book.observe(ts, ev.level_mm, ev.water_mm, ev.temp_c)
        divergence = observed - book.expected_l
        trusted = self._gauge_checks(ev, alerts, out)
        if trusted:
            found = self.deliveries.update(ts, divergence)
            if found is not None:
                divergence -= found.net_l_20c
                self._delivered(found, ts, alerts, out)
            if self.deliveries.active:
                self.losses.reset()
                self.wetstock.brk()
            else:
                finding = self.losses.add(ts, divergence - self._sales_bias_l, nozzle_fills)
                if finding is not None:  # each further unrecorded fill updates an open HIDDEN_SALES
                    if finding.code == "SUDDEN_LOSS":
                        finding = with_open_theft(alerts.open.get((self.id, "SUDDEN_LOSS")), finding)
                    report(alerts, self.id, ts, finding, out, refresh=True)
                    self.wetstock.brk()
                wetstock = self.wetstock
                if wetstock.closes_bin(ts):
                    progress = book.in_progress
                    dispensed = [v + progress.get(n, 0.0)
                                 for n, v in zip(self.nozzles, self.sold, strict=True)]
                    fill = book.expected_l / book.geometry.capacity_l if wetstock.chart_terms else 0.0
                    fits = wetstock.close_bin(ts, dispensed, float(book.geometry.dv_dh(ev.level_mm)), fill)
                    if fits:
                        self._judge(fits, ts, alerts, out)
                wetstock.add(ts, divergence)
        else:
            self.wetstock.brk()
        self._ts.append(ts)
        self._obs.append(observed)
        self._exp.append(observed - divergence)
        self._div.append(divergence)
        if self.stale:
            self.stale = False
            clear(alerts, "COMM_LOSS", self.id, ts, out)

    def _gauge_checks(self, ev: Any, alerts: AlertBook, out: Outputs) -> bool:
        """Probe health and level limits; False while the reading cannot be trusted for the books."""
        ts = ev.ts
        change = self.stuck.update(ts, ev.level_mm, ev.water_mm, ev.temp_c)
        if change is True:
            report(alerts, self.id, ts, Finding("SENSOR_STUCK", "warning",
                                                {"minutes": (ts - (self.stuck.since_ts or ts)) / 60.0},
                                                {"since_ts": self.stuck.since_ts, "level_mm": ev.level_mm}),
                   out)
        elif change is False:
            clear(alerts, "SENSOR_STUCK", self.id, ts, out)
            self.deliveries.history.clear()
            self.losses.reset()
            self.wetstock.brk()
        water = self.water.update(ev.water_mm)
        if water is True:
            report(alerts, self.id, ts, Finding("WATER_HIGH", "warning", {"water_mm": ev.water_mm},
                                                {"water_mm": ev.water_mm, "limit_mm": self.water.limit}), out)
        elif water is False:
            clear(alerts, "WATER_HIGH", self.id, ts, out)
        fill = self.overfill.update(self.book.gross_l)
        if fill is True:
            pct = 100.0 * self.book.gross_l / self.declared_capacity_l
            evidence = {"gross_l": round(self.book.gross_l, 1), "safe_l": self.overfill.limit,
                        "level_mm": ev.level_mm}
            report(alerts, self.id, ts, Finding("OVERFILL", "alarm", {"fill_pct": pct}, evidence), out)
        elif fill is False:
            clear(alerts, "OVERFILL", self.id, ts, out)
        # Two repeats in a row are already suspicious: keep them out of the books' detectors.
        return not self.stuck.stuck and self.stuck.repeats < 2

    def sale(self, nozzle: str, sale_20c: float) -> None:
        """Cumulative litres at 20 °C booked per nozzle: the wetstock model's regressors."""
        self.sold[self.nozzles.index(nozzle)] += sale_20c
        self._sales_bias_l += self.judge.sales_factor(nozzle) * sale_20c

    def _judge(self, fits: list[WetstockFit], ts: float, alerts: AlertBook, out: Outputs) -> None:
        """Raise what the wetstock fits show (twin/detectors/wetstock_judge.py decides)."""
        if self.trend_explained is not None:
            return
        open_codes = [code for code in ("LEAK", "SENSOR_DRIFT") if (self.id, code) in alerts.open]
        for verdict in self.judge.judge(fits, ts, self.wetstock, open_codes, self.losses.unrecorded_l(ts),
                                        self._water_steady(ts)):
            report(alerts, verdict.entity, ts, verdict.finding, out, refresh=verdict.refresh)

    def _water_steady(self, ts: float) -> bool:
        """Whether the water bottom stayed within ``WATER_STEADY_MM`` over the meter-change scan's days.

        Water coming in moves the product's volume through the chart's bottom rows, where a horizontal
        tank curves most and linear interpolation errs most: a slow error in the books that a meter
        change can fit by chance (one false METER_BIAS in 20 water-ingress runs, on a one-nozzle tank)."""
        water = getattr(self, "_water_range", None)
        if water is None:  # a checkpoint from before it (which kept every level, or none)
            water = self._water_range = WindowRange(self.judge.settings.meter_change_days * 86_400.0)
            for mark in self.__dict__.pop("_water_marks", ()):
                water.add(*mark)
        if not math.isnan(self.water_mm):
            water.add(ts, self.water_mm)
        span = water.span(ts)
        return span is None or span <= WATER_STEADY_MM

    def _delivered(self, found: Any, ts: float, alerts: AlertBook, out: Outputs) -> None:
        """Book a recognised drop; ``ts`` is the reading that settled it: until then the divergence
        still holds the litres dropped (``booked_ts``, so a chart can leave those points out)."""
        book = self.book
        book.book_receipt(found.net_l_20c)
        gross = found.net_l_20c / float(vcf(book.temp_c, book.density_20c, book.product))
        delivery = {"station": self.station, "tank": self.id, "grade": self.grade,
                    "start_ts": found.start_ts, "end_ts": found.end_ts, "booked_ts": ts,
                    "net_l_20c": round(found.net_l_20c, 1), "gross_l": round(gross, 1),
                    "settled": found.settled, "blind_s": found.blind_s, "po_no": None}
        out.deliveries.append(delivery)
        alert = alerts.event("DELIVERY_DETECTED", self.id, found.end_ts, evidence=delivery,
                             metrics={"net_l": found.net_l_20c})
        out.alerts.append(alert.to_dict())

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
        rate = self.judge.trend()
        out.divergence.append({
            "station": self.station, "tank": self.id, "ts": self._ts,
            "observed_l": self._obs, "expected_l": self._exp, "divergence_l": self._div,
            "leak_rate_lph": None if rate is None else round(rate[0], 4),
            "leak_rate_se_lph": None if rate is None else round(rate[1], 4),
        })
        self._ts, self._obs, self._exp, self._div = [], [], [], []

    def state(self) -> dict[str, Any]:
        book = self.book
        rate = self.judge.trend()
        return {"id": self.id, "grade": self.grade, "declared_capacity_l": self.declared_capacity_l,
                "level_mm": _r(self.level_mm, 1), "water_mm": _r(self.water_mm, 1),
                "temp_c": _r(book.temp_c, 2), "observed_l": _r(book.observed_l, 1),
                "expected_l": _r(book.expected_l, 1), "divergence_l": _r(book.divergence_l, 1),
                "leak_rate_lph": None if rate is None else round(rate[0], 3),
                "leak_rate_se_lph": None if rate is None else round(rate[1], 3),
                "meter_factors": self.judge.meter_factors(),
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
        self.ledger = NozzleLedger()
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
        """Track the live state; return the litres dispensed so far in this fill.

        A fill's last state and its transaction carry the same device time, and a controller may publish
        them in either order (over OPC UA the transaction record often arrives first). A state no later
        than the last booked transaction's end belongs to that booked fill, so it counts as nothing
        running: counting it would take the fill from the tank twice until the next state, and the
        readings in between would look like a small delivery."""
        self.state_name = ev.state
        last_end = self.ledger.last_end_ts
        running = ev.state in ("fuelling", "finished") and (last_end is None or ev.ts > last_end)
        self.running_l = ev.volume_l if running else 0.0
        self.running_cny = ev.amount_cny if running else 0.0
        return self.running_l

    def txn(self, ev: Any, link_lost: bool, alerts: AlertBook, out: Outputs) -> float:
        """Check the transaction against the dispenser's own counters; return litres sold unseen."""
        check = self.ledger.on_txn(ev.txn_no, ev.volume_l, ev.totalizer_l, ev.totalizer_cny, ev.end_ts,
                                   link_lost)
        for finding in check.findings:
            report(alerts, self.id, ev.ts, finding, out)
        self.last_txn_no = ev.txn_no
        self.totalizer_l = ev.totalizer_l
        self.totalizer_cny = ev.totalizer_cny
        self.running_l = 0.0
        self.running_cny = 0.0
        return check.unseen_l

    def device(self, ev: Any, alerts: AlertBook, out: Outputs) -> None:
        self.model = ev.model
        self.mainboard_id = ev.mainboard_id
        finding = self.ledger.on_device(ev.mainboard_id, ev.firmware, ev.ts)
        if finding is not None:
            report(alerts, self.id, ev.ts, finding, out)

    def tick(self, ts: float, alerts: AlertBook, out: Outputs) -> None:
        """A nozzle speaks only when used: a day of silence marks it stale in the twin's state, but is no
        COMM_LOSS alarm (a 98# nozzle at a quiet station can go unused that long; the station's link is
        judged by its gauges, which report all the time). Measured: the scenario suite raised such a
        false COMM_LOSS on an unused nozzle."""
        if self.last_ts is None or self.stale or ts - self.last_ts < self.stale_after_s:
            return
        self.stale = True

    def state(self) -> dict[str, Any]:
        return {"id": self.id, "tank": self.tank, "grade": self.grade, "state": self.state_name,
                "running_l": round(self.running_l, 2), "running_cny": round(self.running_cny, 2),
                "last_txn_no": self.last_txn_no, "totalizer_l": self.totalizer_l,
                "mainboard_id": self.mainboard_id, "stale": self.stale, "last_ts": self.last_ts}


#: A vapor monitor that reported (a fill or its minute sample) this recently (s, event time) is live.
VAPOR_LIVE_S = 600.0


class StationActor:
    """Owns a station's tanks and nozzles and routes each event to them in event-time order."""

    #: The vapor monitor's fills against the transactions (class default: checkpoints from before it
    #: start one when their first vapor fill or transaction comes).
    fill_witness: FillWitness | None = None
    #: Events the twin failed on and its shard dead-lettered (class default: checkpoints from before it).
    twin_faults: int = 0

    def __init__(self, spec: StationSpec, settings: TwinSettings):
        self.id = spec.id
        self.name = spec.name
        self.region = spec.region
        self.alerts = AlertBook(spec.id)
        self.tanks = {t.id: TankActor(spec.id, t, settings,
                                      tuple(n.id for n in spec.nozzles if n.tank == t.id))
                      for t in spec.tanks}
        self.nozzles = {n.id: NozzleActor(spec.id, n, settings) for n in spec.nozzles}
        self.recent_txns: deque[dict[str, Any]] = deque(maxlen=settings.recent_transactions)
        self.prices: dict[str, float] = {}
        self.purchase_orders: dict[str, dict[str, Any]] = {}
        self.watermark: float | None = None
        #: When the station's data last came back after a communication loss (event time).
        self.link_restored_ts: float | None = None
        self.day: str | None = None
        self.sales_today: dict[str, list[float]] = {}
        self.events = 0
        # issue 6: vapor recovery (GB 20952-2020), judged on gasoline nozzles; plain data, so it is part
        # of every supervision snapshot and comes back with the station after a crash (E.3.4).
        self.vapor = VaporMonitor(spec.id, [n.id for n in spec.nozzles if n.grade in GASOLINE_GRADES],
                                  settings.vapor)
        self.fill_witness = FillWitness(settings.fill_witness())  # hidden sales by the vapor monitor
        self.safety = SafetyMonitor(settings.safety)  # issue 6: safety devices and inspections
        # Issue 5: ledger, lots, statistics and the tax and market checks (twin/regulatory.py).
        self.reg = StationRegulator(spec, settings.regulatory(),
                                    {t.id: float(t.geometry().capacity_l) for t in spec.tanks})

    #: Handler method per event kind, by name so that the actor pickles (snapshots) as plain data.
    HANDLERS = {"tank.reading": "_reading", "nozzle.state": "_nozzle_state", "nozzle.txn": "_txn",
                "device.info": "_device", "price.posted": "_price", "doc.purchase": "_purchase",
                "alert.action": "_alert_action", "clock.tick": "_tick",
                "vapor.fill": "_vapor_fill", "vapor.env": "_vapor_env",
                "safety.reading": "_safety", "inspection.report": "_inspection",
                "doc.invoice": "_document", "doc.declaration": "_document"}

    def handle(self, ev: EventBase, out: Outputs) -> None:
        self.events += 1
        name = self.HANDLERS.get(ev.kind)  # type: ignore[attr-defined]
        if name is not None:
            getattr(self, name)(ev, out)
        # Other kinds (invoices, declarations) are logged and reach the station;
        # their detectors come with the issues that own them.

    def twin_fault(self, ev: EventBase, reason: str, out: Outputs) -> None:
        """The twin failed on ``ev`` and its shard dead-lettered it (actors/shard.py): say so on the
        station, as one open TWIN_FAULT warning that counts the events, so a bug failing every event of
        some kind is on the wall and the station's page, not only in the dead letters and the log."""
        self.twin_faults += 1
        open_alert = self.alerts.open.get((self.id, "TWIN_FAULT"))
        count = 1 + (int(open_alert.metrics.get("events", 0)) if open_alert is not None else 0)
        alert = self.alerts.raise_("TWIN_FAULT", "warning", self.id, ev.ts, refresh=True,
                                   evidence={"last_event": {"kind": ev.kind, "source": ev.source,
                                                            "ts": ev.ts, "reason": reason}},
                                   metrics={"events": count})
        if alert is not None:
            out.alerts.append(alert.to_dict())

    def flush(self, out: Outputs, with_state: bool = True) -> None:
        for tank in self.tanks.values():
            tank.flush(out)
        self.reg.flush(out)
        if with_state:
            out.states[self.id] = self.state()

    # ---- handlers -------------------------------------------------------------------------------

    def _reading(self, ev: Any, out: Outputs) -> None:
        tank = self.tanks[ev.entity]
        if tank.stale:
            self.link_restored_ts = ev.ts
        seen = len(out.deliveries)
        tank.reading(ev, self.alerts, out, self._nozzle_fills(tank, ev.ts))
        if self.fill_witness is not None and (tank.id, "HIDDEN_SALES") in self.alerts.open:
            self._link_hidden_sales(tank, ev.ts, out)
        if tank.last_ts == ev.ts and not tank.stuck.stuck and tank.stuck.repeats < 2:  # issue 5 hook
            for found in out.deliveries[seen:]:
                self.reg.delivery(tank, found, self.alerts, out)
            idle = all(self.nozzles[n].state_name != "fuelling" for n in tank.nozzles)
            self.reg.reading(tank, ev.ts, self.alerts, out, idle)

    def _nozzle_fills(self, tank: TankActor, ts: float) -> NozzleFills | None:
        """The vapor monitor's unreported fills at the tank's nozzles, where it covers them: a gasoline
        tank at a station whose monitor reported within the last ``VAPOR_LIVE_S`` (else None: the loss
        detector falls back on the drop's speed). A monitor that uploads its records in batches (GB
        20952-2020 E.3.5 asks for at least hourly) lags by more than that and is not asked; one that
        sends its minute samples promptly but its fill records late would make a hidden fill look like
        a theft (an alarm with its litres either way)."""
        if tank.grade not in GASOLINE_GRADES:
            return None
        clock = self.vapor.clock
        if clock is None or ts - clock > VAPOR_LIVE_S:
            return None
        return partial(self._witness().without_transaction, tank.nozzles)

    def _nozzle_state(self, ev: Any, out: Outputs) -> None:
        nozzle = self.nozzles[ev.entity]
        nozzle.seen(ev.ts, self.alerts, out)
        running = nozzle.state_event(ev)
        self.tanks[nozzle.tank].book.running(nozzle.id, running, ev.ts, ev.state == "fuelling")

    def _txn(self, ev: Any, out: Outputs) -> None:
        nozzle = self.nozzles[ev.entity]
        was_stale = nozzle.stale
        nozzle.seen(ev.ts, self.alerts, out)
        last = nozzle.ledger.last_end_ts
        link_lost = was_stale or (last is not None and self.link_restored_ts is not None
                                  and self.link_restored_ts > last)
        unseen = nozzle.txn(ev, link_lost, self.alerts, out)
        tank = self.tanks[nozzle.tank]
        book = tank.book
        if unseen > 0:
            unseen_20c = book.book_unseen(unseen)
            tank.sale(nozzle.id, unseen_20c)
            tank.wetstock.brk()
            tank.deliveries.rebase(unseen_20c)  # measured: else a ~1,200 L "delivery" after a comm loss
            self.reg.unseen(tank.id, ev.end_ts, unseen, unseen_20c)
        sale_20c = book.book_sale(nozzle.id, ev.volume_l)
        tank.sale(nozzle.id, sale_20c)
        if self.vapor.active and nozzle.grade in GASOLINE_GRADES:  # only where a monitor reports fills
            found = self._witness().txn(nozzle.id, ev.end_ts, ev.volume_l, ev.totalizer_l)
            self._witness_said(found, ev, out)
        self.reg.sale(tank.id, nozzle.id, ev, sale_20c, self.alerts, out)
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
            self.nozzles[ev.entity].device(ev, self.alerts, out)

    def _price(self, ev: Any, out: Outputs) -> None:
        if ev.entity != "reference":
            self.prices[ev.grade] = ev.unit_price
        self.reg.price(ev, self.alerts, out)

    def _purchase(self, ev: Any, out: Outputs) -> None:
        self.purchase_orders[ev.po_no] = {"po_no": ev.po_no, "grade": ev.grade, "ts": ev.ts,
                                          "volume_l_20c": ev.volume_l_20c, "supplier": ev.supplier}
        self.reg.document(ev, self.alerts, out)

    def _document(self, ev: Any, out: Outputs) -> None:
        if ev.kind in DOC_KINDS:
            self.reg.document(ev, self.alerts, out)

    def _alert_action(self, ev: Any, out: Outputs) -> None:
        """A person's decision on one of this station's alerts (the store already shows it)."""
        alert = self.alerts.open.get((ev.entity, ev.code))
        if alert is None or alert.id != ev.alert_id:
            return  # already closed by the twin, or a decision on an older instance
        if ev.action == "closed":
            self.alerts.close(ev.code, ev.entity, ev.ts, by=ev.by)
        else:
            self.alerts.acknowledge(ev.alert_id, ev.code, ev.entity, ev.ts, ev.by)

    # issue 6: vapor recovery (twin/vapor.py) ---------------------------------------------------------

    def _vapor_fill(self, ev: Any, out: Outputs) -> None:
        self._vapor_apply(self.vapor.fill(ev.ts, ev.entity, ev.a_l, ev.liquid_l, ev.fill_end_ts), ev.ts, out)
        if ev.entity in self.nozzles:
            end_ts = ev.fill_end_ts if ev.fill_end_ts is not None else ev.ts
            self._witness_said(self._witness().fill(ev.entity, end_ts, ev.liquid_l), ev, out)

    def _witness(self) -> FillWitness:
        if self.fill_witness is None:
            self.fill_witness = FillWitness()
        return self.fill_witness

    def _witness_said(self, finding: Finding | None, ev: Any, out: Outputs) -> None:
        """An unrecorded fill the vapor monitor saw: HIDDEN_SALES on its nozzle, updated with each more."""
        if finding is not None:
            nozzle = finding.evidence["nozzle"]
            report(self.alerts, nozzle, ev.ts, finding, out, refresh=True)
            if nozzle in self.nozzles:
                self._link_hidden_sales(self.tanks[self.nozzles[nozzle].tank], ev.ts, out)

    def _link_hidden_sales(self, tank: TankActor, ts: float, out: Outputs) -> None:
        """The tank's and its nozzles' HIDDEN_SALES name each other (twin.alerts.link_hidden_sales)."""
        for alert in link_hidden_sales(self.alerts, tank.id, tank.nozzles, ts):
            out.alerts.append(alert.to_dict())

    def _vapor_env(self, ev: Any, out: Outputs) -> None:
        self._vapor_apply(self.vapor.env(ev.ts, ev.pressure_pa, ev.processor_state, ev.outlet_g_m3,
                                         ev.voc_umol_mol), ev.ts, out)

    def _vapor_apply(self, actions: list[VaporAction], ts: float, out: Outputs) -> None:
        for a in actions:
            if a.op == "raise":
                report(self.alerts, a.entity, ts, Finding(a.code, a.severity, a.metrics, a.evidence), out)
            else:
                clear(self.alerts, a.code, a.entity, ts, out)

    def _safety(self, ev: Any, out: Outputs) -> None:
        delivering = any(t.deliveries.active for t in self.tanks.values())
        self._vapor_apply(self.safety.reading(ev, delivering), ev.ts, out)

    def _inspection(self, ev: Any, out: Outputs) -> None:
        self._vapor_apply(self.safety.report(ev), ev.ts, out)

    def _tick(self, ev: Any, out: Outputs) -> None:
        if self.watermark is not None and ev.ts <= self.watermark:
            return
        self.watermark = ev.ts
        if self.safety.behaviour_last:
            self._vapor_apply(self.safety.tick(ev.ts), ev.ts, out)
        self.reg.tick(ev.ts, self.alerts, out)
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
            "twin_faults": self.twin_faults,
            "vapor": ({**self.vapor.state(), "fills_vs_transactions": self._witness().state()}
                      if self.vapor.active else None),
            "safety": self.safety.state() if self.safety.last_readings or self.safety.reports else None,
            "regulatory": self.reg.state(),
        }
