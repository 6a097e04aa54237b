"""REST for the regulatory loop (issue 5): documents in, ledger, lot trace, statistics and market.

Reads are a few Redis hash reads each (the actors keep the running aggregates and write them as records,
``twin/regulatory.py``); the only write is documents, which go through ``TwinService.ingest`` like any
other input, so they are validated, logged in the station's input log and reach the station actor.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import quote

from fastapi import Body, FastAPI, HTTPException, Query, Request, Response

from twin.documents import check, identity, normalise
from twin.events import Rejection
from twin.ledger import combine, roll
from twin.stats import PERIODS, aggregate, history_hash, key_problem, market, newest_key

if TYPE_CHECKING:
    from ui.app import AppContext

API = "/api/v1"
#: Statistics are recomputed at most this often (s): a wall display polling every few seconds, or a
#: hundred of them, costs one hash read a second.
STATS_CACHE_S = 1.0
#: The sales report's columns (zh-CN first, as the bureau's staff read them; English for the rest).
EXPORT_HEADER = ("期间 period", "区域 region", "站点编号 station", "站点名称 name", "油品 grade",
                 "销量(升) litres", "金额(元) CNY", "笔数 transactions")
MAX_DOCUMENTS = 10_000
Period = Literal["day", "month", "year"]
Key = Annotated[str | None, Query(description="2026-06-01, 2026-06 or 2026; default: current")]


def register(app: FastAPI, ctx: AppContext) -> None:
    store, district = ctx.store, ctx.district
    stats_cache: dict[str, Any] = {"at": -1.0, "records": {}}
    stats_lock = asyncio.Lock()

    def station_or_404(station_id: str) -> Any:
        if not district.has_station(station_id):
            raise HTTPException(404, f"unknown station {station_id!r}")
        return district.station(station_id)

    # ---- documents ------------------------------------------------------------------------------

    async def take(docs: list[Any], source: str, lines: list[int] | None = None) -> dict[str, Any]:
        """Validate each document on its own, dead-letter the bad ones, ingest the good ones in one batch."""
        service = ctx.service
        if service is None:
            raise HTTPException(503, "no twin runs in this process (serve mode): documents cannot be taken")
        now = service.sim_now if service.sim_now is not None else time.time()
        results: list[dict[str, Any]] = []
        good: list[dict[str, Any]] = []
        bad: list[Rejection] = []
        for i, raw in enumerate(docs):
            where = {"index": i} if lines is None else {"line": lines[i]}
            try:
                doc = normalise(raw, source)
            except ValueError as exc:
                bad.append(
                    Rejection(
                        raw, str(exc), str(raw.get("station", "")) if isinstance(raw, dict) else "", source
                    )
                )
                results.append({**where, "accepted": False, "reason": str(exc)})
                continue
            if "seq" not in doc:
                doc["seq"] = int(await store.r.incr(store.key(f"seq:{doc['source']}")))
            accepted, rejected = service.validator.validate([doc], now)
            reason = rejected[0].reason if rejected else check(accepted[0], district)
            if reason is not None:
                bad.append(Rejection(doc, reason, str(doc.get("station", "")), str(doc.get("source", ""))))
                results.append({**where, "accepted": False, "reason": reason, "document": identity(doc)})
                continue
            good.append(doc)
            results.append(
                {
                    **where,
                    "accepted": True,
                    "document": identity(doc),
                    "station": doc["station"],
                    "source": doc["source"],
                    "seq": doc["seq"],
                }
            )
        if bad:
            await store.write({}, bad)
            service.counts.rejected += len(bad)
        if good:
            await service.ingest(good, now)
            if not service.writer.holding:  # Redis away: the twin has them, they are written when it is back
                await service.drain()
        return {"accepted": len(good), "rejected": len(bad), "results": results}

    @app.post(f"{API}/documents", tags=["documents"])
    async def post_documents(
        body: Annotated[Any, Body(description="one document or a list")],
    ) -> dict[str, Any]:
        """Purchase orders / waybills, invoices, daily sales declarations, posted prices (JSON).

        Each document is taken or rejected whole, with its reason; the good ones of a list are taken
        even when others are rejected. Rejected ones are also in the dead letters."""
        docs = body if isinstance(body, list) else [body]
        if len(docs) > MAX_DOCUMENTS:
            raise HTTPException(413, f"at most {MAX_DOCUMENTS} documents a request")
        return await take(docs, "rest:documents")

    @app.post(f"{API}/documents/csv", tags=["documents"])
    async def post_documents_csv(request: Request) -> dict[str, Any]:
        """A CSV file of documents (text/csv, UTF-8; columns as in bridges/documents.py). A bad row is
        rejected with its line number and reason; the good rows are still taken."""
        from bridges.documents import parse_csv

        body = await request.body()
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise HTTPException(400, f"the file is not UTF-8: {exc}") from None
        rows, problems = parse_csv(text)
        if len(rows) > MAX_DOCUMENTS:
            raise HTTPException(413, f"at most {MAX_DOCUMENTS} rows a file")
        out = await take([r.raw for r in rows], "csv:documents", [r.line for r in rows])
        if problems:
            await store.write(
                {},
                [
                    Rejection(
                        {"line": p.line, "text": p.text}, f"line {p.line}: {p.reason}", "", "csv:documents"
                    )
                    for p in problems
                ],
            )
            if ctx.service is not None:
                ctx.service.counts.rejected += len(problems)
        for r in out["results"]:
            if not r["accepted"]:
                r["reason"] = f"line {r['line']}: {r['reason']}"
        out["results"].extend(
            {"line": p.line, "accepted": False, "reason": f"line {p.line}: {p.reason}"} for p in problems
        )
        out["results"].sort(key=lambda r: r["line"])
        out["rejected"] += len(problems)
        return out

    # ---- ledger ---------------------------------------------------------------------------------

    @app.get(f"{API}/stations/{{station_id}}/ledger", tags=["regulatory"])
    async def ledger(
        station_id: str,
        period: Literal["day", "month", "year"] = "day",
        since: Annotated[str | None, Query(alias="from", description="first key, e.g. 2026-06-01")] = None,
        until: Annotated[str | None, Query(alias="to", description="last key")] = None,
        tank: str | None = None,
    ) -> dict[str, Any]:
        """进销存台账 per tank, per grade and for the station: opening measured, receipts (documented and
        detected), metered sales, closing book, closing measured, variance (L at 20 °C) and % of throughput.
        Today's (or this month's, year's) row includes the day so far (``complete`` false)."""
        spec = station_or_404(station_id)
        tanks = {t.id: t.grade for t in spec.tanks}
        if tank is not None and tank not in tanks:
            raise HTTPException(404, f"station {station_id} has no tank {tank!r}")
        stored = await store.hgetall_json(f"ledger:{station_id}")
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for field, row in stored.items():
            p, key, tid = field.split("|")
            if p == period:
                rows[(key, tid)] = row
        state = await store.state(station_id) or {}
        for tid, today in ((state.get("regulatory") or {}).get("ledger_today") or {}).items():
            key = {"day": today["key"], "month": today["key"][:7], "year": today["key"][:4]}[period]
            rows[(key, tid)] = today if period == "day" else roll(rows.get((key, tid)), today, period, key)
        keep = [
            r
            for (key, tid), r in sorted(rows.items())
            if (tank is None or tid == tank)
            and (since is None or key >= since)
            and (until is None or key <= until)
        ]
        grades: list[dict[str, Any]] = []
        totals: list[dict[str, Any]] = []
        for key in sorted({r["key"] for r in keep}):
            same = [r for r in keep if r["key"] == key]
            for grade in sorted({r["grade"] for r in same}):
                g = combine([r for r in same if r["grade"] == grade], "*", grade)
                if g is not None:
                    grades.append(g)
            t = combine(same, "*", "*")
            if t is not None:
                totals.append(t)
        return {
            "station": station_id,
            "period": period,
            "unit": "L at 20 °C (sales_metered_l: displayed L)",
            "tanks": keep,
            "grades": grades,
            "station_total": totals,
        }

    # ---- trace ----------------------------------------------------------------------------------

    @app.get(f"{API}/trace/po/{{po_no:path}}", tags=["regulatory"])
    async def trace_po(po_no: str) -> dict[str, Any]:
        """油品溯源 of a purchase order: source, transport, delivery into which tanks, and the sales that
        drew from it (well-mixed tanks: each sale carries every lot in its tank's proportion)."""
        po = await store.hget_json("trace:po", po_no)
        if po is None:
            raise HTTPException(404, f"unknown purchase order {po_no!r}")
        lots = [lot for lot in await store.hmget_json("trace:lot", po["lots"]) if lot is not None]
        state = await store.state(po["station"]) or {}
        observed = {t["id"]: t.get("observed_l") for t in state.get("tanks", [])}
        by_day: dict[str, float] = {}
        deliveries = []
        for lot in lots:
            for day, v in lot["drawn_by_day"].items():
                by_day[day] = by_day.get(day, 0.0) + v
            now = observed.get(lot["tank"])
            deliveries.append(
                {
                    "lot": lot["lot"],
                    "tank": lot["tank"],
                    "start_ts": lot["start_ts"],
                    "end_ts": lot["end_ts"],
                    "detected_net_l_20c": lot["net_l_20c"],
                    "drawn_l_20c": lot["drawn_l_20c"],
                    "transactions": lot["txns"],
                    "share_of_tank_now": lot["share_now"],
                    "remaining_l_20c": None if now is None else round(now * lot["share_now"], 1),
                }
            )
        return {
            "po_no": po_no,
            "station": po["station"],
            "matched": bool(lots),
            "source": {
                k: po.get(k)
                for k in (
                    "supplier",
                    "depot",
                    "grade",
                    "volume_l_20c",
                    "density_20c",
                    "invoice_no",
                    "invoice",
                )
            },
            "transport": {k: po.get(k) for k in ("vehicle", "seals", "depart_ts", "arrive_ts", "route")},
            "deliveries": deliveries,
            "detected_l_20c": round(sum(d["detected_net_l_20c"] for d in deliveries), 1),
            "sales": {
                "drawn_l_20c": round(sum(by_day.values()), 2),
                "by_day": {d: round(v, 2) for d, v in sorted(by_day.items())},
                "model": "well-mixed tank: a sale draws each lot in proportion to its share of the tank",
            },
        }

    @app.get(f"{API}/trace/lot/{{lot:path}}", tags=["regulatory"])
    async def trace_lot(lot: str) -> dict[str, Any]:
        """One lot (a recognised delivery, or a tank's opening stock): its order if one matched, and the
        sales that drew from it — the trace of an undocumented drop, which no purchase order leads to."""
        info = await store.hget_json("trace:lot", lot)
        if info is None:
            raise HTTPException(404, f"unknown lot {lot!r}")
        state = await store.state(info["station"]) or {}
        now = {t["id"]: t.get("observed_l") for t in state.get("tanks", [])}.get(info["tank"])
        return {
            "lot": info["lot"],
            "kind": info["kind"],
            "station": info["station"],
            "tank": info["tank"],
            "start_ts": info["start_ts"],
            "end_ts": info["end_ts"],
            "detected_net_l_20c": info["net_l_20c"],
            "po_no": info["po_no"],
            "drawn_l_20c": info["drawn_l_20c"],
            "transactions": info["txns"],
            "share_of_tank_now": info["share_now"],
            "remaining_l_20c": None if now is None else round(now * info["share_now"], 1),
            "sales": {"by_day": dict(sorted(info["drawn_by_day"].items()))},
        }

    @app.get(f"{API}/trace/txn/{{station_id}}/{{txn_no}}", tags=["regulatory"])
    async def trace_txn(station_id: str, txn_no: int, nozzle: str | None = None) -> dict[str, Any]:
        """Which lots (deliveries, purchase orders) a transaction's litres came from, in proportion."""
        spec = station_or_404(station_id)
        nozzles = [n.id for n in spec.nozzles if nozzle is None or n.id == nozzle]
        found = [
            (n, v)
            for n, v in zip(
                nozzles,
                await store.find_txns(station_id, [f"{n}:{txn_no}" for n in nozzles]),
                strict=True,
            )
            if v is not None
        ]
        if not found:
            raise HTTPException(
                404, f"no transaction {txn_no} at {station_id}" + (f" nozzle {nozzle}" if nozzle else "")
            )
        if len(found) > 1:
            raise HTTPException(
                409,
                f"transaction number {txn_no} exists on nozzles "
                f"{', '.join(n for n, _ in found)}: give ?nozzle=",
            )
        nz, (tank, end_ts, volume_l, volume_20c, epoch, unit_price, amount) = found[0]
        ep = await store.hget_json(f"trace:epoch:{station_id}", f"{tank}|{epoch}") or {"composition": {}}
        comp = ep["composition"]
        infos = await store.hmget_json("trace:lot", list(comp))
        lots = []
        for (lot, share), info in sorted(zip(comp.items(), infos, strict=True), key=lambda x: -x[0][1]):
            lots.append(
                {
                    "lot": lot,
                    "share": share,
                    "litres_20c": round(volume_20c * share, 3),
                    "po_no": None if info is None else info.get("po_no"),
                    "kind": "earlier lots" if info is None else info.get("kind"),
                    "delivered_ts": None if info is None else info.get("end_ts"),
                }
            )
        return {
            "station": station_id,
            "txn_no": txn_no,
            "nozzle": nz,
            "tank": tank,
            "end_ts": end_ts,
            "volume_l": volume_l,
            "volume_l_20c": volume_20c,
            "unit_price": unit_price,
            "amount_cny": amount,
            "epoch": epoch,
            "epoch_from_ts": ep.get("from_ts"),
            "lots": lots,
        }

    # ---- statistics -----------------------------------------------------------------------------

    async def records() -> dict[str, Any]:
        async with stats_lock:
            if time.monotonic() - stats_cache["at"] >= STATS_CACHE_S:
                stats_cache["records"] = await store.hgetall_json("stats")
                stats_cache["at"] = time.monotonic()
        return stats_cache["records"]

    @app.get(f"{API}/stats", tags=["regulatory"])
    async def stats(
        period: Period = "day",
        key: Key = None,
        region: str | None = None,
        station: str | None = None,
        far_pct: Annotated[float, Query(gt=0, le=100)] = 3.0,
    ) -> dict[str, Any]:
        """Sales volume and revenue by grade for the district, each region and station (day, month, year;
        a period that is over from its closed rows, the current one from the running totals), and market
        monitoring: posted prices by grade, their spread, stations far from the reference."""
        return await sales_statistics(period, key, region, station, far_pct)

    @app.get(f"{API}/stats/export", tags=["regulatory"], response_class=Response,
             responses={200: {"content": {"text/csv": {}}, "description": "the report, UTF-8 with BOM"}})
    async def stats_export(period: Period = "day", key: Key = None, region: str | None = None) -> Response:
        """The same figures as a spreadsheet: one row per station and grade (every station of the district
        or region, a station that sold nothing with one empty row), zh-CN and English headers; UTF-8
        with a byte-order mark so that Excel opens the Chinese text as it is."""
        out = await sales_statistics(period, key, region, None, 3.0)
        key = out["key"] or ""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n")
        writer.writerow(EXPORT_HEADER)
        for spec in district.stations:
            if region is not None and spec.region != region:
                continue
            grades = out["stations"].get(spec.id, {}).get("by_grade") or {"": {}}
            for grade, g in grades.items():
                writer.writerow([key, spec.region, spec.id, spec.name, grade, g.get("volume_l", 0.0),
                                 g.get("amount_cny", 0.0), g.get("count", 0)])
        ascii_name = "-".join(x for x in ("fueltwin-sales", period, key) if x)  # a region's name is Chinese
        full = f"{ascii_name}-{region}" if region else ascii_name
        disposition = f"attachment; filename=\"{ascii_name}.csv\"; filename*=UTF-8''{quote(full)}.csv"
        return Response("\ufeff" + buf.getvalue(), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": disposition})

    async def sales_statistics(period: str, key: str | None, region: str | None, station: str | None,
                         far_pct: float) -> dict[str, Any]:
        recs = await records()
        if (problem := key_problem(period, key)) is not None:
            raise HTTPException(422, problem)
        if key is None:
            key = newest_key(recs, period)
        regions = {s.id: s.region for s in district.stations}
        if region is not None and region not in set(regions.values()):
            raise HTTPException(404, f"unknown region {region!r}")
        if station is not None:
            station_or_404(station)
        wanted = [station] if station else [s for s, r in regions.items() if region is None or r == region]
        closed: dict[str, Any] = {}
        if key is not None:
            ids = [s.id for s in district.stations]
            rows = await store.hmget_json(history_hash(period, key), [f"{sid}|{key}" for sid in ids])
            closed = {sid: row for sid, row in zip(ids, rows, strict=True) if row is not None}
        out = aggregate(recs, regions, period, key or "", wanted, closed)
        if region is not None:
            out["regions"] = {region: out["regions"][region]}
        out["market"] = market(
            {s: r for s, r in recs.items() if region is None or regions.get(s) == region}, far_pct
        )
        out["stations_reporting"] = len(recs)
        out["periods"] = list(PERIODS)
        return out
