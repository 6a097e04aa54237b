"""What every field bridge shares: where its events go, how it numbers them, how it waits to reconnect.

A bridge turns one device's protocol into the normalized events of ``twin/events.py`` (DESIGN.md,
principle 2) and hands them, as plain dicts, to an :data:`EventSink` — in production
``TwinService.ingest``. Bridges sit at the edge, so unlike ``twin/`` they may read the wall clock: to
pace polling, to time reconnects, and to stamp an event when the device has no clock of its own.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

async def wait_for(aw: Awaitable[T], timeout: float | None) -> T:
    """``asyncio.wait_for`` that never swallows a cancellation.

    On Python 3.11 ``asyncio.wait_for`` loses a cancel that arrives as the awaited thing finishes: it
    returns the result, or raises the thing's own error (a closed connection, say) in place of the
    cancel, and the task goes on. A bridge that does that never stops; measured: ``serve --config`` hung
    at Ctrl-C in 1 run of 2 under load, and a TLS test's teardown timed out (session 17). Checking
    ``cancelling()`` after a result was not enough, as the error case shows (tests/test_bridges_base.py).
    ``asyncio.timeout`` awaits in the calling task itself, so a cancel is delivered like any other (it is
    what 3.12's ``wait_for`` is built on)."""
    async with asyncio.timeout(timeout):
        return await aw


class ProfileMismatch(RuntimeError):
    """The device does not serve the points its profile names (wrong profile, unit, namespace, address
    map or channels): a configuration problem, not a device fault."""


#: A device that does not match its profile is retried this rarely (someone may fix the configuration).
MISMATCH_RETRY_S = 30.0


def failure_delay(health: BridgeHealth, exc: Exception, backoff: Backoff, log: logging.Logger) -> float:
    """Record why a bridge's connection ended and say how long to wait before the next attempt: the
    same for every protocol, so a device fault never escapes ``run()`` and is always counted."""
    health.errors += 1
    if isinstance(exc, ProfileMismatch):
        health.last_error = str(exc)
        log.error("%s", exc)
        return MISMATCH_RETRY_S
    health.last_error = f"{type(exc).__name__}: {exc}"[:300]
    log.debug("%s: %s", health.source, health.last_error)
    return backoff.next_delay()


class ReconnectLoop:
    """A bridge's life: connect, check the device against its profile, serve until the link fails, then
    count why, back off and start again — until cancelled. The same for every protocol; each provides
    the steps (and the attributes named in the annotations). The link is closed however ``run`` ends,
    shielded on cancellation so that a closing session is not left half-open."""

    _health: BridgeHealth
    backoff: Backoff
    source: str

    async def _connect(self) -> None:
        raise NotImplementedError

    async def _verify(self) -> None:
        raise NotImplementedError

    async def _serve(self) -> None:
        """Read the device until the link fails (raises) or the task is cancelled."""
        raise NotImplementedError

    async def _disconnect(self) -> None:
        raise NotImplementedError

    def _peer(self) -> str:
        raise NotImplementedError

    async def run(self) -> None:
        """Serve until cancelled; device trouble is counted in ``health()``, never raised."""
        h = self._health
        log = logging.getLogger(type(self).__module__)
        first = True
        while True:
            try:
                await self._connect()
                await self._verify()
                if not first:
                    h.reconnects += 1
                    log.info("%s: reconnected to %s", self.source, self._peer())
                first = False
                await self._serve()
            except asyncio.CancelledError:
                await asyncio.shield(self._disconnect())
                raise
            except Exception as exc:  # noqa: BLE001 - a device fault never escapes run()
                delay = failure_delay(h, exc, self.backoff, log)
            h.connected = False
            await self._disconnect()
            await asyncio.sleep(delay)


class PollingLoop(ReconnectLoop):
    """The pacing of a polled bridge (Modbus, TLS-350): one ``poll_once`` per interval, counted, with a
    good poll marking the link up and resetting the reconnect backoff."""

    clock: Callable[[], float]
    poll_interval_s: float
    polls: int

    async def poll_once(self) -> None:
        raise NotImplementedError

    async def _serve(self) -> None:
        self._health.connected = True  # the device answered every inquiry of its profile
        await self._poll_forever()

    async def _poll_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await self.poll_once()
            self._health.connected = True
            self._health.last_ok_ts = self.clock()
            self.backoff.reset()
            self.polls += 1
            await asyncio.sleep(max(0.0, self.poll_interval_s - (loop.time() - t0)))


#: Receives a batch of raw event dicts (the ``twin/events.py`` language, not yet validated).
EventSink = Callable[[list[dict[str, Any]]], Awaitable[Any]]


class Bridge(Protocol):
    """One connection to one device, run until cancelled; device trouble never escapes ``run``."""

    source: str

    async def run(self) -> None: ...

    def health(self) -> BridgeHealth: ...


@dataclass(slots=True)
class BridgeHealth:
    """What a bridge reports about its device, for the API and for COMM_LOSS decisions."""

    source: str
    connected: bool = False
    last_ok_ts: float | None = None
    reconnects: int = 0
    errors: int = 0
    last_error: str = ""
    bad_values: int = 0


@dataclass(slots=True)
class SourceSequence:
    """Per-source sequence numbers (``seq``): the twin de-duplicates and detects gaps with them."""

    source: str
    next_seq: int = 0

    def take(self) -> int:
        seq = self.next_seq
        self.next_seq += 1
        return seq


@dataclass(slots=True)
class Backoff:
    """Exponential reconnect delay with jitter, capped so a restarted device is back within ~10 s."""

    initial_s: float = 0.2
    cap_s: float = 5.0
    factor: float = 2.0
    jitter: float = 0.2
    _delay: float = field(default=0.0, init=False)
    _rng: random.Random = field(default_factory=random.Random, init=False)

    def next_delay(self) -> float:
        self._delay = self.initial_s if self._delay == 0.0 else min(self.cap_s, self._delay * self.factor)
        return self._delay * (1.0 + self.jitter * (2.0 * self._rng.random() - 1.0))

    def reset(self) -> None:
        self._delay = 0.0
