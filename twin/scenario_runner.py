"""Running fault scenarios: simulated district + injected faults → the twin, in event time, scored.

Composition only (the format is ``twin/scenarios.py``, the scoring ``twin/scoring.py``): for each
scenario and seed it builds the district (synthetic, or the scenario's explicit stations with a simulated
truth behind their declared charts), the simulator with the scenario's noise and faults, and a twin
runtime with the scenario's settings; feeds the twin one simulated hour at a time, as fast as the machine
goes, straight through ``runtime.process`` (Redis is not needed to score, and would only slow the run);
collects the alerts and recognised deliveries; and scores them against the simulator's ground truth.

Like the CLI, it imports the simulator lazily, inside functions, so that importing it costs nothing and
twin/'s import graph stays one-way.

Determinism: a run is a function of (scenario file, seed): the simulator is seeded, the twin works in
event time only, and batches are cut at fixed event times, so two runs give the same report apart from
wall-clock figures (``wall_s``, ``events_per_s``), whatever ``--jobs``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import multiprocessing
import sys
import time
import traceback
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from twin.divergence_bins import DivergenceBins
from twin.scenarios import (
    MONTH_S,
    Scenario,
    ScenarioError,
    StationEntry,
    entity_problems,
    load_scenario,
)
from twin.scoring import DeliveryTruth, FaultTruth, aggregate, score_run

if TYPE_CHECKING:
    from simulators.district import SimDistrict
    from simulators.feed import DistrictSimulator

__all__ = ["BATCH_S", "READING_INTERVAL_S", "Progress", "build_district", "build_simulator", "check_scenario",
           "load_all", "run_one", "run_suite", "scenario_files"]

#: Scenarios read each tank once a minute unless their noise says otherwise (issue 3's example).
READING_INTERVAL_S = 60.0
#: Event time fed to the twin per batch: one simulated hour.
BATCH_S = 3600.0
#: The simulator's ground truth keeps every n-th true tank state; scoring does not use the series, so
#: keep few (a month of minute readings would otherwise hold ~2 MB per station for nothing).
TRUTH_EVERY = 60


# --------------------------------------------------------------------------------------------------
# Files


def scenario_files(paths: Sequence[str | Path]) -> list[Path]:
    """The files named, a directory standing for its ``*.yaml`` / ``*.yml`` files in name order."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.suffix in (".yaml", ".yml") and q.is_file()))
        else:
            out.append(p)
    return out


def load_all(paths: Sequence[str | Path], seeds: int = 1) -> tuple[list[Scenario], list[str]]:
    """Load and check every file for every seed before anything runs: a typo fails in a second, not
    after a simulated month. Returns the scenarios and every problem found (file: field: what)."""
    scenarios, problems = [], []
    for path in scenario_files(paths):
        try:
            scn = load_scenario(path)
        except ScenarioError as exc:
            problems.extend(str(exc).splitlines())
            continue
        found = check_scenario(scn, scn.seeds(seeds))
        if found:
            problems.extend(f"{scn.source}: {p}" for p in found)
        else:
            scenarios.append(scn)
    return scenarios, problems


def check_scenario(scn: Scenario, seeds: Sequence[int]) -> list[str]:
    """Faults and expectations against the district each seed draws (a synthetic station's tanks and
    nozzles depend on the seed: T1–T3 and N1–N8 always exist, T4 or N9 only at some)."""
    if not scn.district.synthetic:
        return []  # explicit stations were checked at load
    problems: dict[str, list[int]] = {}
    for seed in seeds:
        for p in entity_problems(scn, build_district(scn, seed).district):
            problems.setdefault(p, []).append(seed)
    out = []
    for p, bad in problems.items():
        which = f"seed {bad[0]}" if len(bad) == 1 else f"seeds {', '.join(map(str, bad[:5]))}" + (
            " …" if len(bad) > 5 else "")
        out.append(f"{p} [{which} of {len(seeds)}]" if len(bad) < len(seeds) else p)
    return out


# --------------------------------------------------------------------------------------------------
# The district, the simulator


def build_district(scn: Scenario, seed: int) -> SimDistrict:
    """Synthetic stations drawn from ``seed``, or the scenario's explicit ones with a truth drawn from it."""
    from simulators.district import synthetic_district

    strap = scn.noise.strapping_error_pct
    if isinstance(scn.district.stations, int):
        if strap is None:
            return synthetic_district(scn.district.stations, seed)
        return synthetic_district(scn.district.stations, seed, strapping_error_pct=strap)
    return explicit_district(scn.district.stations, seed, 0.3 if strap is None else strap)


def explicit_district(entries: Sequence[StationEntry], seed: int, strapping_error_pct: float) -> SimDistrict:
    """A simulated truth behind stations the scenario declares.

    The declared chart is what the station filed; the true tank differs from it by a drawn error within
    ``strapping_error_pct`` (a cylinder's diameter and length, or a strapping table's volumes scaled), as
    in the synthetic district. Who buys comes from each station's ``profile``; dispenser identities,
    water bottoms and thermal time constants are drawn like the synthetic district's.
    """
    import numpy as np

    from simulators.district import (
        FILLS_PER_DAY,
        GRADE_SHARE,
        TRUCK_SHARE,
        SimDistrict,
        StationProfile,
        TrueNozzle,
        TrueTank,
    )
    from simulators.places import BRANDS, DISPENSER_MODELS, REGIONS
    from twin.physics import HorizontalCylinder, StrappingTable, product_of_grade
    from twin.registry import District

    kinds = {r.name: r.kind for r in REGIONS}
    specs, tanks, nozzles, profiles = [], {}, {}, {}
    pct = strapping_error_pct / 100.0
    for i, entry in enumerate(entries):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7, i)))
        spec = entry.spec()
        specs.append(spec)
        p = entry.profile
        kind = p.kind or kinds.get(spec.region, "urban")
        lo, hi = FILLS_PER_DAY[p.size]
        fills = p.fills_per_day if p.fills_per_day is not None else float(rng.uniform(lo, hi))
        sold = sorted({n.grade for n in spec.nozzles}, key=[t.grade for t in spec.tanks].index)
        raw = {g: GRADE_SHARE[kind].get(g, 0.05) for g in sold}
        brand = p.brand or BRANDS[int(rng.integers(len(BRANDS)))][0]
        profiles[spec.id] = StationProfile(size=p.size, kind=kind, fills_per_day=fills,
                                           grade_share={g: s / sum(raw.values()) for g, s in raw.items()},
                                           truck_share=TRUCK_SHARE[kind], brand=brand)
        for t in spec.tanks:
            declared = t.geometry()
            if isinstance(declared, HorizontalCylinder):
                eps_d = float(rng.uniform(-1, 1)) * pct / 4.0
                eps_l = float(rng.uniform(-1, 1)) * pct / 2.0
                true_geo: Any = HorizontalCylinder(
                    declared.diameter_mm / (1 + eps_d), declared.length_mm / (1 + eps_l), declared.ends,
                    declared.dish_depth_mm / (1 + eps_d) if declared.ends == "dished" else 0.0)
            elif isinstance(declared, StrappingTable):
                eps = float(rng.uniform(-1, 1)) * pct
                true_geo = StrappingTable(tuple(declared.levels_mm),
                                          tuple(v / (1 + eps) for v in declared.volumes_l))
            else:  # pragma: no cover - geometry_from_spec knows these two shapes only
                true_geo = declared
            water = 0.0 if rng.random() < 0.4 else round(float(rng.uniform(0.5, 5.0)), 1)
            tanks[(spec.id, t.id)] = TrueTank(
                spec.id, t.id, t.grade, product_of_grade(t.grade), float(t.declared_capacity_l), true_geo,
                declared, t.density, water, float(rng.uniform(1.5, 3.5)) * 86_400.0)  # type: ignore[arg-type]
        boards: dict[str, tuple[str, str, str, str]] = {}
        for k, n in enumerate(spec.nozzles, start=1):
            disp = n.dispenser or f"D{k}"
            if disp not in boards:
                maker, model = DISPENSER_MODELS[int(rng.integers(len(DISPENSER_MODELS)))]
                prefix = model.split()[-1].split("-")[0][:3].upper()
                serial = f"{prefix}{int(rng.integers(2016, 2026))}{int(rng.integers(0, 1_000_000)):06d}"
                board = f"{int(rng.integers(0, 2**48)):012X}"
                firmware = f"v{int(rng.integers(2, 5))}.{int(rng.integers(0, 10))}.{int(rng.integers(0, 20))}"
                boards[disp] = (f"{maker} {model}", serial, firmware, board)
            model, serial, firmware, board = boards[disp]
            nozzles[(spec.id, n.id)] = TrueNozzle(spec.id, n.id, disp, n.tank, n.grade, model,
                                                  f"{serial}-{k}", firmware, board)
    return SimDistrict(District(stations=tuple(specs)), tanks, nozzles, profiles, seed, strapping_error_pct)


def build_simulator(scn: Scenario, seed: int, sim_district: SimDistrict,
                    only: Collection[str] | None = None) -> DistrictSimulator:
    """The district's simulator with the scenario's noise and its faults attached; ``only`` simulates
    those stations alone, each exactly as in the whole district."""
    from simulators.faults import build_fault
    from simulators.feed import DistrictSimulator
    from simulators.settings import NoiseSettings

    faults: dict[str, list[Any]] = {}
    for spec in scn.faults:
        sid, fault = build_fault(spec, scn.start, seed)
        faults.setdefault(sid, []).append(fault)
        if hasattr(fault, "declare"):  # issue 5: a fault in what the station declared (capacity_misreport)
            sim_district.district = fault.declare(sim_district.district)
    interval = scn.noise.reading_interval_s or READING_INTERVAL_S
    return DistrictSimulator(sim_district, seed=seed, start_ts=scn.start, reading_interval_s=interval,
                             noise=NoiseSettings(**scn.noise.noise_settings()), truth_every=TRUTH_EVERY,
                             faults=faults, vapor=scn.vapor_on, only=only)


# --------------------------------------------------------------------------------------------------
# Progress


class Progress:
    """Progress of long runs on stderr, at most every ``every_s`` wall seconds: simulated days done and
    events/s, over the run so far and since the last line. Lines, not carriage returns, so parallel jobs
    and log files read cleanly. The rate since the last line is what a live twin runs at once its state
    has filled: a month's run falls from ~37 k to ~30 k events/s by day 14, which the run's mean hides."""

    def __init__(self, label: str, days: float, stream: TextIO | None = None, every_s: float = 5.0):
        self.label = label
        self.days = days
        self.stream = stream if stream is not None else sys.stderr
        self.every_s = every_s
        self._next = time.monotonic() + every_s
        self._last = (0, 0.0)  # events and wall seconds at the last line

    def update(self, day: float, events: int, wall_s: float) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.every_s
        rate = events / wall_s if wall_s > 0 else 0.0
        last_events, last_wall = self._last
        recent = (events - last_events) / (wall_s - last_wall) if wall_s > last_wall else 0.0
        self._last = (events, wall_s)
        print(f"  {self.label}: day {day:.1f}/{self.days:g}, {events:,} events, {rate:,.0f} events/s "
              f"({recent:,.0f} since the last line)", file=self.stream, flush=True)

    def done(self, report: dict[str, Any]) -> None:
        fig = report["figures"]
        exp = report["expectations"]
        met = sum(1 for e in exp if e["met"])
        status = "error" if report.get("error") else "passed" if report["passed"] else "FAILED"
        print(f"  {self.label}: {status}: {met}/{len(exp)} expected detections, "
              f"{len(report['false_alarms'])} false alarms; {fig['events']:,} events in "
              f"{fig['wall_s']:.1f} s "
              f"({fig['events_per_s']:,.0f} events/s)", file=self.stream, flush=True)


# --------------------------------------------------------------------------------------------------
# One run


@dataclass(slots=True)
class _Collected:
    alerts: list[dict[str, Any]]
    deliveries: list[dict[str, Any]]
    events: int
    rejected: list[dict[str, Any]]
    wall_s: float
    divergence: DivergenceBins


@dataclass(slots=True)
class _Part:
    """What simulating some (or all) of a run's stations and feeding them to a twin gave: the twin's
    outputs, the simulator's truth of those stations, and the whole district's shape for scoring."""

    got: _Collected
    faults: list[FaultTruth]
    truth_deliveries: list[DeliveryTruth]
    stations: int
    tanks: int
    nozzle_tanks: dict[tuple[str, str], str]


async def _feed(scn: Scenario, sim: DistrictSimulator, runtime: Any, progress: Progress | None) -> _Collected:
    from twin.events import Validator

    validator = Validator(sim.district.directory())
    alerts: list[dict[str, Any]] = []
    deliveries: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    divergence = DivergenceBins()
    events = 0
    t0 = time.perf_counter()
    t, end = scn.start, scn.end
    while t < end:
        t = min(t + BATCH_S, end)
        accepted, bad = validator.validate(sim.advance(t), t)
        rejected.extend({"reason": r.reason, "station": r.station} for r in bad)
        groups: dict[str, list[Any]] = {}
        for ev in accepted:
            groups.setdefault(ev.station, []).append(ev)
        out = await runtime.process(groups, with_states=False)
        alerts.extend(out.alerts)
        deliveries.extend(out.deliveries)
        divergence.add(out.divergence)
        rejected.extend({"reason": r.get("reason"), "station": r.get("station")} for r in out.rejected)
        events += len(accepted)
        if progress is not None:
            progress.update((t - scn.start) / 86_400.0, events, time.perf_counter() - t0)
    return _Collected(alerts, deliveries, events, rejected, time.perf_counter() - t0, divergence)


def _run_part(scn: Scenario, seed: int, runtime: str, shards: int | None, stations: frozenset[str] | None,
              progress: Progress | None) -> _Part:
    """Simulate ``stations`` (None: all) of ``scn`` with ``seed`` and feed them to a twin of their own
    (a worker process's entry point when a run is spread over processes)."""
    from actors.base import make_runtime
    from twin.app_runner import tune_gc

    tune_gc()
    sim = build_simulator(scn, seed, build_district(scn, seed), only=stations)
    settings = scn.twin_settings()

    async def go() -> _Collected:
        twin = make_runtime(runtime, sim.district, settings, shards)  # the local runtime needs the loop
        try:
            return await _feed(scn, sim, twin, progress)
        finally:
            await twin.stop()

    got = asyncio.run(go())
    district = sim.district
    return _Part(got, [FaultTruth.of(r) for r in sim.truth.faults],
                 [DeliveryTruth.of(d) for d in sim.truth.deliveries], len(district.stations),
                 sum(len(s.tanks) for s in district.stations),
                 district.nozzle_tanks())


#: Events a fill makes on average (its nozzle's state every 10 s while it runs, lifted and hung up, the
#: transaction): measured on the synthetic district, 11.7 states and one transaction a fill.
EVENTS_PER_FILL = 13.5


def station_parts(scn: Scenario, seed: int, parts: int) -> list[frozenset[str]]:
    """The run's stations in ``parts`` groups of about equal work, the heaviest group first.

    A station's work is the events it makes in a day: a reading per tank and interval, a clock tick a
    minute, ``EVENTS_PER_FILL`` a fill. Largest first, each to the lightest group (within 4/3 of the
    best split). The heaviest group goes first because the calling process runs it at once while the
    other processes still start up. Not ``actors.base.partition``: that hashes station ids so that a
    station keeps its shard across processes and restarts, and a run of three stations needs balance."""
    sim_district = build_district(scn, seed)
    interval = scn.noise.reading_interval_s or READING_INTERVAL_S
    weight = {st.id: len(st.tanks) * 86_400.0 / interval + 1_440.0
              + EVENTS_PER_FILL * sim_district.profiles[st.id].fills_per_day
              for st in sim_district.district.stations}
    groups: list[tuple[float, list[str]]] = [(0.0, []) for _ in range(max(1, min(parts, len(weight))))]
    for sid in sorted(weight, key=lambda k: (-weight[k], k)):
        i = min(range(len(groups)), key=lambda j: (groups[j][0], j))
        groups[i] = (groups[i][0] + weight[sid], groups[i][1] + [sid])
    groups.sort(key=lambda g: -g[0])
    return [frozenset(ids) for _, ids in groups if ids]


def run_one(scn: Scenario, seed: int, runtime: str = "local", shards: int | None = None,
            progress: bool | Progress = False, processes: int = 1) -> dict[str, Any]:
    """Simulate ``scn`` with ``seed``, feed the twin, and return the scored report of the run.

    ``processes`` > 1 spreads the run's stations over that many processes (local runtime), each
    simulating its stations and twinning them: a station's events and its actors' state never depend
    on another station's, so the report is the same as in one process, apart from wall time. The run's
    ``wall_s`` then counts from starting the processes to the last one's end.
    """
    label = f"{scn.name} seed {seed}"
    prog = progress if isinstance(progress, Progress) else (
        Progress(label, scn.duration / 86_400.0) if progress else None)
    groups = station_parts(scn, seed, processes) if processes > 1 and runtime == "local" else [None]
    if len(groups) == 1:
        part = _run_part(scn, seed, runtime, shards, None, prog)
        parts, wall_s = [part], part.got.wall_s
    else:
        if prog is not None:
            print(f"  {label}: {len(groups)} processes, stations "
                  + " | ".join(", ".join(sorted(g)) for g in groups), file=prog.stream, flush=True)
        t0 = time.perf_counter()
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=len(groups) - 1, mp_context=ctx) as pool:
            futures = [pool.submit(_run_part, scn, seed, runtime, shards, g, None) for g in groups[1:]]
            parts = [_run_part(scn, seed, runtime, shards, groups[0], prog)]
            parts.extend(f.result() for f in futures)
        wall_s = time.perf_counter() - t0
    whole = parts[0]
    divergence = DivergenceBins()
    for p in parts:
        divergence.merge(p.got.divergence)
        divergence.add_deliveries(p.got.deliveries)  # the spans its windows list, from the run's own list
    events = sum(p.got.events for p in parts)
    rejected = [r for p in parts for r in p.got.rejected]
    figures = {
        "events": events, "rejected": len(rejected),
        "rejected_reasons": sorted({str(r["reason"]) for r in rejected})[:10],
        "wall_s": round(wall_s, 3), "events_per_s": round(events / wall_s) if wall_s else 0,
        "stations": whole.stations, "tanks": whole.tanks,
        "tank_months": round(whole.tanks * scn.duration / MONTH_S, 4),
        "sim_days": round(scn.duration / 86_400.0, 4), "runtime": runtime,
    }
    # The truth's faults in the order they first acted (then by entity), whichever process saw them.
    faults = sorted((f for p in parts for f in p.faults),
                    key=lambda f: (f.first_active_ts is None, f.first_active_ts or 0.0, f.station, f.entity,
                                   f.type))
    report = score_run(scn, seed, alerts=[a for p in parts for a in p.got.alerts],
                       deliveries=[d for p in parts for d in p.got.deliveries], faults=faults,
                       truth_deliveries=[d for p in parts for d in p.truth_deliveries], figures=figures,
                       nozzle_tanks=whole.nozzle_tanks, divergence=divergence)
    if prog is not None:
        prog.done(report)
    return report


def _failed_run(scn: Scenario, seed: int, runtime: str, error: str) -> dict[str, Any]:
    """The report of a run that raised: every expectation missed, so Pd counts it."""
    figures = {"events": 0, "rejected": 0, "rejected_reasons": [], "wall_s": 0.0, "events_per_s": 0,
               "stations": 0, "tanks": 0, "tank_months": 0.0,
               "sim_days": round(scn.duration / 86_400.0, 4), "runtime": runtime}
    report = score_run(scn, seed, alerts=[], deliveries=[], faults=[], truth_deliveries=[], figures=figures)
    for e in report["expectations"]:
        e["met"] = False
    report["passed"] = False
    report["error"] = error
    return report


def _job(scn: Scenario, seed: int, runtime: str, shards: int | None, progress: bool,
         processes: int = 1) -> dict[str, Any]:
    """A run that never raises (a worker process's entry point, too)."""
    try:
        return run_one(scn, seed, runtime, shards, progress, processes)
    except Exception:  # noqa: BLE001 - one broken run must not lose the others' results
        error = traceback.format_exc()
        if progress:
            print(f"  {scn.name} seed {seed}: the run failed:\n{error}", file=sys.stderr, flush=True)
        return _failed_run(scn, seed, runtime, error)


# --------------------------------------------------------------------------------------------------
# Many runs


def run_suite(scenarios: Sequence[Scenario], seeds: int = 1, runtime: str = "local", jobs: int = 1,
              shards: int | None = None, progress: bool = False,
              on_run: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Every scenario over seeds ``seed … seed + seeds − 1``; runs in file then seed order whatever
    ``jobs`` (worker processes, local runtime only). Returns the whole report.

    With at least as many runs as jobs, each job is one run at a time; with fewer, the runs go one after
    the other, each spreading its stations over ``jobs`` processes (``run_one``), so one long scenario
    uses every core too."""
    if jobs > 1 and runtime != "local":
        raise ValueError("--jobs > 1 runs scenarios in several processes; use it with the local runtime "
                         "(Ray spreads one run over processes itself)")
    plan = [(scn, seed) for scn in scenarios for seed in scn.seeds(seeds)]
    wall0 = time.perf_counter()
    runs: list[dict[str, Any]] = []
    if jobs <= 1 or len(plan) < jobs:
        for scn, seed in plan:
            if progress:
                print(f"{scn.name} seed {seed}: {scn.duration / 86_400.0:g} simulated days …",
                      file=sys.stderr, flush=True)
            runs.append(_job(scn, seed, runtime, shards, progress, jobs))
            if on_run is not None:
                on_run(runs[-1])
    else:
        # spawn: a clean interpreter per worker (no inherited event loop, threads or Ray state).
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures = [pool.submit(_job, scn, seed, runtime, shards, progress) for scn, seed in plan]
            for fut in futures:
                runs.append(fut.result())
                if on_run is not None:
                    on_run(runs[-1])
    summary = aggregate(runs)
    wall = time.perf_counter() - wall0
    return {"format": 1, "runtime": runtime, "seeds": seeds, "jobs": jobs,
            "wall_s": round(wall, 3), "runs": runs, "summary": summary,
            "throughput": throughput(runs, wall, jobs), "passed": summary["passed"]}


def throughput(runs: Sequence[dict[str, Any]], wall_s: float, jobs: int) -> dict[str, Any]:
    """What the whole command got through: every run's events over its wall time, start-up included.

    With ``--jobs`` and at least as many runs, each run is one process on one core and the runs share
    the machine's cores: this is the runner's rate and the runs' own ``events_per_s`` the rate of one
    core. With fewer runs than jobs, each run spreads over the jobs and its own rate is theirs."""
    events = sum(r["figures"]["events"] for r in runs)
    rates = [r["figures"]["events_per_s"] for r in runs if r["figures"]["events_per_s"]]
    return {"events": events, "wall_s": round(wall_s, 3), "jobs": max(jobs, 1),
            "events_per_s": round(events / wall_s) if wall_s > 0 else None,
            "run_events_per_s_min": min(rates, default=None),
            "run_events_per_s_max": max(rates, default=None)}


def format_throughput(t: Mapping[str, Any]) -> str:
    """One line for the table's foot."""
    if not t["events_per_s"]:
        return "runner: no events"
    each = (f"; each run {t['run_events_per_s_min']:,}–{t['run_events_per_s_max']:,} events/s on its own"
            if t["run_events_per_s_min"] is not None else "")
    return (f"runner: {t['events']:,} events in {t['wall_s']:.1f} s with {t['jobs']} job(s), start-up "
            f"included: {t['events_per_s']:,} events/s{each}")
