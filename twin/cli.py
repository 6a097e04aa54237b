"""The ``fueltwin`` command: the product's front door.

``demo`` composes everything (embedded Redis, runtime, simulated district, server); ``serve`` runs the
API on an existing Redis. The CLI is the one place that wires every layer together, so it imports ui/
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

import click

from twin.timeutil import CST

log = logging.getLogger("fueltwin")

RUNTIMES = click.Choice(["local", "ray"])


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("uvicorn.access", "websockets", "ray"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


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
@click.option("--verbose", "-v", is_flag=True)
def demo(stations: int, speed: float, port: int, host: str, runtime: str, shards: int | None, seed: int,
         start: str | None, reading_interval: float, data_dir: str, verbose: bool) -> None:
    """Run a simulated district's live twin with its web UI (embedded Redis, local runtime)."""
    _setup_logging(verbose)
    from twin.app_runner import DemoOptions, run_demo

    options = DemoOptions(stations=stations, speed=speed or None, port=port, host=host, runtime=runtime,
                          shards=shards, seed=seed, start_ts=_parse_start(start),
                          reading_interval_s=reading_interval, data_dir=Path(data_dir))
    data = Path(data_dir)
    if data.exists():
        shutil.rmtree(data)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_demo(options))


@main.command()
@click.option("--redis-url", envvar="FUELTWIN_REDIS_URL", default=None,
              help="Redis to serve from [env FUELTWIN_REDIS_URL]; without it, the embedded one in --data.")
@click.option("--data", "data_dir", default="./fueltwin-data", show_default=True,
              type=click.Path(file_okay=False), help="Folder of the embedded Redis (kept).")
@click.option("--prefix", default="ft", show_default=True, help="Key prefix of the twin in Redis.")
@click.option("--port", "-p", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--verbose", "-v", is_flag=True)
def serve(redis_url: str | None, data_dir: str, prefix: str, port: int, host: str, verbose: bool) -> None:
    """Serve the API and UI over a twin already recorded in Redis (no simulator)."""
    _setup_logging(verbose)
    from twin.app_runner import ServeOptions, run_serve

    options = ServeOptions(redis_url=redis_url, data_dir=Path(data_dir), prefix=prefix, port=port, host=host)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_serve(options))
    except LookupError as exc:
        raise click.ClickException(str(exc)) from exc


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
