"""Validation, dead letters and dedup, through the service into a real Redis."""

from __future__ import annotations

import math

import pytest

from actors.base import make_runtime
from twin.events import Deduplicator, DocPurchase, TankReading, decode_batch, encode_batch, parse
from twin.registry import District
from twin.service import TwinService
from twin.store import Store

T0 = 1_780_000_000.0


def reading(seq: int, **over: object) -> dict[str, object]:
    ev: dict[str, object] = {"kind": "tank.reading", "ts": T0 + 10 * (seq % 50), "station": "BH-0001",
                             "entity": "T1", "source": "BH-0001:atg", "seq": seq, "level_mm": 1500.0,
                             "water_mm": 3.0, "temp_c": 21.5}
    ev.update(over)
    return ev


BAD = [
    (reading(100, level_mm=None), "level_mm"),                 # wrong type
    (reading(101, level_mm=math.nan), "finite"),               # NaN
    (reading(102, level_mm=-4.0), "greater than or equal"),    # negative level
    (reading(103, station="BH-9999"), "unknown station"),
    (reading(104, entity="T9"), "unknown tank"),
    (reading(105, ts=T0 + 86_400), "in the future"),
    ({k: v for k, v in reading(106).items() if k != "temp_c"}, "temp_c: Field required"),
    (reading(107, kind="tank.explode"), "unknown kind"),
    ("not even an object", "must be an object"),
    ({"kind": "nozzle.txn", "ts": T0, "station": "BH-0001", "entity": "N1", "source": "x", "seq": 1,
      "txn_no": 1, "grade": "93#", "volume_l": 30, "amount_cny": 219, "unit_price": 7.3, "start_ts": T0,
      "end_ts": T0, "totalizer_l": 1, "totalizer_cny": 1}, "unknown grade"),
]


@pytest.fixture
async def service(small_district: District, store: Store) -> TwinService:
    return TwinService(small_district, store, make_runtime("local", small_district, shards=2))


@pytest.mark.parametrize(("raw", "reason"), BAD, ids=[r for _, r in BAD])
async def test_bad_input_is_rejected_with_reason_and_dead_lettered(service: TwinService, raw: object,
                                                                   reason: str) -> None:
    good = [reading(i) for i in range(3)]
    await service.ingest([*good[:2], raw, good[2]], now=T0 + 60)
    await service.drain()
    counters = await service.store.counters()
    assert counters == {"accepted": 3, "rejected": 1}
    dead = await service.store.dead_letters()
    assert len(dead) == 1 and reason in dead[0]["reason"], dead
    if reason != "finite":  # NaN survives the JSON round trip but never compares equal
        assert dead[0]["raw"] == raw
    assert await service.store.logged_events("BH-0001") == 3
    await service.close()


async def test_duplicates_are_dropped_and_counted(service: TwinService) -> None:
    batch = [reading(i) for i in range(10)]
    await service.ingest(batch, now=T0 + 200)
    await service.ingest(batch[5:] + [reading(10)], now=T0 + 200)
    await service.drain()
    counters = await service.store.counters()
    assert counters["accepted"] == 11
    assert counters["duplicates"] == 5
    assert await service.store.logged_events("BH-0001") == 11
    await service.close()


async def test_events_read_back_from_the_log_go_in_as_they_are_and_repeats_still_drop(
        service: TwinService, small_district: District, store: Store) -> None:
    """What a replay does: the log's events into a second twin through ingest_events, which trusts their
    validation; the second twin logs and counts them as the first did, and drops a repeated one."""
    batch = [reading(i) for i in range(10)]
    first = await service.ingest(batch, now=T0 + 600)
    await service.close()
    logged = [e async for _, events in store.read_log("BH-0001") for e in events]
    assert len(logged) == 10

    copy = Store(store.r, prefix=store.p + "-copy")
    second = TwinService(small_district, copy, make_runtime("local", small_district, shards=2))
    out = await second.ingest_events(logged, now=T0 + 600)
    await second.ingest_events(logged[-2:], now=T0 + 600)
    await second.close()
    assert out.to_dict() == first.to_dict()
    assert await copy.counters() == {"accepted": 10, "duplicates": 2}
    assert [e async for _, events in copy.read_log("BH-0001") for e in events] == logged


def test_a_logged_event_todays_models_refuse_is_still_read_back() -> None:
    """The log is validated as it is read; an entry written by older code whose models allowed what
    today's refuse is rebuilt unchecked, so recovery and replay still read every log they wrote."""
    good = parse(reading(1))
    refused = TankReading.model_construct(**{**parse(reading(2)).__dict__, "level_mm": -4.0})
    doc = parse({"kind": "doc.purchase", "ts": T0, "station": "BH-0001", "source": "docs", "seq": 3,
                 "po_no": "PO-1", "supplier": "中石化", "depot": "南疆油库", "grade": "92#",
                 "volume_l_20c": 12000, "density_20c": 737.5, "seals": ["A1"],
                 "route": [(117.7, 39.0), (117.71, 39.01)]})
    refused_doc = DocPurchase.model_construct(**{**doc.__dict__, "volume_l_20c": -1.0})
    back = decode_batch("BH-0001", encode_batch([good, refused, doc, refused_doc]))
    assert back == [good, refused, doc, refused_doc]
    assert back[1].level_mm == -4.0 and back[3].route == [(117.7, 39.0), (117.71, 39.01)]
    assert all(isinstance(point, tuple) for point in back[3].route)
    with pytest.raises(ValueError, match="greater than or equal"):
        parse(back[1].model_dump())  # it is one today's validation refuses


def test_dedup_window_bounds_memory_and_rejects_ancient_seqs() -> None:
    d = Deduplicator(window=100)
    ev = parse(reading(0))
    assert d.admit(ev) is None
    for seq in range(1, 1000):
        assert d.admit(ev.model_copy(update={"seq": seq})) is None
    assert len(d._seen["BH-0001:atg"]) <= 200
    assert d.admit(ev.model_copy(update={"seq": 950})) == "duplicate"
    assert "older than the dedup window" in (d.admit(ev.model_copy(update={"seq": 10})) or "")
    assert d.admit(ev.model_copy(update={"seq": 1005})) is None and d.gaps == 1


def test_log_codec_round_trips_every_kind() -> None:
    events = [
        parse(reading(1)),
        parse({"kind": "doc.purchase", "ts": T0, "station": "BH-0001", "source": "docs", "seq": 2,
               "po_no": "PO-1", "supplier": "中石化", "depot": "南疆油库", "grade": "92#",
               "volume_l_20c": 12000, "density_20c": 737.5, "seals": ["A1", "A2"],
               "route": [(117.7, 39.0), (117.71, 39.01)]}),
        parse({"kind": "clock.tick", "ts": T0, "station": "BH-0001", "source": "clk", "seq": 3}),
        parse({"kind": "vapor.env", "ts": T0, "station": "BH-0001", "source": "vr", "seq": 4,
               "pressure_pa": 120.5, "processor_state": "running", "outlet_g_m3": 3.2}),
    ]
    assert decode_batch("BH-0001", encode_batch(events)) == events
