"""Run every bridge of a station configuration against one sink (``TwinService.ingest``).

Each device is its own task, so a slow or dead device delays nobody else. Bridges hand their events to
one queue; a single feeder drains whatever has arrived and ingests it as one batch (no waiting for a
batch to fill: latency stays one ingest, and under load batches grow on their own).

The twin judges staleness by event time (COMM_LOSS when a tank's last reading is ``stale_tank_s``
behind the station's ``clock.tick`` watermark), and a dead device sends nothing, so the edge has to keep
event time moving: the runner sends every station a ``clock.tick`` each ``tick_interval_s`` from the
:class:`EdgeClock`. With ``time: wall`` (field devices) that is the wall clock. With ``time: device``
(a simulator running faster than real time) it is the newest device time seen anywhere in the district,
advanced by the wall time since — so a silent station falls behind its neighbours' clocks exactly as it
would in the in-process feed. Ticks then start only once some device has told the time.

Stations whose configuration lists an HJ 212 vapor monitor are served by one
:class:`bridges.hj212.Hj212Server` on the configuration's ``hj212.listen`` address: the monitors connect
and upload, and their events join the same queue as the devices' (so the twin sees one stream in one
order); what it refuses goes to ``dead_letters``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bridges.base import SourceSequence
from bridges.config import ConfigError, DeviceConfig, SiteConfig, TimeSource
from bridges.hj212 import DeadLetterSink, Hj212Server

log = logging.getLogger(__name__)

#: protocol → (module, bridge class).
BRIDGES = {"modbus": ("bridges.modbus", "ModbusBridge"), "opcua": ("bridges.opcua", "OpcUaBridge"),
           "tls350": ("bridges.tls", "Tls350Bridge")}

IngestSink = Callable[[list[Any], float], Awaitable[Any]]


async def _cancel_all(tasks: list[asyncio.Task[Any]], rounds: int = 20, wait_s: float = 0.5) -> None:
    """Cancel the tasks and wait until they are done, cancelling again those that are not.

    Once is not always enough on Python 3.11: ``asyncio.wait_for`` loses a cancellation that arrives
    just as its inner await ends (fixed in 3.12) — seen as ``serve --config`` hanging at Ctrl-C on a
    loaded machine. Our bridges no longer call it (``bridges.base.wait_for``), but asyncua and pymodbus
    do, inside their clients. Bounded: a task still running after ``rounds`` is left to the loop's end."""
    pending = {t for t in tasks if not t.done()}
    for _ in range(rounds):
        if not pending:
            break
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=wait_s)
    for t in tasks:
        if t.done() and not t.cancelled():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                t.result()
    if pending:
        names = ", ".join(t.get_name() for t in pending)
        log.warning("%d bridge task(s) did not stop: %s", len(pending), names)


class EdgeClock:
    """Event time at the edge: the wall clock, or the devices' own clocks (see module docstring)."""

    def __init__(self, source: TimeSource = "wall", wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic):
        self.source = source
        self._wall = wall
        self._mono = monotonic
        self._device: float | None = None
        self._seen = 0.0

    @property
    def known(self) -> bool:
        return self.source == "wall" or self._device is not None

    def now(self) -> float:
        if self.source == "wall" or self._device is None:
            return self._wall()
        return self._device + (self._mono() - self._seen)

    def observe(self, ts: float) -> None:
        """A device said it is ``ts`` (device mode): the clock never goes back."""
        if self.source != "device":
            return
        if self._device is None or ts > self.now():
            self._device = float(ts)
            self._seen = self._mono()


def bridge_class(protocol: str) -> type:
    try:
        module, name = BRIDGES[protocol]
    except KeyError:
        raise ConfigError(f"no bridge for protocol {protocol!r}") from None
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"the {protocol} bridge ({module}.{name}) is not available: {exc}") from None


class BridgeRunner:
    """All bridges of a configuration, a feeder into ``sink(events, now)`` and the stations' ticks."""

    def __init__(self, config: SiteConfig, sink: IngestSink, *, clock: EdgeClock | None = None,
                 tick_interval_s: float = 1.0, queue_size: int = 10_000,
                 dead_letters: DeadLetterSink | None = None):
        self.config = config
        self.sink = sink
        self.clock = clock or EdgeClock(config.time)
        self.tick_interval_s = tick_interval_s
        self.queue: asyncio.Queue[list[Any]] = asyncio.Queue(maxsize=queue_size)
        self.bridges: list[Any] = [self._build(d) for d in config.devices]
        self.hj212: Hj212Server | None = None
        self._hj212_listening = False
        if config.monitors:
            host, port = config.hj212_listen or ("127.0.0.1", 0)
            self.hj212 = Hj212Server(config.monitors, self._enqueue, dead_letters=dead_letters, host=host,
                                     port=port)
        self._ticks = {s.id: SourceSequence(f"edge:{s.id}:clock", int(time.time() * 1000))
                       for s in config.district.stations}
        self.batches = 0
        self.events = 0

    def _build(self, device: DeviceConfig) -> Any:
        cls = bridge_class(device.protocol)
        station = self.config.district.station(device.station)
        return cls(device, device.profile, station, self._enqueue, clock=self.clock.now)

    async def _enqueue(self, events: list[Any]) -> None:
        for ev in events:
            ts = ev.get("ts") if isinstance(ev, dict) else None
            if isinstance(ts, (int, float)) and ts > 0:
                self.clock.observe(ts)
        await self.queue.put(events)

    async def check(self, timeout_s: float = 5.0) -> list[str]:
        """Ask every device once whether it serves its profile's points, all at the same time.

        A device that answers but refuses a point raises (a configuration error: stop at start-up);
        a device that cannot be reached is only reported (the bridge will keep trying)."""
        checks = [b for b in self.bridges if hasattr(b, "check")]
        results = await asyncio.gather(*(asyncio.wait_for(b.check(), timeout_s + 1.0) for b in checks),
                                       return_exceptions=True)
        mismatches, unreachable = [], []
        for bridge, res in zip(checks, results, strict=True):
            if isinstance(res, BaseException):
                if type(res).__name__ == "ProfileMismatch":
                    mismatches.append(str(res))
                else:
                    unreachable.append(f"{bridge.source}: not reachable now ({type(res).__name__}: {res})")
        if mismatches:
            raise ConfigError("\n".join(mismatches))
        return unreachable

    def health(self) -> list[dict[str, Any]]:
        out = []
        for b in self.bridges:
            h = b.health()
            out.append({k: getattr(h, k) for k in h.__slots__})
        return out

    async def start_hj212(self) -> int | None:
        """Listen for the HJ 212 monitors (if any); the port. :meth:`run` does it if not done before."""
        if self.hj212 is None:
            return None
        if not self._hj212_listening:
            await self.hj212.start()
            self._hj212_listening = True
        return self.hj212.port

    async def run(self) -> None:
        await self.start_hj212()  # OSError (the port is taken): the caller's to report
        tasks = [asyncio.create_task(b.run(), name=f"bridge {b.source}") for b in self.bridges]
        tasks.append(asyncio.create_task(self._feed(), name="bridge feeder"))
        tasks.append(asyncio.create_task(self._tick(), name="edge ticks"))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                t.result()  # a bug in the feeder or ticker: let it be seen
        finally:
            if self.hj212 is not None and self._hj212_listening:
                self._hj212_listening = False
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.hj212.stop())
            await _cancel_all(tasks)

    async def _feed(self) -> None:
        while True:
            batch = list(await self.queue.get())
            while not self.queue.empty():
                batch.extend(self.queue.get_nowait())
            try:
                await self.sink(batch, self.clock.now())
            except Exception:  # noqa: BLE001 - the twin's trouble must not stop the bridges
                log.exception("ingest of %d bridged events failed", len(batch))
            self.batches += 1
            self.events += len(batch)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval_s)
            if not self.clock.known:
                continue
            ts = self.clock.now()
            await self.queue.put([{"kind": "clock.tick", "ts": ts, "station": sid, "entity": "",
                                   "source": seq.source, "seq": seq.take(), "quality": "good"}
                                  for sid, seq in self._ticks.items()])
