"""Composition of the running programs behind ``fueltwin demo`` and ``fueltwin serve``.

Shutdown order matters for 'Ctrl-C leaves the Redis data consistent': stop the feed, let the service
finish the batch in hand and its pending Redis write, stop the runtime, close the client, then SIGTERM
the embedded server, which fsyncs its append-only file before it exits.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import uvicorn

from actors.base import make_runtime
from twin.service import TwinService
from twin.store import EmbeddedRedis, Store, connect, reach
from twin.timeutil import to_local

log = logging.getLogger("fueltwin")


def tune_gc() -> None:
    """Make CPython's cyclic GC fit a stream processor.

    Every event allocates a few short-lived objects, so the default gen-0 threshold (700 allocations)
    fires a collection hundreds of times a second, and each full collection walks the whole heap of
    actor state. Measured with bench/ingest.py (50 stations, 6 h): 58 k → 90 k events/s through the
    whole ingest path, p99 batch latency 234 → 33 ms. Reference cycles are rare here; collections still
    run, just less often.
    """
    gc.set_threshold(100_000, 50, 1000)


@dataclass(frozen=True)
class DemoOptions:
    stations: int
    speed: float | None
    port: int
    host: str
    runtime: str
    shards: int | None
    seed: int
    start_ts: float
    reading_interval_s: float
    data_dir: Path
    #: Simulated days of log and divergence kept in Redis (older log to ``archive_dir``).
    keep_days: float | None = 7.0
    #: Simulate the stations' vapor-recovery monitors (issue 6).
    vapor: bool = True
    #: Faults to inject as the demo starts (a scenario's ``faults:`` items, ``at`` from the start).
    faults: list[dict[str, Any]] = field(default_factory=list)

    @property
    def archive_dir(self) -> Path:
        return self.data_dir / "archive"


@dataclass(frozen=True)
class ServeOptions:
    redis_url: str | None
    data_dir: Path
    prefix: str
    port: int
    host: str
    #: A station configuration: run its bridges and feed a live twin (otherwise serve what is in Redis).
    config: Path | None = None
    runtime: str = "local"
    #: With a configuration: start from an empty twin instead of recovering the one recorded in Redis.
    fresh: bool = False
    #: With a configuration: days of log and divergence kept in Redis (older log to the archive).
    keep_days: float | None = 7.0

    @property
    def archive_dir(self) -> Path:
        """Where the input log's older entries are kept on disk, beside the embedded Redis's files."""
        return self.data_dir / "archive"

class FeedFailed(RuntimeError):
    """The demo's simulator stopped with an error: the demo stopped too (its data are kept)."""


def replay_command(data_dir: Path, redis_url: str | None, prefix: str, port: int) -> str:
    """The command that opens a replay server on this twin's recording, as the /replay page shows it to
    a researcher: the data folder resolved (the archive of older log is there even with a Redis URL),
    the URL without its password, the next port (8001 when this server took any free port)."""
    parts = ["fueltwin replay"]
    if redis_url:
        url = urlsplit(redis_url)
        if url.password is not None:
            netloc = f"{url.username or ''}:***@{url.hostname or ''}" + (f":{url.port}" if url.port else "")
            url = url._replace(netloc=netloc)
        parts.append(f"--redis-url {shlex.quote(urlunsplit(url))}")
    parts.append(f"--data {shlex.quote(str(data_dir.resolve()))}")
    if prefix != "ft":
        parts.append(f"--prefix {shlex.quote(prefix)}")
    parts.append(f"--port {port + 1 if port else 8001}")
    return " ".join(parts)


#: Accepted events between durable checkpoints of a live twin (a few minutes of a large district).
LIVE_CHECKPOINT_EVENTS = 500_000


async def _serve_until_stopped(server: uvicorn.Server, announce: Callable[[str], None]) -> None:
    """Run uvicorn (it handles Ctrl-C itself) and announce the URL once it listens."""

    async def tell_when_up() -> None:
        for _ in range(600):  # bounded: 30 s
            if server.started:
                sock = server.servers[0].sockets[0] if server.servers else None
                host, port = sock.getsockname()[:2] if sock else (server.config.host, server.config.port)
                announce(f"http://{host}:{port}/")
                return
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(tell_when_up())
    try:
        await server.serve()
    finally:
        watcher.cancel()


async def _open_redis(o: ServeOptions) -> tuple[EmbeddedRedis | None, Any]:
    """The embedded Redis in ``o.data_dir`` (started here) or ``o.redis_url``, and a client that has had
    an answer from it (:class:`twin.store.StoreUnreachable` otherwise, with the embedded one stopped)."""
    redis = None if o.redis_url else EmbeddedRedis(o.data_dir).start()
    try:
        client = await reach(o.redis_url or redis.url)  # type: ignore[union-attr]
        if redis is not None:
            redis.supervise()  # a crash of our own Redis is ours to mend
        return redis, client
    except BaseException:
        if redis is not None:
            redis.stop()
        raise


async def run_demo(o: DemoOptions) -> None:
    from simulators.district import synthetic_district
    from simulators.feed import DistrictSimulator, run_live
    from simulators.live_faults import LiveFaults
    from ui.app import AppContext, create_app
    from ui.hub import LiveHub

    tune_gc()
    sim_district = synthetic_district(o.stations, o.seed)
    # The demo runs for as long as it is left on and scores nothing: no true state per reading.
    simulator = DistrictSimulator(sim_district, seed=o.seed, start_ts=o.start_ts,
                                  reading_interval_s=o.reading_interval_s, truth_every=None, vapor=o.vapor)
    faults = LiveFaults(simulator, o.seed)
    for i, spec in enumerate(o.faults):  # a bad one stops the demo before anything starts
        try:
            faults.inject(spec)
        except ValueError as exc:
            raise ValueError(f"faults[{i}]: {exc}") from None
    redis = EmbeddedRedis(o.data_dir).start()
    redis.supervise()  # a crash of our own Redis is ours to mend: the twin's writes wait for it
    client = connect(redis.url)
    store = Store(client, archive_dir=o.archive_dir)
    district = sim_district.district
    await store.save_district(district)
    runtime = make_runtime(o.runtime, district, shards=o.shards)
    service = TwinService(district, store, runtime, checkpoint_every=LIVE_CHECKPOINT_EVENTS,
                          keep_days=o.keep_days)
    hub = LiveHub(store, district)
    service.subscribe(hub.publish)
    app = create_app(AppContext(store=store, district=district, hub=hub, service=service, mode="demo",
                                replay_command=replay_command(o.data_dir, None, "ft", o.port), faults=faults))
    server = uvicorn.Server(uvicorn.Config(app, host=o.host, port=o.port, log_level="warning"))
    # Simulated seconds per step: a minute as fast as possible; live, about two steps a wall second.
    step_s = 60.0 if o.speed is None else min(60.0, max(1.0, o.speed / 2))
    feed = asyncio.create_task(run_live(simulator, service.ingest, speed=o.speed, step_s=step_s))

    def feed_ended(task: asyncio.Task[float]) -> None:
        # The feed runs forever; if it fails the twin stands still while the pages still answer, so the
        # demo says so now and stops, rather than serve a frozen district until someone notices.
        if not task.cancelled() and task.exception() is not None:
            log.error("the simulator feed failed; stopping the demo", exc_info=task.exception())
            server.should_exit = True

    feed.add_done_callback(feed_ended)

    def announce(url: str) -> None:
        speed = "as fast as possible" if o.speed is None else f"×{o.speed:g}"
        print(f"fueltwin demo: {len(district.stations)} simulated stations, {runtime.name} runtime, "
              f"simulated time {speed}\n  UI        {url}\n  API docs  {url}docs\n"
              f"  websocket {url.replace('http', 'ws', 1)}ws/live\n"
              f"  faults    a station's page (故障注入) or POST {url}api/v1/demo/faults\n"
              "Ctrl-C stops.", flush=True)

    failure: BaseException | None = None
    try:
        await _serve_until_stopped(server, announce)
    finally:
        feed.cancel()
        try:
            await feed
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # noqa: BLE001 - reported (feed_ended), and the rest shut down in order
            failure = exc
        try:
            await service.close()
        except Exception:  # noqa: BLE001
            log.exception("could not drain the twin into Redis")
        await client.aclose()
        redis.stop()
        c = service.counts
        print(f"stopped: {c.accepted} events accepted, {c.rejected} rejected, {c.alerts} alerts; "
              f"Redis data in {o.data_dir}", flush=True)
    if failure is not None:
        raise FeedFailed(f"the simulator feed failed at {to_local(simulator.now).isoformat()}: "
                         f"{type(failure).__name__}: {failure}") from failure


async def run_serve(o: ServeOptions) -> None:
    if o.config is not None:
        await run_bridged(o)
        return
    from ui.app import AppContext, create_app
    from ui.hub import LiveHub

    redis, client = await _open_redis(o)
    store = Store(client, prefix=o.prefix, archive_dir=o.archive_dir)
    try:
        district = await store.load_district()
        if district is None:
            raise LookupError(f"no district recorded under prefix {o.prefix!r} in that Redis; "
                              "run `fueltwin demo` first or give the right --prefix")
        hub = LiveHub(store, district)
        app = create_app(AppContext(store=store, district=district, hub=hub, service=None, mode="live",
                                    replay_command=replay_command(o.data_dir, o.redis_url, o.prefix, o.port)))
        server = uvicorn.Server(uvicorn.Config(app, host=o.host, port=o.port, log_level="warning"))
        await _serve_until_stopped(server, lambda url: print(f"fueltwin serve: {url}", flush=True))
    finally:
        await client.aclose()
        if redis is not None:
            redis.stop()


async def run_replay(o: ServeOptions) -> None:
    """Serve the UI over a replay twin (prefix ``<prefix>-replay``) of the twin recorded under
    ``prefix``; the replay itself is started from the /replay page or ``POST /api/v1/replay``."""
    from ui.app import AppContext, create_app
    from ui.hub import LiveHub
    from ui.replay import add_replay_routes

    tune_gc()  # a replay is the twin at full speed, as the demo is
    redis, client = await _open_redis(o)
    source = Store(client, prefix=o.prefix, archive_dir=o.archive_dir)
    target = Store(client, prefix=f"{o.prefix}-replay")
    try:
        district = await source.load_district()
        if district is None:
            raise LookupError(f"no twin recorded under prefix {o.prefix!r} in that Redis; "
                              "run `fueltwin demo` or `fueltwin serve --config` first, or give --prefix")
        await target.wipe()
        await target.save_district(district)
        hub = LiveHub(target, district, mode="replay")
        ctx = AppContext(store=target, district=district, hub=hub, service=None, mode="replay")
        app = create_app(ctx)
        add_replay_routes(app, source, target, district, hub, ctx)
        server = uvicorn.Server(uvicorn.Config(app, host=o.host, port=o.port, log_level="warning"))
        await _serve_until_stopped(server, lambda url: print(
            f"fueltwin replay of {o.redis_url or o.data_dir} (prefix {o.prefix!r}): {url}replay", flush=True))
    finally:
        await client.aclose()
        if redis is not None:
            redis.stop()


@dataclass(frozen=True)
class HeadlessReplay:
    """What ``fueltwin replay --headless`` replays, with which detector settings, and where it reports."""

    stations: list[str] | None = None
    start_ts: float | None = None
    end_ts: float | None = None
    #: Overrides of ``TwinSettings`` fields (a YAML mapping, as a scenario's ``settings``).
    settings: dict[str, Any] = field(default_factory=dict)
    report: Path | None = None


async def run_replay_headless(o: ServeOptions, h: HeadlessReplay, echo: Callable[[str], None] = print
                              ) -> dict[str, Any]:
    """Replay a recorded twin's log into a fresh twin as fast as possible, without a server, and set its
    alerts against the ones the recorded twin raised: with other detector settings, what they would
    have raised on the same data. The replay twin stays in Redis under ``<prefix>-replay`` (``fueltwin
    serve --prefix <prefix>-replay`` shows it). Returns the report (also written to ``h.report``)."""
    from twin.settings import TwinSettings
    from ui.replay import ReplaySession, replay_range_of

    settings = TwinSettings(**h.settings) if h.settings else None  # ValidationError: the CLI says why
    tune_gc()
    redis, client = await _open_redis(o)
    source = Store(client, prefix=o.prefix, archive_dir=o.archive_dir)
    target = Store(client, prefix=f"{o.prefix}-replay")
    session: ReplaySession | None = None
    try:
        district = await source.load_district()
        if district is None:
            raise LookupError(f"no twin recorded under prefix {o.prefix!r} in that Redis; "
                              "run `fueltwin demo` or `fueltwin serve --config` first, or give --prefix")
        stations, start, end = await replay_range_of(source, district, h.stations, h.start_ts, h.end_ts)
        await target.wipe()
        session = ReplaySession(source, target, district, stations, start, end, None, settings=settings)
        session.start()
        waiter = asyncio.ensure_future(session.wait())
        while True:  # a line every few seconds: a month of a district takes a while
            done, _ = await asyncio.wait({waiter}, timeout=3.0)
            st = session.status.as_dict()
            sim = to_local(st["sim_ts"]).strftime("%Y-%m-%d %H:%M") if st["sim_ts"] else "-"
            rate = f"{st['events_per_s']:,} events/s" if st["events_per_s"] else ""
            echo(f"replay: {st['state']} {sim}  {st['events']:,} events  {rate}")
            if done:
                break
        waiter.result()
        status = session.status.as_dict()
        if status["state"] != "done":
            raise RuntimeError(f"the replay {status['state']}: {status['error']}")
        # The alerts first raised in the range, both ways (the log before it is replayed all the same,
        # so that the twin stands where the recorded one stood when the range begins).
        recorded = {a["id"]: a for a in await source.alerts(limit=10**9)
                    if a["station"] in stations and start <= a["first_ts"] <= end}
        replayed = {a["id"]: a for a in await target.alerts(limit=10**9) if start <= a["first_ts"] <= end}
        report = {"stations": sorted(stations), "start_ts": start, "end_ts": end, "settings": h.settings,
                  "events": status["events"], "wall_s": status["active_s"],
                  "events_per_s": status["events_per_s"],
                  "alerts": sorted(replayed.values(), key=lambda a: (a["first_ts"], a["id"])),
                  "only_recorded": sorted(set(recorded) - set(replayed)),
                  "only_replayed": sorted(set(replayed) - set(recorded))}
        echo(alert_comparison_table(recorded, replayed))
        if h.report is not None:
            h.report.write_text(json.dumps(report, ensure_ascii=False, indent=1))
            echo(f"report: {h.report}")
        return report
    finally:
        if session is not None:
            await session.stop()
        await client.aclose()
        if redis is not None:
            redis.stop()


def alert_comparison_table(recorded: dict[str, Any], replayed: dict[str, Any]) -> str:
    """Alerts by code: how many each twin raised, and how many only one of them did (ids compared:
    station, entity, code and first time)."""
    from twin.scoring import text_table

    codes = sorted({a["code"] for a in (*recorded.values(), *replayed.values())})
    rows = []
    for code in [*codes, None]:
        rec = {i for i, a in recorded.items() if code is None or a["code"] == code}
        rep = {i for i, a in replayed.items() if code is None or a["code"] == code}
        rows.append([code or "all", str(len(rec)), str(len(rep)), str(len(rec - rep)), str(len(rep - rec))])
    header = ["code", "recorded", "replayed", "only recorded", "only replayed"]
    return "\n".join(text_table(header, rows, right={1, 2, 3, 4}))


async def run_bridged(o: ServeOptions) -> None:
    """The live twin of the stations a configuration lists, fed by their field bridges.

    The configuration is loaded and every reachable device is asked once whether it serves its
    profile's points before anything starts: a profile that does not match its device stops the
    program here with the reason, not later with silence.
    """
    from bridges.config import load_config
    from bridges.hj212 import store_dead_letters
    from bridges.runner import BridgeRunner
    from ui.app import AppContext, create_app
    from ui.hub import LiveHub

    assert o.config is not None
    config = load_config(o.config)  # ConfigError: the CLI prints it
    district = config.district
    tune_gc()
    redis, client = await _open_redis(o)
    store = Store(client, prefix=o.prefix, archive_dir=o.archive_dir)
    recorded = None if o.fresh else await store.load_district()
    if recorded is not None and recorded != district:
        await client.aclose()
        if redis is not None:
            redis.stop()
        where = f"{o.redis_url or o.data_dir}, prefix {o.prefix!r}"
        raise LookupError(f"the twin recorded in Redis ({where}) has other stations than {o.config}: use "
                          "--fresh to start anew, or another --data or --prefix")
    runtime = make_runtime(o.runtime, district)
    service = TwinService(district, store, runtime, checkpoint_every=LIVE_CHECKPOINT_EVENTS,
                          keep_days=o.keep_days)
    runner = BridgeRunner(config, lambda events, now: service.ingest(events, now=now),
                          dead_letters=store_dead_letters(store))
    bridges: asyncio.Task[None] | None = None
    try:
        for problem in await runner.check():
            log.warning("%s", problem)
        try:
            hj212_port = await runner.start_hj212()  # a taken port stops here, before anything is served
        except OSError as exc:
            raise LookupError(f"the HJ 212 receiving server cannot listen on {config.hj212_listen}: "
                              f"{exc.strerror or exc}") from exc
        if recorded is not None:  # a restart: the last checkpoint, then the log after it
            report = await service.recover()
            print(f"recovered the recorded twin: {report.restored} stations from their checkpoint, "
                  f"{report.replayed} logged events replayed", flush=True)
        await store.save_district(district)
        # Field data arrives a poll at a time; a 0.1 s flush keeps the screen within a poll + 0.2 s
        # (issue 4's target) at ten small messages a second per client.
        hub = LiveHub(store, district, flush_interval_s=0.1)
        service.subscribe(hub.publish)
        app = create_app(AppContext(store=store, district=district, hub=hub, service=service, mode="live",
                                    bridges=runner,
                                    replay_command=replay_command(o.data_dir, o.redis_url, o.prefix, o.port)))
        server = uvicorn.Server(uvicorn.Config(app, host=o.host, port=o.port, log_level="warning",
                                               timeout_graceful_shutdown=5))
        bridges = asyncio.create_task(runner.run())

        hj212 = ""
        if runner.hj212 is not None:
            hj212 = (f"  HJ 212    tcp://{runner.hj212.host}:{hj212_port} "
                     f"({len(config.monitors)} vapor monitors)\n")

        def announce(url: str) -> None:
            print(f"fueltwin serve: {len(district.stations)} stations, {len(config.devices)} devices "
                  f"from {o.config} (time: {config.time})\n  UI        {url}\n  API docs  {url}docs\n"
                  f"  websocket {url.replace('http', 'ws', 1)}ws/live\n{hj212}Ctrl-C stops.", flush=True)

        await _serve_until_stopped(server, announce)
    finally:
        if bridges is not None:
            bridges.cancel()
            try:
                await bridges
            except asyncio.CancelledError:
                pass
            except Exception:  # noqa: BLE001
                log.exception("the bridges failed")
        try:
            await service.close()
        except Exception:  # noqa: BLE001
            log.exception("could not drain the twin into Redis")
        await client.aclose()
        if redis is not None:
            redis.stop()
        c = service.counts
        print(f"stopped: {c.accepted} events accepted, {c.rejected} rejected, {c.alerts} alerts", flush=True)
