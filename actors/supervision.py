"""Supervision by snapshot and journal: a crashed actor comes back as it was, minus the poison message.

The actor's state is pickled every ``snapshot_every`` messages (more, for a big state: see
:class:`Supervised`) and every message since is journaled — through a ``codec`` where the messages are
big objects the journal can hold in a smaller form (a shard's station batches: see actors/shard.py).
When handling a message raises, the instance is rebuilt from the snapshot and the journal replayed into
a throwaway sink (its outputs were delivered the first time); the failing message is reported, not
retried. Actors here are deterministic state machines, so replay reproduces the state exactly.
"""

from __future__ import annotations

import logging
import pickle
import zlib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

S = TypeVar("S")
Handler = Callable[[S, Any, Any], Any]


def thaw(snapshot: bytes) -> Any:
    """The actor a snapshot holds: compressed (:meth:`Supervised.snapshot`), or a bare pickle, which
    begins with the PROTO opcode (0x80) where a zlib stream begins with 0x78."""
    return pickle.loads(snapshot if snapshot[:1] == b"\x80" else zlib.decompress(snapshot))


class ActorCrashed(Exception):
    """A message made its actor fail; the actor was restarted and the message dropped."""

    def __init__(self, name: str, cause: BaseException):
        super().__init__(f"actor {name} failed on a message: {type(cause).__name__}: {cause}")
        self.name = name
        self.cause = cause


class Supervised(Generic[S]):
    """``strategy`` is what a failure does: "restart" (snapshot + journal, as above) or "resume": keep
    the state as it is and drop the message, for actors whose parts are supervised on their own (a shard:
    its stations restart themselves) and that would otherwise journal every batch for nothing.

    A snapshot costs in proportion to its size, so a big state is snapshotted less often: the next one
    is due after ``len(snapshot) / snapshot_bytes_per_message`` messages, at least ``snapshot_every`` and
    at most ``4 × snapshot_every``. Measured on the scenario runner: a 3-station district's stations
    pickle to 100–480 kB, and snapshotting every 5,000 events took 6 % of the run; a restart then
    replays at most four times as many messages, a fraction of a second.

    With a ``codec``, every ``seal_every`` journaled messages are sealed into one zlib-compressed
    pickle (level 1). A station's batches pickle to ~3 kB each; compressed one by one they shrink to
    0.40–0.45 at ~16 ns a byte (~1 µs an event), thirty together to 0.24–0.27 at ~6 ns a byte, ~0.4 µs
    an event (3 stations, 10 days; the journal was the biggest live holder at day 14: 0.61 MB a
    station, bench/memory.py --tracemalloc)."""

    def __init__(self, name: str, instance: S, snapshot_every: int = 2000,
                 sink_factory: Callable[[], Any] = lambda: None, strategy: str = "restart",
                 snapshot_bytes_per_message: float = 12.0,
                 codec: tuple[Callable[[Any], Any], Callable[[Any], Any]] | None = None,
                 seal_every: int = 32):
        if strategy not in ("restart", "resume"):
            raise ValueError(f"unknown supervision strategy {strategy!r}")
        self.name = name
        self.strategy = strategy
        self.sink_factory = sink_factory
        self.instance = instance
        self.snapshot_every = snapshot_every
        self.snapshot_bytes_per_message = snapshot_bytes_per_message
        self._snapshot = b""
        self._due = snapshot_every
        #: (pack, unpack): what a message is journaled as, and how it is read back for a replay.
        self._pack, self._unpack = codec if codec is not None else (None, None)
        self._journal: list[tuple[Handler, Any]] = []
        #: Earlier journal entries, ``seal_every`` at a time: their handlers, and their packed messages
        #: pickled together and compressed (with a codec only: packed messages are plain data).
        self._sealed: list[tuple[list[Handler], bytes]] = []
        self.seal_every = seal_every
        self._journal_weight = 0
        self.restarts = 0
        if strategy == "restart":
            self.checkpoint()

    def apply(self, handler: Handler, message: Any, sink: Any = None, weight: int = 1) -> Any:
        """Run ``handler(instance, message, sink)``; on failure restart and raise :class:`ActorCrashed`.

        ``weight`` is how many messages this one stands for (a batch of events), so the journal between
        snapshots stays bounded in events, not in calls.
        """
        try:
            result = handler(self.instance, message, sink)
        except Exception as exc:
            if self.strategy == "resume":
                log.exception("actor %s failed on a message; resuming with its state", self.name)
                raise ActorCrashed(self.name, exc) from exc
            log.exception("actor %s crashed; restarting from its snapshot", self.name)
            self._restart()
            raise ActorCrashed(self.name, exc) from exc
        if self.strategy == "resume":
            return result
        self._record(handler, message if self._pack is None else self._pack(message))
        self._journal_weight += weight
        if self._journal_weight >= self._due:
            self.checkpoint()
        return result

    def checkpoint(self) -> None:
        if self.strategy == "resume":
            return
        raw = pickle.dumps(self.instance, pickle.HIGHEST_PROTOCOL)
        self._snapshot = zlib.compress(raw, 1)
        self._journal.clear()
        self._sealed.clear()
        self._journal_weight = 0
        every = self.snapshot_every
        self._due = min(max(every, int(len(raw) / self.snapshot_bytes_per_message)), 4 * every)

    def snapshot(self) -> bytes:
        """The actor's state now, pickled and compressed (a checkpoint: the journal restarts from here).

        Compressed because every station holds its last one and a durable checkpoint writes them all to
        Redis: a station's pickle (0.45 MB on average at day 14 of healthy-30d, float arrays mostly)
        shrinks to 0.55 of it at zlib level 1, in 6.5 ms, once per 5,000–20,000 events (~0.3 µs an
        event); level 6 gave 0.53 for 1.6 times the time."""
        if self.strategy == "resume":
            return zlib.compress(pickle.dumps(self.instance, pickle.HIGHEST_PROTOCOL), 1)
        self.checkpoint()
        return self._snapshot

    def restore(self, snapshot: bytes) -> None:
        """Become the actor a snapshot describes (a program restarting from its last checkpoint); one
        written before snapshots were compressed (a bare pickle) restores as well."""
        self.instance = thaw(snapshot)
        self.checkpoint()

    def _record(self, handler: Handler, entry: Any) -> None:
        self._journal.append((handler, entry))
        if self._pack is not None and len(self._journal) >= self.seal_every:
            handlers = [h for h, _ in self._journal]
            blob = pickle.dumps([e for _, e in self._journal], pickle.HIGHEST_PROTOCOL)
            self._sealed.append((handlers, zlib.compress(blob, 1)))
            self._journal = []

    def _entries(self) -> list[tuple[Handler, Any]]:
        """Every journal entry since the snapshot, in order: the sealed ones unsealed, then the rest."""
        out: list[tuple[Handler, Any]] = []
        for handlers, blob in self._sealed:
            out.extend(zip(handlers, pickle.loads(zlib.decompress(blob)), strict=True))
        return out + self._journal

    def _restart(self) -> None:
        self.restarts += 1
        self.instance = thaw(self._snapshot)
        journal = self._entries()
        self._journal, self._sealed = [], []
        for handler, entry in journal:
            message = entry if self._unpack is None else self._unpack(entry)
            handler(self.instance, message, self.sink_factory())
            self._record(handler, entry)
