"""The physics of one station, stepped in event time, and the raw events its devices would send.

State per tank is the true net volume at 20 °C and the fuel temperature; everything else follows:
gross = net / vcf(temp) (GB/T 1885 reference 20 °C), true level = chart⁻¹(gross + water volume), and the
gauge reports that level with noise. Customers draw from tanks through nozzles whose meters err a little;
tankers refill tanks that run low. All of it moves as *flows*: product entering or leaving one tank at a
constant rate over an interval (a fill, a drop, and later a leak), which makes the true volume at any
reading time an exact, vectorisable sum, and the mass balance exact by construction.

The station advances in blocks (``Timing.block_s``, aligned on local midnight so that daily truth splits
exactly). Everything a block generates has a timestamp at or after the block's start, so once a block is
done every event before its end is known; events further ahead (the end of a fill that started in this
block, a delivery planned for tonight) wait in ``pending`` until they are released. Randomness comes from
one generator per station, consumed block by block in a fixed order, so the output never depends on how
callers chunk time.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from operator import itemgetter
from typing import Any

import numpy as np

from simulators.demand import PRESET_SHARE, draw_customers, relative_rate
from simulators.district import StationProfile, TrueNozzle, TrueTank
from simulators.documents import invoice_number, plan_trip
from simulators.hooks import DISPENSED, OTHER, RECEIVED, FillPlan, Flow, GaugeFrame, StationFault
from simulators.prices import StationPrices
from simulators.settings import NoiseSettings, Timing
from simulators.thermal import ground_temp_c
from simulators.truth import GroundTruth, TrueDelivery
from simulators.vapor import VaporSim
from twin.physics import vcf
from twin.registry import StationSpec
from twin.timeutil import local_day, local_hour

_TS = itemgetter("ts")
_OFFSET_S = 8 * 3600.0  # Asia/Shanghai is UTC+8 without DST (see twin.timeutil)

#: Delivery policy: order when the gross volume falls below this share of the declared capacity, fill
#: to at most this share (kept under 90 % even if the fuel warms by 1.5 % on the way), in 1,000 L steps
#: between these bounds (a tanker's compartments), with this lead time from PO to arrival.
REORDER_SHARE = 0.35
FILL_TO_SHARE = 0.88
THERMAL_MARGIN = 1.02
ORDER_MIN_L, ORDER_MAX_L = 8_000.0, 20_000.0
LEAD_TIME_S = (2 * 3600.0, 6 * 3600.0)
#: Drop rate through the tanker's hoses (L/min); settling before the drop starts (s).
DROP_LPM = (600.0, 1000.0)
SETTLE_S = (600.0, 1500.0)
#: Transit variation of the true received volume against the depot meter (−0.2 … +0.05 %).
TRANSIT = (-0.002, 0.0005)
#: A pump does not draw below this share of the tank (suction); its nozzles are then out of service.
DRY_SHARE = 0.05
#: Wholesale price as a share of the posted price, for purchase invoices.
WHOLESALE_SHARE = 0.88
#: Paperwork noise (issue 5), drawn from the station's own document generator so that the physics of a
#: station without a split drop is unchanged: a purchase order that reaches the platform only after the
#: drop (up to LATE_DOC_S after it ends), invoices up to LATE_INVOICE_S late, a daily declaration and a
#: daily sales invoice the next day, and a drop split over two tanks of one grade when the second has room.
P_LATE_PO = 0.25
LATE_DOC_S = 8 * 3600.0
P_LATE_INVOICE = 0.3
LATE_INVOICE_S = 36 * 3600.0
P_SPLIT = 0.7
SPLIT_SHARE = 0.65
#: A split load comes on a semi-trailer (30 m³), larger than the 20 m³ rigid tanker of a single drop.
SPLIT_MAX_L = 30_000.0


def _rounder(resolution: float) -> float:
    """1/resolution when it is a whole number (then rint(x*k)/k gives the shortest decimal floats)."""
    inv = 1.0 / resolution
    return float(round(inv)) if abs(inv - round(inv)) < 1e-9 else inv


class StationSim:
    """One station's truth and devices. Built and driven by :class:`simulators.feed.DistrictSimulator`."""

    def __init__(self, spec: StationSpec, tanks: list[TrueTank], nozzles: list[TrueNozzle],
                 profile: StationProfile, rng: np.random.Generator, prices: StationPrices, start_ts: float,
                 timing: Timing, noise: NoiseSettings, truth: GroundTruth,
                 faults: list[StationFault] | None = None, vapor: VaporSim | None = None):
        self.spec = spec
        self.id = spec.id
        self.tanks = tanks
        self.nozzles = nozzles
        self.profile = profile
        self.rng = rng
        self.prices = prices
        self.start_ts = float(start_ts)
        self.timing = timing
        self.noise = noise
        self.truth = truth
        self.faults: list[StationFault] = list(faults or [])
        #: issue 6: the vapor-recovery system and its monitor (None: the station sends no vapor data).
        self.vapor = vapor
        #: Event time up to which the physics has been stepped.
        self.t = self.start_ts
        self.pending: list[dict[str, Any]] = []

        sid = self.id
        self.tank_ids = [t.tank_id for t in tanks]
        self._tank_pos = {t: i for i, t in enumerate(self.tank_ids)}
        n_t = len(tanks)
        self.nominal_l = np.array([t.nominal_l for t in tanks])
        self.density = [t.density_20c for t in tanks]
        self.product = [t.product for t in tanks]
        self.tau_s = np.array([t.thermal_tau_s for t in tanks])
        #: True water bottom per tank (mm); faults may change it.
        self.water_mm = np.array([t.water_mm for t in tanks])
        ground0 = ground_temp_c(self.start_ts)
        self.temp = ground0 + rng.normal(0.0, 0.5, n_t)
        fill = rng.uniform(0.45, 0.85, n_t)
        self.net = np.array([fill[i] * tanks[i].nominal_l * vcf(float(self.temp[i]), self.density[i],
                                                                 self.product[i]) for i in range(n_t)])
        self.flows: list[Flow] = []
        self.order_until = [self.start_ts] * n_t
        self.po_count = 0

        self.grades = list(profile.grade_share)
        cum = np.cumsum([profile.grade_share[g] for g in self.grades])
        self._grade_cum = (cum / cum[-1]).tolist()
        self.nz_ids = [n.nozzle_id for n in nozzles]
        self.nz_tank = [self._tank_pos[n.tank_id] for n in nozzles]
        self.nz_grade = [n.grade for n in nozzles]
        self.nz_source = [f"sim:{sid}:{n.nozzle_id}" for n in nozzles]
        self.by_grade = {g: [k for k, n in enumerate(nozzles) if n.grade == g] for g in self.grades}
        pct = noise.meter_error_pct / 100.0
        self.meter_error = rng.uniform(-pct, pct, len(nozzles)).tolist()
        for n, e in zip(nozzles, self.meter_error, strict=True):
            truth.meter_error[(sid, n.nozzle_id)] = e
        self.free_at = [self.start_ts] * len(nozzles)
        self.txn_no = rng.integers(1_000, 900_000, len(nozzles)).tolist()
        self.tot_cl = (rng.uniform(1e5, 5e6, len(nozzles)) * 100).astype(np.int64).tolist()
        self.tot_fen = [int(c * 7.2) for c in self.tot_cl]
        self.nz_seq = [0] * len(nozzles)

        self.src_atg = f"sim:{sid}:atg"
        self.src_clock = f"sim:{sid}:clock"
        self.src_pos = f"sim:{sid}:pos"
        self.src_docs = f"sim:{sid}:docs"
        self.seq_atg = self.seq_clock = self.seq_pos = self.seq_docs = 0
        seed_seq = rng.bit_generator.seed_seq  # type: ignore[attr-defined]
        self.doc_rng = np.random.default_rng(np.random.SeedSequence(
            seed_seq.entropy, spawn_key=(*seed_seq.spawn_key, 99)))
        self.doc_release_seq = 0
        #: What the station's own POS recorded, per (local day, grade): [litres, CNY] (for declarations).
        self.reported: dict[tuple[str, str], list[float]] = {}
        self._next_reading = 0
        self._next_tick = 0
        self._reading_no = 0
        self._day = ""
        self.day_factor = 1.0
        self._day_names: dict[int, str] = {}
        self._level_k = _rounder(noise.gauge_resolution_mm)
        self._temp_k = _rounder(noise.temp_resolution_c)
        truth.register_station(sid, self.tank_ids)
        truth.balked.setdefault(sid, 0)
        self._emit_start()

    # ----------------------------------------------------------------------------------------------
    # Driving

    def release(self, until_ts: float) -> list[dict[str, Any]]:
        """Step the physics past ``until_ts`` and hand over every event before it, by (ts, generation).

        ``pending`` is kept sorted by ts (stably, so ties keep generation order); sorting a sorted
        remainder plus one new block is cheap, and a small live step is then a bisection.
        """
        pending = self.pending
        if self.t < until_ts:
            while self.t < until_ts:
                self._step()
            pending = self.pending
            pending.sort(key=_TS)
        cut = bisect_left(pending, until_ts, key=_TS)
        ready = pending[:cut]
        del pending[:cut]
        # Documents are numbered as they reach the platform (issue 5: a late order is generated with its
        # delivery but arrives hours after later paperwork), so the source's seqs follow event time.
        src = self.src_docs
        for ev in ready:
            if ev["source"] == src:
                ev["seq"] = self.doc_release_seq
                self.doc_release_seq += 1
        return ready

    def _step(self) -> None:
        b0 = self.t
        block = self.timing.block_s
        b1 = ((b0 + _OFFSET_S) // block + 1) * block - _OFFSET_S
        mark = len(self.pending)
        day = local_day(b0)
        if day != self._day:
            previous, self._day = self._day, day
            self.day_factor = float(np.clip(self.rng.normal(1.0, 0.06), 0.8, 1.2))
            if previous:
                self._paperwork(previous, b0)
        for fault in self.faults:  # fault hook 1: extra true flows, water
            self.flows.extend(fault.on_block(self, b0, b1))
        vcf_now = [vcf(float(self.temp[i]), self.density[i], self.product[i]) for i in range(len(self.tanks))]
        self._prices(b0, b1)
        self._orders(b0, b1, vcf_now)
        self._customers(b0, b1, vcf_now)
        if self.vapor is not None:  # issue 6: the vapor monitor's system samples
            self.vapor.block(self, b0, b1)
        self._tanks(b0, b1, day)
        self._ticks(b1)
        if self.faults:
            events = self.pending[mark:]
            for fault in self.faults:  # fault hook 4: drop or alter emitted events
                events = fault.on_events(self, events)
            self.pending[mark:] = events
        self.t = b1

    # ----------------------------------------------------------------------------------------------
    # Station-level sources

    def _base(self, ts: float, entity: str, kind: str, source: str, seq: int) -> dict[str, Any]:
        return {"ts": ts, "station": self.id, "entity": entity, "kind": kind, "source": source, "seq": seq,
                "quality": "good"}

    def _emit_start(self) -> None:
        """What a station's devices announce when the feed starts: nozzle identities and posted prices."""
        ts = self.start_ts
        for k, n in enumerate(self.nozzles):
            ev = self._base(ts, n.nozzle_id, "device.info", self.nz_source[k], self.nz_seq[k])
            ev.update(model=n.model, serial=n.serial, firmware=n.firmware, mainboard_id=n.mainboard_id)
            self.pending.append(ev)
            self.nz_seq[k] += 1
        self._post_prices(ts)

    def _post_prices(self, ts: float) -> None:
        for grade in sorted({t.grade for t in self.tanks}):
            ev = self._base(ts, "", "price.posted", self.src_pos, self.seq_pos)
            ev.update(grade=grade, unit_price=self.prices.price(grade, ts))
            self.pending.append(ev)
            self.seq_pos += 1

    def _prices(self, b0: float, b1: float) -> None:
        for ts in self.prices.board.changes_in(b0, b1):
            if ts > self.start_ts:
                self._post_prices(ts)

    def _ticks(self, b1: float) -> None:
        step = self.timing.tick_interval_s
        while True:
            ts = self.start_ts + self._next_tick * step
            if ts >= b1:
                return
            self.pending.append(self._base(ts, "", "clock.tick", self.src_clock, self.seq_clock))
            self.seq_clock += 1
            self._next_tick += 1

    # ----------------------------------------------------------------------------------------------
    # Deliveries

    def _orders(self, b0: float, b1: float, vcf_now: list[float]) -> None:
        """Order product for tanks that run low, if a tanker load fits; plan the drop there and then."""
        rng = self.rng
        for i, tank in enumerate(self.tanks):
            if b0 < self.order_until[i]:
                continue
            gross = float(self.net[i]) / vcf_now[i]
            nominal = float(self.nominal_l[i])
            if gross >= REORDER_SHARE * nominal:
                continue
            room = (FILL_TO_SHARE * nominal - gross) / THERMAL_MARGIN
            volume = min(ORDER_MAX_L, math.floor(room / 1000.0) * 1000.0)
            if volume < ORDER_MIN_L:
                continue
            po_ts = round(b0 + float(rng.uniform(0.0, b1 - b0)), 3)
            self._order(i, tank, volume, po_ts, self._split(i, b0, volume))

    def _split(self, i: int, b0: float, volume: float) -> tuple[int, float] | None:
        """A second tank of the grade that takes the rest of the tanker, if it has room (paperwork noise:
        one order, two drops)."""
        grade = self.tanks[i].grade
        for j, other in enumerate(self.tanks):
            if j == i or other.grade != grade or b0 < self.order_until[j]:
                continue
            nominal = float(self.nominal_l[j])
            gross = float(self.net[j]) / vcf(float(self.temp[j]), self.density[j], self.product[j])
            if gross >= SPLIT_SHARE * nominal or self.doc_rng.random() >= P_SPLIT:
                continue
            room = (FILL_TO_SHARE * nominal - gross) / THERMAL_MARGIN
            extra = min(SPLIT_MAX_L - volume, math.floor(room / 1000.0) * 1000.0)
            if extra >= 2000.0:
                return j, extra
        return None

    def _order(self, i: int, tank: TrueTank, volume: float, po_ts: float,
               split: tuple[int, float] | None = None) -> None:
        rng = self.rng
        spec = self.spec
        trip = plan_trip(rng, self.profile.brand, spec.lon, spec.lat, volume)
        arrive = round(po_ts + max(float(rng.uniform(*LEAD_TIME_S)), trip.travel_s + 1800.0), 3)
        depart = round(arrive - trip.travel_s, 3)
        start = round(arrive + float(rng.uniform(*SETTLE_S)), 3)
        true_l = volume * (1.0 + float(rng.uniform(*TRANSIT)))
        end = round(start + true_l / (float(rng.uniform(*DROP_LPM)) / 60.0), 3)
        sign = 1.0 if rng.random() < 0.5 else -1.0
        temp_in = ground_temp_c(po_ts) + sign * float(rng.uniform(3.0, 8.0))
        density = round(tank.density_20c + float(rng.normal(0.0, 0.8)), 1)
        day = local_day(po_ts)
        self.po_count += 1
        po_no = f"{self.id}-PO{day.replace('-', '')[2:]}-{self.po_count:04d}"
        invoice = invoice_number(rng, int(day[2:4]))
        self.flows.append(Flow(i, start, end, true_l, RECEIVED, temp_in))
        self.order_until[i] = end
        self.truth.deliveries.append(TrueDelivery(self.id, tank.tank_id, tank.grade, po_no, po_ts, start, end,
                                                  true_l, volume, temp_in))
        last_end = end
        total = volume
        if split is not None:  # the rest of the tanker into a second tank of the grade, after the first
            j, extra = split
            d = self.doc_rng
            start_j = round(end + float(d.uniform(300.0, 900.0)), 3)
            true_j = extra * (1.0 + float(d.uniform(*TRANSIT)))
            end_j = round(start_j + true_j / (float(d.uniform(*DROP_LPM)) / 60.0), 3)
            self.flows.append(Flow(j, start_j, end_j, true_j, RECEIVED, temp_in))
            self.order_until[j] = end_j
            other = self.tanks[j]
            self.truth.deliveries.append(TrueDelivery(self.id, other.tank_id, other.grade, po_no, po_ts,
                                                      start_j,
                                                      end_j, true_j, extra, temp_in))
            last_end = end_j
            total = volume + extra
            trip = plan_trip(d, self.profile.brand, spec.lon, spec.lat, total) if total > 20_000 else trip
        d = self.doc_rng
        doc_ts = round(last_end + float(d.uniform(600.0, LATE_DOC_S)), 3) if d.random() < P_LATE_PO else po_ts
        late_invoice = d.random() < P_LATE_INVOICE
        inv_ts = round(po_ts + float(d.uniform(0.0, LATE_INVOICE_S)), 3) if late_invoice else doc_ts
        ev = self._base(doc_ts, "", "doc.purchase", self.src_docs, self.seq_docs)
        ev.update(po_no=po_no, supplier=trip.supplier, depot=trip.depot, grade=tank.grade,
                  volume_l_20c=total, density_20c=density, invoice_no=invoice, vehicle=trip.vehicle,
                  seals=trip.seals, depart_ts=depart, arrive_ts=arrive, route=trip.route)
        inv = self._base(inv_ts, "", "doc.invoice", self.src_docs, self.seq_docs + 1)
        unit = round(self.prices.price(tank.grade, po_ts) * WHOLESALE_SHARE, 2)
        inv.update(invoice_no=invoice, direction="purchase", grade=tank.grade, volume_l=total,
                   amount_cny=round(total * unit, 2), day=day)
        self.seq_docs += 2
        self.pending.append(ev)
        self.pending.append(inv)

    def _paperwork(self, day: str, b0: float) -> None:
        """The previous day's sales declaration per grade (whole litres and yuan, as declared) and its
        sales invoices (a share of the sales, to the fen), filed during the next day."""
        d = self.doc_rng
        for grade in sorted({t.grade for t in self.tanks}):
            litres, cny = self.reported.pop((day, grade), (0.0, 0.0))
            dec = self._base(round(b0 + float(d.uniform(3600.0, 10 * 3600.0)), 3), "", "doc.declaration",
                             self.src_docs, self.seq_docs)
            dec.update(day=day, grade=grade, volume_l=float(round(litres)), revenue_cny=float(round(cny)))
            self.seq_docs += 1
            self.pending.append(dec)
            if litres <= 0:
                continue
            share = float(d.uniform(0.3, 0.9))
            inv = self._base(round(b0 + float(d.uniform(3600.0, 20 * 3600.0)), 3), "", "doc.invoice",
                             self.src_docs, self.seq_docs)
            inv.update(invoice_no=invoice_number(d, int(day[2:4])), direction="sales", grade=grade,
                       volume_l=round(litres * share, 2), amount_cny=round(cny * share, 2), day=day)
            self.seq_docs += 1
            self.pending.append(inv)

    # ----------------------------------------------------------------------------------------------
    # Customers and nozzles

    def _customers(self, b0: float, b1: float, vcf_now: list[float]) -> None:
        profile = self.profile
        mid = 0.5 * (b0 + b1)
        expected = (profile.fills_per_day / 86_400.0 * relative_rate(profile.kind, local_hour(mid))
                    * (b1 - b0) * self.day_factor)
        d = draw_customers(self.rng, b0, b1, expected)
        n = len(d.t_arrive)
        if n == 0:
            return
        usable = (self.net > DRY_SHARE * self.nominal_l).tolist()
        grade_idx = np.searchsorted(np.asarray(self._grade_cum), d.u_grade, side="right").tolist()
        cols = (d.t_arrive.tolist(), grade_idx, d.u_truck.tolist(), d.u_pick.tolist(), d.patience_s.tolist(),
                d.u_preset.tolist(), d.preset_cny.tolist(), d.car_l.tolist(), d.truck_l.tolist(),
                d.car_flow_lpm.tolist(), d.truck_flow_lpm.tolist(), d.auth_s.tolist(), d.hangup_s.tolist(),
                d.gap_s.tolist())
        free_at = self.free_at
        truck_share = profile.truck_share
        for (t, gi, u_truck, u_pick, patience, u_preset, preset, car_l, truck_l, car_flow, truck_flow, auth,
             hang, gap) in zip(*cols, strict=True):
            grade = self.grades[min(gi, len(self.grades) - 1)]
            cands = [k for k in self.by_grade[grade] if usable[self.nz_tank[k]]]
            if not cands:
                self.truth.balked[self.id] += 1
                continue
            free = [k for k in cands if free_at[k] <= t]
            if free:
                k = free[int(u_pick * len(free))]
                lift = t
            else:
                k = min(cands, key=free_at.__getitem__)
                lift = free_at[k]
                if lift - t > patience:
                    self.truth.balked[self.id] += 1
                    continue
            lift = round(lift, 3)
            price = self.prices.price(grade, lift)
            truck = grade == "0#" and u_truck < truck_share
            if truck:
                litres, flow = round(truck_l, 2), truck_flow
            elif u_preset < PRESET_SHARE:
                litres, flow = math.floor(preset / price * 100.0) / 100.0, car_flow
            else:
                litres, flow = round(car_l, 2), car_flow
            start = round(lift + auth, 3)
            end = round(start + litres / flow * 60.0, 3)
            plan = FillPlan(k, self.nz_tank[k], grade, lift, start, end, round(end + hang, 3), litres,
                            round(litres * price, 2), price, 1.0 + self.meter_error[k])
            for fault in self.faults:  # fault hook 2: meter bias, hidden sales
                fault.on_fill(self, plan)
            i = plan.tank
            plan.true_l_20c = plan.displayed_l / plan.meter_factor * vcf_now[i]
            free_at[k] = plan.idle_ts + gap
            self.flows.append(Flow(i, plan.start_ts, plan.end_ts, -plan.true_l_20c, DISPENSED))
            self._emit_fill(plan)
            if self.vapor is not None:  # the monitor measures the fill whatever the POS reports
                self.vapor.fill(self, plan)

    def nozzle_event(self, k: int, ts: float, kind: str, **payload: Any) -> dict[str, Any]:
        """An event from nozzle ``k``'s device with the next seq of its source, for a fault to emit.

        The caller puts it among the block's events (``StationFault.on_events``). Its ``ts`` must not be
        before the block's start (those events may already be released) nor before any event of that
        nozzle numbered earlier, so that the source's seqs stay in event-time order.
        """
        ev = self._base(ts, self.nz_ids[k], kind, self.nz_source[k], self.nz_seq[k])
        ev.update(payload)
        self.nz_seq[k] += 1
        return ev

    def _emit_fill(self, plan: FillPlan) -> None:
        """lifted → fuelling (→ running volumes) → finished + txn → idle, with totalizers advanced."""
        k = plan.nozzle
        nid, src, sid = self.nz_ids[k], self.nz_source[k], self.id
        seq = self.nz_seq[k]
        out = self.pending
        vol, amount = plan.displayed_l, plan.amount_cny
        if plan.advance_counters:
            self.tot_cl[k] += round(vol * 100.0)
            self.tot_fen[k] += round(amount * 100.0)
            self.txn_no[k] += 1

        def state(ts: float, name: str, volume: float, cny: float) -> None:
            nonlocal seq
            out.append({"ts": ts, "station": sid, "entity": nid, "kind": "nozzle.state", "source": src,
                        "seq": seq, "quality": "good", "state": name, "volume_l": volume, "amount_cny": cny})
            seq += 1

        if plan.emit_states:
            state(plan.lift_ts, "lifted", 0.0, 0.0)
            state(plan.start_ts, "fuelling", 0.0, 0.0)
            every = self.timing.running_update_s
            if every is not None:
                span = plan.end_ts - plan.start_ts
                ts = plan.start_ts + every
                while ts < plan.end_ts:
                    so_far = math.floor(vol * (ts - plan.start_ts) / span * 100.0) / 100.0
                    state(round(ts, 3), "fuelling", so_far, round(so_far * plan.unit_price, 2))
                    ts += every
            state(plan.end_ts, "finished", vol, amount)
        if plan.emit_txn:
            out.append({"ts": plan.end_ts, "station": sid, "entity": nid, "kind": "nozzle.txn", "source": src,
                        "seq": seq, "quality": "good", "txn_no": self.txn_no[k], "grade": plan.grade,
                        "volume_l": vol, "amount_cny": amount, "unit_price": plan.unit_price,
                        "start_ts": plan.start_ts, "end_ts": plan.end_ts,
                        "totalizer_l": self.tot_cl[k] / 100.0, "totalizer_cny": self.tot_fen[k] / 100.0})
            seq += 1
        if plan.emit_states:
            state(plan.idle_ts, "idle", 0.0, 0.0)
        self.nz_seq[k] = seq
        day_no = int((plan.end_ts + _OFFSET_S) // 86_400.0)
        name = self._day_names.get(day_no)
        if name is None:
            name = self._day_names[day_no] = local_day(plan.end_ts)
        entry = self.truth.day(sid, self.tank_ids[plan.tank], name)
        entry.displayed_l += vol
        entry.fills += 1
        if plan.emit_txn:
            rep = self.reported.setdefault((name, plan.grade), [0.0, 0.0])
            rep[0] += vol
            rep[1] += amount

    # ----------------------------------------------------------------------------------------------
    # Tanks and gauge

    def _tanks(self, b0: float, b1: float, day: str) -> None:
        """True state at every reading time of the block (vectorised), the gauge's view of it, the truth."""
        step = self.timing.reading_interval_s
        k0 = self._next_reading
        k1 = max(k0, math.ceil((b1 - self.start_ts) / step - 1e-9))
        n = k1 - k0
        self._next_reading = k1
        grid = np.empty(n + 1)
        grid[:n] = self.start_ts + np.arange(k0, k1) * step
        grid[n] = b1
        n_t = len(self.tanks)
        active = [f for f in self.flows if f.start_ts < b1]
        if active:
            fl = np.array(active, dtype=float)
            s, e = fl[:, 1:2], fl[:, 2:3]
            rate = fl[:, 3:4] / np.maximum(e - s, 1e-9)
            contrib = (np.clip(grid, s, e) - np.clip(b0, s, e)) * rate  # litres moved since b0, (F, n+1)
            onehot = (fl[:, 0][None, :] == np.arange(n_t)[:, None]).astype(float)
            dnet = onehot @ contrib
            rec = fl[:, 4] == RECEIVED
            if rec.any():
                drec = onehot[:, rec] @ contrib[rec]
                heat = onehot[:, rec] @ (contrib[rec] * fl[rec, 5:6])
            else:
                drec = heat = None
            moved = np.bincount((fl[:, 0] * 3 + fl[:, 4]).astype(np.int64), weights=contrib[:, n],
                                minlength=3 * n_t).reshape(n_t, 3)
            for i, tid in enumerate(self.tank_ids):
                if moved[i].any():
                    entry = self.truth.day(self.id, tid, day)
                    entry.dispensed_l_20c -= float(moved[i, DISPENSED])
                    entry.received_l_20c += float(moved[i, RECEIVED])
                    entry.other_l_20c += float(moved[i, OTHER])
        else:
            dnet = np.zeros((n_t, n + 1))
            drec = heat = None
        net = self.net[:, None] + dnet
        ground = ground_temp_c(0.5 * (b0 + b1))
        decay = np.exp(-(grid - b0)[None, :] / self.tau_s[:, None])
        temp = ground + (self.temp - ground)[:, None] * decay
        if drec is not None:  # delivered product mixes in at its own temperature
            weight = np.maximum(self.net, 1.0)[:, None]
            temp = (weight * temp + heat) / (weight + drec)
        self.flows = [f for f in self.flows if f.end_ts > b1]
        self.net = net[:, n].copy()
        self.temp = temp[:, n].copy()
        if n == 0:
            return
        level = np.empty((n_t, n))
        for i, tank in enumerate(self.tanks):
            geo = tank.geometry
            gross = net[i, :n] / vcf(temp[i, :n], self.density[i], self.product[i])
            level[i] = geo.level_mm(gross + geo.volume_l(float(self.water_mm[i])))
        self._record_truth(grid[:n], net[:, :n], level, temp[:, :n])
        self._gauge(grid[:n], level, temp[:, :n])

    def _record_truth(self, ts: np.ndarray, net: np.ndarray, level: np.ndarray, temp: np.ndarray) -> None:
        every = self.timing.truth_every
        if every is None:
            self._reading_no += len(ts)
            return
        water = np.repeat(self.water_mm[:, None], len(ts), axis=1)
        if every == 1:
            self.truth.record_readings(self.id, ts, net, level, temp, water)
        else:
            idx = np.arange(self._reading_no, self._reading_no + len(ts))
            keep = idx % every == 0
            if keep.any():
                self.truth.record_readings(self.id, ts[keep], net[:, keep], level[:, keep], temp[:, keep],
                                           water[:, keep])
        self._reading_no += len(ts)

    def _gauge(self, ts: np.ndarray, level: np.ndarray, temp: np.ndarray) -> None:
        noise, rng = self.noise, self.rng
        n_t, n = level.shape
        lk, tk = self._level_k, self._temp_k
        noisy = level + rng.standard_normal((n_t, n)) * noise.gauge_sigma_mm
        lvl = np.maximum(np.rint(noisy * lk) / lk, 0.0)
        tmp = np.rint((temp + rng.standard_normal((n_t, n)) * noise.temp_sigma_c) * tk) / tk
        wat = np.repeat((np.rint(self.water_mm * lk) / lk)[:, None], n, axis=1)
        send = None
        if self.faults:
            frame = GaugeFrame(ts, lvl, wat, tmp, np.ones((n_t, n), dtype=bool))
            for fault in self.faults:  # fault hook 3: stuck/drifting gauge, readings not sent
                fault.on_gauge(self, frame)
            lvl, wat, tmp = frame.level_mm, frame.water_mm, frame.temp_c
            send = frame.send.T.ravel() if not frame.send.all() else None
        ts_l = np.repeat(ts, n_t).tolist()
        ents = self.tank_ids * n
        lv, wt, tp = lvl.T.ravel().tolist(), wat.T.ravel().tolist(), tmp.T.ravel().tolist()
        if send is not None:
            keep = np.flatnonzero(send).tolist()
            ts_l = [ts_l[j] for j in keep]
            ents = [ents[j] for j in keep]
            lv, wt, tp = [lv[j] for j in keep], [wt[j] for j in keep], [tp[j] for j in keep]
        sid, src, seq0 = self.id, self.src_atg, self.seq_atg
        self.pending.extend([
            {"ts": t, "station": sid, "entity": e, "kind": "tank.reading", "source": src, "seq": q,
             "quality": "good", "level_mm": lv_, "water_mm": w, "temp_c": c}
            for t, e, q, lv_, w, c in zip(ts_l, ents, range(seq0, seq0 + len(ts_l)), lv, wt, tp,
                                          strict=True)])
        self.seq_atg = seq0 + len(ts_l)
