"""Shared fixtures: one real Redis server per test session (the embedded one), a fresh key prefix per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from twin.physics import HorizontalCylinder, StrappingTable
from twin.registry import District
from twin.store import EmbeddedRedis, Store, connect


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    client = connect(redis_url)
    yield Store(client, prefix=f"test-{uuid.uuid4().hex[:8]}")
    await client.aclose()


def tank_chart(diameter_mm: float = 2500, length_mm: float = 6100) -> dict[str, Any]:
    chart = StrappingTable.from_geometry(HorizontalCylinder(diameter_mm, length_mm), 10)
    return {"shape": "strapping", "levels_mm": list(chart.levels_mm), "volumes_l": list(chart.volumes_l)}


def station_spec(sid: str, region: str = "新港街道", lon: float = 117.70,
                 lat: float = 39.00) -> dict[str, Any]:
    chart = tank_chart()
    grades = ["92#", "95#", "0#"]
    return {
        "id": sid, "name": f"测试站 {sid}", "region": region, "lon": lon, "lat": lat,
        "tanks": [{"id": f"T{i + 1}", "grade": g, "declared_capacity_l": 30000, "chart": chart}
                  for i, g in enumerate(grades)],
        "nozzles": [{"id": f"N{i + 1}", "tank": f"T{i % 3 + 1}", "grade": grades[i % 3]} for i in range(8)],
    }


@pytest.fixture
def small_district() -> District:
    return District.model_validate({"stations": [station_spec("BH-0001"),
                                                 station_spec("BH-0002", "大港街道", 117.45, 38.84)]})


# ---- ui: a real uvicorn server around the app, fed through TwinService.ingest -------------------------


class UiFeed:
    """Builds raw input events with per-source sequence numbers, as a bridge would send them."""

    def __init__(self) -> None:
        self._seq: dict[str, int] = {}

    def _next(self, source: str) -> int:
        self._seq[source] = self._seq.get(source, -1) + 1
        return self._seq[source]

    def reading(self, station: str, tank: str, ts: float, level_mm: float = 1500.0,
                temp_c: float = 20.0) -> dict[str, Any]:
        source = f"atg-{station}"
        # A live probe never repeats itself exactly (a frozen one does: SENSOR_STUCK): a 0.01 °C wobble.
        wobble = 0.01 * (self._next(f"wobble-{station}-{tank}") % 2)
        return {"kind": "tank.reading", "ts": ts, "station": station, "entity": tank, "source": source,
                "seq": self._next(source), "level_mm": level_mm, "water_mm": 0.0, "temp_c": temp_c + wobble}

    def tick(self, station: str, ts: float) -> dict[str, Any]:
        source = f"clock-{station}"
        return {"kind": "clock.tick", "ts": ts, "station": station, "source": source,
                "seq": self._next(source)}


class UiServer:
    """A running app: its base URLs and the parts behind it, for tests to feed and inspect."""

    def __init__(self, base: str, ctx: Any, server: Any, task: Any):
        self.base = base
        self.ws = base.replace("http://", "ws://", 1) + "/ws/live"
        self.ctx = ctx
        self.server = server
        self.task = task
        self.feed = UiFeed()
        self.t0 = UI_T0

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    async def ingest(self, raws: list[dict[str, Any]]) -> Any:
        """Feed one batch; the edge clock is the batch's newest event time (a simulated clock)."""
        now = max((r["ts"] for r in raws if isinstance(r.get("ts"), (int, float))), default=UI_T0)
        return await self.ctx.service.ingest(raws, now=now)


#: 2026-05-28 16:53:20 in Tianjin: a fixed event-time origin for the ui tests.
UI_T0 = 1_780_000_000.0


@pytest.fixture
def ui_district() -> District:
    """Three stations in two regions, two tanks and three nozzles each (small enough to read in a test)."""
    chart = tank_chart()

    def spec(sid: str, region: str, lon: float, lat: float) -> dict[str, Any]:
        return {"id": sid, "name": f"界面测试站 {sid}", "region": region, "lon": lon, "lat": lat,
                "tanks": [{"id": "T1", "grade": "92#", "declared_capacity_l": 30000, "chart": chart},
                          {"id": "T2", "grade": "0#", "declared_capacity_l": 30000, "chart": chart}],
                "nozzles": [{"id": "N1", "tank": "T1", "grade": "92#"},
                            {"id": "N2", "tank": "T1", "grade": "92#"},
                            {"id": "N3", "tank": "T2", "grade": "0#"}]}

    return District.model_validate({"stations": [spec("BH-0001", "新港街道", 117.70, 39.00),
                                                 spec("BH-0002", "大港街道", 117.45, 38.84),
                                                 spec("BH-0003", "新港街道", 117.69, 39.01)]})


@pytest.fixture
async def ui_start(redis_url: str, ui_district: District) -> AsyncIterator[Any]:
    """Factory: ``await ui_start(**hub_options)`` starts the twin and a uvicorn server on an ephemeral
    port in the test's loop; everything is stopped after the test. ``sndbuf`` fixes the kernel send
    buffer of the server's connections (inherited from the listening socket), as on a slow link: with
    autotuning, loopback buffers several MB before a client that stopped reading blocks anything.
    ``twin=False`` serves an existing store (``prefix``) with no service, as on a read-only UI host."""
    import asyncio
    import socket

    import uvicorn

    from actors.base import make_runtime
    from twin.service import TwinService
    from ui.app import AppContext, create_app
    from ui.hub import LiveHub

    started: list[tuple[UiServer, Any]] = []

    async def start(*, sndbuf: int | None = None, twin: bool = True, prefix: str | None = None,
                    **hub_options: Any) -> UiServer:
        client = connect(redis_url)
        store = Store(client, prefix=prefix or f"test-ui-{uuid.uuid4().hex[:8]}")
        # Every batch carries station states here (the live default throttles them to 2 a second), so
        # that what a client sees follows from the batches a test ingests.
        service = (TwinService(ui_district, store, make_runtime("local", ui_district), state_interval_s=0)
                   if twin else None)
        hub = LiveHub(store, ui_district, **hub_options)
        ctx = AppContext(store=store, district=ui_district, hub=hub, service=service,
                         mode="demo" if twin else "replay")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if sndbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(create_app(ctx), log_level="warning", timeout_graceful_shutdown=5)
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        ui = UiServer(f"http://127.0.0.1:{sock.getsockname()[1]}", ctx, server, task)
        started.append((ui, client))
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()  # raises what stopped it
                    raise RuntimeError("uvicorn exited before it started")
                await asyncio.sleep(0.01)
        return ui

    yield start
    for ui, client in reversed(started):
        ui.server.should_exit = True
        async with asyncio.timeout(15):
            await ui.task
        if ui.ctx.service is not None:
            await ui.ctx.service.close()
        await client.aclose()


@pytest.fixture
async def ui_server(ui_start: Any) -> Any:
    """The app with default hub settings."""
    return await ui_start()
