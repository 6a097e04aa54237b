"""Scenario runs from the API, as a tester drives them from the browser: over several seeds, and stopped.

Real uvicorn on loopback, real child processes running ``fueltwin scenario run``; the runs' progress is
awaited on the runner's own condition, a killed process's end on its pidfd.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.timeout(180)

SHORT = ("name: short-comm-loss\nseed: 5\nstart: \"2026-06-01T00:00:00+08:00\"\nduration: 6h\n"
         "district: {stations: 1}\n"
         "faults:\n  - {type: comm_loss, station: BH-0001, at: 3h, for: 30m}\n"
         "expect:\n  - {alert: COMM_LOSS, station: BH-0001, within: 15m}\n")
#: Long enough that it is still running when the test stops it (minutes on this machine).
LONG = ("name: long-healthy\nseed: 9\nstart: \"2026-06-01T00:00:00+08:00\"\nduration: 30d\n"
        "district: {stations: 2}\nfaults: []\nexpect: []\n")


def _runs(ui: Any, folder: Path) -> Any:
    runs = ui.server.config.app.state.scenario_runs
    runs.directory = folder
    return runs


async def _gone(pid: int, timeout: float = 20.0) -> None:
    """Wait for a process to end (it need not be ours): its pidfd becomes readable when it exits."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    ended = loop.create_future()
    loop.add_reader(fd, lambda: ended.done() or ended.set_result(None))
    try:
        await asyncio.wait_for(ended, timeout)
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def _group(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def _scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the temporary folders the server makes at a folder of the test's own, to see them go."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    return scratch


async def test_a_run_over_seeds_reports_each_expectations_probability_of_detection(
        ui_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "short-comm-loss.yaml").write_text(SHORT, encoding="utf-8")
    runs = _runs(ui_server, tmp_path)
    scratch = _scratch(tmp_path, monkeypatch)
    async with httpx.AsyncClient(base_url=ui_server.base, timeout=10) as client:
        resp = await client.post("/api/v1/scenarios/short-comm-loss.yaml/run", json={"seeds": 3})
        assert resp.status_code == 200, resp.text
        started = resp.json()
        assert started["status"] == "running" and started["seeds"] == 3 and started["jobs"] == 1
        await runs.wait(started["id"], lambda r: r["status"] != "running", timeout=120)
        run = (await client.get(f"/api/v1/scenarios/runs/{started['id']}")).json()
    assert run["status"] == "done", run["error"]
    assert run["seeds_done"] == 3 and run["progress"] == 1.0
    report = run["report"]
    assert [r["seed"] for r in report["runs"]] == [5, 6, 7]
    (summary,) = report["summary"]["scenarios"]
    (comm,) = summary["expectations"]
    assert comm["alert"] == "COMM_LOSS" and comm["trials"] == 3
    assert comm["detections"] == sum(r["expectations"][0]["met"] for r in report["runs"])
    assert comm["pd"] == comm["detections"] / 3
    assert summary["false_alarms"]["count"] == sum(len(r["false_alarms"]) for r in report["runs"])
    assert list(scratch.iterdir()) == []  # the run's report folder went with the run


async def test_a_run_request_out_of_bounds_is_refused_with_its_reason(ui_server: Any, tmp_path: Path) -> None:
    (tmp_path / "short-comm-loss.yaml").write_text(SHORT, encoding="utf-8")
    runs = _runs(ui_server, tmp_path)
    url = "/api/v1/scenarios/short-comm-loss.yaml/run"
    async with httpx.AsyncClient(base_url=ui_server.base, timeout=10) as client:
        for body, field in (({"seeds": 0}, "seeds"), ({"seeds": 51}, "seeds"), ({"jobs": 0}, "jobs"),
                            ({"jobs": (os.cpu_count() or 1) + 1}, "jobs"), ({"seed": 3}, "seed")):
            resp = await client.post(url, json=body)
            assert resp.status_code == 422, (body, resp.text)
            assert field in resp.text
        resp = await client.post("/api/v1/scenarios/no-such.yaml/run", json={"seeds": 2})
        assert resp.status_code == 404 and "no-such.yaml" in resp.json()["detail"]
        resp = await client.post("/api/v1/scenarios/runs/r999/stop")
        assert resp.status_code == 404
    assert runs.runs == {}  # nothing was started by a refused request


async def test_a_stopped_run_ends_its_processes_and_frees_the_runner(
        ui_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped on two processes (a pool worker besides the runner): every process of the run ends, the
    run says it was stopped with no report and leaves no folder behind, and the next run may start."""
    (tmp_path / "long-healthy.yaml").write_text(LONG, encoding="utf-8")
    (tmp_path / "short-comm-loss.yaml").write_text(SHORT, encoding="utf-8")
    runs = _runs(ui_server, tmp_path)
    scratch = _scratch(tmp_path, monkeypatch)
    async with httpx.AsyncClient(base_url=ui_server.base, timeout=30) as client:
        resp = await client.post("/api/v1/scenarios/long-healthy.yaml/run", json={"seeds": 2, "jobs": 2})
        assert resp.status_code == 200, resp.text
        run_id = resp.json()["id"]
        # Both seeds under way in their worker processes: the runner has reported simulated days.
        run = await runs.wait(run_id, lambda r: r["progress"] > 0 or r["status"] != "running", timeout=90)
        assert run["status"] == "running" and 0 < run["progress"] < 1 and run["seeds_done"] == 0
        pid = run["pid"]
        members = _group(pid)
        assert pid in members and len(members) >= 2, members  # the runner and its workers
        assert [p.name[:22] for p in scratch.iterdir()] == ["fueltwin-scenario-run-"]
        busy = await client.post("/api/v1/scenarios/short-comm-loss.yaml/run", json={})
        assert busy.status_code == 409 and "stop it" in busy.json()["detail"]

        resp = await client.post(f"/api/v1/scenarios/runs/{run_id}/stop")
        assert resp.status_code == 200, resp.text
        stopped = resp.json()
        assert stopped["status"] == "stopped" and stopped["report"] is None and stopped["finished"]
        for member in members:
            await _gone(member)
        assert _group(pid) == []
        assert list(scratch.iterdir()) == []
        again = await client.post(f"/api/v1/scenarios/runs/{run_id}/stop")
        assert again.status_code == 409 and "stopped" in again.json()["detail"]
        listing = (await client.get("/api/v1/scenarios")).json()
        assert [r["status"] for r in listing["runs"] if r["id"] == run_id] == ["stopped"]

        nxt = await client.post("/api/v1/scenarios/short-comm-loss.yaml/run", json={})
        assert nxt.status_code == 200, nxt.text
        done = await runs.wait(nxt.json()["id"], lambda r: r["status"] != "running", timeout=120)
        assert done["status"] == "done" and done["report"]["passed"] is True
