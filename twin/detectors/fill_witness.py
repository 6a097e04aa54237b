"""Fills the vapor-recovery monitor saw that the dispenser never reported: unrecorded sales, by nozzle.

An online vapor-recovery monitor (GB 20952-2020 §4.5) records every gasoline fill — the litres and the
vapor returned, to judge A/L — from its own sensors, whatever the station's point-of-sale software
reports. A dispenser whose software hides a sale (DOMAIN.md 'Dispensers': no transaction, totalizer and
numbering kept consistent) thus leaves a vapor fill with no transaction beside it. The tank's gauge sees
the same litres go, but cannot say through which nozzle, and a fill smaller than the gauge resolves not
at all; the monitor names the nozzle and sees every fill.

A fill with no transaction is not yet a hidden sale: the dispenser's record may simply not have arrived
(a lost link, a collector restarted). The next transaction of the nozzle tells the two apart: lost
records still advanced the totalizer, so the next transaction's totalizer starts that many litres past
the previous one's end; a hidden fill left the totalizer where it was. So a vapor fill is judged when a
transaction of its nozzle ending clearly after it arrives, against the totalizer gap since the previous
transaction — which also makes the judgement indifferent to which of the two sources reports first.

The monitor's and the dispenser's clocks and volume sensors differ, so a fill matches a transaction that
ended within ``match_s`` of it with litres within ``match_rel`` (+ ``match_abs_l``). Pure: event time
only, no I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from twin.detectors.nozzle import Finding


@dataclass(frozen=True, slots=True)
class WitnessSettings:
    #: A vapor fill and a transaction are the same fill if they ended this close (s) ...
    match_s: float = 120.0
    #: ... and their litres agree within this share plus ``match_abs_l`` (the monitor's own flow meter).
    match_rel: float = 0.02
    match_abs_l: float = 0.5
    #: Vapor fills smaller than this (a nozzle lifted and hung up, a calibration pulse) are not judged.
    min_litres: float = 2.0
    #: HIDDEN_SALES reports the unreported fills and the reported litres of this window (s).
    window_s: float = 48 * 3600.0
    #: Transactions remembered per nozzle, to match a vapor fill that arrives after its transaction.
    keep_txns: int = 32


@dataclass(slots=True)
class _Txn:
    end_ts: float
    litres: float
    totalizer_before: float
    totalizer_after: float
    matched: bool = False


@dataclass(slots=True)
class _NozzleWitness:
    txns: deque[_Txn] = field(default_factory=deque)
    pending: list[tuple[float, float]] = field(default_factory=list)  # vapor fills: (end ts, litres)
    unreported: deque[tuple[float, float]] = field(default_factory=deque)  # (end ts, litres)
    #: Litres reported per hour, [hour start, litres]: hours, not transactions, so that a busy nozzle's
    #: 48 h cost 48 entries in memory and in every snapshot.
    reported: deque[list[float]] = field(default_factory=deque)


class FillWitness:
    """One station's gasoline nozzles: their transactions against the vapor monitor's fills."""

    def __init__(self, settings: WitnessSettings | None = None):
        self.settings = settings or WitnessSettings()
        self.nozzles: dict[str, _NozzleWitness] = {}
        #: Vapor fills judged: matched to a transaction (within the litres' tolerance or not), counted by
        #: the totalizer (records lost), hidden, and given up on (no transaction of the nozzle for a whole
        #: window after them).
        self.counts = {"matched": 0, "litres_disagree": 0, "lost_records": 0, "unreported": 0, "unjudged": 0}

    def txn(self, nozzle: str, end_ts: float, litres: float, totalizer_l: float) -> Finding | None:
        """A transaction of ``nozzle``; HIDDEN_SALES when it shows an earlier vapor fill was hidden."""
        w = self.nozzles.setdefault(nozzle, _NozzleWitness())
        w.txns.append(_Txn(end_ts, litres, totalizer_l - litres, totalizer_l))
        while len(w.txns) > self.settings.keep_txns:
            w.txns.popleft()
        hour = end_ts - end_ts % 3600.0
        if w.reported and w.reported[-1][0] == hour:
            w.reported[-1][1] += litres
        else:
            w.reported.append([hour, litres])
        return self._resolve(nozzle, w, end_ts)

    def fill(self, nozzle: str, end_ts: float, litres: float) -> Finding | None:
        """A fill the vapor monitor recorded at ``nozzle``."""
        if litres < self.settings.min_litres:
            return None
        w = self.nozzles.setdefault(nozzle, _NozzleWitness())
        w.pending.append((end_ts, litres))
        return self._resolve(nozzle, w, end_ts)

    def _resolve(self, nozzle: str, w: _NozzleWitness, ts: float) -> Finding | None:
        s = self.settings
        found = False
        still: list[tuple[float, float]] = []
        horizon = ts - s.window_s
        for end_ts, litres in w.pending:
            verdict = self._judge(w, end_ts, litres)
            if verdict is None:
                if end_ts >= horizon:
                    still.append((end_ts, litres))
                else:  # the nozzle has not reported a transaction for the whole window: cannot tell
                    self.counts["unjudged"] += 1
                continue
            self.counts[verdict] += 1
            if verdict == "unreported":
                w.unreported.append((end_ts, litres))
                found = True
        w.pending = still
        while w.unreported and w.unreported[0][0] < horizon:
            w.unreported.popleft()
        while w.reported and w.reported[0][0] < horizon - 3600.0:
            w.reported.popleft()
        if not found:
            return None
        hidden = sum(v for _, v in w.unreported)
        reported = sum(v for _, v in w.reported)
        fraction = hidden / (hidden + reported) if hidden + reported > 0 else 0.0
        return Finding("HIDDEN_SALES", "alarm", {"litres": hidden, "drops": len(w.unreported)},
                       {"source": "vapor_monitor", "nozzle": nozzle,
                        "window_h": round(s.window_s / 3600.0, 1),
                        "unreported_fills": [{"end_ts": t, "volume_l": round(v, 2)} for t, v in w.unreported],
                        "unreported_l": round(hidden, 2), "reported_l": round(reported, 2),
                        "fraction": round(fraction, 4)})

    def _judge(self, w: _NozzleWitness, end_ts: float, litres: float) -> str | None:
        """"matched", "litres_disagree", "lost_records", "unreported", or None while the nozzle's next
        transaction is still to come.

        A transaction that ended with the fill is its record even where the litres disagree beyond the
        tolerance (counted apart: two meters that disagree are not a hidden sale); only a fill with no
        transaction at its time is judged by the totalizer of the next one."""
        s = self.settings
        tolerance = s.match_rel * litres + s.match_abs_l
        at_time = [t for t in w.txns if not t.matched and abs(t.end_ts - end_ts) <= s.match_s]
        if at_time:
            best = min(at_time, key=lambda t: (abs(t.litres - litres) > tolerance, abs(t.end_ts - end_ts)))
            best.matched = True
            return "matched" if abs(best.litres - litres) <= tolerance else "litres_disagree"
        txns = list(w.txns)
        for k, t in enumerate(txns):
            if t.end_ts <= end_ts + s.match_s:
                continue
            if k == 0:
                return "lost_records"  # no earlier transaction to measure the totalizer from: cannot tell
            gap = t.totalizer_before - txns[k - 1].totalizer_after
            return "lost_records" if gap >= litres - tolerance else "unreported"
        return None

    def without_transaction(self, nozzles: Iterable[str], t0: float,
                            t1: float) -> list[tuple[str, float, float]]:
        """(nozzle, end ts, litres) of the fills of ``nozzles`` that ended in [t0, t1] and that no
        transaction matched: waiting for the nozzle's next transaction, or already found hidden.

        Asked by a tank that saw its volume fall outside any transaction: a fill at one of its nozzles
        then, that nobody reported, says the product left through a nozzle (a sale hidden or its record
        lost), not through a siphon."""
        found = []
        for nozzle in nozzles:
            w = self.nozzles.get(nozzle)
            if w is None:
                continue
            for end_ts, litres in (*w.pending, *w.unreported):
                if t0 <= end_ts <= t1:
                    found.append((nozzle, end_ts, litres))
        return found

    def state(self) -> dict[str, Any]:
        """Counts of vapor fills judged, and the unreported fills of each nozzle in the window."""
        return {**self.counts,
                "pending": sum(len(w.pending) for w in self.nozzles.values()),
                "unreported_by_nozzle": {n: len(w.unreported)
                                         for n, w in self.nozzles.items() if w.unreported}}
