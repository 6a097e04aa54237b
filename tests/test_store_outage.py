"""Redis goes away while the twin runs (a restart, a failover): the twin stays live, its writes wait in
order, and once Redis is back the input log holds every accepted event exactly once — a restart from
that log agrees with the live twin. A private Redis per test, stopped and started for real."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.async_api import async_playwright
from redis import exceptions as rx

from actors.base import make_runtime
from tests.conftest import UiFeed
from twin.events import Validator
from twin.outputs import Outputs
from twin.registry import District
from twin.service import TwinService
from twin.store import EmbeddedRedis, Store, connect
from twin.store_writer import StoreWriter

STATIONS = ("BH-0001", "BH-0002", "BH-0003")


@pytest.fixture
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("r")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(private_redis: EmbeddedRedis) -> str:
    """The ui fixtures' Redis is this test's own, which it stops and starts."""
    return private_redis.url


def _batch(feed: UiFeed, ts: float, overfull: bool) -> list[dict[str, Any]]:
    """Every tank's reading and every station's tick at ``ts``; BH-0001 T1 over its safe level if asked
    (OVERFILL after three such readings: an alert, whose write reads the stored alerts first)."""
    raws = [feed.reading(s, t, ts, level_mm=2460.0 if overfull and (s, t) == ("BH-0001", "T1") else 1500.0)
            for s in STATIONS for t in ("T1", "T2")]
    return raws + [feed.tick(s, ts) for s in STATIONS]


async def _logged(store: Store, station: str) -> list[tuple[str, int]]:
    return [(ev.source, ev.seq) async for _, events in store.read_log(station) for ev in events]


async def test_a_redis_outage_holds_the_writes_in_order_and_loses_none(
        ui_start: Any, private_redis: EmbeddedRedis, ui_district: District) -> None:
    ui = await ui_start()
    service: TwinService = ui.ctx.service
    fed: dict[str, list[tuple[str, int]]] = {s: [] for s in STATIONS}

    async def ingest(i: int) -> Any:
        raws = _batch(ui.feed, ui.t0 + 60.0 * i, overfull=3 <= i <= 8)
        for r in raws:
            fed[r["station"]].append((r["source"], r["seq"]))
        return await ui.ingest(raws)

    for i in range(4):
        await ingest(i)
    async with async_playwright() as pw, httpx.AsyncClient(base_url=ui.base, timeout=10) as http:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = await browser.new_page()
        await page.goto(ui.base + "/")
        await page.wait_for_selector("#conn.up")
        assert await page.locator("#store").is_hidden()
        private_redis.stop()
        # A request that needs Redis gets 503 with the reason, not a 500.
        r = await http.get("/api/v1/alerts")
        assert r.status_code == 503 and "Redis" in r.json()["detail"]
        # The twin stays live: each batch still gives its station states and divergence at once.
        raised = []
        for i in range(4, 12):
            out = await ingest(i)
            assert set(out.states) == set(STATIONS) and out.divergence
            raised += [a["code"] for a in out.alerts]
        assert "OVERFILL" in raised  # the third reading over the level came while Redis was away
        async with asyncio.timeout(20):
            await service.writer.outage.wait()
        r = await http.get("/api/v1/health")
        assert r.status_code == 503
        writes = r.json()["writes"]
        assert writes["state"] == "holding" and writes["pending_events"] > 0 and writes["retries"] >= 1
        assert writes["last_error"].startswith("ConnectionError")  # the socket is gone
        # The wall's header says so (it polls the health), with the events held.
        badge = page.locator("#store")
        await badge.wait_for(state="visible", timeout=15_000)
        assert "存储中断" in await badge.text_content()

        private_redis.start()
        assert await service.writer.flush(timeout_s=30)
        r = await http.get("/api/v1/health")
        assert r.status_code == 200
        writes = r.json()["writes"]
        # (an idle pooled connection to the server that went away may fail once more after the
        # restart: a second, short outage, handled the same way)
        assert writes["state"] == "ok" and writes["outages"] >= 1 and writes["failed"] == 0
        assert writes["pending_writes"] == 0
        await badge.wait_for(state="hidden", timeout=15_000)
        await browser.close()
        # The alert raised while Redis was away is stored, with its lifecycle usable.
        alerts = (await http.get("/api/v1/alerts")).json()
        assert any(a["code"] == "OVERFILL" and a["station"] == "BH-0001" for a in alerts)

    # Exactly once, in order: the log holds what was fed, nothing twice, nothing missing.
    store = service.store
    for station in STATIONS:
        assert await _logged(store, station) == fed[station]
    assert (await store.counters())["accepted"] == service.counts.accepted == sum(map(len, fed.values()))

    # A restart from that log (no snapshot: every logged event back into fresh actors) agrees with the
    # twin that lived through the outage.
    runtime = make_runtime("local", ui_district)
    restarted = TwinService(ui_district, Store(store.r, prefix=store.p), runtime)
    try:
        report = await restarted.recover()
        assert report.replayed == service.counts.accepted
        assert await runtime.states() == await service.runtime.states()
    finally:
        await runtime.stop()


class _ReplyLost(Store):
    """Real Redis, but the first write's reply never arrives: the write landed, the connection dropped
    right after EXEC (the case a retry must not log twice)."""

    drops = 1

    async def write(self, *args: Any, **kwargs: Any) -> None:
        await super().write(*args, **kwargs)
        if self.drops:
            self.drops -= 1
            raise rx.ConnectionError("connection lost after EXEC (the test's)")


async def test_a_write_whose_reply_was_lost_is_not_logged_twice(private_redis: EmbeddedRedis,
                                                                 ui_district: District) -> None:
    client = connect(private_redis.url)
    store = _ReplyLost(client, prefix="lost-reply")
    runtime = make_runtime("local", ui_district)
    service = TwinService(ui_district, store, runtime)
    feed = UiFeed()
    raws = _batch(feed, 1_780_000_000.0, overfull=False)
    try:
        await service.ingest(raws, now=1_780_000_000.0)
        assert await service.writer.flush(timeout_s=10)
        status = service.writer.status()
        assert status.retries == 1 and status.outages == 1 and status.written == 1 and status.failed == 0
        logged = [e for s in STATIONS for e in await _logged(store, s)]
        assert sorted(logged) == sorted((r["source"], r["seq"]) for r in raws)
        assert (await store.counters())["accepted"] == len(raws)
    finally:
        await service.close()
        await client.aclose()


async def test_closing_while_redis_is_away_ends_and_counts_what_was_not_written(
        private_redis: EmbeddedRedis, ui_district: District) -> None:
    client = connect(private_redis.url)
    store = Store(client, prefix="away-at-close")
    runtime = make_runtime("local", ui_district)
    service = TwinService(ui_district, store, runtime)
    feed = UiFeed()
    try:
        private_redis.stop()
        await service.ingest(_batch(feed, 1_780_000_000.0, overfull=False), now=1_780_000_000.0)
        async with asyncio.timeout(20):
            await service.writer.outage.wait()
            await service.close(store_timeout_s=0.5)  # a shutdown must end, Redis or not
        status = service.writer.status()
        assert status.lost_at_close == 2  # the batch and the closing states
        assert status.pending_writes == 0 and status.written == 0
    finally:
        await client.aclose()


async def test_a_write_that_cannot_be_made_keeps_its_input_log(private_redis: EmbeddedRedis,
                                                               ui_district: District) -> None:
    """A bug in an output (here: one JSON cannot hold) must not take the batch's input log with it: the
    log is what a replay or a restart rebuilds the outputs from."""
    client = connect(private_redis.url)
    store = Store(client, prefix="bad-output")
    writer = StoreWriter(store)
    raws = _batch(UiFeed(), 1_780_000_000.0, overfull=False)
    events, rejected = Validator(ui_district.directory()).validate(raws, 1_780_000_000.0)
    assert not rejected
    groups: dict[str, list[Any]] = {}
    for ev in events:
        groups.setdefault(ev.station, []).append(ev)
    bad = Outputs(deliveries=[{"station": "BH-0001", "volume_l": {1, 2}}])
    try:
        await writer.submit(groups, (), bad, {"duplicates": 0})
        assert await writer.flush(timeout_s=10)
        status = writer.status()
        assert status.failed == 1 and status.written == 1 and status.retries == 0
        assert "TypeError" in (status.last_error or "")
        logged = [e for s in STATIONS for e in await _logged(store, s)]
        assert sorted(logged) == sorted((r["source"], r["seq"]) for r in raws)
        assert (await store.counters())["accepted"] == len(raws)
        assert await client.xlen(store.out_key("deliveries")) == 0
    finally:
        await writer.close()
        await client.aclose()


@pytest.mark.parametrize("command", [["serve"], ["replay", "--headless"]])
def test_a_command_whose_redis_does_not_answer_says_so_in_a_line(command: list[str]) -> None:
    with socket.socket() as sock:  # a loopback port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"redis://fueltwin:s3cret@127.0.0.1:{port}/0"
    done = subprocess.run([sys.executable, "-m", "twin.cli", *command, "--redis-url", url],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "cannot reach Redis at redis://***@127.0.0.1" in done.stderr and "--redis-url" in done.stderr
    assert "Traceback" not in done.stderr and "s3cret" not in done.stderr


async def test_a_killed_embedded_redis_comes_back_by_itself_and_the_log_loses_nothing(
        tmp_path_factory: pytest.TempPathFactory, ui_district: District) -> None:
    """The default deployment's own Redis dies (SIGKILL: an OOM kill, a crash): it is started again from
    its append-only file, the writes held meanwhile go out, and the log holds every event once. (Synced
    at every write here; the default, every second, can lose the last second of a crash.)"""
    server = EmbeddedRedis(tmp_path_factory.mktemp("k"), appendfsync="always").start()
    server.supervise(check_every_s=0.05)
    client = connect(server.url)
    store = Store(client, prefix="killed")
    service = TwinService(ui_district, store, make_runtime("local", ui_district))
    feed, fed = UiFeed(), []
    try:
        for i in range(8):
            if i == 4:
                assert await service.writer.flush(timeout_s=10)
                os.kill(server.pid, signal.SIGKILL)  # type: ignore[arg-type]
            raws = _batch(feed, 1_780_000_000.0 + 60.0 * i, overfull=False)
            fed += [(r["source"], r["seq"]) for r in raws]
            await service.ingest(raws, now=raws[0]["ts"])
        async with asyncio.timeout(30):
            await server.restarted.wait()
        assert await service.writer.flush(timeout_s=30)
        assert server.restarts == 1
        logged = [e for s in STATIONS for e in await _logged(store, s)]
        assert sorted(logged) == sorted(fed) and len(logged) == len(fed)
        assert (await store.counters())["accepted"] == len(fed)
    finally:
        await service.close()
        await client.aclose()
        server.stop()
