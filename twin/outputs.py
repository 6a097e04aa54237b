"""What the twin emits: divergence series, deliveries, alerts and station state (DESIGN.md 'Outputs').

Everything is plain data (dicts, lists, floats) so it crosses a Ray boundary, lands in Redis and goes to
a websocket without translation. Divergence is columnar, one record per tank per processed batch,
because a district-day holds over a million readings and every one is kept for analysis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Outputs:
    divergence: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    events: int = 0
    #: Keyed values for the store's hashes: ``{"hash", "field", "value"}`` (issue 5: ledger rows, lots,
    #: trace records), so the API reads them by key.
    records: list[dict[str, Any]] = field(default_factory=list)

    def extend(self, other: Outputs) -> None:
        self.divergence.extend(other.divergence)
        self.deliveries.extend(other.deliveries)
        self.alerts.extend(other.alerts)
        self.states.update(other.states)
        self.rejected.extend(other.rejected)
        self.events += other.events
        self.records.extend(other.records)

    def to_dict(self) -> dict[str, Any]:
        return {"divergence": self.divergence, "deliveries": self.deliveries, "alerts": self.alerts,
                "states": self.states, "rejected": self.rejected, "events": self.events,
                "records": self.records}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Outputs:
        return cls(d["divergence"], d["deliveries"], d["alerts"], d["states"], d["rejected"], d["events"],
                   d.get("records", []))
