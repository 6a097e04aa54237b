"""Replay: the recorded input log of some stations into a fresh twin gives what the live twin gave,
as fast as possible or paced, paused and resumed; and the replay server's API drives it."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from actors.base import make_runtime
from tests.test_pipeline import simulated_day
from twin.service import TwinService
from twin.store import Store
from ui.app import AppContext, create_app
from ui.hub import LiveHub
from ui.replay import ReplaySession, add_replay_routes, recorded_range

pytestmark = pytest.mark.timeout(120)


async def _record(store: Store) -> Any:
    district, batches = simulated_day(hours=24, step_s=900)
    service = TwinService(district, store, make_runtime("local", district))
    for raws, now in batches:
        await service.ingest(raws, now=now)
    await service.close()
    await store.save_district(district)
    return district


async def _outputs(store: Store) -> tuple[list[tuple], list[tuple]]:
    alerts = sorted((a["id"], a["code"], a["first_ts"], a["status"], repr(sorted(a["metrics"].items())))
                    for a in await store.alerts(limit=100_000))
    deliveries = sorted((d["station"], d["tank"], d["end_ts"], d["net_l_20c"])
                        for d in await store.deliveries(limit=100_000))
    return alerts, deliveries


async def test_a_replay_gives_what_the_live_twin_gave(store: Store) -> None:
    district = await _record(store)
    expected = await _outputs(store)
    assert expected[0] and expected[1]  # a day has alerts (deliveries are informational alerts) to compare
    ranges = await recorded_range(store, [s.id for s in district.stations])
    first, last = min(a for a, _ in ranges.values()), max(b for _, b in ranges.values())

    fast = Store(store.r, prefix=store.p + "-fast")
    session = ReplaySession(store, fast, district, [s.id for s in district.stations], first, last, None)
    session.start()
    async with asyncio.timeout(60):
        await session.wait()
    assert session.status.state == "done" and session.status.events > 0
    await session.stop()
    assert await _outputs(fast) == expected
    # The replay twin counts what it took in but keeps no second copy of the source's log.
    assert (await fast.counters())["accepted"] == session.status.events
    assert not any([await fast.logged_events(s.id) for s in district.stations])

    # Paced from 20 h on (the history before is caught up at once), paused, resumed: the same twin.
    paced = Store(store.r, prefix=store.p + "-paced")
    start = first + 20 * 3600
    session = ReplaySession(store, paced, district, [s.id for s in district.stations], start, last,
                            speed=(last - start) / 2.0)
    session.start()
    async with asyncio.timeout(30):
        while session.status.state != "running":
            await asyncio.sleep(0.01)
    await session.pause()
    held = session.status.sim_ts
    with pytest.raises(TimeoutError):  # nothing moves while paused
        async with asyncio.timeout(0.5):
            while session.status.sim_ts == held:
                await asyncio.sleep(0.02)
    assert session.status.state == "paused"
    session.resume()
    async with asyncio.timeout(60):
        await session.wait()
    assert session.status.state == "done"
    await session.stop()
    assert await _outputs(paced) == expected


async def test_a_paused_replay_goes_on_at_its_pace_not_in_a_rush(store: Store) -> None:
    """After a pause the replay paces on from where it stands: due times counted from before the pause
    made it run the paused span's event time as fast as it could (the same after a change of speed).
    The sleeps are the scenario (wall time passing while paused and after), not synchronisation."""
    district = await _record(store)
    ranges = await recorded_range(store, [s.id for s in district.stations])
    first, last = min(a for a, _ in ranges.values()), max(b for _, b in ranges.values())
    start = first + 16 * 3600
    speed = (last - start) / 8.0  # the 8 h left in 8 s
    paced = Store(store.r, prefix=store.p + "-paced")
    session = ReplaySession(store, paced, district, [s.id for s in district.stations], start, last, speed)
    started = time.monotonic()
    session.start()
    async with asyncio.timeout(30):
        while session.status.state != "running":
            await asyncio.sleep(0.01)
    await session.pause()
    await asyncio.sleep(2.0)
    session.resume()
    sim0, wall0 = session.status.sim_ts, time.monotonic()
    await asyncio.sleep(1.0)
    advanced, elapsed = session.status.sim_ts - sim0, time.monotonic() - wall0
    # At its pace: at most the elapsed time's worth plus a step or two (the bug ran ~2 h of it at once).
    assert advanced <= speed * elapsed + 2 * session.step_s, (advanced, speed * elapsed)
    assert advanced > 0
    status = session.status.as_dict()
    assert status["state"] == "running"
    assert status["active_s"] <= time.monotonic() - started - 1.9  # its pause is not counted as running
    await session.stop()


async def test_the_replay_server_api(store: Store) -> None:
    district = await _record(store)
    expected = await _outputs(store)
    target = Store(store.r, prefix=store.p + "-replay")
    hub = LiveHub(target, district, mode="replay")
    ctx = AppContext(store=target, district=district, hub=hub, service=None, mode="replay")
    app = create_app(ctx)
    add_replay_routes(app, store, target, district, hub, ctx)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=10) as c:
            async with asyncio.timeout(10):
                while not server.started:
                    await asyncio.sleep(0.01)
            assert (await c.get("/api/v1/replay")).json()["state"] == "idle"
            rng = (await c.get("/api/v1/replay/range")).json()
            assert set(rng["stations"]) == {s.id for s in district.stations}
            bad = await c.post("/api/v1/replay", json={"stations": ["BH-9999"]})
            assert bad.status_code == 404 and "BH-9999" in bad.json()["detail"]
            typo = await c.post("/api/v1/replay", json={"settings": {"loss_treshold_l": 20}})
            assert typo.status_code == 422 and "settings.loss_treshold_l" in typo.json()["detail"]
            other = await c.post("/api/v1/replay", json={"speed": 60, "settings": {"loss_threshold_l": 20}})
            assert other.status_code == 200 and other.json()["settings"] == {"loss_threshold_l": 20}
            started = await c.post("/api/v1/replay", json={"speed": None})  # stops the one above
            assert started.json()["settings"] == {}
            assert started.status_code == 200, started.text
            async with asyncio.timeout(60):
                while (status := (await c.get("/api/v1/replay")).json())["state"] != "done":
                    assert status["state"] in ("catching-up", "running"), status
                    await asyncio.sleep(0.1)
            assert status["progress"] == 1.0 and status["events"] > 0
            assert status["active_s"] > 0
            assert status["events_per_s"] == pytest.approx(status["events"] / status["active_s"], rel=0.02)
            assert (await c.get("/api/v1/health")).json()["mode"] == "replay"
            got = {a["id"] for a in (await c.get("/api/v1/alerts", params={"limit": 10_000})).json()}
            assert got == {a[0] for a in expected[0]}
    finally:
        server.should_exit = True
        async with asyncio.timeout(15):
            await task


def test_a_headless_replay_with_other_settings_says_what_they_change(tmp_path: Path) -> None:
    """`fueltwin replay --headless`: the recorded log through a fresh twin, as fast as it goes, with other
    detector settings, its alerts set against the recorded twin's. With the defaults nothing differs;
    with a delivery threshold no tanker reaches, every recognised delivery is the recorded twin's alone."""
    from click.testing import CliRunner

    from twin.cli import main
    from twin.store import EmbeddedRedis, connect
    from twin.timeutil import to_local

    async def record() -> None:
        redis = EmbeddedRedis(tmp_path / "data").start()
        client = connect(redis.url)
        try:
            await _record(Store(client))
        finally:
            await client.aclose()
            redis.stop()

    asyncio.run(record())
    data = ["replay", "--headless", "--data", str(tmp_path / "data")]
    runner = CliRunner()

    same = runner.invoke(main, [*data, "--report", str(tmp_path / "same.json")])
    assert same.exit_code == 0, same.output
    report = json.loads((tmp_path / "same.json").read_text())
    assert report["alerts"] and report["events"] > 0
    assert report["only_recorded"] == [] and report["only_replayed"] == []

    (tmp_path / "high.yaml").write_text("delivery_rise_threshold_l: 100000\n")
    other = runner.invoke(main, [*data, "--settings", str(tmp_path / "high.yaml"),
                                 "--report", str(tmp_path / "other.json")])
    assert other.exit_code == 0, other.output
    report = json.loads((tmp_path / "other.json").read_text())
    assert report["settings"] == {"delivery_rise_threshold_l": 100000}
    missed = [i for i in report["only_recorded"] if i.split("/")[2] == "DELIVERY_DETECTED"]
    assert missed and not any(a["code"] == "DELIVERY_DETECTED" for a in report["alerts"])
    row = next(line for line in other.output.splitlines() if line.startswith("DELIVERY_DETECTED"))
    assert row.split()[1:] == [str(len(missed)), "0", str(len(missed)), "0"]

    # --from: only alerts first raised from then on are compared (the log before it is replayed all the same)
    after_first = min(float(i.split("/")[3]) for i in missed) + 1
    later = runner.invoke(main, [*data, "--settings", str(tmp_path / "high.yaml"), "--from",
                                 to_local(after_first).isoformat(), "--report", str(tmp_path / "later.json")])
    assert later.exit_code == 0, later.output
    report = json.loads((tmp_path / "later.json").read_text())
    assert report["only_recorded"] == [i for i in missed if float(i.split("/")[3]) >= after_first]
    assert len(report["only_recorded"]) == len(missed) - 1

    (tmp_path / "typo.yaml").write_text("delivery_rise_treshold_l: 5\n")
    typo = runner.invoke(main, [*data, "--settings", str(tmp_path / "typo.yaml")])
    assert typo.exit_code == 2 and "delivery_rise_treshold_l" in typo.output
    server_only = runner.invoke(main, ["replay", "--data", str(tmp_path / "data"), "--to", "2026-06-02"])
    assert server_only.exit_code == 2 and "--to go with --headless" in server_only.output
