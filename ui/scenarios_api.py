"""Scenarios from the browser: list the scenario files, run one in a background process, read its report.

A run is ``fueltwin scenario run FILE --report …`` in a child process (``sys.executable -m twin.cli``):
the runner is CPU-bound for seconds to minutes and must not stall the live twin's event loop, and the
process gives the same report the command line does. Its progress lines (stderr) are parsed for the
simulated day reached. One run at a time (a scenario takes a core); the last ``KEEP_RUNS`` are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException

API = "/api/v1"
KEEP_RUNS = 20
_DAY = re.compile(r"day (\d+(?:\.\d+)?)/(\d+(?:\.\d+)?)")


def scenario_dir() -> Path:
    """FUELTWIN_SCENARIOS, else ./scenarios, else the repository's scenarios/ next to the package."""
    env = os.environ.get("FUELTWIN_SCENARIOS")
    if env:
        return Path(env)
    here = Path.cwd() / "scenarios"
    return here if here.is_dir() else Path(__file__).resolve().parent.parent / "scenarios"


class ScenarioRuns:
    def __init__(self, directory: Path | None = None):
        self.directory = directory or scenario_dir()
        self.runs: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._ids = itertools.count(1)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._tmp = Path(tempfile.mkdtemp(prefix="fueltwin-scenarios-"))

    def files(self) -> list[dict[str, Any]]:
        from twin.scenario_runner import scenario_files
        from twin.scenarios import ScenarioError, fmt_duration, load_scenario

        out = []
        if not self.directory.is_dir():
            return out
        for path in scenario_files([self.directory]):
            try:
                s = load_scenario(path)
            except ScenarioError as exc:
                out.append({"file": path.name, "valid": False, "error": str(exc)})
                continue
            st = s.district.stations
            out.append({"file": path.name, "valid": True, "name": s.name,
                        "description": s.description.strip(),
                        "duration": fmt_duration(s.duration), "duration_s": s.duration,
                        "stations": st if isinstance(st, int) else len(st),
                        "faults": sorted({f["type"] for f in s.faults}),
                        "fault_stations": sorted({f.get("station") for f in s.faults if f.get("station")}),
                        "expects": [{"alert": e.alert, "within": fmt_duration(e.within)} for e in s.expect]})
        return out

    def start(self, file: str) -> dict[str, Any]:
        path = self.directory / file
        if "/" in file or not path.is_file():
            raise HTTPException(404, f"no scenario file {file!r} in {self.directory}")
        if any(r["status"] == "running" for r in self.runs.values()):
            raise HTTPException(409, "a scenario is already running; wait for it to finish")
        run_id = f"r{next(self._ids)}"
        report = self._tmp / f"{run_id}.json"
        run = {"id": run_id, "file": file, "status": "running", "started": time.time(), "finished": None,
               "day": 0.0, "days": None, "log": [], "report": None, "error": None}
        self.runs[run_id] = run
        while len(self.runs) > KEEP_RUNS:
            self.runs.popitem(last=False)
        self._tasks[run_id] = asyncio.create_task(self._run(run, path, report))
        return self.public(run)

    async def _run(self, run: dict[str, Any], path: Path, report: Path) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "twin.cli", "scenario", "run", str(path), "--report", str(report),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
            run["pid"] = proc.pid
            self._procs[run["id"]] = proc
            assert proc.stderr is not None
            async for raw in proc.stderr:
                line = raw.decode("utf-8", "replace").rstrip()
                run["log"] = (run["log"] + [line])[-20:]
                m = _DAY.search(line)
                if m:
                    run["day"], run["days"] = float(m.group(1)), float(m.group(2))
            await proc.wait()
            if report.is_file():
                run["report"] = json.loads(report.read_text(encoding="utf-8"))
                run["status"] = "done"
                if run["days"]:
                    run["day"] = run["days"]
            else:
                run["status"] = "error"
                run["error"] = "\n".join(run["log"][-5:]) or f"exit status {proc.returncode}"
        except Exception as exc:  # noqa: BLE001 - the page shows what failed
            run["status"] = "error"
            run["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            run["finished"] = time.time()
            self._tasks.pop(run["id"], None)
            self._procs.pop(run["id"], None)
            with contextlib.suppress(OSError):
                report.unlink()

    @staticmethod
    def public(run: dict[str, Any]) -> dict[str, Any]:
        return dict(run)

    async def close(self) -> None:
        """Server shutdown: stop the child processes this app started (by their own handles)."""
        for proc in list(self._procs.values()):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        for task in list(self._tasks.values()):
            task.cancel()


def register(app: FastAPI) -> ScenarioRuns:
    runs = ScenarioRuns()

    @app.get(f"{API}/scenarios", tags=["scenarios"])
    async def list_scenarios() -> dict[str, Any]:
        """The scenario files (name, faults, expected detections) and the recent runs."""
        files = await asyncio.to_thread(runs.files)
        return {"directory": str(runs.directory), "files": files,
                "runs": [{k: v for k, v in r.items() if k != "report"}
                         | {"passed": (r["report"] or {}).get("passed")}
                         for r in reversed(runs.runs.values())]}

    @app.post(f"{API}/scenarios/{{file}}/run", tags=["scenarios"])
    async def run_scenario(file: str) -> dict[str, Any]:
        """Run one scenario file in a background process; poll ``/scenarios/runs/{id}`` for its report."""
        return runs.start(file)

    @app.get(f"{API}/scenarios/runs/{{run_id}}", tags=["scenarios"])
    async def scenario_run(run_id: str) -> dict[str, Any]:
        """A run's status, simulated day reached, and when done its report (expectations met or missed with
        time to detect, false alarms, figures)."""
        run = runs.runs.get(run_id)
        if run is None:
            raise HTTPException(404, f"unknown run {run_id!r}")
        return runs.public(run)

    app.router.on_shutdown.append(runs.close)

    return runs
