"""The input log's old entries move to files on disk and every reader still sees the whole log, once.

A real Redis and real files: the log read back after archiving is the log before it, entry for entry
(ids included), from any start; a crash between the file and the trim reads nothing twice; a twin
restarted from an archived log with no checkpoint is the twin it was; divergence older than the cut is
dropped; wiping the twin removes its archive.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from actors.base import make_runtime
from tests.test_pipeline import START, simulated_day
from tests.test_replay import _outputs
from twin.archive import LogArchive
from twin.service import TwinService
from twin.store import Store
from ui.replay import ReplaySession, recorded_range

pytestmark = pytest.mark.timeout(120)


async def _log(store: Store, station: str, start: str = "-") -> list[tuple[str, list[tuple[str, int]]]]:
    return [(eid, [(e.source, e.seq) for e in evs]) async for eid, evs in store.read_log(station, start)]


async def _recorded(store: Store, tmp_path: Path, hours: float, step_s: float, **service_options: Any
                    ) -> tuple[Store, Any, list[tuple[list[dict], float]], TwinService]:
    """The store with an archive folder, and a twin fed ``hours`` of the two simulated stations."""
    store = Store(store.r, prefix=store.p, archive_dir=tmp_path / "archive")
    district, batches = simulated_day(hours=hours, step_s=step_s)
    service = TwinService(district, store, make_runtime("local", district), **service_options)
    for raws, now in batches:
        await service.ingest(raws, now=now)
    await service.drain()
    return store, district, batches, service


async def test_archived_log_reads_back_whole_and_recovers_the_twin(store: Store, tmp_path: Path) -> None:
    # a day: it has deliveries to compare
    store, district, _, service = await _recorded(store, tmp_path, 24, 900)
    expected = await service.runtime.states()
    stations = [s.id for s in district.stations]
    before = {sid: await _log(store, sid) for sid in stations}
    ranges = {sid: await store.log_range(sid) for sid in stations}
    lengths = {sid: await store.r.xlen(store.log_key(sid)) for sid in stations}
    cut = START + 12 * 3600

    for sid in stations:
        moved = await store.archive_log(sid, cut, chunk=7)  # several files a station
        assert moved > 0
        kept = await store.r.xrange(store.log_key(sid))
        assert kept and all(float(f[b"t1"]) >= cut for _, f in kept)
        assert len(kept) < lengths[sid]
        assert len(store.archive.files(sid)) > 1  # type: ignore[union-attr]
        assert await _log(store, sid) == before[sid]
        assert await store.log_range(sid) == ranges[sid]
        assert await store.archive_log(sid, cut) == 0  # nothing more to move
        # from any start, as the stream's own range syntax reads it
        ids = [eid for eid, _ in before[sid]]
        for i in (0, 3, len(ids) - len(kept) - 1, len(ids) - len(kept), len(ids) - 1):
            assert await _log(store, sid, ids[i]) == before[sid][i:]
            assert await _log(store, sid, f"({ids[i]}") == before[sid][i + 1:]

    # A crash after the file was written and before the trim: in both places, read once.
    sid = stations[0]
    entries = [(eid.decode(), f) for eid, f in await store.r.xrange(store.log_key(sid), count=5)]
    store.archive.write(sid, entries)  # type: ignore[union-attr]
    assert await _log(store, sid) == before[sid]
    assert await store.archive_log(sid, cut + 3 * 3600) > 0  # and the next move goes on from there
    assert await _log(store, sid) == before[sid]

    # Divergence older than the cut is dropped, the rest kept.
    dropped = await store.trim_divergence(sid, cut)
    assert dropped > 0
    left = [rec async for rec in store.divergence(sid)]
    assert left and min(rec["ts"][-1] for rec in left) >= cut

    # A replay of the whole range, half of it from the archive, gives what the live twin gave.
    ranges_after = await recorded_range(store, stations)
    assert ranges_after == ranges
    replayed = Store(store.r, prefix=store.p + "-replay")
    session = ReplaySession(store, replayed, district, stations, min(a for a, _ in ranges.values()),
                            max(b for _, b in ranges.values()), None)
    session.start()
    async with asyncio.timeout(60):
        await session.wait()
    assert session.status.state == "done"
    await session.stop()
    assert session.status.events == sum(len(e) for _, e in sum(before.values(), []))
    recorded = await _outputs(store)
    assert recorded[1]  # deliveries (and their informational alerts) to compare
    assert await _outputs(replayed) == recorded

    # A restart with no checkpoint reads the archived log back into its actors: the same twin.
    await service.runtime.stop()
    restarted = TwinService(district, store, make_runtime("local", district))
    report = await restarted.recover()
    assert report.restored == 0 and report.replayed == sum(len(e) for _, e in sum(before.values(), []))
    assert await restarted.runtime.states() == expected
    await restarted.close()

    await store.wipe()
    assert not (tmp_path / "archive" / store.p).exists()


async def test_a_live_twin_keeps_its_recent_days_in_redis_and_the_rest_on_disk(store: Store,
                                                                                tmp_path: Path) -> None:
    store, district, batches, service = await _recorded(store, tmp_path, 12, 600, checkpoint_every=2_000,
                                                        keep_days=0.125)  # three hours
    assert service._archiving is not None  # the checkpoints along the way started moves
    await service._archiving  # (one at a time: a checkpoint while one runs starts none)
    await service.checkpoint()
    await service._archiving  # the move up to three hours before the newest batch
    newest = batches[-1][1]
    assert service.archived["runs"] >= 2 and service.archived["events"] > 0
    assert service.archived["before_ts"] == newest - 3 * 3600
    assert service.archived["files_bytes"] == store.archive.size_bytes() > 0  # type: ignore[union-attr]
    for spec in district.stations:
        kept = await store.r.xrange(store.log_key(spec.id))
        assert kept and all(float(f[b"t1"]) >= newest - 3 * 3600 for _, f in kept)
        assert all(e[3] < newest - 3 * 3600 for e in store.archive.entries(spec.id))  # type: ignore[union-attr]
        assert await store.r.xlen(store.divergence_key(spec.id)) <= len(kept) + 1
    total = 0
    for spec in district.stations:
        total += sum([len(events) async for _, events in store.read_log(spec.id)])
    assert total == service.counts.accepted  # every accepted event, once, archive and Redis together
    await service.close()


async def test_a_station_whose_whole_log_is_archived_is_not_read_twice_at_restart(store: Store,
                                                                                    tmp_path: Path) -> None:
    # A station silent for longer than the days kept: its stream is empty, its checkpoint position is
    # the last archived entry, and a restart reads nothing of it again.
    store, district, _, service = await _recorded(store, tmp_path, 6, 600)
    expected = await service.runtime.states()
    silent = district.stations[0].id
    assert await store.archive_log(silent, float("inf")) > 0
    assert await store.r.xlen(store.log_key(silent)) == 0
    assert await service.checkpoint() == len(district.stations)
    await service.runtime.stop()
    restarted = TwinService(district, store, make_runtime("local", district))
    report = await restarted.recover()
    assert report.restored == len(district.stations) and report.replayed == 0
    assert await restarted.runtime.states() == expected
    await restarted.close()


async def test_a_reader_misses_nothing_when_a_move_runs_under_it(store: Store, tmp_path: Path) -> None:
    # A replay reading a live twin's log while the twin moves old entries to the archive: the entries
    # moved past the reader's cursor come from the files, nothing is skipped or read twice.
    store, district, _, service = await _recorded(store, tmp_path, 6, 300)
    sid = district.stations[0].id
    whole = await _log(store, sid)
    got = []
    async for entry_id, events in store.read_log(sid, chunk=5):
        got.append((entry_id, [(e.source, e.seq) for e in events]))
        if len(got) in (3, 30):  # moves under the reader: past its cursor, then up to 2/3 of the log
            assert await store.archive_log(sid, START + (1.5 if len(got) == 3 else 4) * 3600, chunk=4) > 0
    assert got == whole
    await service.close()


async def test_the_trace_of_past_months_moves_out_and_is_still_found(store: Store, tmp_path: Path) -> None:
    store, district, _, service = await _recorded(store, tmp_path, 6, 600)
    sid = district.stations[0].id
    txns = [e async for _, evs in store.read_log(sid) for e in evs if e.kind == "nozzle.txn"]
    fields = [f"{e.entity}:{e.txn_no}" for e in txns]
    before = await store.find_txns(sid, fields)
    assert len(fields) > 10 and all(v is not None for v in before)
    assert await store.archive_trace("2026-06") == 0  # June is the month kept
    every = 0
    for spec in district.stations:
        every += len({(e.entity, e.txn_no) async for _, evs in store.read_log(spec.id) for e in evs
                      if e.kind == "nozzle.txn"})
    assert await store.archive_trace("2026-07") == every  # both stations' June
    assert not await store.r.exists(store.key(f"trace:txn:{sid}:2026-06"))
    assert await store.find_txns(sid, fields) == before  # from the archive now
    # Records of that month written again (a restart that read the log) merge into its file.
    await store.r.hset(store.key(f"trace:txn:{sid}:2026-06"), fields[0], b'["again"]')
    assert (await store.find_txns(sid, fields[:1])) == [["again"]]  # Redis first
    assert await store.archive_trace("2026-07") == 1
    assert await store.find_txns(sid, fields) == [["again"], *before[1:]]
    # A record from before the months (one hash a station) is still found.
    await store.r.hset(store.key(f"trace:txn:{sid}"), "N99:1", b"[1]")
    assert await store.find_txns(sid, ["N99:1", "N99:2"]) == [[1], None]
    await service.close()


def test_archive_files_order_by_stream_id_not_name(tmp_path: Path) -> None:
    # ids compare as numbers: "999-0" comes before "1000-0" although it sorts after it as text
    archive = LogArchive(tmp_path)
    fields = {b"n": b"1", b"t0": b"1.0", b"t1": b"2.0", b"b": b"x"}
    archive.write("S", [("1000-0", fields), ("1000-1", fields)])
    archive.write("S", [("999-0", fields)])
    assert [e[0] for e in archive.entries("S")] == ["999-0", "1000-0", "1000-1"]
    assert [e[0] for e in archive.entries("S", "(1000-0")] == ["1000-1"]
    assert archive.last("S")[0] == "1000-1"  # type: ignore[index]
