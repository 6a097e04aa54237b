"""Documents in: purchase orders / waybills, invoices, sales declarations and posted prices, as events.

Documents reach the twin through the same path as device data (``TwinService.ingest``: validated, logged
in the station's input log, handed to the station actor). What differs is who writes them: people and
other systems, through REST (``POST /api/v1/documents``) or a CSV file (``fueltwin import``), so a
document is checked here beyond its schema for what a clerk gets wrong (an arrival before the departure,
a unit price that is a typo, a declaration for a day that has not begun, an order for a tank of another
grade) and normalised (an ISO time with its offset for ``ts``, a source and a sequence number when the
sender gives none). Each document is one event: it is applied whole or rejected whole, with its reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from twin.registry import District
from twin.timeutil import CST, local_day

DOCUMENT_KINDS = ("doc.purchase", "doc.invoice", "doc.declaration", "price.posted")
TIME_FIELDS = ("ts", "depart_ts", "arrive_ts")
#: Retail and wholesale fuel sells for a few CNY a litre; outside this an amount or volume is a typo.
UNIT_PRICE_RANGE = (1.0, 30.0)


def parse_time(value: Any) -> float:
    """Epoch seconds, or ISO 8601 text (a time without offset is Beijing time, the users' clock)."""
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"not a time: {value!r} (epoch seconds or ISO 8601, e.g. 2026-06-01T08:30:00+08:00)"
            ) from None
        return (dt if dt.tzinfo else dt.replace(tzinfo=CST)).timestamp()
    raise ValueError(f"not a time: {value!r}")


def normalise(raw: Any, default_source: str) -> dict[str, Any]:
    """A document as sent → the raw event the validator takes. Raises ValueError with the reason."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"a document must be an object, got {type(raw).__name__}")
    doc = dict(raw)
    kind = doc.get("kind")
    if kind not in DOCUMENT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(DOCUMENT_KINDS)}, got {kind!r}")
    for name in TIME_FIELDS:
        if doc.get(name) is not None:
            try:
                doc[name] = parse_time(doc[name])
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
    doc.setdefault("source", default_source)
    doc.setdefault("entity", "")
    return doc


def check(event: Any, district: District) -> str | None:
    """What a schema cannot see; None when the document makes sense."""
    kind = event.kind
    if kind == "doc.purchase":
        if event.depart_ts is not None and event.arrive_ts is not None and event.arrive_ts < event.depart_ts:
            return "arrive_ts: the tanker arrives before it departs"
        for i, (lon, lat) in enumerate(event.route):
            if not (-180 <= lon <= 180 and -90 <= lat <= 90) or math.isnan(lon) or math.isnan(lat):
                return f"route[{i}]: ({lon}, {lat}) is not a (lon, lat) point"
        if any(not str(s).strip() for s in event.seals):
            return "seals: an empty seal number"
        if event.tank:
            spec = district.station(event.station)
            grades = {t.id: t.grade for t in spec.tanks}
            for tank in (t.strip() for t in event.tank.split(",")):
                if tank not in grades:
                    return f"tank: station {event.station} has no tank {tank!r}"
                if grades[tank] != event.grade:
                    return f"tank: {tank} holds {grades[tank]}, the order is for {event.grade}"
    elif kind == "doc.invoice":
        if event.volume_l > 0:
            unit = event.amount_cny / event.volume_l
            lo, hi = UNIT_PRICE_RANGE
            if not lo <= unit <= hi:
                return f"amount_cny / volume_l = {unit:.2f} CNY/L is outside {lo:g}–{hi:g}: a typo?"
        elif event.amount_cny > 0:
            return "amount_cny without volume_l"
    elif kind == "doc.declaration" and event.day > local_day(event.ts):
        return f"day: {event.day} has not begun at ts (local day {local_day(event.ts)})"
    return None


def identity(doc: Mapping[str, Any]) -> str:
    """What a person calls the document: its number, or kind and day."""
    for key in ("po_no", "invoice_no"):
        if doc.get(key):
            return str(doc[key])
    if doc.get("day"):
        return f"{doc.get('kind')} {doc.get('grade', '')} {doc['day']}"
    return str(doc.get("kind", "?"))
