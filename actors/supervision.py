"""Supervision by snapshot and journal: a crashed actor comes back as it was, minus the poison message.

The actor's state is pickled every ``snapshot_every`` messages and every message since is journaled.
When handling a message raises, the instance is rebuilt from the snapshot and the journal replayed into
a throwaway sink (its outputs were delivered the first time); the failing message is reported, not
retried. Actors here are deterministic state machines, so replay reproduces the state exactly.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

S = TypeVar("S")
Handler = Callable[[S, Any, Any], Any]


class ActorCrashed(Exception):
    """A message made its actor fail; the actor was restarted and the message dropped."""

    def __init__(self, name: str, cause: BaseException):
        super().__init__(f"actor {name} failed on a message: {type(cause).__name__}: {cause}")
        self.name = name
        self.cause = cause


class Supervised(Generic[S]):
    def __init__(self, name: str, instance: S, snapshot_every: int = 2000,
                 sink_factory: Callable[[], Any] = lambda: None):
        self.name = name
        self.sink_factory = sink_factory
        self.instance = instance
        self.snapshot_every = snapshot_every
        self._snapshot = pickle.dumps(instance, pickle.HIGHEST_PROTOCOL)
        self._journal: list[tuple[Handler, Any]] = []
        self.restarts = 0

    def apply(self, handler: Handler, message: Any, sink: Any = None) -> Any:
        """Run ``handler(instance, message, sink)``; on failure restart and raise :class:`ActorCrashed`."""
        try:
            result = handler(self.instance, message, sink)
        except Exception as exc:
            log.exception("actor %s crashed; restarting from its snapshot", self.name)
            self._restart()
            raise ActorCrashed(self.name, exc) from exc
        self._journal.append((handler, message))
        if len(self._journal) >= self.snapshot_every:
            self.checkpoint()
        return result

    def checkpoint(self) -> None:
        self._snapshot = pickle.dumps(self.instance, pickle.HIGHEST_PROTOCOL)
        self._journal.clear()

    def snapshot_bytes(self) -> bytes:
        self.checkpoint()
        return self._snapshot

    def _restart(self) -> None:
        self.restarts += 1
        self.instance = pickle.loads(self._snapshot)
        journal, self._journal = self._journal, []
        for handler, message in journal:
            handler(self.instance, message, self.sink_factory())
            self._journal.append((handler, message))
