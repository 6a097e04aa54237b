"""The live websocket against a real twin: real uvicorn, real `websockets` clients, a real Redis.

What the hub guarantees, and what these tests hold it to:
* every client gets a ``hello`` and then the latest state of each subscribed station;
* divergence and state are the newest values (coalesced per station/tank for a slow client);
* alerts and deliveries are never dropped silently: each published one is either received or counted in
  a ``missed`` message that precedes the client's next messages;
* a client that stops reading never slows ingestion, and its queue stays within the configured bound.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

pytestmark = pytest.mark.timeout(90)

Msg = dict[str, Any]


async def _recv(ws: ClientConnection, timeout: float = 5.0) -> Msg:
    async with asyncio.timeout(timeout):
        return json.loads(await ws.recv())


async def _recv_until(ws: ClientConnection, done: Callable[[Msg], bool], timeout: float = 10.0) -> list[Msg]:
    """Every message up to and including the first for which ``done`` is true."""
    got: list[Msg] = []
    async with asyncio.timeout(timeout):
        while True:
            msg = json.loads(await ws.recv())
            got.append(msg)
            if done(msg):
                return got


async def _hello(ws: ClientConnection) -> Msg:
    hello = await _recv(ws)
    assert hello["type"] == "hello", hello
    return hello


def _is(type_: str, **fields: Any) -> Callable[[Msg], bool]:
    return lambda m: m["type"] == type_ and all(m.get(k) == v for k, v in fields.items())


async def test_divergence_and_state_arrive_live(ui_server: Any) -> None:
    async with websockets.connect(ui_server.ws) as ws:
        hello = await _hello(ws)
        assert [s["id"] for s in hello["stations"]] == ["BH-0001", "BH-0002", "BH-0003"]
        assert hello["stations"][0]["tanks"][0] == {"id": "T1", "grade": "92#",
                                                    "declared_capacity_l": 30000.0}
        assert hello["subscribed"] is None and hello["mode"] == "demo"
        assert hello["timezone"] == "Asia/Shanghai" and hello["queue_limit"] == 1000

        t0, feed = ui_server.t0, ui_server.feed
        out = await ui_server.ingest([feed.reading("BH-0001", "T1", t0 + i * 60) for i in range(20)])
        got = await _recv_until(ws, _is("divergence", station="BH-0001", tank="T1"))
        div = got[-1]
        record = out.divergence[0]
        # Downsampled to the batch's last point; every point is in Redis (see test_api).
        assert div["ts"] == t0 + 19 * 60 == record["ts"][-1]
        assert div["observed_l"] == record["observed_l"][-1] and div["expected_l"] == record["expected_l"][-1]
        assert div["divergence_l"] == record["divergence_l"][-1]
        assert {"leak_rate_lph", "leak_rate_se_lph"} <= set(div)
        if not any(_is("state", station="BH-0001")(m) for m in got):
            got += await _recv_until(ws, _is("state", station="BH-0001"))
        state = next(m for m in got if _is("state", station="BH-0001")(m))
        assert state["station"] == "BH-0001" and state["tanks"][0]["last_ts"] == t0 + 19 * 60
        assert [n["id"] for n in state["nozzles"]] == ["N1", "N2", "N3"]

    # A client arriving later gets the state as first paint, right after hello.
    async with websockets.connect(ui_server.ws) as late:
        await _hello(late)
        first = await _recv(late)
        assert first["type"] == "state" and first["station"] == "BH-0001" and first["events"] == 20


async def test_first_paint_from_the_store_without_a_twin(ui_start: Any) -> None:
    """A UI serving an existing Redis (no service in its process) paints from what the twin stored."""
    ui = await ui_start()
    await ui.ingest([ui.feed.reading("BH-0002", "T2", ui.t0 + i * 60) for i in range(3)])
    await ui.ctx.service.drain()
    reader = await ui_start(twin=False, prefix=ui.ctx.store.p)
    async with websockets.connect(reader.ws) as ws:
        hello = await _hello(ws)
        assert hello["mode"] == "replay"
        # drain() stored the state of every station: first paint is the whole district
        painted = {m["station"]: m for m in [await _recv(ws), await _recv(ws)]}
        assert {m["type"] for m in painted.values()} == {"state"}
        assert painted["BH-0002"]["events"] == 3 and painted["BH-0001"]["events"] == 0
    async with httpx.AsyncClient(base_url=reader.base, timeout=10) as client:
        health = (await client.get("/api/v1/health")).json()
        assert health["service"] is None and health["store"]["accepted"] == 3
        twin = (await client.get("/api/v1/stations/BH-0002")).json()
        assert twin["tanks"][1]["last_ts"] == ui.t0 + 120


async def test_station_filter(ui_server: Any) -> None:
    t0, feed = ui_server.t0, ui_server.feed
    await ui_server.ingest([feed.reading("BH-0001", "T1", t0), feed.reading("BH-0003", "T1", t0)])
    async with websockets.connect(ui_server.ws + "?stations=BH-0002") as by_query, \
            websockets.connect(ui_server.ws) as by_message:
        hello = await _hello(by_query)
        assert hello["subscribed"] == ["BH-0002"]
        await _hello(by_message)
        await by_message.send(json.dumps({"subscribe": ["BH-0002", "BH-4040"]}))
        ack = await _recv_until(by_message, _is("subscribed"))
        assert ack[-1]["stations"] == ["BH-0002"] and ack[-1]["unknown"] == ["BH-4040"]

        # BH-0001 is busy, then BH-0002 speaks once: that is the first thing either client may see.
        for i in range(1, 6):
            await ui_server.ingest([feed.reading("BH-0001", tank, t0 + i * 60) for tank in ("T1", "T2")])
        await ui_server.ingest([feed.reading("BH-0002", "T2", t0 + 600)])
        for ws in (by_query, by_message):
            got = await _recv_until(ws, _is("divergence", station="BH-0002", tank="T2"))
            others = [m for m in got if m.get("station") not in (None, "", "BH-0002")]
            assert others == [], others

        # Widening to everything paints the stations it did not have, from the hub's latest copy.
        await by_message.send(json.dumps({"subscribe": []}))
        got = [await _recv(by_message) for _ in range(3)]
        assert got[0]["type"] == "subscribed" and got[0]["stations"] is None
        painted = {m["station"]: m for m in got[1:]}
        assert set(painted) == {"BH-0001", "BH-0003"} and painted["BH-0001"]["events"] == 11

        await by_query.send("not json")
        assert (await _recv_until(by_query, _is("error")))[-1]["message"] == "not JSON"
        await by_query.send(json.dumps({"subscribe": "BH-0001"}))
        assert "list" in (await _recv_until(by_query, _is("error")))[-1]["message"]


async def test_alerts_published_while_connected_arrive(ui_server: Any) -> None:
    t0, feed = ui_server.t0, ui_server.feed
    async with websockets.connect(ui_server.ws) as ws:
        await _hello(ws)
        await ui_server.ingest([feed.reading("BH-0002", "T1", t0)])
        await ui_server.ingest([feed.tick("BH-0002", t0 + 600)])
        alert = (await _recv_until(ws, _is("alert", code="COMM_LOSS")))[-1]
        assert alert["station"] == "BH-0002" and alert["entity"] == "T1" and alert["status"] == "open"
        assert alert["first_ts"] == t0 + 600 and alert["metrics"]["minutes"] == 10
        assert alert["message_zh"] and alert["message_en"]

        # A person's acknowledgement reaches every connected client too.
        await ui_server.ctx.service.drain()
        async with httpx.AsyncClient(base_url=ui_server.base, timeout=10) as client:
            resp = await client.post(f"/api/v1/alerts/{alert['id']}/ack", json={"by": "值班员"})
            assert resp.status_code == 200, resp.text
        acked = (await _recv_until(ws, _is("alert", id=alert["id"], status="acknowledged")))[-1]
        assert acked["history"][-1]["by"] == "值班员"

        # The gauge comes back: the twin closes the alert itself, and says so.
        await ui_server.ingest([feed.reading("BH-0002", "T1", t0 + 660)])
        closed = (await _recv_until(ws, _is("alert", id=alert["id"], status="closed")))[-1]
        assert closed["history"][-1]["by"] == "twin"


def _stalling_socket(port: int) -> socket.socket:
    """A TCP socket with a tiny receive buffer, so a client that does not read stalls the server fast."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def _comm_loss_cycles(ui: Any, station: str, cycles: int, start: float) -> tuple[int, float, float]:
    """Per cycle: a reading of every tank (closing COMM_LOSS) and a tick 10 min later (raising it again),
    two batches each. Returns (alerts published for the station, seconds spent in ingest, last ts)."""
    feed = ui.feed
    alerts = 0
    spent = 0.0
    ts = start
    for _ in range(cycles):
        for raws in ([feed.reading(station, "T1", ts), feed.reading(station, "T2", ts)],
                     [feed.tick(station, ts + 600)]):
            began = time.perf_counter()
            out = await ui.ingest(raws)
            spent += time.perf_counter() - began
            alerts += sum(a["station"] == station for a in out.alerts)
        ts += 660
    return alerts, spent, ts - 660


async def test_slow_client_never_slows_ingestion(ui_start: Any) -> None:
    limit = 40
    cycles = 150
    ui = await ui_start(reliable_limit=limit, sndbuf=16384)
    _, baseline, _ = await _comm_loss_cycles(ui, "BH-0003", cycles, ui.t0)  # the same work, no clients
    ws_slow = await websockets.connect(ui.ws + "?stations=BH-0001", sock=_stalling_socket(ui.port),
                                       compression=None, max_queue=1)
    async with ws_slow, websockets.connect(ui.ws + "?stations=BH-0001") as ws_fast:
        await _hello(ws_fast)
        fast_msgs: list[Msg] = []

        async def read_fast() -> None:
            async for raw in ws_fast:
                fast_msgs.append(json.loads(raw))

        reader = asyncio.create_task(read_fast())
        published, spent, last_ts = await _comm_loss_cycles(ui, "BH-0001", cycles, ui.t0)
        assert published == 4 * cycles - 2  # two tanks, each closed (but the first time) and raised again

        # 300 batches with a stalled client (and a fast one) cost about what they cost with nobody.
        assert spent < 3 * baseline + 1.0, (spent, baseline)
        stats = ui.ctx.hub.stats()
        slow = next(c for c in stats["per_client"] if c["id"] == 1)
        assert slow["send_blocked_s"] is not None, slow  # its socket is full, its queue is not:
        assert slow["max_queued_reliable"] <= limit and slow["queued_reliable"] <= limit
        assert slow["queued_latest"] <= 3  # one state and one divergence per tank, at most
        assert slow["missed"]["alerts"] > 0 and slow["coalesced"] > 0
        assert stats["missed"]["alerts"] == slow["missed"]["alerts"]
        missed_before = slow["missed"]["alerts"]

        # The fast client meanwhile got every alert, and nothing was missed.
        final_events = 3 * cycles  # two readings and one tick per cycle
        async with asyncio.timeout(10):
            while not any(m["type"] == "state" and m["events"] == final_events for m in fast_msgs):
                await asyncio.sleep(0.02)
        assert sum(m["type"] == "alert" for m in fast_msgs) == published
        assert not any(m["type"] == "missed" for m in fast_msgs)
        # ... while its states came in rounds (flush interval), not one per batch.
        assert sum(m["type"] == "state" for m in fast_msgs) < cycles

        # The slow client reads again: whatever it was sent, plus what it missed, is every alert; the
        # missed count comes before the alerts that follow the gap; states arrive coalesced, newest last.
        pending = {"state", "T1", "T2"}  # the newest state and each tank's newest divergence

        def newest(m: Msg) -> bool:
            if m["type"] == "state" and m["events"] == final_events:
                pending.discard("state")
            if m["type"] == "divergence" and m["ts"] == last_ts:
                pending.discard(m["tank"])
            return not pending

        got = await _recv_until(ws_slow, newest, timeout=20)
        assert got[0]["type"] == "hello"
        alerts_seen = sum(m["type"] == "alert" for m in got)
        missed = [m for m in got if m["type"] == "missed"]
        assert missed and sum(m["alerts"] for m in missed) == missed_before
        assert alerts_seen + missed_before == published
        # After the last drop the queue was full, and the notice went out first: then `limit` alerts.
        last_missed = len(got) - 1 - got[::-1].index(missed[-1])
        assert [m["type"] for m in got[last_missed + 1:last_missed + 1 + limit]] == ["alert"] * limit
        states = [m for m in got if m["type"] == "state"]
        assert len(states) < cycles  # coalesced, not one per batch
        assert len([m for m in got if m["type"] == "divergence"]) < 2 * cycles
        reader.cancel()


async def test_client_stuck_too_long_is_disconnected(ui_start: Any) -> None:
    ui = await ui_start(send_timeout_s=0.3, close_timeout_s=0.3, sndbuf=16384)
    ws_slow = await websockets.connect(ui.ws, sock=_stalling_socket(ui.port), compression=None, max_queue=1)
    async with ws_slow:
        ts = ui.t0
        async with asyncio.timeout(20):
            while ui.ctx.hub.stats()["disconnected_slow"] == 0:
                _, _, ts = await _comm_loss_cycles(ui, "BH-0001", 5, ts + 660)
                await asyncio.sleep(0.05)
        stats = ui.ctx.hub.stats()
        assert stats["clients"] == 0 and stats["disconnected_slow"] == 1
        # Reading again, it finds the end of the connection after what had been sent.
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(20):
                while True:
                    await ws_slow.recv()
