"""Live fan-out of the twin's outputs to websocket clients, without ever letting a client slow the twin.

The service calls :meth:`LiveHub.publish` synchronously after every batch, inside its ingest lock, so
publish does only dictionary work: it wraps each output once in a :class:`Message` (serialised lazily,
at most once, and shared by every client) and drops a reference into each interested client's queues.
Each client then has its own sender task that writes to its socket at whatever pace the socket allows.

Per client there are three queues, drained in this order:

* ``front`` — protocol replies (``hello``, ``subscribed``, ``error``); tiny and bounded.
* ``reliable`` — alerts and deliveries. A regulator must know if one was not shown, so they are never
  dropped silently: the deque is bounded, on overflow the oldest go and are counted, and the client
  receives ``{"type": "missed", "alerts": N, "deliveries": M}`` before anything else it is sent next.
* ``latest`` — state and divergence, keyed by (type, station, tank). Only the newest value matters to a
  display, so a newer message replaces an unsent older one (counted as *coalesced*). Its size is bounded
  by the number of subscribed stations and tanks, whatever the ingest rate. It is sent in rounds, at
  most one per ``flush_interval_s`` (0.25 s): a screen needs no more, and a demo at ×600 would otherwise
  push thousands of states a second to every browser. The first update after a quiet spell goes at once.

A client whose socket stays blocked longer than ``send_timeout_s``, or that has lost more than
``max_missed`` alerts and deliveries since it last received one, is disconnected with close code 1013
("try again later") and a reason; the page reconnects and repaints from the store.

Everything here runs on the event loop of the service: ``publish`` is not thread-safe, by design.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from twin.outputs import Outputs
from twin.registry import District
from twin.store import Store

log = logging.getLogger(__name__)

#: Close code for a client that cannot keep up (RFC 6455 §7.4.1 "Try Again Later").
CLOSE_TOO_SLOW = 1013
#: Close code for a client that floods us with requests it never reads the answers to.
CLOSE_POLICY = 1008


def _finite(obj: Any) -> Any:
    """JSON has no NaN/Infinity and browsers reject them: replace them with null (rare, slow path)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _plain(obj: Any) -> Any:
    """For values json does not know (numpy scalars from a detector, say): their Python value, else text."""
    item = getattr(obj, "item", None)
    return item() if callable(item) else str(obj)


class Message:
    """One outgoing message, shared by all clients; its JSON is built on first send and then reused.

    Coalesced messages are often replaced before anyone sends them, so serialising lazily means the
    cost of an update nobody needed is one small object.
    """

    __slots__ = ("type", "station", "key", "payload", "_text")

    def __init__(self, type_: str, station: str, payload: dict[str, Any],
                 key: tuple[str, str, str] | None = None):
        self.type = type_
        self.station = station
        self.key = key
        self.payload = payload
        self._text: str | None = None

    @property
    def text(self) -> str:
        if self._text is None:
            body = {"type": self.type, **self.payload}
            try:
                self._text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                                        default=_plain)
            except ValueError:
                self._text = json.dumps(_finite(body), ensure_ascii=False, separators=(",", ":"),
                                        default=_plain)
        return self._text


def _state_message(station: str, state: dict[str, Any]) -> Message:
    payload = state if state.get("station") == station else {**state, "station": station}
    return Message("state", station, payload, ("state", station, ""))


def _divergence_message(rec: dict[str, Any]) -> Message | None:
    """The last point of a tank's batch record: the display needs the newest value, Redis keeps all."""
    if not rec.get("ts"):
        return None
    payload = {"station": rec["station"], "tank": rec["tank"], "ts": rec["ts"][-1],
               "observed_l": rec["observed_l"][-1], "expected_l": rec["expected_l"][-1],
               "divergence_l": rec["divergence_l"][-1], "leak_rate_lph": rec.get("leak_rate_lph"),
               "leak_rate_se_lph": rec.get("leak_rate_se_lph")}
    return Message("divergence", rec["station"], payload, ("divergence", rec["station"], rec["tank"]))


class Client:
    """One websocket connection's subscription, queues and counters."""

    def __init__(self, client_id: int, ws: WebSocket, stations: frozenset[str] | None, reliable_limit: int,
                 flush_interval_s: float = 0.0):
        self.id = client_id
        self.ws = ws
        #: None = every station.
        self.stations = stations
        self.front: deque[Message] = deque()
        self.reliable: deque[Message] = deque()
        self.reliable_limit = reliable_limit
        self.latest: OrderedDict[tuple[str, str, str], Message] = OrderedDict()
        self.flush_interval_s = flush_interval_s
        self.next_flush = 0.0  # monotonic time from which the next round of ``latest`` may go
        self.draining = False
        #: The sender waits for ``next_flush``: new state/divergence need not wake it.
        self.holding = False
        self.wake = asyncio.Event()
        self.connected_at = time.time()
        self.sending_since: float | None = None
        #: (close code, reason) once the hub has decided to disconnect this client.
        self.kicked: tuple[int, str] | None = None
        self.sender: asyncio.Task[None] | None = None
        # Not yet reported to the client with a ``missed`` message:
        self.pending_missed_alerts = 0
        self.pending_missed_deliveries = 0
        # Lost since the client last received an alert or delivery (the "far behind" measure):
        self.missed_since_delivery = 0
        # Totals for the stats:
        self.sent = 0
        self.coalesced = 0
        self.missed_alerts = 0
        self.missed_deliveries = 0
        self.max_reliable = 0

    def wants(self, station: str) -> bool:
        return self.stations is None or station in self.stations

    def offer_latest(self, msg: Message) -> bool:
        """Queue a coalescible message; True if it replaced an unsent older one."""
        key = msg.key
        assert key is not None
        replaced = key in self.latest
        self.latest[key] = msg  # a replaced key keeps its place: a busy station cannot starve the others
        if replaced:
            self.coalesced += 1
        return replaced

    def offer_reliable(self, msg: Message) -> str | None:
        """Queue an alert or delivery; if the queue was full, drop the oldest and return its type."""
        dropped = None
        if len(self.reliable) >= self.reliable_limit:
            dropped = self.reliable.popleft().type
            self.missed_since_delivery += 1
            if dropped == "alert":
                self.pending_missed_alerts += 1
                self.missed_alerts += 1
            else:
                self.pending_missed_deliveries += 1
                self.missed_deliveries += 1
        self.reliable.append(msg)
        if len(self.reliable) > self.max_reliable:
            self.max_reliable = len(self.reliable)
        return dropped

    def next_message(self, now: float) -> Message | None:
        """What to send next: replies, then the missed notice, then alerts and deliveries, then (at most one
        round per flush interval) the newest state and divergence. None if nothing may go now."""
        if self.front:
            return self.front.popleft()
        if self.pending_missed_alerts or self.pending_missed_deliveries:
            msg = Message("missed", "", {"alerts": self.pending_missed_alerts,
                                         "deliveries": self.pending_missed_deliveries})
            self.pending_missed_alerts = self.pending_missed_deliveries = 0
            return msg
        if self.reliable:
            self.missed_since_delivery = 0
            return self.reliable.popleft()
        if self.latest and (self.draining or now >= self.next_flush):
            # A round sends every queued key once; the next round waits for the flush interval.
            self.draining = True
            msg = self.latest.popitem(last=False)[1]
            if not self.latest:
                self.draining = False
                self.next_flush = now + self.flush_interval_s
            return msg
        return None

    def retain_subscribed(self) -> None:
        """After a filter change, forget what was queued for stations no longer wanted."""
        if self.stations is None:
            return
        self.reliable = deque(m for m in self.reliable if m.station in self.stations)
        for key in [k for k in self.latest if k[1] not in self.stations]:
            del self.latest[key]

    def stats(self) -> dict[str, Any]:
        blocked = None if self.sending_since is None else round(time.monotonic() - self.sending_since, 3)
        return {"id": self.id, "stations": None if self.stations is None else sorted(self.stations),
                "connected_at": self.connected_at, "queued_front": len(self.front),
                "queued_reliable": len(self.reliable), "queued_latest": len(self.latest),
                "max_queued_reliable": self.max_reliable, "reliable_limit": self.reliable_limit,
                "sent": self.sent, "coalesced": self.coalesced,
                "missed": {"alerts": self.missed_alerts, "deliveries": self.missed_deliveries},
                "send_blocked_s": blocked}


class LiveHub:
    """Fan-out of twin outputs to websocket clients; see the module docstring for the guarantees."""

    def __init__(self, store: Store, district: District, *, mode: str = "live", reliable_limit: int = 1000,
                 flush_interval_s: float = 0.25, send_timeout_s: float = 30.0, max_missed: int = 10_000,
                 close_timeout_s: float = 2.0, max_front: int = 64):
        self.district = district
        self.store = store
        self.mode = mode
        self.reliable_limit = reliable_limit
        self.flush_interval_s = flush_interval_s
        self.send_timeout_s = send_timeout_s
        self.max_missed = max_missed
        self.close_timeout_s = close_timeout_s
        self.max_front = max_front
        self.clients: dict[int, Client] = {}
        self._ids = itertools.count(1)
        #: Newest state per station as published: fresher than Redis, whose write trails the batch.
        self._states: dict[str, Message] = {}
        self._summary = [self._station_summary(s.id) for s in district.stations]
        # Counters for /health.
        self.batches = 0
        self.sent = 0
        self.coalesced = 0
        self.missed_alerts = 0
        self.missed_deliveries = 0
        self.connections = 0
        self.disconnected_slow = 0
        self.disconnected_policy = 0

    # ---- publishing (called by the service; synchronous and cheap) ------------------------------

    def publish(self, outputs: Outputs) -> None:
        """Queue one batch's outputs for every interested client. Never awaits, never blocks."""
        self.batches += 1
        latest: list[Message] = []
        for sid, state in outputs.states.items():
            msg = _state_message(sid, state)
            self._states[sid] = msg
            latest.append(msg)
        if not self.clients:
            return
        for rec in outputs.divergence:
            div = _divergence_message(rec)
            if div is not None:
                latest.append(div)
        reliable = [Message("alert", a["station"], a) for a in outputs.alerts]
        reliable.extend(Message("delivery", d["station"], d) for d in outputs.deliveries)
        self._fan_out(latest, reliable)

    def publish_alert(self, alert: dict[str, Any]) -> None:
        """An alert changed outside the twin (a user acknowledged or closed it)."""
        if self.clients:
            self._fan_out([], [Message("alert", alert["station"], alert)])

    def _fan_out(self, latest: list[Message], reliable: list[Message]) -> None:
        for client in list(self.clients.values()):
            if client.kicked is not None:
                continue
            wanted = client.stations
            queued = False
            for msg in latest:
                if wanted is None or msg.station in wanted:
                    if client.offer_latest(msg):
                        self.coalesced += 1
                    queued = queued or not client.holding
            for msg in reliable:
                if wanted is None or msg.station in wanted:
                    dropped = client.offer_reliable(msg)
                    if dropped == "alert":
                        self.missed_alerts += 1
                    elif dropped is not None:
                        self.missed_deliveries += 1
                    queued = True
            if client.missed_since_delivery > self.max_missed:
                self._kick(client, CLOSE_TOO_SLOW,
                           f"too slow: {client.missed_since_delivery} alerts/deliveries missed")
            elif queued:
                client.wake.set()

    def _kick(self, client: Client, code: int, reason: str) -> None:
        if client.kicked is None:
            client.kicked = (code, reason)
            if client.sender is not None:
                client.sender.cancel()

    # ---- serving one websocket ------------------------------------------------------------------

    async def serve(self, ws: WebSocket, stations: Iterable[str] | None = None) -> None:
        """Run one client from accept to disconnect. ``stations``: the initial filter (None = all)."""
        await ws.accept()
        wanted, unknown = self._parse_filter(stations)
        client = Client(next(self._ids), ws, wanted, self.reliable_limit, self.flush_interval_s)
        # Registered before the first paint is read, so nothing published meanwhile is lost.
        self.clients[client.id] = client
        self.connections += 1
        try:
            client.front.append(Message("hello", "", self._hello(client)))
            if unknown:
                client.front.append(self._error(f"unknown stations ignored: {', '.join(unknown)}"))
            await self._first_paint(client, None)
            client.sender = asyncio.create_task(self._send_loop(client), name=f"ws-send-{client.id}")
            receiver = asyncio.create_task(self._receive_loop(client), name=f"ws-recv-{client.id}")
            try:
                await asyncio.wait({client.sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                client.sender.cancel()
                receiver.cancel()
                for result in await asyncio.gather(client.sender, receiver, return_exceptions=True):
                    if isinstance(result, Exception):
                        log.error("websocket client %d failed", client.id, exc_info=result)
        finally:
            self.clients.pop(client.id, None)
        if client.kicked is not None:
            await self._close(client, *client.kicked)

    async def _close(self, client: Client, code: int, reason: str) -> None:
        """Tell the client why; if its socket is too clogged to take even that, give up after a moment."""
        if code == CLOSE_POLICY:
            self.disconnected_policy += 1
        else:
            self.disconnected_slow += 1
        log.warning("websocket client %d disconnected: %s", client.id, reason)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.close_timeout_s):
                await client.ws.close(code, reason[:120])

    async def _send_loop(self, client: Client) -> None:
        ws = client.ws
        while client.kicked is None:
            msg = client.next_message(time.monotonic())
            if msg is None:
                client.wake.clear()
                if client.latest:  # held back until the next flush; alerts still wake us at once
                    client.holding = True
                    try:
                        async with asyncio.timeout(max(0.0, client.next_flush - time.monotonic())):
                            await client.wake.wait()
                    except TimeoutError:
                        pass
                    finally:
                        client.holding = False
                else:
                    await client.wake.wait()
                continue
            text = msg.text
            client.sending_since = time.monotonic()
            try:
                async with asyncio.timeout(self.send_timeout_s):
                    await ws.send_text(text)
            except TimeoutError:
                client.kicked = (CLOSE_TOO_SLOW, f"too slow: socket blocked for {self.send_timeout_s:g} s")
                return
            except (WebSocketDisconnect, RuntimeError, OSError):
                return  # the client went away; the receiver sees the disconnect too
            client.sending_since = None
            client.sent += 1
            self.sent += 1

    async def _receive_loop(self, client: Client) -> None:
        ws = client.ws
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None and message.get("bytes") is not None:
                text = message["bytes"].decode("utf-8", "replace")
            await self._handle_request(client, text or "")
            if len(client.front) > self.max_front:
                self._kick(client, CLOSE_POLICY, "too many requests without reading the replies")
                return
            client.wake.set()

    async def _handle_request(self, client: Client, text: str) -> None:
        try:
            request = json.loads(text)
        except ValueError:
            client.front.append(self._error("not JSON"))
            return
        if not isinstance(request, dict) or "subscribe" not in request:
            client.front.append(self._error('expected {"subscribe": [station ids]} ([] for all)'))
            return
        ids = request["subscribe"]
        if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
            client.front.append(self._error("subscribe takes a list of station ids"))
            return
        before = client.stations
        wanted, unknown = self._parse_filter(ids)
        client.stations = wanted
        client.retain_subscribed()
        client.front.append(Message("subscribed", "", {
            "stations": None if wanted is None else sorted(wanted), "unknown": unknown}))
        if before is None:
            added: frozenset[str] = frozenset()  # it had every station already
        elif wanted is None:
            added = frozenset(s.id for s in self.district.stations) - before
        else:
            added = wanted - before
        await self._first_paint(client, added)

    def _parse_filter(self, ids: Iterable[str] | None) -> tuple[frozenset[str] | None, list[str]]:
        """None or empty = every station. Unknown ids are reported, not fatal."""
        if ids is None:
            return None, []
        ids = [i.strip() for i in ids if i and i.strip()]
        if not ids:
            return None, []
        unknown = sorted({i for i in ids if not self.district.has_station(i)})
        return frozenset(i for i in ids if self.district.has_station(i)), unknown

    async def _first_paint(self, client: Client, only: frozenset[str] | None) -> None:
        """Queue the latest state of subscribed stations (``only`` those, if given): the hub's copy when it
        has one (fresher than Redis, whose write trails the batch), else the store's."""
        wanted = [s.id for s in self.district.stations
                  if client.wants(s.id) and (only is None or s.id in only)]
        stored: dict[str, dict[str, Any]] = {}
        if any(sid not in self._states for sid in wanted):  # only before the first batch, or no twin here
            try:
                stored = await self.store.states()
            except Exception:  # noqa: BLE001 - a connection without first paint beats no connection
                log.exception("first paint: cannot read station states from the store")
        for sid in wanted:
            msg = self._states.get(sid)
            if msg is None and sid in stored:
                msg = _state_message(sid, stored[sid])
            if msg is not None and msg.key not in client.latest:
                client.latest[msg.key] = msg  # type: ignore[index]

    # ---- messages and stats ---------------------------------------------------------------------

    def _station_summary(self, sid: str) -> dict[str, Any]:
        s = self.district.station(sid)
        return {"id": s.id, "name": s.name, "region": s.region, "lon": s.lon, "lat": s.lat,
                "tanks": [{"id": t.id, "grade": t.grade, "declared_capacity_l": t.declared_capacity_l}
                          for t in s.tanks],
                "nozzles": [{"id": n.id, "tank": n.tank, "grade": n.grade} for n in s.nozzles]}

    def _hello(self, client: Client) -> dict[str, Any]:
        return {"client": client.id, "district": self.district.name, "timezone": self.district.timezone,
                "mode": self.mode, "server_time": time.time(), "stations": self._summary,
                "subscribed": None if client.stations is None else sorted(client.stations),
                "queue_limit": self.reliable_limit}

    @staticmethod
    def _error(text: str) -> Message:
        return Message("error", "", {"message": text})

    def stats(self) -> dict[str, Any]:
        return {"clients": len(self.clients), "connections_total": self.connections,
                "batches": self.batches, "sent": self.sent, "coalesced": self.coalesced,
                "missed": {"alerts": self.missed_alerts, "deliveries": self.missed_deliveries},
                "disconnected_slow": self.disconnected_slow, "disconnected_policy": self.disconnected_policy,
                "queue_limit": self.reliable_limit, "flush_interval_s": self.flush_interval_s,
                "send_timeout_s": self.send_timeout_s,
                "per_client": [c.stats() for c in self.clients.values()]}
