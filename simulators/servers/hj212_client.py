"""A simulated vapor-recovery online monitor that uploads over HJ 212-2017, as a real one does.

Unlike the gauge and dispenser simulators (devices that serve, ``simulators/servers/``), an HJ 212
monitor is the *client*: it connects to the platform's receiving server (``bridges/hj212.py``) and
uploads. It follows the same driving contract so ``fueltwin simulate --serve`` can treat it alike:

    Hj212MonitorClient(station, mn, password, host, port, nozzles=…)
    apply(events)            # the simulator's raw events of its station; vapor.fill / vapor.env are queued
    async start() -> str     # connect and upload in the background; returns the endpoint it uploads to
    async flush(timeout_s)   # wait until everything queued has been acknowledged
    async stop()

Each fill goes as real-time data (CN 2011: DataTime = fill end, BeginTime = fill start), each system
sample as minute data (CN 2051), the items of docs/hj212.md. Every upload asks for a reply (Flag 5): an
upload not acknowledged within ``reply_timeout_s`` is sent again with the same QN (the server drops the
repeat but answers it); after ``retries`` the connection is dropped and made again, with backoff, and
the queue is kept — so a platform restart loses nothing (GB 20952 E.3.5: missed uploads are
back-filled). A refusal (CN 9011) is logged, counted and not retried. This is an edge: it reads the wall
clock for QNs and timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridges.base import Backoff
from bridges.hj212 import ItemCodes, build_frame, crc16, format_qn, format_time
from twin.aio import cancel_and_wait

log = logging.getLogger(__name__)

_STATE_CODE = {"stopped": "0", "running": "1", "fault": "2"}
#: ST of the uploads: 27, VOC monitoring (HJ 212-2017 system codes).
ST_VOC = "27"


@dataclass(slots=True)
class ClientStats:
    queued: int = 0
    sent: int = 0
    acked: int = 0
    refused: int = 0
    retransmits: int = 0
    reconnects: int = 0


class Hj212MonitorClient:
    def __init__(self, station: str, mn: str, password: str, host: str, port: int, *,
                 nozzles: Mapping[str, str] | None = None, codes: ItemCodes | None = None,
                 reply_timeout_s: float = 5.0, retries: int = 3, connect_timeout_s: float = 5.0):
        self.station = station
        self.mn = mn
        self.password = password
        self.host, self.port = host, port
        #: Nozzle id → gun number as uploaded (default: the digits of the id, N4 → 4).
        self.nozzles = dict(nozzles or {})
        self.codes = codes or ItemCodes()
        self.reply_timeout_s = reply_timeout_s
        self.retries = retries
        self.connect_timeout_s = connect_timeout_s
        self.stats = ClientStats()
        self._queue: deque[tuple[str, str]] = deque()  # (QN, data segment)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._last_qn_ms = 0

    # ---- building uploads ------------------------------------------------------------------------------

    def _qn(self) -> str:
        ms = max(int(time.time() * 1000), self._last_qn_ms + 1)  # unique and rising per monitor
        self._last_qn_ms = ms
        return format_qn(ms / 1000.0)

    def _gun(self, nozzle: str) -> str:
        if nozzle in self.nozzles:
            return self.nozzles[nozzle]
        digits = "".join(ch for ch in nozzle if ch.isdigit())
        return digits or nozzle

    def segment(self, ev: Mapping[str, Any], qn: str) -> str | None:
        c = self.codes
        head = f"QN={qn};ST={ST_VOC};CN={{cn}};PW={self.password};MN={self.mn};Flag=5;CP=&&"
        if ev["kind"] == "vapor.fill":
            parts = [f"DataTime={format_time(ev['ts'])}"]
            if ev.get("fill_start_ts") is not None:
                parts.append(f"BeginTime={format_time(ev['fill_start_ts'])}")
            parts += [f"{c.nozzle}-Rtd={self._gun(ev['entity'])}",
                      f"{c.a_l}-Rtd={ev['a_l']:.3f},{c.a_l}-Flag=N",
                      f"{c.vapor_volume}-Rtd={ev['vapor_l']:.2f}",
                      f"{c.fuel_volume}-Rtd={ev['liquid_l']:.2f}"]
            return head.format(cn="2011") + ";".join(parts) + "&&"
        if ev["kind"] == "vapor.env":
            parts = [f"DataTime={format_time(ev['ts'])}",
                     f"{c.pressure}-Avg={ev['pressure_pa']:.1f},{c.pressure}-Flag=N"]
            state = _STATE_CODE.get(ev.get("processor_state", "absent"))
            if state is not None:
                parts.append(f"{c.processor_state}-Avg={state}")
            if ev.get("outlet_g_m3") is not None:
                parts.append(f"{c.processor_outlet}-Avg={ev['outlet_g_m3']:.2f}")
            if ev.get("voc_umol_mol") is not None:
                parts.append(f"{c.voc}-Avg={ev['voc_umol_mol']:.1f}")
            return head.format(cn="2051") + ";".join(parts) + "&&"
        return None

    def apply(self, events: list[dict[str, Any]]) -> None:
        for ev in events:
            if ev.get("station") != self.station or ev.get("kind") not in ("vapor.fill", "vapor.env"):
                continue
            qn = self._qn()
            seg = self.segment(ev, qn)
            if seg is not None:
                self._queue.append((qn, seg))
                self.stats.queued += 1
        if self._queue:
            self._idle.clear()
            self._wake.set()

    # ---- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> str:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"hj212-client-{self.mn}")
        return f"tcp://{self.host}:{self.port}"

    async def flush(self, timeout_s: float = 30.0) -> None:
        async with asyncio.timeout(timeout_s):
            await self._idle.wait()

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    # ---- uploading ---------------------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = Backoff()
        while True:
            try:
                async with asyncio.timeout(self.connect_timeout_s):  # wait_for may lose stop()'s cancel
                    reader, writer = await asyncio.open_connection(self.host, self.port)
            except (OSError, TimeoutError):
                self.stats.reconnects += 1
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            try:
                await self._upload(reader, writer)
            except (OSError, ConnectionError, TimeoutError, asyncio.IncompleteReadError) as exc:
                log.info("HJ 212 monitor %s: link lost (%s); reconnecting", self.mn, exc)
                self.stats.reconnects += 1
            finally:
                writer.close()
                with contextlib.suppress(OSError, ConnectionError):
                    await writer.wait_closed()
            await asyncio.sleep(backoff.next_delay())

    async def _upload(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            qn, seg = self._queue[0]
            for attempt in range(self.retries + 1):
                if attempt:
                    self.stats.retransmits += 1
                writer.write(build_frame(seg))
                await writer.drain()
                self.stats.sent += 1
                reply = await self._reply(reader, qn)
                if reply is not None:
                    break
            else:
                raise TimeoutError(f"no reply to QN {qn} after {self.retries + 1} tries")
            self._queue.popleft()
            if "CN=9014" in reply:
                self.stats.acked += 1
            else:
                self.stats.refused += 1
                log.warning("HJ 212 monitor %s: upload %s refused: %s", self.mn, qn, reply)

    async def _reply(self, reader: asyncio.StreamReader, qn: str) -> str | None:
        """The reply to ``qn`` (a data segment), or None on timeout; replies to older QNs are skipped."""
        deadline = time.monotonic() + self.reply_timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                async with asyncio.timeout(left):
                    line = await reader.readuntil(b"\r\n")
            except TimeoutError:
                return None
            if not line.startswith(b"##") or len(line) < 12:
                continue
            data, crc = line[6:-6], line[-6:-2]
            if f"{crc16(data):04X}".encode() != crc.upper():
                continue
            text = data.decode("ascii", "replace")
            if f"QN={qn};" in text:
                return text
