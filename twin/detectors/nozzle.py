"""Checks on what a dispenser reports: totalizer continuity, transaction numbering, its mainboard.

DOMAIN.md 'Dispensers': a cheat shows as a totalizer that does not advance by the transaction, or a
board id that changes. Each check runs on the first occurrence (issue 3 asks for exactly that).

A gap in the numbers *and* a totalizer that advanced by the missing volume is what lost data looks
like (a dropped link, a collector restart): the twin books the totalizer's litres as sales, so the tank's
books stay right, and only calls it a TXN_GAP when no communication loss explains it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    severity: str
    metrics: dict[str, Any]
    evidence: dict[str, Any]


@dataclass(slots=True)
class TxnCheck:
    """Result of one transaction: findings, and litres the totalizer says left unseen."""

    findings: list[Finding] = field(default_factory=list)
    unseen_l: float = 0.0


@dataclass(slots=True)
class NozzleLedger:
    #: Totalizers and volumes are reported to 0.01 L; allow two roundings.
    tolerance_l: float = 0.021
    last_txn_no: int | None = None
    last_totalizer_l: float | None = None
    last_totalizer_cny: float | None = None
    last_end_ts: float | None = None
    mainboard_id: str | None = None

    def on_txn(self, txn_no: int, volume_l: float, totalizer_l: float, totalizer_cny: float,
               end_ts: float, link_lost: bool) -> TxnCheck:
        """``link_lost``: the station's data stopped at some point since this nozzle's last transaction."""
        result = TxnCheck()
        if self.last_txn_no is None or self.last_totalizer_l is None:
            self._remember(txn_no, totalizer_l, totalizer_cny, end_ts)
            return result
        missing = txn_no - self.last_txn_no - 1
        excess_l = totalizer_l - self.last_totalizer_l - volume_l
        before = {"txn_no": self.last_txn_no, "totalizer_l": self.last_totalizer_l,
                  "totalizer_cny": self.last_totalizer_cny, "end_ts": self.last_end_ts}
        after = {"txn_no": txn_no, "totalizer_l": totalizer_l, "totalizer_cny": totalizer_cny,
                 "end_ts": end_ts, "volume_l": volume_l}
        if missing > 0:
            if excess_l > self.tolerance_l:
                result.unseen_l = excess_l
            if not link_lost:
                result.findings.append(Finding(
                    "TXN_GAP", "warning",
                    {"missing": missing, "unseen_l": round(max(excess_l, 0.0), 2)},
                    {"missing_from": self.last_txn_no + 1, "missing_to": txn_no - 1, "before": before,
                     "after": after}))
        elif missing < 0:
            result.findings.append(Finding("TXN_GAP", "alarm", {"missing": missing},
                                           {"reason": "numbering went backwards", "before": before,
                                            "after": after}))
        if missing <= 0 and abs(excess_l) > self.tolerance_l:
            result.findings.append(Finding(
                "TOTALIZER_MISMATCH", "alarm", {"excess_l": round(excess_l, 2)},
                {"expected_totalizer_l": round(self.last_totalizer_l + volume_l, 2), "before": before,
                 "after": after}))
        self._remember(txn_no, totalizer_l, totalizer_cny, end_ts)
        return result

    def _remember(self, txn_no: int, totalizer_l: float, totalizer_cny: float, end_ts: float) -> None:
        self.last_txn_no = txn_no
        self.last_totalizer_l = totalizer_l
        self.last_totalizer_cny = totalizer_cny
        self.last_end_ts = end_ts

    def on_device(self, mainboard_id: str, firmware: str, ts: float) -> Finding | None:
        """A board id other than the one we knew is evidence of a board replacement."""
        if not mainboard_id:
            return None
        old, self.mainboard_id = self.mainboard_id, mainboard_id
        if old is None or old == mainboard_id:
            return None
        return Finding("MAINBOARD_CHANGED", "alarm", {"old": old, "new": mainboard_id},
                       {"old_mainboard_id": old, "new_mainboard_id": mainboard_id, "firmware": firmware,
                        "ts": ts})
