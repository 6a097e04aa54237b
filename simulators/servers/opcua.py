"""A simulated OPC UA device: an asyncua server whose address space is laid out by an OpcUaProfile.

The server defines exactly the nodes its profile names for the channels it has (plus the parent objects
of dotted string ids, so a browser such as ``uals`` sees a tree), each with the profile's built-in
data type. Values come from the simulator's events through :meth:`OpcUaDeviceServer.apply`, stamped
with the event's time as the OPC UA ``SourceTimestamp`` — the device's own clock, which under an
accelerated simulation runs ahead of the wall clock. A node not yet written holds no value with status
``BadWaitingForInitialData`` (OPC UA Part 4 §7.34.2), as a device does before its first measurement.

Transactions go into the profile's ring buffer: the record's fields first, then the counter, so a
client that sees the counter move reads a complete record. The server keeps its address space across
:meth:`stop` / :meth:`start` (a device restart keeps its log in non-volatile memory), and ``apply``
keeps working while it is stopped, so records written meanwhile are there for the bridge to read back.

Tests and fault scenarios can :meth:`set_status` of a point (a sensor failure: ``BadSensorFailure``)
or :meth:`poke` a raw value (garbage such as NaN).

Start-up cost: an asyncua server fills the standard address space (namespace 0, some thousand nodes)
from generated code, about 2 s of CPU each — 80 s for the 40 devices of 20 OPC UA stations, and
starting them concurrently does not help (it is CPU, not waiting). asyncua can keep that address space
in a shelve file and load its nodes lazily (``Server.init(shelf_file)``, meant for slow devices): the
first server of a process fills it and writes the shelf into a private temporary directory, every
later one opens it read-only and starts in about 0.15 s. Each server unpickles its own copy of a node
when it touches it, so the servers share nothing mutable.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import shutil
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import Server, ua

from bridges.opcua_profile import BadValue, OpcUaProfile, UaPoint

log = logging.getLogger(__name__)

#: Placeholders written to a node before the device has measured anything.
_WAITING = ua.StatusCodes.BadWaitingForInitialData


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


_shelf: Path | None = None
#: One lock per event loop (tests run one loop each): the first server of a loop that finds no shelf fills it.
_shelf_locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}


async def _init_server(server: Server) -> None:
    """``server.init()`` with the standard address space from this process's shelf (module docstring)."""
    global _shelf
    if _shelf is not None:
        await server.init(_shelf)
        return
    loop = asyncio.get_running_loop()
    for other in [lp for lp in _shelf_locks if lp.is_closed()]:
        del _shelf_locks[other]
    async with _shelf_locks.setdefault(loop, asyncio.Lock()):
        if _shelf is not None:
            await server.init(_shelf)
            return
        folder = Path(tempfile.mkdtemp(prefix="fueltwin-uaspace-"))
        atexit.register(shutil.rmtree, folder, True)
        path = folder / "standard"
        await server.init(path)  # fills the address space and writes the shelf
        # asyncua looks for the shelf at the path itself (gdbm) or path.db (ndbm); the portable dbm.dumb
        # writes path.dat / path.dir, so an empty marker at the path lets it find the shelf next time.
        # dbm.whichdb still recognises the real files, whichever dbm wrote them.
        path.touch()
        _shelf = path


class OpcUaDeviceServer:
    """One simulated OPC UA device (a tank gauge console or a forecourt controller) on its own port."""

    def __init__(self, profile: OpcUaProfile, channels: Mapping[str, int], *, host: str = "127.0.0.1",
                 port: int = 0, path: str = "/fueltwin", name: str | None = None,
                 namespace_uri: str | None = None):
        self.profile = profile
        self.channels = dict(channels)
        self.host = host
        self.port = port
        self.path = path if path.startswith("/") else "/" + path
        self.name = name or f"fueltwin simulated {profile.model}"
        self.namespace_uri = namespace_uri or profile.namespace_uri
        self.ns = 0
        self._server: Server | None = None
        self._running = False
        self._counters: dict[int, int] = {}
        self._queue: asyncio.Queue[tuple[str, ua.DataValue] | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self.writes = 0
        tank = bool(profile.tank)
        self._kind_of = {eid: ("tank" if tank and profile.kind == "tank_gauge" else "nozzle")
                         for eid in self.channels}

    # ---- lifecycle -------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}{self.path}"

    async def start(self) -> str:
        """Listen (building the address space the first time); returns the endpoint URL."""
        if self._server is None:
            self._server = Server()
            await _init_server(self._server)
            self._server.set_server_name(self.name)
            self._server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
            self.ns = await self._server.register_namespace(self.namespace_uri)
            await self._build()
        self._server.set_endpoint(self.endpoint)
        await self._server.start()
        self.port = int(self._server.bserver.port)
        self._running = True
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop())
        log.info("OPC UA device %s listening on %s", self.profile.model, self.endpoint)
        return self.endpoint

    async def stop(self) -> None:
        """Stop listening (clients are disconnected); the address space and pending writes are kept."""
        if self._server is not None and self._running:
            self._running = False
            await self._server.stop()

    async def close(self) -> None:
        """Stop for good: also ends the writer task."""
        await self.stop()
        if self._writer is not None:
            self._queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer, 2.0)
            self._writer = None

    async def flush(self) -> None:
        """Wait until every value applied so far is in the address space."""
        if self._writer is None:
            if self._server is None:
                return
            self._writer = asyncio.create_task(self._write_loop())
        await self._queue.join()

    # ---- address space -------------------------------------------------------------------------

    def _channels(self, kind: str) -> list[int]:
        return sorted({ch for eid, ch in self.channels.items() if self._kind_of[eid] == kind})

    async def _build(self) -> None:
        assert self._server is not None
        srv, ns, p = self._server, self.ns, self.profile
        objects = srv.nodes.objects
        root = await objects.add_object(ua.NodeId(f"{p.model}", ns), ua.QualifiedName(p.model, ns))
        parents: dict[str, Any] = {}
        created: set[str] = set()

        async def parent_for(nid: ua.NodeId) -> tuple[Any, str]:
            if nid.NodeIdType != ua.NodeIdType.String or "." not in str(nid.Identifier):
                return root, str(nid.Identifier)
            parts = str(nid.Identifier).split(".")
            node = root
            for i in range(1, len(parts)):
                key = ".".join(parts[:i])
                if key not in parents:
                    parents[key] = await node.add_object(ua.NodeId(key, ns),
                                                         ua.QualifiedName(parts[i - 1], ns))
                node = parents[key]
            return node, parts[-1]

        async def add(point: UaPoint, ch: int = 0, slot: int = 0, value: Any = None) -> None:
            text = point.node_id(ns, ch, slot)
            if text in created:
                return
            created.add(text)
            nid = ua.NodeId.from_string(text)
            parent, name = await parent_for(nid)
            vtype = ua.VariantType[point.type]
            var = await parent.add_variable(nid, ua.QualifiedName(name, ns), _zero(point.type),
                                            varianttype=vtype)
            if value is None:
                await srv.write_attribute_value(var.nodeid, ua.DataValue(StatusCode=ua.StatusCode(_WAITING)))
            else:
                await srv.write_attribute_value(var.nodeid, ua.DataValue(ua.Variant(value, vtype)))

        tanks, nozzles = self._channels("tank"), self._channels("nozzle")
        for ch in tanks:
            for pt in (p.tank.points().values() if p.tank else ()):
                await add(pt, ch)
        for ch in nozzles:
            for pt in (p.nozzle.points().values() if p.nozzle else ()):
                await add(pt, ch)
        if p.device is not None:
            for ch in ((nozzles or tanks) if p.device_per_channel else [0]):
                for pt in p.device.points().values():
                    await add(pt, ch)
        ring = p.transactions
        if ring is not None:
            for ch in (nozzles if ring.per_channel else [0]):
                self._counters[ch] = 0
                await add(ring.counter, ch, value=ring.counter.encode(0))
                for slot in range(ring.slot_base, ring.slot_base + ring.size):
                    for pt in ring.record.points().values():
                        await add(pt, ch, slot)

    # ---- values ----------------------------------------------------------------------------------

    def _put(self, point: UaPoint, value: Any, ts: float, ch: int = 0, slot: int = 0,
             status: int | None = None) -> None:
        """Queue a write of an event value (or of a raw value / status, for fault injection)."""
        text = point.node_id(self.ns, ch, slot)
        stamp = _utc(ts)
        if status is not None:
            dv = ua.DataValue(StatusCode=ua.StatusCode(status), SourceTimestamp=stamp,
                              ServerTimestamp=datetime.now(UTC))
        else:
            dv = ua.DataValue(ua.Variant(value, ua.VariantType[point.type]), SourceTimestamp=stamp,
                              ServerTimestamp=datetime.now(UTC))
        self._queue.put_nowait((text, dv))

    def _put_event_value(self, point: UaPoint | None, value: Any, ts: float, ch: int = 0,
                         slot: int = 0) -> None:
        if point is None or value is None:
            return
        try:
            raw = point.encode(value)
        except (BadValue, TypeError, ValueError) as exc:
            log.warning("%s: cannot expose %r at %s: %s", self.profile.model, value, point.node, exc)
            return
        self._put(point, raw, ts, ch, slot)

    def apply(self, events: list[dict[str, Any]]) -> None:
        """Expose what the simulator's events say; events of entities this device does not serve are
        ignored. Writes are queued in order and applied by the server's writer task."""
        p = self.profile
        for ev in events:
            ch = self.channels.get(ev.get("entity", ""))
            if ch is None:
                continue
            kind, ts = ev.get("kind"), float(ev.get("ts", 0.0))
            if kind == "tank.reading" and p.tank is not None:
                for field, pt in p.tank.points().items():
                    self._put_event_value(pt, ev.get(field), ts, ch)
            elif kind == "nozzle.state" and p.nozzle is not None:
                for field, pt in p.nozzle.points().items():
                    self._put_event_value(pt, ev.get(field), ts, ch)
            elif kind == "nozzle.txn" and p.transactions is not None:
                self._append_txn(ev, ch, ts)
            elif kind == "device.info" and p.device is not None:
                dch = ch if p.device_per_channel else 0
                for field, pt in p.device.points().items():
                    self._put_event_value(pt, ev.get(field, ""), ts, dch)

    def _append_txn(self, ev: dict[str, Any], ch: int, ts: float) -> None:
        ring = self.profile.transactions
        assert ring is not None
        key = ch if ring.per_channel else 0
        number = self._counters.get(key, 0) + 1
        slot = ring.slot_of(number)
        values = dict(ev)
        values["nozzle"] = ch
        for field, pt in ring.record.points().items():
            self._put_event_value(pt, values.get(field), ts, key, slot)
        self._counters[key] = number % ring.modulus()
        self._put(ring.counter, ring.counter.encode(self._counters[key]), ts, key)

    def set_status(self, point: UaPoint, status: str | int, ts: float, ch: int = 0, slot: int = 0) -> None:
        """Give a node a status without a value, e.g. ``"BadSensorFailure"`` (a probe fault)."""
        code = getattr(ua.StatusCodes, status) if isinstance(status, str) else int(status)
        self._put(point, None, ts, ch, slot, status=code)

    def poke(self, point: UaPoint, raw: Any, ts: float, ch: int = 0, slot: int = 0) -> None:
        """Write a raw device value (no conversion): garbage for robustness tests."""
        self._put(point, raw, ts, ch, slot)

    async def _write_loop(self) -> None:
        assert self._server is not None
        srv = self._server
        while True:
            item = await self._queue.get()
            try:
                if item is None:
                    return
                text, dv = item
                await srv.write_attribute_value(ua.NodeId.from_string(text), dv)
                self.writes += 1
            except Exception:  # noqa: BLE001 - one bad write must not stop the device
                log.exception("%s: write failed", self.profile.model)
            finally:
                self._queue.task_done()


def _zero(type_name: str) -> Any:
    if type_name == "String":
        return ""
    if type_name == "DateTime":
        return datetime(2000, 1, 1, tzinfo=UTC)
    if type_name == "Boolean":
        return False
    if type_name in ("Float", "Double"):
        return 0.0
    return 0
