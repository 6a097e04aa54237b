"""CSV import of documents (``fueltwin import FILE`` and ``POST /api/v1/documents/csv``).

One document a row; a header names the columns (any order, unknown columns are an error so a misspelt
one is not silently ignored). ``kind`` is one of ``doc.purchase``, ``doc.invoice``, ``doc.declaration``,
``price.posted``; the other columns are that kind's fields (``twin/events.py``), empty cells meaning
"not given". Lists: ``seals`` separated by ``;`` (``TJ001;TJ002``) and ``route`` as ``lon lat`` points
separated by ``;`` (``117.77 38.96;117.70 39.00``). Times are epoch seconds or ISO 8601 (Beijing time
when no offset is given).

Parsing never raises on bad content: each row becomes a raw document or a rejection with its line
number (the physical line of the file, header = 1) and the reason; the good rows go on.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from twin.events import EVENT_BY_KIND

FLOAT_FIELDS = frozenset(
    {"volume_l_20c", "density_20c", "volume_l", "amount_cny", "revenue_cny", "unit_price"}
)
INT_FIELDS = frozenset({"seq"})
KNOWN = frozenset({"kind", "ts", "station", "entity", "source", "seq", "quality"}) | {
    f
    for kind in ("doc.purchase", "doc.invoice", "doc.declaration", "price.posted")
    for f in EVENT_BY_KIND[kind].payload_fields()
}


@dataclass(frozen=True, slots=True)
class CsvRow:
    line: int
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CsvProblem:
    line: int
    reason: str
    text: str = ""


def _value(name: str, cell: str) -> Any:
    if name in FLOAT_FIELDS:
        try:
            return float(cell)
        except ValueError:
            raise ValueError(f"{name}: {cell!r} is not a number") from None
    if name in INT_FIELDS:
        try:
            return int(cell)
        except ValueError:
            raise ValueError(f"{name}: {cell!r} is not a whole number") from None
    if name == "seals":
        return [s.strip() for s in cell.split(";") if s.strip()]
    if name == "route":
        points = []
        for part in cell.split(";"):
            if not part.strip():
                continue
            bits = part.replace(",", " ").split()
            if len(bits) != 2:
                raise ValueError(f"route: {part.strip()!r} is not 'lon lat'")
            try:
                points.append((float(bits[0]), float(bits[1])))
            except ValueError:
                raise ValueError(f"route: {part.strip()!r} is not 'lon lat'") from None
        return points
    return cell


def parse_csv(text: str) -> tuple[list[CsvRow], list[CsvProblem]]:
    """Rows of raw documents and the problems found, each with its line number."""
    rows: list[CsvRow] = []
    problems: list[CsvProblem] = []
    if text.startswith("\ufeff"):  # a BOM, as spreadsheet programs write UTF-8 CSV
        text = text[1:]
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        return rows, [CsvProblem(1, "empty file: expected a header row (kind, station, ts, …)")]
    except csv.Error as exc:
        return rows, [CsvProblem(1, f"unreadable header: {exc}")]
    names = [h.strip() for h in header]
    unknown = [n for n in names if n not in KNOWN]
    if "kind" not in names or unknown:
        reason = (
            f"unknown column(s) {', '.join(map(repr, unknown))}" if unknown else "no 'kind' column"
        ) + f"; columns allowed: {', '.join(sorted(KNOWN))}"
        return rows, [CsvProblem(1, reason, ",".join(header))]
    line = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            line = reader.line_num
            problems.append(CsvProblem(line, f"unreadable row: {exc}"))
            continue
        line = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(names):
            problems.append(CsvProblem(line, f"{len(cells)} cells for {len(names)} columns", ",".join(cells)))
            continue
        raw: dict[str, Any] = {}
        try:
            for name, cell in zip(names, cells, strict=True):
                cell = cell.strip()
                if cell != "":
                    raw[name] = _value(name, cell)
        except ValueError as exc:
            problems.append(CsvProblem(line, str(exc), ",".join(cells)))
            continue
        rows.append(CsvRow(line, raw))
    return rows, problems
