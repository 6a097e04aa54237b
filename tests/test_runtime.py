"""The actor runtime: tell/ask, ordering, supervision by snapshot and journal, shard isolation."""

from __future__ import annotations

import asyncio
import pickle
import zlib

import pytest

from actors.entities import StationActor
from actors.runtime import Actor, ActorSystem
from actors.shard import Shard, shard_of
from actors.supervision import ActorCrashed
from twin.events import parse
from twin.registry import District
from twin.risk import station_risk

T0 = 1_780_000_000.0


class Counter(Actor):
    """Adds numbers; the number 13 is poison."""

    def __init__(self) -> None:
        self.total = 0
        self.seen: list[int] = []

    def receive(self, message: int | str) -> int:
        if message == "get":
            return self.total
        assert isinstance(message, int)
        if message == 13:
            raise ValueError("unlucky")
        self.total += message
        self.seen.append(message)
        return self.total


async def test_tell_and_ask_keep_order() -> None:
    system = ActorSystem()
    ref = system.spawn("c", Counter())
    numbers = list(range(0, 200, 2))
    for i in numbers:
        ref.tell(i)
    assert await asyncio.wait_for(ref.ask("get"), 5) == sum(numbers)
    assert ref.instance().seen == numbers
    await system.stop()


async def test_crashing_actor_restarts_from_snapshot_and_journal_others_unaffected() -> None:
    failures: list[tuple[str, object]] = []
    system = ActorSystem(on_failure=lambda name, msg, exc: failures.append((name, msg)))
    crashing = system.spawn("a", Counter(), snapshot_every=4)
    healthy = system.spawn("b", Counter())
    for i in range(1, 11):  # snapshot after 4 and 8; 9 and 10 only in the journal
        crashing.tell(i)
        healthy.tell(i)
    with pytest.raises(ActorCrashed):
        await asyncio.wait_for(crashing.ask(13), 5)
    # State survived the crash exactly (snapshot + journal replay), minus the poison message.
    assert await asyncio.wait_for(crashing.ask("get"), 5) == 55
    assert crashing.instance().seen == list(range(1, 11))
    assert await asyncio.wait_for(crashing.ask(5), 5) == 60
    assert crashing.restarts == 1 and crashing.stats.failures == 1
    assert failures == [("a", 13)]
    assert await asyncio.wait_for(healthy.ask("get"), 5) == 55
    assert healthy.restarts == 0
    await system.stop()


def test_snapshots_are_compressed_and_a_bare_pickle_still_restores(small_district: District) -> None:
    """A station's snapshot is its pickle, zlib-compressed (what each station holds and a checkpoint writes
    to Redis); one written before that (a bare pickle) restores too, to the same station."""
    a = "BH-0001"
    shard = Shard(small_district.stations[:1])
    shard.process({a: [_reading(a, i, 1500 - i) for i in range(30)]
                   + [_txn(a, 30, 41, 30.5, 1030.5), _price(a, 31, 7.3)]})
    blob = shard.snapshot()[a]
    raw = pickle.dumps(shard.stations[a].instance, pickle.HIGHEST_PROTOCOL)
    assert blob[:1] != b"\x80" and zlib.decompress(blob) == raw and len(blob) < 0.8 * len(raw)
    for snapshot in (blob, raw):
        fresh = Shard(small_district.stations[:1])
        assert fresh.restore({a: snapshot}) == []
        assert fresh.state(a) == shard.state(a)
    assert Shard(small_district.stations[:1]).restore({a: b"\x78\x01 not zlib"}) == [a]  # replays its log


def test_routing_is_stable_and_spreads() -> None:
    ids = [f"BH-{i:04d}" for i in range(1, 201)]
    first = [shard_of(s, 4) for s in ids]
    assert first == [shard_of(s, 4) for s in ids]
    assert all(first.count(k) > 20 for k in range(4))


def _reading(sid: str, seq: int, level: float) -> object:
    return parse({"kind": "tank.reading", "ts": T0 + seq * 10, "station": sid, "entity": "T1",
                  "source": f"{sid}:atg", "seq": seq, "level_mm": level, "temp_c": 20.0})


def _price(sid: str, seq: int, price: float) -> object:
    return parse({"kind": "price.posted", "ts": T0 + seq * 10, "station": sid, "source": f"{sid}:pos",
                  "seq": seq, "grade": "92#", "unit_price": price})


def _poison_price(monkeypatch: pytest.MonkeyPatch) -> None:
    """A station actor whose price handler fails on a price of 66.6 (a firmware bug)."""
    original = StationActor._price

    def fragile(self: StationActor, ev, out) -> None:  # type: ignore[no-untyped-def]
        if ev.unit_price == 66.6:
            raise RuntimeError("firmware bug")
        original(self, ev, out)

    monkeypatch.setattr(StationActor, "_price", fragile)


def test_station_crash_restores_station_and_spares_the_others(
        small_district: District, monkeypatch: pytest.MonkeyPatch) -> None:
    _poison_price(monkeypatch)
    shard = Shard(small_district.stations, snapshot_every=3)
    a, b = "BH-0001", "BH-0002"
    shard.process({a: [_reading(a, i, 1500 - i) for i in range(5)] + [_price(a, 5, 7.3)],
                   b: [_reading(b, i, 1200) for i in range(5)]})
    before = shard.state(a)
    out = shard.process({a: [_price(a, 6, 66.6), _reading(a, 7, 1490)], b: [_reading(b, 8, 1200)]})
    assert [r["reason"] for r in out.rejected] == [
        "actor BH-0001 failed on a message: RuntimeError: firmware bug"]
    after = shard.state(a)
    assert after["prices"] == before["prices"] == {"92#": 7.3}
    assert after["tanks"][0]["level_mm"] == 1490.0  # the event after the poison was processed
    assert after["events"] == before["events"] + 1  # the poison left no trace
    # The divergence points emitted before the crash were not emitted again by the replay.
    points = [p for rec in out.divergence if rec["station"] == a for p in rec["ts"]]
    assert points == [T0 + 70]
    assert shard.state(b)["tanks"][0]["last_ts"] == T0 + 80
    assert shard.stats()["crashes"] == 1
    # The station says so itself: a TWIN_FAULT warning with the failed event, and no risk from it
    # (the platform failed, not the station).
    (fault,) = out.alerts
    assert (fault["code"], fault["severity"], fault["status"], fault["entity"]) == (
        "TWIN_FAULT", "warning", "open", a)
    assert fault["metrics"] == {"events": 1} and fault["first_ts"] == T0 + 60
    assert fault["evidence"]["last_event"] == {"kind": "price.posted", "source": f"{a}:pos", "ts": T0 + 60,
                                               "reason": "RuntimeError: firmware bug"}
    assert after["twin_faults"] == 1 and [x["code"] for x in after["open_alerts"]] == ["TWIN_FAULT"]
    assert station_risk(a, [fault], after, T0 + 90)["score"] == 0


def test_a_station_that_fails_to_emit_a_batch_keeps_its_events(
        small_district: District, monkeypatch: pytest.MonkeyPatch) -> None:
    """Emitting a batch's outputs failed after every event went in: the restart took them back out, so
    they are applied again (the station's books keep them) and only that batch's outputs are lost."""
    a = "BH-0001"
    shard = Shard(small_district.stations[:1])
    shard.process({a: [_reading(a, i, 1500 - i) for i in range(3)]})
    flush, calls = StationActor.flush, []

    def failing_once(self: StationActor, out, with_state: bool = True) -> None:  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("state too big")
        flush(self, out, with_state)

    monkeypatch.setattr(StationActor, "flush", failing_once)
    out = shard.process({a: [_reading(a, 3 + i, 1490 - i) for i in range(3)]})
    assert out.rejected == [] and shard.stats()["crashes"] == 1
    state = shard.state(a)
    assert state["tanks"][0]["level_mm"] == 1488.0 and state["events"] == 6
    (fault,) = out.alerts
    assert fault["code"] == "TWIN_FAULT" and fault["evidence"]["last_event"]["reason"] == (
        "flush: RuntimeError: state too big")
    out = shard.process({a: [_reading(a, 6, 1487)]})  # the next batch is emitted as ever
    assert out.states and state["twin_faults"] == 1


def _txn(sid: str, seq: int, txn_no: int, litres: float, totalizer: float) -> object:
    ts = T0 + seq * 10
    return parse({"kind": "nozzle.txn", "ts": ts, "station": sid, "entity": "N1", "source": f"{sid}:fcc",
                  "seq": seq, "txn_no": txn_no, "grade": "92#", "volume_l": litres,
                  "amount_cny": round(litres * 7.3, 2), "unit_price": 7.3, "start_ts": ts - 60, "end_ts": ts,
                  "totalizer_l": totalizer, "totalizer_cny": round(totalizer * 7.3, 2)})


def test_a_restart_replays_the_compact_journal_to_the_same_state(
        small_district: District, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between snapshots a station's batches are journaled pickled, not as the pydantic events (a
    twentieth of the memory), and sealed compressed in groups; a crash rebuilds the events from them, and
    the replayed station is the one that never crashed."""
    _poison_price(monkeypatch)
    a = "BH-0001"
    first = ([_reading(a, i, 1500 - i) for i in range(5)] + [_price(a, 5, 7.3)]
             + [_txn(a, 6, 41, 30.5, 1030.5), _txn(a, 7, 42, 12.0, 1042.5)])
    crashing, steady = Shard(small_district.stations[:1]), Shard(small_district.stations[:1])
    cell = crashing.stations[a]
    cell.seal_every = 3  # seal every three batches: the replay crosses sealed groups and loose entries
    for shard in (crashing, steady):
        for i in range(0, len(first), 2):
            shard.process({a: first[i:i + 2]})
    # what the supervisor holds until its next snapshot: one sealed group of three batches, one loose
    assert len(cell._sealed) == 1 and len(cell._sealed[0][0]) == 3 and len(cell._journal) == 1
    journal = cell._entries()
    assert len(journal) == 4 and all(type(blob) is bytes for _, (blob, *_) in journal)
    # two events a batch: each blob also names its classes once; ~1.1 kB an event as pydantic
    assert sum(len(blob) for _, (blob, *_) in journal) < 150 * len(first)
    out = crashing.process({a: [_price(a, 8, 66.6), _reading(a, 9, 1490)]})
    steady.process({a: [_reading(a, 9, 1490)]})
    assert [r["reason"] for r in out.rejected] == [
        "actor BH-0001 failed on a message: RuntimeError: firmware bug"]
    assert crashing.stations[a].restarts == 1
    replayed, reference = crashing.state(a), steady.state(a)
    assert replayed["nozzles"][0]["totalizer_l"] == 1042.5 and replayed["prices"] == {"92#": 7.3}
    # the same station, but for the record of its fault
    assert (replayed.pop("twin_faults"), reference.pop("twin_faults")) == (1, 0)
    assert [x["code"] for x in replayed.pop("open_alerts")] == ["TWIN_FAULT"]
    assert reference.pop("open_alerts") == []
    assert replayed == reference


def test_a_station_failing_on_many_events_replays_no_growing_journal(
        small_district: District, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug that fails every event of some kind dead-letters each one; after each, the station is
    checkpointed, so every restart after the first replays nothing (the journal held every isolated
    prefix before: a restart per poison over a growing journal, the run crawled)."""
    _poison_price(monkeypatch)
    a = "BH-0001"
    shard = Shard(small_district.stations[:1], snapshot_every=10_000)
    cell = shard.stations[a]
    shard.process({a: [_reading(a, i, 1500 - i) for i in range(5)]})
    replayed: list[int] = []
    restart = type(cell)._restart

    def counting(self) -> None:  # type: ignore[no-untyped-def]
        replayed.append(len(self._entries()))
        restart(self)

    monkeypatch.setattr(type(cell), "_restart", counting)
    batch = [e for i in range(10) for e in (_reading(a, 10 + 2 * i, 1490 - i), _price(a, 11 + 2 * i, 66.6))]
    out = shard.process({a: batch})
    assert len(out.rejected) == 10 and cell.restarts == 10
    assert replayed[0] == 1 and replayed[1:] == [0] * 9, replayed  # the first: the batch before
    assert shard.state(a)["tanks"][0]["level_mm"] == 1481.0  # every reading between the poisons applied
    # one alert, counting them, updated with each (not ten alerts)
    assert {x["id"] for x in out.alerts} == {out.alerts[0]["id"]} and len(out.alerts) == 10
    assert [x["metrics"]["events"] for x in out.alerts] == list(range(1, 11))
    assert shard.state(a)["twin_faults"] == 10
