"""Lot traceability (油品溯源): which deliveries the product sold from a tank came from.

A tank is modelled as well mixed: a delivery stirs into what is there, so after a drop every litre drawn
holds each earlier lot in proportion to its share of the tank (not first-in-first-out: a liquid has no
queue). The composition only changes at receipts, so it is kept as *epochs*: a composition valid from one
receipt to the next. A sale then needs no per-lot work beyond adding its litres times each share to the
lots' running totals, and a transaction's lots are its tank's epoch at the time it ended.

A lot is one delivery into one tank (``{station}/{tank}/{start}``): a purchase order split over two
tanks is two lots of one PO. What was in a tank before the twin saw it is the tank's ``opening`` lot.
Lots whose share falls below ``min_share`` are folded into ``earlier`` so that a composition stays a few
entries long: after k deliveries a lot keeps (1 − f)^k of its share, and the tail is honest dust.
"""

from __future__ import annotations

from typing import Any

from twin.timeutil import local_day

EARLIER = "earlier"


class TankLots:
    def __init__(self, station: str, tank: str, min_share: float = 0.005):
        self.station = station
        self.tank = tank
        self.min_share = min_share
        self.comp: dict[str, float] = {f"{station}/{tank}/opening": 1.0}
        self.epoch = 0
        self.epoch_ts: float | None = None

    def receive(self, ts: float, lot: str, litres: float, before_l: float) -> dict[str, Any]:
        """Mix ``litres`` of ``lot`` into ``before_l`` litres; returns the new epoch's record."""
        before = max(before_l, 0.0)
        total = before + litres
        if total <= 0:
            comp = {lot: 1.0}
        else:
            comp = {k: v * before / total for k, v in self.comp.items()}
            comp[lot] = comp.get(lot, 0.0) + litres / total
        dust = sum(v for k, v in comp.items() if v < self.min_share and k != lot)
        comp = {k: v for k, v in comp.items() if v >= self.min_share or k == lot}
        if dust > 0:
            comp[EARLIER] = comp.get(EARLIER, 0.0) + dust
        self.comp = comp
        self.epoch += 1
        self.epoch_ts = ts
        return self.epoch_record()

    def epoch_record(self) -> dict[str, Any]:
        return {
            "tank": self.tank,
            "epoch": self.epoch,
            "from_ts": self.epoch_ts,
            "composition": {k: round(v, 6) for k, v in self.comp.items()},
        }


class LotBook:
    """Every tank's composition and every lot's running totals at one station."""

    def __init__(self, station: str, tanks: list[str], min_share: float = 0.005):
        self.station = station
        self.tanks = {t: TankLots(station, t, min_share) for t in tanks}
        self.lots: dict[str, dict[str, Any]] = {}
        for t in tanks:
            lot = f"{station}/{t}/opening"
            self.lots[lot] = self._lot(lot, t, None, None, 0.0, kind="opening")
        self.dirty: set[str] = set()
        self.epochs: list[dict[str, Any]] = [tl.epoch_record() for tl in self.tanks.values()]

    def _lot(
        self,
        lot: str,
        tank: str,
        start_ts: float | None,
        end_ts: float | None,
        net_l: float,
        kind: str = "delivery",
    ) -> dict[str, Any]:
        return {
            "lot": lot,
            "kind": kind,
            "station": self.station,
            "tank": tank,
            "start_ts": start_ts,
            "end_ts": end_ts,
            "net_l_20c": net_l,
            "po_no": None,
            "drawn_l_20c": 0.0,
            "txns": 0,
            "drawn_by_day": {},
            "share_now": 1.0 if kind == "opening" else 0.0,
        }

    def receive(self, tank: str, start_ts: float, end_ts: float, net_l: float, before_l: float) -> str:
        lot = f"{self.station}/{tank}/{int(start_ts)}"
        self.lots[lot] = self._lot(lot, tank, start_ts, end_ts, net_l)
        tl = self.tanks[tank]
        self.epochs.append(tl.receive(end_ts, lot, net_l, before_l))
        for k in list(self.lots):
            info = self.lots[k]
            if info["tank"] == tank:
                share = tl.comp.get(k, 0.0)
                if share != info["share_now"]:
                    info["share_now"] = share
                    self.dirty.add(k)
        return lot

    def retire(self, before_ts: float) -> list[str]:
        """Forget the delivery lots no tank holds any more (drawn out, or folded into ``earlier``) that
        ended before ``before_ts`` and have nothing unwritten: their records stay in the store, which is
        what the API reads. Without it a station's lots only grew, and every receipt walks them all."""
        gone = [k for k, info in self.lots.items()
                if info["kind"] == "delivery" and info["share_now"] == 0.0 and k not in self.dirty
                and info["end_ts"] is not None and info["end_ts"] < before_ts]
        for k in gone:
            del self.lots[k]
        return gone

    def link(self, lot: str, po_no: str) -> None:
        info = self.lots.get(lot)
        if info is not None and info["po_no"] != po_no:
            info["po_no"] = po_no
            self.dirty.add(lot)

    def draw(self, tank: str, end_ts: float, litres_20c: float) -> int:
        """A sale of ``litres_20c`` from ``tank``; returns the epoch it drew from."""
        tl = self.tanks[tank]
        day = local_day(end_ts)
        lots = self.lots
        for lot, share in tl.comp.items():
            info = lots.get(lot)
            if info is None:
                continue
            part = litres_20c * share
            info["drawn_l_20c"] += part
            info["txns"] += 1
            by_day = info["drawn_by_day"]
            by_day[day] = by_day.get(day, 0.0) + part
            self.dirty.add(lot)
        return tl.epoch

    def take_dirty(self) -> list[dict[str, Any]]:
        out = []
        for lot in self.dirty:
            info = self.lots[lot]
            rec = dict(info)
            rec["drawn_l_20c"] = round(info["drawn_l_20c"], 2)
            rec["drawn_by_day"] = {d: round(v, 2) for d, v in info["drawn_by_day"].items()}
            out.append(rec)
        self.dirty.clear()
        return out

    def take_epochs(self) -> list[dict[str, Any]]:
        out, self.epochs = self.epochs, []
        return out
