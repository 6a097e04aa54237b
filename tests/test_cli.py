"""The README's first command, for real: `fueltwin demo` in a subprocess, used over HTTP and a websocket,
stopped with Ctrl-C (SIGINT), and its Redis data read back afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import websockets

from twin.app_runner import replay_command
from twin.store import EmbeddedRedis, Store, connect


def test_help_everywhere() -> None:
    for args in ([], ["demo"], ["serve"]):
        done = subprocess.run([sys.executable, "-m", "twin.cli", *args, "--help"], capture_output=True,
                              text=True, timeout=60, check=True)
        assert "Usage:" in done.stdout


async def _line_matching(stream: asyncio.StreamReader, pattern: str, seen: list[str]) -> re.Match[str]:
    while True:
        raw = await stream.readline()
        if not raw:
            raise AssertionError("demo exited before printing its URL:\n" + "".join(seen))
        line = raw.decode()
        seen.append(line)
        if m := re.search(pattern, line):
            return m


async def _cli(*args: str) -> asyncio.subprocess.Process:
    """`fueltwin ARGS` in a subprocess, its output (stderr too) unbuffered on a pipe."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "twin.cli", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


async def _replay_answers(args: list[str], stations: set[str]) -> None:
    proc = await _cli(*args)
    seen: list[str] = []
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            url = (await _line_matching(proc.stdout, r"(http://\S+/)replay", seen)).group(1)
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            recorded = (await client.get("/api/v1/replay/range")).json()["stations"]
        assert set(recorded) == stations
    finally:
        proc.terminate()
        await proc.wait()


def test_the_replay_command_hides_a_redis_password() -> None:
    command = replay_command(Path("rec"), "redis://ops:s3cret@10.0.0.5:6380/2", "ft-a", 9000)
    assert "s3cret" not in command
    assert command == (f"fueltwin replay --redis-url 'redis://ops:***@10.0.0.5:6380/2' "
                       f"--data {Path('rec').resolve()} --prefix ft-a --port 9001")


@pytest.mark.timeout(180)
async def test_demo_serves_streams_and_stops_cleanly(tmp_path: Path) -> None:
    data = tmp_path / "data"
    faults = tmp_path / "faults.yaml"
    faults.write_text("name: outage\nseed: 1\nstart: \"2026-01-01T00:00:00+08:00\"\nduration: 1d\n"
                      "district: {stations: 2}\n"
                      "faults:\n  - {type: comm_loss, station: BH-0002, at: 1h, for: 30m}\n",
                      encoding="utf-8")
    proc = await _cli("demo", "--stations", "2", "--speed", "0", "--port", "0", "--data", str(data),
                      "--start", "2026-06-01T00:00:00+08:00", "--faults", str(faults))
    seen: list[str] = []
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(90):
            url = (await _line_matching(proc.stdout, r"UI\s+(http://\S+)", seen)).group(1)
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            page = await client.get("/")
            assert page.status_code == 200 and "<html" in page.text.lower()
            stations = (await client.get("/api/v1/stations")).json()
            assert sorted(s["id"] for s in stations) == ["BH-0001", "BH-0002"]
            # The /replay page's advice opens a replay server on this very recording while it runs.
            command = (await client.get("/api/v1/health")).json()["replay_command"]
            assert command == f"fueltwin replay --data {data.resolve()} --port 8001"
            # The file's fault, at its offset from the demo's start (not from the file's own start).
            (outage,) = (await client.get("/api/v1/demo/faults")).json()
            assert (outage["type"], outage["station"]) == ("comm_loss", "BH-0002")
            assert outage["at_ts"] == 1_780_243_200 + 3600
        await _replay_answers(shlex.split(command)[1:] + ["--port", "0"], {"BH-0001", "BH-0002"})
        async with websockets.connect(url.replace("http", "ws", 1) + "ws/live") as ws, asyncio.timeout(60):
            while (message := json.loads(await ws.recv()))["type"] != "divergence":
                pass
            assert message["station"] in ("BH-0001", "BH-0002") and "divergence_l" in message
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            rest = await proc.stdout.read()
            code = await proc.wait()
        seen.append(rest.decode())
        assert code == 0, "".join(seen)
        assert "stopped:" in "".join(seen)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    # The data folder holds a consistent twin: every accepted event is in the log.
    redis = EmbeddedRedis(data).start()
    client = connect(redis.url)
    try:
        store = Store(client)
        counters = await store.counters()
        logged = sum([await store.logged_events(s) for s in ("BH-0001", "BH-0002")])
        assert counters["accepted"] > 1000
        assert logged == counters["accepted"]
        assert (await store.load_district()) is not None
        assert set(await store.states()) == {"BH-0001", "BH-0002"}
    finally:
        await client.aclose()
        redis.stop()


def test_demo_refuses_a_faults_file_its_district_cannot_take(tmp_path: Path) -> None:
    faults = tmp_path / "faults.yaml"
    faults.write_text("name: elsewhere\nseed: 1\nstart: \"2026-01-01T00:00:00+08:00\"\nduration: 1d\n"
                      "district: {stations: 40}\n"
                      "faults:\n  - {type: leak, station: BH-0030, tank: T1, at: 1h, rate_lph: 2}\n",
                      encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "twin.cli", "demo", "--stations", "2", "--port", "0",
                           "--data", str(tmp_path / "data"), "--faults", str(faults)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "faults[0]" in done.stderr and "no station 'BH-0030'" in done.stderr
