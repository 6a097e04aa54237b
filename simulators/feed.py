"""The district feed: every simulated station's raw events, merged in event-time order.

``DistrictSimulator.advance(until)`` is a pure function of (district, seed, parameters, until): the same
inputs give the same list whatever sequence of ``advance`` calls led there, which is what lets a
scenario, a benchmark and a live demo share one simulator. ``run_live`` is the only place in the
simulator that reads a clock, to pace event time against wall time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection
from operator import itemgetter
from typing import Any

import numpy as np

from simulators.district import SimDistrict
from simulators.hooks import StationFault
from simulators.prices import PriceBoard, StationPrices
from simulators.settings import NoiseSettings, Timing
from simulators.station import StationSim
from simulators.truth import GroundTruth
from simulators.vapor import VaporSim, VaporSimSettings
from twin.registry import District

__all__ = ["DistrictSimulator", "NoiseSettings", "Timing", "run_live"]

_TS = itemgetter("ts")

Sink = Callable[[list[dict[str, Any]], float], Awaitable[Any]]


class DistrictSimulator:
    """Seeded physical simulation of every station of a :class:`SimDistrict`.

    Station *i* draws from its own ``numpy`` generator seeded by (seed, i), so adding stations or faults
    to one station leaves the others' events unchanged. That independence is also what lets ``only``
    simulate some of the stations: each keeps its index, so its events are exactly those it has in the
    whole district's run (the scenario runner spreads one run's stations over processes this way).
    """

    def __init__(self, sim_district: SimDistrict, seed: int, start_ts: float,
                 reading_interval_s: float = 10.0, tick_interval_s: float = 60.0,
                 noise: NoiseSettings | None = None, *, block_s: float = 600.0,
                 running_update_s: float | None = 10.0, truth_every: int | None = 1,
                 faults: dict[str, list[StationFault]] | None = None,
                 vapor: bool | VaporSimSettings = False, only: Collection[str] | None = None):
        self.sim_district = sim_district
        self.seed = seed
        self.start_ts = float(start_ts)
        self.noise = noise if noise is not None else NoiseSettings()
        self.timing = Timing(reading_interval_s, tick_interval_s, block_s, running_update_s, truth_every)
        self.truth = GroundTruth()
        self.board = PriceBoard.create(seed, self.start_ts)
        faults = faults or {}
        self.stations: list[StationSim] = []
        for i, spec in enumerate(sim_district.district.stations):
            if only is not None and spec.id not in only:
                continue
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, i)))
            prices = StationPrices.draw(self.board, rng, sorted({t.grade for t in spec.tanks}))
            nozzles = sim_district.station_nozzles(spec.id)
            vapor_sim = None
            if vapor:  # issue 6: its own generator, so the rest of the station's events do not change
                vrng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2, i)))
                vapor_sim = VaporSim(spec.id, [n.nozzle_id for n in nozzles], [n.grade for n in nozzles],
                                     vrng, self.start_ts,
                                     vapor if isinstance(vapor, VaporSimSettings) else None)
            self.stations.append(StationSim(
                spec, sim_district.station_tanks(spec.id), nozzles,
                sim_district.profiles[spec.id], rng, prices, self.start_ts, self.timing, self.noise,
                self.truth, faults.get(spec.id), vapor_sim))
        self._by_id = {s.id: s for s in self.stations}
        self._now = self.start_ts

    @property
    def district(self) -> District:
        """The declared district: what the twin is configured with."""
        return self.sim_district.district

    @property
    def now(self) -> float:
        """Event time up to which events have been returned."""
        return self._now

    def station(self, station_id: str) -> StationSim:
        return self._by_id[station_id]

    def add_fault(self, station_id: str, fault: StationFault) -> None:
        """Attach a fault to a station; it acts from the next physics block not yet generated."""
        self._by_id[station_id].faults.append(fault)

    def advance(self, until_ts: float) -> list[dict[str, Any]]:
        """Every event with ts < ``until_ts`` not returned before, sorted by ts (ties: station, then order
        of generation)."""
        if until_ts <= self._now:
            return []
        out: list[dict[str, Any]] = []
        for station in self.stations:
            out.extend(station.release(until_ts))
        out.sort(key=_TS)
        self._now = float(until_ts)
        return out


async def run_live(sim: DistrictSimulator, sink: Sink, *, speed: float | None, step_s: float = 1.0,
                   until_ts: float | None = None) -> float:
    """Feed ``sink(events, sim_now)`` step by step until ``until_ts`` (forever if None).

    ``speed=None`` runs as fast as the sink allows, yielding to the loop between steps; otherwise event
    time advances ``speed`` times faster than wall time, paced on a monotonic clock and without drift (a
    slow step is caught up on, not carried forward). Returns the event time reached.
    """
    if step_s <= 0:
        raise ValueError("step_s must be > 0")
    if speed is not None and speed <= 0:
        raise ValueError("speed must be > 0 or None")
    wall0 = time.monotonic()
    sim0 = sim.now
    while until_ts is None or sim.now < until_ts:
        target = sim.now + step_s if until_ts is None else min(sim.now + step_s, until_ts)
        events = sim.advance(target)
        await sink(events, target)
        if speed is None:
            await asyncio.sleep(0)
        else:
            delay = wall0 + (target - sim0) / speed - time.monotonic()
            await asyncio.sleep(max(0.0, delay))
    return sim.now
