"""The ``fueltwin`` command: the product's front door.

``demo`` composes everything (embedded Redis, runtime, simulated district, server); ``serve`` runs the
API on an existing Redis; ``scenario run`` / ``scenario list`` run and list fault scenarios
(``twin/scenario_runner.py``, format in ``docs/scenarios.md``). The CLI is the one place that wires
every layer together, so it imports ui/
and simulators/ lazily, inside the commands, to keep twin/'s import graph one-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from twin.timeutil import CST

log = logging.getLogger("fueltwin")

RUNTIMES = click.Choice(["local", "ray"])


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("uvicorn.access", "websockets", "ray"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # A device that is down is the bridges' business (counted in GET /api/v1/bridges), not a log line
    # per failed request.
    logging.getLogger("pymodbus").setLevel(logging.DEBUG if verbose else logging.CRITICAL)
    logging.getLogger("asyncua").setLevel(logging.DEBUG if verbose else logging.WARNING)


class _BadConfig(click.ClickException):
    """A station configuration or device profile that cannot be used: exit status 2, its own words."""

    exit_code = 2

    def show(self, file: object = None) -> None:
        click.echo(self.format_message(), err=True)


def _parse_start(value: str | None) -> float:
    if value is None:
        # The demo's simulated clock starts at today's local midnight, so the page shows 'today'.
        now = datetime.now(CST)
        return now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    try:
        dt = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"not an ISO 8601 time: {value!r}") from exc
    return (dt if dt.tzinfo else dt.replace(tzinfo=CST)).timestamp()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fueltwin")
def main() -> None:
    """fueltwin — real-time digital twin of a district's fuel stations (加油站智慧监管云平台)."""


@main.command()
@click.option("--stations", "-n", default=20, show_default=True, type=click.IntRange(1, 5000),
              help="How many simulated stations in the district.")
@click.option("--speed", default=60.0, show_default=True, type=click.FloatRange(min=0),
              help="Simulated seconds per wall second (1 = real time; 0 = as fast as possible).")
@click.option("--port", "-p", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--runtime", default="local", show_default=True, type=RUNTIMES,
              help="Actor runtime: local asyncio, or Ray shards.")
@click.option("--shards", default=None, type=click.IntRange(1, 256),
              help="Shard count (default 4 local, 2 ray).")
@click.option("--seed", default=1, show_default=True, type=int, help="Seed of the simulated district.")
@click.option("--start", default=None, help="Simulated start time, ISO 8601 (default: today 00:00 Beijing).")
@click.option("--reading-interval", default=10.0, show_default=True, type=click.FloatRange(min=1),
              help="Seconds between tank gauge readings.")
@click.option("--data", "data_dir", default="./fueltwin-data", show_default=True,
              type=click.Path(file_okay=False), help="Folder of the embedded Redis (wiped at start).")
@click.option("--keep-days", default=7.0, show_default=True, type=click.FloatRange(min=0),
              help="Simulated days of input log and divergence kept in Redis; older log entries move to "
                   "DATA/archive (replay still reads them), older divergence is dropped. 0 keeps all.")
@click.option("--vapor/--no-vapor", default=True, show_default=True,
              help="Simulate the stations' vapor-recovery online monitors (油气回收).")
@click.option("--faults", "faults_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Inject the faults of a scenario file, each at its `at` from the demo's start (the "
                   "file's district, expectations and settings are not used). More from the station page.")
@click.option("--verbose", "-v", is_flag=True)
def demo(stations: int, speed: float, port: int, host: str, runtime: str, shards: int | None, seed: int,
         start: str | None, reading_interval: float, data_dir: str, keep_days: float, vapor: bool,
         faults_file: str | None, verbose: bool) -> None:
    """Run a simulated district's live twin with its web UI (embedded Redis, local runtime)."""
    _setup_logging(verbose)
    from twin.app_runner import DemoOptions, FeedFailed, run_demo

    faults: list[dict[str, Any]] = []
    if faults_file:
        from twin.scenarios import ScenarioError, load_scenario

        try:
            faults = load_scenario(faults_file).faults
        except ScenarioError as exc:
            raise _BadScenario(str(exc)) from exc
    options = DemoOptions(stations=stations, speed=speed or None, port=port, host=host, runtime=runtime,
                          shards=shards, seed=seed, start_ts=_parse_start(start),
                          reading_interval_s=reading_interval, data_dir=Path(data_dir),
                          keep_days=keep_days or None, vapor=vapor, faults=faults)
    data = Path(data_dir)
    if data.exists():
        shutil.rmtree(data)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_demo(options))
    except ValueError as exc:
        if str(exc).startswith("faults["):  # a fault this district cannot take: the file's problem
            raise _BadScenario(f"{faults_file}: {exc}") from exc
        raise
    except FeedFailed as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.option("--redis-url", envvar="FUELTWIN_REDIS_URL", default=None,
              help="Redis to serve from [env FUELTWIN_REDIS_URL]; without it, the embedded one in --data.")
@click.option("--data", "data_dir", default="./fueltwin-data", show_default=True,
              type=click.Path(file_okay=False), help="Folder of the embedded Redis (kept).")
@click.option("--prefix", default="ft", show_default=True, help="Key prefix of the twin in Redis.")
@click.option("--port", "-p", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--config", "config", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Station configuration (YAML): run its field bridges and feed a live twin, "
                   "recovering the one recorded in Redis after a restart.")
@click.option("--runtime", default="local", show_default=True, type=RUNTIMES,
              help="Actor runtime of the live twin (with --config).")
@click.option("--fresh", is_flag=True,
              help="With --config: wipe the embedded Redis in --data and start an empty twin (default: "
                   "recover the recorded twin from its last checkpoint and the log).")
@click.option("--keep-days", default=7.0, show_default=True, type=click.FloatRange(min=0),
              help="With --config: days of input log and divergence kept in Redis; older log entries "
                   "move to DATA/archive (replay and recovery still read them), older divergence is "
                   "dropped. 0 keeps all.")
@click.option("--verbose", "-v", is_flag=True)
def serve(redis_url: str | None, data_dir: str, prefix: str, port: int, host: str, config: str | None,
          runtime: str, fresh: bool, keep_days: float, verbose: bool) -> None:
    """Serve the API and UI: over a twin already recorded in Redis, or (--config) a live twin fed by the
    field bridges of the stations a configuration lists."""
    _setup_logging(verbose)
    from twin.app_runner import ServeOptions, run_serve

    if config is not None and fresh and redis_url is None and Path(data_dir).exists():
        shutil.rmtree(data_dir)
    options = ServeOptions(redis_url=redis_url, data_dir=Path(data_dir), prefix=prefix, port=port, host=host,
                           config=Path(config) if config else None, runtime=runtime, fresh=fresh,
                           keep_days=keep_days or None)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_serve(options))
    except LookupError as exc:
        raise click.ClickException(str(exc)) from exc
    except ValueError as exc:  # a configuration or profile that cannot be used: its own words
        if type(exc).__name__ in ("ConfigError", "ProfileError"):
            raise _BadConfig(str(exc)) from exc
        raise


@main.command()
@click.option("--redis-url", envvar="FUELTWIN_REDIS_URL", default=None,
              help="Redis holding the recorded twin [env FUELTWIN_REDIS_URL]; without it, the embedded one "
                   "in --data.")
@click.option("--data", "data_dir", default="./fueltwin-data", show_default=True,
              type=click.Path(file_okay=False), help="Folder of the embedded Redis (kept).")
@click.option("--prefix", default="ft", show_default=True, help="Key prefix of the recorded twin.")
@click.option("--port", "-p", default=8001, show_default=True, type=click.IntRange(0, 65535))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--headless", is_flag=True,
              help="No server: replay as fast as possible, print the alerts by code against the recorded "
                   "twin's, exit.")
@click.option("--stations", default=None, help="With --headless: station ids, comma-separated (default all).")
@click.option("--from", "from_", default=None, help="With --headless: compare the alerts first raised from "
              "then on, ISO 8601 (default: the first recorded event); the log before it is replayed too.")
@click.option("--to", default=None, help="With --headless: ... and up to then, where the replay stops "
              "(default: the last recorded event).")
@click.option("--settings", "settings_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="With --headless: a YAML mapping of detector settings (twin/settings.py fields), as a "
                   "scenario's `settings`.")
@click.option("--report", default=None, type=click.Path(dir_okay=False),
              help="With --headless: write the replay's alerts and both differences as JSON.")
@click.option("--verbose", "-v", is_flag=True)
def replay(redis_url: str | None, data_dir: str, prefix: str, port: int, host: str, headless: bool,
           stations: str | None, from_: str | None, to: str | None, settings_file: str | None,
           report: str | None, verbose: bool) -> None:
    """Replay a recorded range of a twin's input log into a fresh twin and serve its UI (/replay picks
    the stations, the range and the speed; every page says it is a replay).

    With --headless, replay it as fast as possible without a server, optionally with other detector
    settings, and compare the alerts with those the recorded twin raised: what other thresholds would
    have raised on the same data."""
    _setup_logging(verbose)
    from twin.app_runner import HeadlessReplay, ServeOptions, run_replay, run_replay_headless

    options = ServeOptions(redis_url=redis_url, data_dir=Path(data_dir), prefix=prefix, port=port, host=host)
    if not headless:
        given = [name for name, value in (("--stations", stations), ("--from", from_), ("--to", to),
                                          ("--settings", settings_file), ("--report", report)) if value]
        if given:
            raise click.UsageError(f"{', '.join(given)} go with --headless; on the server, the /replay page "
                                   "and POST /api/v1/replay choose them")
        try:
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(run_replay(options))
        except LookupError as exc:
            raise click.ClickException(str(exc)) from exc
        return
    overrides = _settings_file(settings_file) if settings_file else {}
    job = HeadlessReplay(stations=[s.strip() for s in stations.split(",") if s.strip()] if stations else None,
                         start_ts=_parse_start(from_) if from_ else None,
                         end_ts=_parse_start(to) if to else None, settings=overrides,
                         report=Path(report) if report else None)
    try:
        asyncio.run(run_replay_headless(options, job, echo=click.echo))
    except (LookupError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc


def _settings_file(path: str) -> dict[str, Any]:
    """A YAML mapping of TwinSettings overrides, checked here so that a typo is named before the replay."""
    import yaml
    from pydantic import ValidationError

    from twin.settings import TwinSettings

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise click.BadParameter(f"{path}: not YAML: {exc}", param_hint="--settings") from exc
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path}: expected a mapping of settings", param_hint="--settings")
    try:
        TwinSettings(**data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise click.BadParameter(f"{path}: {problems}", param_hint="--settings") from exc
    return data


@main.command()
@click.option("--serve", "serve_", is_flag=True, required=True,
              help="Expose every simulated device over its protocol (required: the in-process feed is "
                   "`fueltwin demo`).")
@click.option("--stations", "-n", default=2, show_default=True, type=click.IntRange(1, 500))
@click.option("--scenario", "scenario_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Play a scenario's district and faults (its start, seed and duration).")
@click.option("--speed", default=1.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Simulated seconds per wall second.")
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--start", default=None, help="Simulated start, ISO 8601 (default: now).")
@click.option("--reading-interval", default=10.0, show_default=True, type=click.FloatRange(min=1))
@click.option("--poll-interval", default=None, type=click.FloatRange(min=0.01),
              help="Poll interval written into the configuration for every device (default: the profile's).")
@click.option("--config-out", default="fueltwin-stations.yaml", show_default=True,
              type=click.Path(dir_okay=False), help="Where to write the matching station configuration.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the device servers listen on.")
@click.option("--vapor-via", type=click.Choice(["hj212", "modbus", "mixed"]), default="hj212",
              show_default=True,
              help="How vapor-recovery monitors report: uploading over HJ 212 to `serve --config`'s "
                   "receiving server, as Modbus devices it polls (profile MB-VRM), or dealt in turn.")
@click.option("--hj212-port", default=None, type=click.IntRange(1, 65535),
              help="Port the HJ 212 monitors upload to (written into the configuration; default: one free "
                   "now).")
@click.option("--verbose", "-v", is_flag=True)
def simulate(serve_: bool, stations: int, scenario_file: str | None, speed: float, seed: int,
             start: str | None, reading_interval: float, poll_interval: float | None, config_out: str,
             host: str, vapor_via: str, hj212_port: int | None, verbose: bool) -> None:
    """Simulate stations whose devices speak Modbus TCP (and OPC UA, TLS-350 where installed) on
    loopback ports, and write the station configuration that `fueltwin serve --config` reads."""
    _setup_logging(verbose)
    import time as _time

    from simulators.serve import run_served

    scn = None
    if scenario_file:
        from twin.scenarios import ScenarioError, load_scenario

        try:
            scn = load_scenario(scenario_file)
        except ScenarioError as exc:
            raise _BadScenario(str(exc)) from exc
    start_ts = _parse_start(start) if start else float(int(_time.time()))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_served(stations=stations, seed=seed, start_ts=start_ts, speed=speed,
                               reading_interval_s=reading_interval, poll_interval_s=poll_interval,
                               config_out=Path(config_out), host=host, scenario=scn, vapor_via=vapor_via,
                               hj212_port=hj212_port))


@main.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, envvar="FUELTWIN_URL",
              help="The running twin (fueltwin demo / a live twin) taking the documents [env FUELTWIN_URL].")
@click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(min=1))
def import_documents(file: str, url: str, timeout: float) -> None:
    """Import documents from a CSV FILE (purchase orders, invoices, declarations, prices).

    The twin validates each row: a bad row is rejected with its line number and reason (and kept in the
    dead letters); the good rows are taken. Exit status 0 if every row was taken, 1 if some were
    rejected, 2 if the twin could not be reached. Columns: see bridges/documents.py.
    """
    import json
    import urllib.error
    import urllib.request

    data = Path(file).read_bytes()
    request = urllib.request.Request(url.rstrip("/") + "/api/v1/documents/csv", data=data, method="POST",
                                     headers={"Content-Type": "text/csv; charset=utf-8"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - the user's own twin
            result = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        click.echo(f"{file}: the twin refused the file: {exc.code} {exc.read().decode(errors='replace')}",
                   err=True)
        sys.exit(2)
    except (urllib.error.URLError, OSError) as exc:
        click.echo(f"{file}: cannot reach the twin at {url}: {exc}", err=True)
        sys.exit(2)
    for r in result["results"]:
        if not r["accepted"]:
            click.echo(f"{file}: {r['reason']}", err=True)
    click.echo(f"{file}: {result['accepted']} document(s) taken, {result['rejected']} rejected")
    sys.exit(0 if result["rejected"] == 0 else 1)


# --------------------------------------------------------------------------------------------------
# Scenarios


class _BadScenario(click.ClickException):
    """A scenario file that cannot be used: exit status 2, like any other usage error."""

    exit_code = 2

    def show(self, file: object = None) -> None:
        click.echo(self.format_message(), err=True)


@main.group(context_settings={"help_option_names": ["-h", "--help"]})
def scenario() -> None:
    """Fault scenarios: inject faults into a simulated district and score what the twin detects.

    The format is documented in docs/scenarios.md; the suite is in scenarios/.
    """


@scenario.command("run")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--seeds", default=1, show_default=True, type=click.IntRange(1, 10_000),
              help="Run each scenario with its seed, seed+1, …, seed+N-1 (Pd and false-alarm rates).")
@click.option("--runtime", default="local", show_default=True, type=RUNTIMES,
              help="Actor runtime of the twin.")
@click.option("--shards", default=None, type=click.IntRange(1, 256),
              help="Shard count (default 4 local, 2 ray).")
@click.option("--report", "report_path", default=None, type=click.Path(dir_okay=False),
              help="Write the full JSON report here.")
@click.option("--jobs", "-j", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Processes (local runtime): runs in parallel, or with fewer runs than jobs each "
                   "run's stations spread over them.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
def scenario_run(files: tuple[str, ...], seeds: int, runtime: str, shards: int | None,
                 report_path: str | None, jobs: int, quiet: bool) -> None:
    """Run scenario FILES (or folders of them) in event time as fast as possible and score them.

    Prints a table; exits 0 only if every expectation of every run is met and nothing else was raised
    (1 otherwise, 2 if a file is invalid).
    """
    import json

    from twin.scenario_runner import format_throughput, load_all, run_suite
    from twin.scoring import format_table

    scenarios, problems = load_all(files, seeds)
    if problems:
        raise _BadScenario("\n".join(problems))
    if not scenarios:
        raise _BadScenario("no scenario files found in " + ", ".join(files))
    if jobs > 1 and runtime != "local":
        raise click.BadParameter("--jobs > 1 needs the local runtime (Ray spreads a run over processes "
                                 "itself)", param_hint="--jobs")
    if not quiet:
        runs = len(scenarios) * seeds
        click.echo(f"{len(scenarios)} scenario(s) × {seeds} seed(s) = {runs} run(s), {runtime} runtime"
                   + (f", {jobs} jobs" if jobs > 1 else ""), err=True)
    report = run_suite(scenarios, seeds=seeds, runtime=runtime, jobs=jobs, shards=shards, progress=not quiet)
    if report_path:
        Path(report_path).parent.mkdir(parents=True, exist_ok=True)
        Path(report_path).write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n",
                                     encoding="utf-8")
    click.echo(format_table(report["summary"]))
    click.echo(format_throughput(report["throughput"]))
    for run in report["runs"]:
        if run.get("error"):
            click.echo(f"{run['scenario']} seed {run['seed']}: the run failed: "
                       f"{run['error'].strip().splitlines()[-1]}", err=True)
        elif run["figures"]["rejected"]:
            click.echo(f"{run['scenario']} seed {run['seed']}: {run['figures']['rejected']} events rejected "
                       f"or crashed the twin: {'; '.join(run['figures']['rejected_reasons'][:3])}", err=True)
    if report_path:
        click.echo(f"report: {report_path}", err=True)
    sys.exit(0 if report["passed"] else 1)


@scenario.command("list")
@click.argument("directory", default="scenarios", type=click.Path(exists=True, file_okay=False))
def scenario_list(directory: str) -> None:
    """List the scenarios in DIRECTORY (default ./scenarios): what they inject and expect.

    Exits 1 if a file does not load.
    """
    from twin.scenario_runner import scenario_files
    from twin.scenarios import ScenarioError, fmt_duration, load_scenario

    rows, bad = [], []
    for path in scenario_files([directory]):
        try:
            s = load_scenario(path)
        except ScenarioError as exc:
            bad.append(str(exc))
            rows.append([path.name, "-", "-", "-", "INVALID", "-"])
            continue
        st = s.district.stations
        stations = str(st) if isinstance(st, int) else f"{len(st)} listed"
        faults = ", ".join(sorted({f["type"] for f in s.faults})) or "none (healthy)"
        expect = ", ".join(f"{e.alert}≤{fmt_duration(e.within)}" for e in s.expect) or "nothing"
        rows.append([path.name, s.name, fmt_duration(s.duration), stations, faults, expect])
    header = ["file", "name", "duration", "stations", "faults", "expects"]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    for r in [header, ["-" * w for w in widths], *rows]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    if not rows:
        click.echo(f"(no *.yaml files in {directory})")
    for message in bad:
        click.echo(message, err=True)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
