"""OPC UA bridge: subscribes to one device's nodes per its profile and turns data changes into events.

Why a subscription and not polling: the server samples and sends only what changed, at the profile's
publishing interval (100 ms by default), so a value change reaches the twin in about one interval
without the bridge asking. Monitored items use the ``StatusValueTimestamp`` trigger (OPC UA Part 4
§7.22.2), so a new measurement is reported even when the value repeats, and the points written
together by the device (level, water, temperature of one probe) arrive with one ``SourceTimestamp``:
the bridge emits a group once all its points carry the newest time, or one publishing interval after
its first change if the device stamps them differently.

Event time is the device's ``SourceTimestamp`` (its own clock), else the server's timestamp, else the
bridge's clock. Quality follows the OPC UA StatusCode: Good → ``good``, Uncertain → ``uncertain``,
Bad → the group's event is not sent to the twin as data but as a ``twin.events.Rejection`` with the
status and node in its reason (the twin counts and dead-letters it); so is a value the profile cannot
use (NaN, an unknown code, the wrong type, out of the plausible range). ``BadWaitingForInitialData``
is no fault — the device has not measured yet — and is skipped. The rest of the device is read as
usual.

Transactions are read from the device's ring buffer when its counter moves. The last record number
read lives in the bridge, not in the connection: after a reconnect the counter's first notification
makes the bridge read back every record written meanwhile (records overwritten before they could be
read are reported as a Rejection ``lost records``). History from before the bridge first connected is
not replayed, as in the Modbus bridge.

A server whose address space lacks the profile's nodes (or has them with other data types, or lacks
its namespace) does not match the profile: :class:`ProfileMismatch`, from :meth:`OpcUaBridge.check`
at start-up with the nodes named, and logged by :meth:`run`, which retries rarely.

``device`` is duck-typed (``bridges.config.DeviceConfig`` fits): ``id``, ``endpoint``
(``opc.tcp://host:port/path``), ``channels`` (tank or nozzle id → the device's channel number), and
optionally ``source`` (default ``opcua:<station>:<id>``), ``namespace`` (an index or a URI that
overrides the profile's ``namespace_uri``) and ``options`` (``publishing_interval_ms``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from asyncua import Client, ua

from bridges.base import (
    Backoff,
    BridgeHealth,
    EventSink,
    ProfileMismatch,
    ReconnectLoop,
    SourceSequence,
    wait_for,
)
from bridges.opcua_profile import BadValue, OpcUaProfile, UaPoint
from twin.events import Rejection

log = logging.getLogger(__name__)

_WAITING = ua.StatusCodes.BadWaitingForInitialData
_GROUP_KIND = {"tank": "tank.reading", "nozzle": "nozzle.state", "device": "device.info"}




@dataclass(slots=True)
class _Mon:
    """One monitored node and what it means."""

    group: str  # tank | nozzle | device | counter
    ch: int
    field: str
    point: UaPoint
    node_id: str


@dataclass(slots=True)
class _Cell:
    value: Any = None
    ts: float | None = None
    status: int = _WAITING
    status_name: str = "BadWaitingForInitialData"


@dataclass(slots=True)
class _Group:
    kind: str
    ch: int
    entities: tuple[str, ...]
    cells: dict[str, _Cell] = field(default_factory=dict)
    nodes: dict[str, str] = field(default_factory=dict)
    last_ts: float | None = None
    due: float | None = None  # monotonic deadline of an incomplete group


@dataclass(slots=True)
class _Ring:
    ch: int  # 0 for a device-wide ring
    last: int | None = None


class _Handler:
    """asyncua subscription handler: hands every notification to the bridge's inbox, in order."""

    def __init__(self, inbox: asyncio.Queue[tuple[Any, ...]]):
        self.inbox = inbox

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        item = data.monitored_item
        self.inbox.put_nowait(("dc", item.ClientHandle, item.Value))

    def status_change_notification(self, status: Any) -> None:
        self.inbox.put_nowait(("status", status))


def _epoch(dt: Any) -> float | None:
    if dt is None:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def _device_order(item: tuple[Any, ...]) -> float:
    """Sort key of an inbox item: connection news first, data changes by their source time."""
    if item[0] != "dc":
        return -math.inf
    dv = item[2]
    return _epoch(dv.SourceTimestamp) or _epoch(dv.ServerTimestamp) or 0.0


def _type_name(node_id: Any) -> str:
    """A data type node id as a person reads it: 'Float' for i=10, else the node id."""
    try:
        if node_id.NamespaceIndex == 0:
            return ua.VariantType(int(node_id.Identifier)).name
    except (AttributeError, TypeError, ValueError):
        pass
    return node_id.to_string() if hasattr(node_id, "to_string") else repr(node_id)


def _status_name(code: int) -> str:
    try:
        return f"{ua.StatusCode(code).name} (0x{code:08X})"
    except Exception:  # noqa: BLE001 - an unknown code still gets a readable form
        return f"0x{code:08X}"


class OpcUaBridge(ReconnectLoop):
    """One OPC UA device, subscribed per its profile, until cancelled."""

    def __init__(self, device: Any, profile: OpcUaProfile, station: Any, sink: EventSink, *,
                 clock: Callable[[], float] = time.time):
        self.device = device
        self.profile = profile
        self.station_id = station if isinstance(station, str) else station.id
        self._grades: dict[str, str] = ({} if isinstance(station, str)
                                        else {n.id: n.grade for n in getattr(station, "nozzles", ())})
        self.sink = sink
        self.clock = clock
        self.source = getattr(device, "source", None) or f"opcua:{self.station_id}:{device.id}"
        self.endpoint = device.endpoint
        self.namespace = getattr(device, "namespace", None)
        options = getattr(device, "options", None) or {}
        self.publishing_interval_ms = float(options.get("publishing_interval_ms",
                                                        profile.publishing_interval_ms))
        self.seq = SourceSequence(self.source, int(clock() * 1000))  # never reused across restarts
        self._health = BridgeHealth(self.source)
        self.backoff = Backoff()
        channels: dict[str, int] = dict(device.channels)
        self.by_channel: dict[int, str] = {ch: eid for eid, ch in channels.items()}
        chans = sorted(self.by_channel)
        self.tank_channels = chans if profile.kind == "tank_gauge" else []
        self.nozzle_channels = [] if profile.kind == "tank_gauge" else chans
        ring = profile.transactions
        self.rings: dict[int, _Ring] = ({} if ring is None else
                                        {ch: _Ring(ch) for ch in (self.nozzle_channels if ring.per_channel
                                                                  else [0])})
        self.ns: int | None = None
        self._client: Client | None = None
        self._mons: dict[int, _Mon] = {}
        self._groups: dict[tuple[str, int], _Group] = {}
        self.notifications = 0

    # ---- the Bridge protocol -----------------------------------------------------------------------

    def health(self) -> BridgeHealth:
        return self._health

    async def check(self, timeout_s: float = 10.0) -> None:
        """Connect once and verify the address space: ProfileMismatch naming the missing nodes, or a
        connection error if the server cannot be reached."""
        try:
            await wait_for(self._connect(), timeout_s)
            await wait_for(self._verify(), timeout_s)
        finally:
            await self._close()

    async def _serve(self) -> None:
        await self._session()

    async def _disconnect(self) -> None:
        await self._close()

    def _peer(self) -> str:
        return str(self.endpoint)

    # ---- connection --------------------------------------------------------------------------------

    async def _connect(self) -> None:
        await self._close()
        client = Client(self.endpoint, timeout=self.profile.timeout_s, watchdog_intervall=1.0)
        client.name = client.description = f"fueltwin bridge {self.source}"
        self._client = client
        await wait_for(client.connect(), self.profile.timeout_s + 1.0)
        if isinstance(self.namespace, int):
            self.ns = self.namespace
        else:
            uri = self.namespace or self.profile.namespace_uri
            names = await client.get_namespace_array()
            if uri not in names:
                raise ProfileMismatch(
                    f"device {self.source} at {self.endpoint} does not match profile {self.profile.model}: "
                    f"the server has no namespace {uri!r} (it has {names})")
            self.ns = names.index(uri)

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await wait_for(client.disconnect(), 2.0)

    def _plan(self) -> list[_Mon]:
        assert self.ns is not None
        p, ns = self.profile, self.ns
        mons: list[_Mon] = []
        for ch in self.tank_channels:
            mons += [_Mon("tank", ch, f, pt, pt.node_id(ns, ch)) for f, pt in (p.tank.points().items()
                                                                              if p.tank else ())]
        for ch in self.nozzle_channels:
            mons += [_Mon("nozzle", ch, f, pt, pt.node_id(ns, ch)) for f, pt in (p.nozzle.points().items()
                                                                                if p.nozzle else ())]
        if p.device is not None:
            chans = (self.nozzle_channels or self.tank_channels) if p.device_per_channel else [0]
            for ch in chans:
                mons += [_Mon("device", ch, f, pt, pt.node_id(ns, ch)) for f, pt in p.device.points().items()]
        if p.transactions is not None:
            for ch in self.rings:
                mons.append(_Mon("counter", ch, "counter", p.transactions.counter,
                                 p.transactions.counter.node_id(ns, ch)))
        return mons

    async def _verify(self) -> None:
        """Every node of the profile (ring records included) exists with the profile's data type."""
        assert self._client is not None and self.ns is not None
        p = self.profile
        wanted: list[tuple[str, str]] = [(m.node_id, m.point.type) for m in self._plan()]
        if p.transactions is not None:
            ring = p.transactions
            for ch in self.rings:
                for slot in range(ring.slot_base, ring.slot_base + ring.size):
                    wanted += [(pt.node_id(self.ns, ch, slot), pt.type)
                               for pt in ring.record.points().values()]
        nodes = [self._client.get_node(ua.NodeId.from_string(n)) for n, _ in wanted]
        results: list[ua.DataValue] = []
        for i in range(0, len(nodes), 500):
            results += await self._client.read_attributes(nodes[i:i + 500], ua.AttributeIds.DataType)
        missing: list[str] = []
        wrong: list[str] = []
        for (nid, type_name), dv in zip(wanted, results, strict=True):
            if dv.StatusCode is not None and not dv.StatusCode.is_good():
                missing.append(nid)
                continue
            expected = ua.NodeId(ua.VariantType[type_name].value, 0)
            actual = dv.Value.Value if dv.Value is not None else None
            if actual != expected:
                wrong.append(f"{nid} is {_type_name(actual)}, not {type_name}")
        if missing or wrong:
            parts = []
            if missing:
                parts.append(f"{len(missing)} node(s) missing: {', '.join(missing[:8])}"
                             + (" …" if len(missing) > 8 else ""))
            if wrong:
                parts.append(f"{len(wrong)} of another data type: {'; '.join(wrong[:8])}"
                             + (" …" if len(wrong) > 8 else ""))
            raise ProfileMismatch(
                f"device {self.source} at {self.endpoint} does not match profile {p.model}: "
                + "; ".join(parts) + ". Check the profile, the namespace and the channels of the station "
                "configuration.")

    # ---- the session -------------------------------------------------------------------------------

    async def _session(self) -> None:
        assert self._client is not None
        client = self._client
        inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        lost = asyncio.Event()

        async def on_lost(exc: Exception) -> None:
            inbox.put_nowait(("lost", exc))
            lost.set()

        client.connection_lost_callback = on_lost
        sub = await client.create_subscription(self.publishing_interval_ms, _Handler(inbox))
        mons = self._plan()
        self._mons = {i + 1: m for i, m in enumerate(mons)}
        self._groups = {}
        for m in mons:
            if m.group == "counter":
                continue
            key = (m.group, m.ch)
            g = self._groups.get(key)
            if g is None:
                entities = ((self.by_channel[m.ch],) if m.ch in self.by_channel
                            else tuple(self.by_channel[c] for c in sorted(self.by_channel)))
                g = self._groups[key] = _Group(_GROUP_KIND[m.group], m.ch, entities)
            g.cells[m.field] = _Cell()
            g.nodes[m.field] = m.node_id
        flt = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValueTimestamp)
        requests = []
        for handle, m in self._mons.items():
            params = ua.MonitoringParameters(ClientHandle=handle,
                                             SamplingInterval=self.profile.sampling_interval_ms,
                                             QueueSize=self.profile.queue_size, DiscardOldest=True,
                                             Filter=flt)
            requests.append(ua.MonitoredItemCreateRequest(
                ItemToMonitor=ua.ReadValueId(NodeId=ua.NodeId.from_string(m.node_id),
                                             AttributeId=ua.AttributeIds.Value),
                MonitoringMode=ua.MonitoringMode.Reporting, RequestedParameters=params))
        results = await sub.create_monitored_items(requests)
        failed = [self._mons[h].node_id for h, r in zip(self._mons, results, strict=True)
                  if isinstance(r, ua.StatusCode)]
        if failed:
            raise ProfileMismatch(f"device {self.source}: the server refused to monitor "
                                  f"{', '.join(failed[:8])}")
        h = self._health
        h.connected = True
        h.last_ok_ts = self.clock()
        self.backoff.reset()
        loop = asyncio.get_running_loop()
        while True:
            due = [g.due for g in self._groups.values() if g.due is not None]
            wait = max(0.0, min(due) - loop.time()) if due else 1.0
            try:
                first = await wait_for(inbox.get(), wait)
            except TimeoutError:
                first = None
            batch = [] if first is None else [first]
            while not inbox.empty():
                batch.append(inbox.get_nowait())
            # A publish holds each item's queued changes item by item; taken in device-time order,
            # the points of one measurement come together again and none is skipped.
            batch.sort(key=_device_order)
            out: list[Any] = []
            for item in batch:
                if item[0] == "lost":
                    raise ConnectionError(f"connection to {self.endpoint} lost: {item[1]!r}")
                if item[0] == "status":
                    status = getattr(item[1], "Status", None)
                    code = int(getattr(status, "value", status) or 0)
                    if status is not None and not ua.StatusCode(code).is_good():
                        raise ConnectionError(f"subscription of {self.endpoint} ended: {status}")
                    continue
                await self._on_change(item[1], item[2], out)
            now = loop.time()
            for g in self._groups.values():
                if g.due is not None and g.due <= now:
                    self._emit(g, out)
            if batch:
                h.last_ok_ts = self.clock()
            if out:
                await self.sink(out)
            if lost.is_set():
                raise ConnectionError(f"connection to {self.endpoint} lost")

    async def _on_change(self, handle: int, dv: ua.DataValue, out: list[Any]) -> None:
        m = self._mons.get(handle)
        if m is None:
            return
        self.notifications += 1
        code = int(dv.StatusCode.value) if dv.StatusCode is not None else 0
        ts = _epoch(dv.SourceTimestamp) or _epoch(dv.ServerTimestamp)
        value = dv.Value.Value if dv.Value is not None else None
        if m.group == "counter":
            if ua.StatusCode(code).is_good():
                await self._on_counter(m, value, out)
            return
        g = self._groups[(m.group, m.ch)]
        cell = g.cells[m.field]
        cell.value, cell.ts, cell.status = value, ts, code
        cell.status_name = "" if code == 0 else _status_name(code)
        if code == _WAITING:
            return
        times = [c.ts for c in g.cells.values()]
        newest = max((t for t in times if t is not None), default=None)
        if all(c.status != _WAITING for c in g.cells.values()) and (newest is None
                                                                     or all(t == newest for t in times)):
            self._emit(g, out)
        elif g.due is None:
            g.due = asyncio.get_running_loop().time() + self.publishing_interval_ms / 1000.0

    def _base(self, kind: str, entity: str, ts: float) -> dict[str, Any]:
        return {"kind": kind, "ts": ts, "station": self.station_id, "entity": entity, "source": self.source,
                "seq": 0, "quality": "good"}

    def _emit(self, g: _Group, out: list[Any]) -> None:
        """The group's current values as one event per entity, or a Rejection if a point is bad."""
        g.due = None
        cells = g.cells
        if any(c.status == _WAITING for c in cells.values()):
            return
        times = [c.ts for c in cells.values() if c.ts is not None]
        ts = max(times) if times else self.clock()
        if g.last_ts is not None and times and ts <= g.last_ts and g.kind != "device.info":
            return  # nothing newer than what was sent (a re-subscription's first notifications)
        g.last_ts = ts
        points = self._points(g.kind)
        values: dict[str, Any] = {}
        bad: list[str] = []
        quality = "good"
        for name, cell in cells.items():
            sc = ua.StatusCode(cell.status)
            if sc.is_bad():
                bad.append(f"{name} at {g.nodes[name]}: status {cell.status_name}")
                values[name] = None
                continue
            if sc.is_uncertain():
                quality = "uncertain"
            try:
                values[name] = points[name].decode(name, cell.value)
            except BadValue as exc:
                bad.append(f"{name} at {g.nodes[name]}: {exc}")
                plain = isinstance(cell.value, (int, float, str, bool))
                values[name] = cell.value if plain else repr(cell.value)
        for entity in g.entities:
            raw = self._base(g.kind, entity, ts)
            raw.update(values)
            if g.kind == "device.info":
                raw["model"] = str(raw.get("model", self.profile.model))
            if bad:
                raw["quality"] = "bad"
                raw["seq"] = None
                self._health.bad_values += len(bad)
                self._health.last_error = "; ".join(bad)[:300]
                out.append(Rejection(raw, f"bad value: {'; '.join(bad)}; {g.kind} of {entity} from "
                                          f"{self.source}", self.station_id, self.source))
                continue
            raw["quality"] = quality
            raw["seq"] = self.seq.take()
            out.append(raw)

    def _points(self, kind: str) -> dict[str, UaPoint]:
        p = self.profile
        group = {"tank.reading": p.tank, "nozzle.state": p.nozzle, "device.info": p.device}[kind]
        return group.points() if group is not None else {}

    # ---- transactions ------------------------------------------------------------------------------

    async def _on_counter(self, m: _Mon, value: Any, out: list[Any]) -> None:
        ring = self.profile.transactions
        assert ring is not None and self.ns is not None and self._client is not None
        at = self.rings[m.ch]
        try:
            count = int(ring.counter.decode("txn_no", value))
        except BadValue as exc:
            self._health.bad_values += 1
            self._health.last_error = f"ring counter {m.node_id}: {exc}"
            return
        if at.last is None:
            at.last = count  # history before the bridge first connected is not replayed
            return
        modulus = ring.modulus()
        new = (count - at.last) % modulus
        if new == 0:
            return
        if new > modulus // 2:  # the counter went backwards: the device reset its log
            self._health.errors += 1
            self._health.last_error = f"ring counter {m.node_id} went back from {at.last} to {count}"
            at.last = count
            return
        if new > ring.size:
            lost = new - ring.size
            self._health.errors += 1
            raw = self._base("nozzle.txn", self.by_channel.get(m.ch, ""), self.clock())
            raw.update(quality="bad", seq=None, first_lost=(at.last + 1) % modulus, lost=lost)
            out.append(Rejection(raw, f"lost records: {self.source}: {lost} nozzle.txn records were "
                                      f"overwritten in the device's ring of {ring.size} before they were "
                                      "read",
                                 self.station_id, self.source))
            new = ring.size
        numbers = [(count - new + k) % modulus for k in range(1, new + 1)]
        fields = list(ring.record.points().items())
        nodes = [self._client.get_node(ua.NodeId.from_string(pt.node_id(self.ns, m.ch, ring.slot_of(n))))
                 for n in numbers for _, pt in fields]
        results: list[ua.DataValue] = []
        for i in range(0, len(nodes), 500):
            results += await self._client.read_attributes(nodes[i:i + 500])
        for k, number in enumerate(numbers):
            self._record(m.ch, number, fields, results[k * len(fields):(k + 1) * len(fields)], out)
        at.last = count

    def _record(self, ring_ch: int, number: int, fields: list[tuple[str, UaPoint]],
                dvs: list[ua.DataValue], out: list[Any]) -> None:
        values: dict[str, Any] = {}
        bad: list[str] = []
        quality = "good"
        for (name, pt), dv in zip(fields, dvs, strict=True):
            sc = dv.StatusCode if dv.StatusCode is not None else ua.StatusCode()
            if sc.is_bad():
                bad.append(f"{name}: status {_status_name(int(sc.value))}")
                continue
            if sc.is_uncertain():
                quality = "uncertain"
            try:
                values[name] = pt.decode(name, dv.Value.Value if dv.Value is not None else None)
            except BadValue as exc:
                bad.append(f"{name}: {exc}")
        ring = self.profile.transactions
        nozzle = values.pop("nozzle", None)
        ch = ring_ch if ring is not None and ring.per_channel else nozzle
        entity = self.by_channel.get(ch, "") if ch is not None else ""
        ts = values.get("end_ts") if isinstance(values.get("end_ts"), float) else self.clock()
        raw = self._base("nozzle.txn", entity, ts)
        raw.update(values)
        if "grade" not in raw and entity in self._grades:
            raw["grade"] = self._grades[entity]
        if not bad and not entity:
            bad.append(f"record is for channel {ch}, which the station configuration does not map")
        if bad:
            raw.update(quality="bad", seq=None, record=number)
            self._health.bad_values += len(bad)
            self._health.last_error = "; ".join(bad)[:300]
            out.append(Rejection(raw, f"bad value: {'; '.join(bad)}; transaction record {number} of "
                                      f"{self.source}", self.station_id, self.source))
            return
        raw["quality"] = quality
        raw["seq"] = self.seq.take()
        out.append(raw)
