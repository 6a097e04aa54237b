"""The README's bridge commands, for real: `fueltwin simulate --serve` writes a configuration and serves
its devices over Modbus TCP, OPC UA and TLS-350, its vapor monitors polled over Modbus or uploading over
HJ 212; `fueltwin serve --config` reads them into a live twin with its API and receives the HJ 212
uploads; a configuration whose profile does not match its device stops `serve` at start-up with
the reason."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import yaml

from tests.test_cli import _line_matching

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


async def _stop(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(30):
                return await proc.wait()
        except TimeoutError:
            proc.kill()
            return await proc.wait()
    return proc.returncode


def _last_busy_morning() -> str:
    """The latest 10:00 Beijing time that has passed: the simulated clock starts there, so the stations
    are busy whatever the hour the test runs at (started at "now" after 22:00 Beijing time, 20 simulated
    minutes could bring fewer than three fills to a small station, and the test failed at night)."""
    beijing = timezone(timedelta(hours=8))
    now = datetime.now(beijing)
    morning = now.replace(hour=10, minute=0, second=0, microsecond=0)
    return (morning if morning <= now else morning - timedelta(days=1)).isoformat()


@pytest.mark.timeout(180)
async def test_simulate_serve_then_serve_config(tmp_path: Path) -> None:
    config = tmp_path / "st.yaml"
    sim = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "twin.cli", "simulate", "--serve", "--stations", "5", "--speed", "20",
        "--start", _last_busy_morning(), "--poll-interval", "0.2", "--vapor-via", "mixed",
        "--config-out", str(config), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env=ENV)
    seen: list[str] = []
    serve = None
    try:
        assert sim.stdout is not None
        async with asyncio.timeout(60):
            await _line_matching(sim.stdout, r"configuration: ", seen)
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
        assert data["time"] == "device"
        devices = [d for s in data["stations"] for d in s["devices"]]
        # Five stations are enough to deal every shipped profile of every protocol to some station.
        assert {d["protocol"] for d in devices} == {"modbus", "opcua", "tls350"}
        shipped = {p.model for p in __import__("bridges.profiles").profiles.shipped_profiles().values()}
        assert {d["profile"] for d in devices} == shipped
        # Vapor monitors dealt in turn: even stations polled over Modbus, odd ones uploading over HJ 212.
        uploading = [s for s in data["stations"] if "hj212" in s]
        polled = [s for s in data["stations"] if any(d["profile"] == "MB-VRM" for d in s["devices"])]
        assert [s["id"] for s in uploading] == ["BH-0002", "BH-0004"] and polled
        assert not {s["id"] for s in uploading} & {s["id"] for s in polled}
        assert data["hj212"]["listen"].startswith("127.0.0.1:")

        # A profile that does not match its device: a clear error at start-up, exit status 2.
        bad = yaml.safe_load(config.read_text(encoding="utf-8"))
        atg = bad["stations"][0]["devices"][0]
        other = {"MB-ATG-F32": "MB-ATG-CDAB", "MB-ATG-CDAB": "MB-ATG-F32"}[atg["profile"]]
        atg["profile"] = other
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad, allow_unicode=True), encoding="utf-8")
        done = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "twin.cli", "serve", "--config", str(tmp_path / "bad.yaml"), "--port", "0",
            "--data", str(tmp_path / "bad-data"), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=ENV)
        async with asyncio.timeout(60):
            out, _ = await done.communicate()
        assert done.returncode == 2, out.decode()
        assert f"does not match profile {other}" in out.decode()

        serve = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "twin.cli", "serve", "--config", str(config), "--port", "0",
            "--data", str(tmp_path / "data"), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=ENV)
        assert serve.stdout is not None
        async with asyncio.timeout(60):
            url = (await _line_matching(serve.stdout, r"UI\s+(http://\S+)", seen)).group(1)
        vapor_ids = [uploading[0]["id"], polled[0]["id"]]
        async with httpx.AsyncClient(base_url=url, timeout=10) as client, asyncio.timeout(60):
            while True:
                twin = (await client.get("/api/v1/stations/BH-0001")).json()
                tanks = twin.get("tanks") or []
                if tanks and all(t.get("level_mm") for t in tanks) and twin.get("watermark"):
                    break
                await asyncio.sleep(0.2)
            # Vapor data arrive both ways: fills judged and system samples, where the only way in for
            # the uploading station is the HJ 212 receiving server.
            while True:
                vapor = {sid: (await client.get(f"/api/v1/stations/{sid}/vapor")).json() for sid in vapor_ids}
                if all((v.get("today") or {}).get("valid_fills", 0) >= 3 and v.get("pressure_pa") is not None
                       for v in vapor.values()):
                    break
                await asyncio.sleep(0.3)
            health = (await client.get("/api/v1/health")).json()
            links = (await client.get("/api/v1/bridges")).json()
        assert {b["source"] for b in links} == {f"{d['protocol']}:{s['id']}:{d['id']}"
                                                 for s in data["stations"] for d in s["devices"]}
        assert all(b["connected"] and b["errors"] == 0 for b in links), links
        assert health["mode"] == "live" and health["service"]["accepted"] > 0
        assert any(n["last_a_l"] for n in vapor[uploading[0]["id"]]["nozzles"])
        assert health["service"]["rejected"] == 0, health["service"]["by_reason"]
        serve.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            rest = (await serve.stdout.read()).decode()
            code = await serve.wait()
        assert code == 0, "".join(seen) + rest
        assert "stopped:" in rest
        assert re.search(r"HJ 212\s+tcp://127\.0\.0\.1:\d+ \(2 vapor monitors\)", "".join(seen) + rest), rest

        # Started again on the same data, it recovers the twin it was (checkpoint at exit + the log).
        serve = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "twin.cli", "serve", "--config", str(config), "--port", "0",
            "--data", str(tmp_path / "data"), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=ENV)
        assert serve.stdout is not None
        async with asyncio.timeout(60):
            found = await _line_matching(serve.stdout, r"recovered the recorded twin: (\d+) stations", seen)
            await _line_matching(serve.stdout, r"UI\s+(http://\S+)", seen)
        assert int(found.group(1)) == len(data["stations"])
        serve.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            rest = (await serve.stdout.read()).decode()
            code = await serve.wait()
        assert code == 0, "".join(seen) + rest
    finally:
        if serve is not None:
            await _stop(serve)
        await _stop(sim)
