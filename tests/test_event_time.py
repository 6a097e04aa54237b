"""The rule "nothing in twin/ or actors/ reads the wall clock" (DESIGN.md: live and replay must agree),
checked on the source: every call that reads a clock, outside the edge modules named here with why.

An edge may pace or time what people see (state pushes, retry pauses, events a second) but no output of
the twin may depend on it; a restart or a replay from the log giving the live states is tested
elsewhere (tests/test_recovery.py, tests/test_store_outage.py, tests/test_replay.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLOCKS = {("time", "time"), ("time", "time_ns"), ("time", "monotonic"), ("time", "monotonic_ns"),
          ("time", "perf_counter"), ("time", "perf_counter_ns"), ("datetime", "now"),
          ("datetime", "utcnow"), ("datetime", "today"), ("date", "today")}
EDGES = {
    "twin/cli.py": "the command line: progress and elapsed seconds for the person running it",
    "twin/scenario_runner.py": "the runner's wall seconds and events a second, in its report",
    "twin/service.py": "paces the station states it builds for people; times its moves to the archive",
    "twin/store_writer.py": "paces its retries while Redis is away and times the outage",
}


def _name(node: ast.expr) -> str | None:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None


def clock_reads(path: Path) -> list[str]:
    """``module.attr()`` calls of a clock, names imported from ``time``, and an event loop's ``time()``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "time":
            found += [f"from time import {a.name}" for a in node.names if ("time", a.name) in CLOCKS]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner, attr = node.func.value, node.func.attr
            name = _name(owner)
            loop = name in {"loop", "_loop"} or (
                isinstance(owner, ast.Call) and _name(owner.func) in {"get_running_loop", "get_event_loop"})
            if (name, attr) in CLOCKS or (attr == "time" and loop):
                found.append(f"line {node.lineno}: {name}.{attr}()")
    return found


def test_domain_code_reads_no_clock() -> None:
    reads = {}
    for folder in ("twin", "actors"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if (found := clock_reads(path)) and rel not in EDGES:
                reads[rel] = found
    assert reads == {}, f"the wall clock read in event-time code: {reads}"


def test_the_check_finds_clock_reads(tmp_path: Path) -> None:
    # the edges do read one (else the list would be stale), and a scratch module's every form is found
    for rel in EDGES:
        assert clock_reads(ROOT / rel), rel
    scratch = tmp_path / "scratch.py"
    scratch.write_text("import time, asyncio\nfrom time import monotonic\nfrom datetime import datetime\n"
                       "a = time.time()\nb = datetime.now()\nc = asyncio.get_running_loop().time()\n"
                       "d = time.sleep(1)\n", encoding="utf-8")
    assert len(clock_reads(scratch)) == 4
