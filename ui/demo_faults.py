"""Fault injection into the running demo, and what the twin made of each fault (``/api/v1/demo/faults``).

Only a demo has them: its simulator is the station, so a tester can open a valve or tamper with a meter
(``simulators/live_faults.py``) and watch the alert come. Each injected fault is scored as a scenario's
expectation would be (``twin.scoring.match_expectations``: the alert that detects its type, at its
station and entity, raised after the fault first acted), against the alerts the twin wrote, so the
station page can say "found after 14 minutes" or "not yet". Without a deadline (``within``) a fault is
only timed; with one it is also met or late.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from fastapi import Body, FastAPI, HTTPException
from pydantic import TypeAdapter, ValidationError

from twin.scenarios import FAULT_ALERT, Duration, Expectation
from twin.scoring import FaultTruth, match_expectations

#: The deadline of a fault injected without one: long enough never to pass in a demo.
UNTIMED_S = 3650 * 86_400.0
_DURATION: TypeAdapter[float] = TypeAdapter(Duration)


def add_demo_fault_routes(app: FastAPI, ctx: Any, api: str) -> None:
    """Register the routes when the app has a demo simulator's faults (``ctx.faults``)."""
    live = ctx.faults
    if live is None:
        return
    store, district = ctx.store, ctx.district
    within: dict[int, float] = {}
    nozzle_tanks = district.nozzle_tanks()

    async def scored(faults: list[dict[str, Any]]) -> list[dict[str, Any]]:
        by_station: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for f in faults:
            by_station[f["station"]].append(f)
        for station, mine in by_station.items():
            expect = [Expectation(alert=FAULT_ALERT[f["type"]], station=station,
                                  within=within.get(f["id"], UNTIMED_S),
                                  **({f["entity_kind"]: f["entity"]} if f["entity"] else {}))
                      for f in mine]
            truth = [FaultTruth(f["type"], station, f["entity"], f["first_active_ts"], f["last_active_ts"],
                                tuple(f["entities"]), f["params"]) for f in mine]
            alerts = await store.alerts(station=station, limit=1_000_000)
            results, _ = match_expectations(expect, alerts, truth, start_ts=mine[0]["at_ts"],
                                            nozzle_tanks=nozzle_tanks)
            for f, r in zip(mine, results, strict=True):
                f["alert"] = r["alert"]
                deadline = within.get(f["id"])
                began = f["first_active_ts"]
                f["detection"] = {
                    "acted": r["exercised"] and f["first_active_ts"] is not None,
                    "alert_id": r["alert_id"], "alert_entity": r["alert_entity"],
                    "detected_ts": r["detected_ts"], "time_to_detect_s": r["time_to_detect_s"],
                    "within_s": within.get(f["id"]),
                    "met": r["met"] if f["id"] in within and r["alert_id"] is not None else None,
                    "late": r["late"] if f["id"] in within else False,
                    # its deadline passed with nothing found yet (late once found after it)
                    "overdue": (deadline is not None and began is not None and r["alert_id"] is None
                                and live.now > began + deadline),
                }
        return faults

    @app.get(f"{api}/demo/faults/types", tags=["demo"])
    async def fault_types() -> list[dict[str, Any]]:
        """The fault types a tester can inject now, what each acts on, its parameters, values to begin
        with, and the alert code that should find it."""
        return [{**t, "alert": FAULT_ALERT.get(t["type"])} for t in live.catalogue()]

    @app.get(f"{api}/demo/faults", tags=["demo"])
    async def injected(station: str | None = None) -> list[dict[str, Any]]:
        """Faults injected so far (of one station), with what each did and when the twin found it."""
        return await scored(live.injected(station))

    @app.post(f"{api}/demo/faults", status_code=201, tags=["demo"])
    async def inject(spec: dict[str, Any] = Body(..., examples=[  # noqa: B008 - FastAPI's idiom
            {"type": "theft", "station": "BH-0001", "tank": "T1", "volume_l": 200, "duration": "10m"}])
                     ) -> dict[str, Any]:
        """Inject a fault, written as an item of a scenario's ``faults:`` (docs/scenarios.md), ``at``
        counted from the simulator's present (default now); ``within`` (a duration) sets a deadline
        for its detection. 422 says what is wrong with it."""
        spec = dict(spec)
        deadline = spec.pop("within", None)
        seconds = None
        if deadline is not None:
            try:
                seconds = _DURATION.validate_python(deadline)
            except ValidationError:
                seconds = -1.0
            if not seconds > 0:
                raise HTTPException(422, f"within: {deadline!r} is not a duration such as 30m, 2h or 7d")
        try:
            fault = live.inject(spec)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        if seconds is not None:
            within[fault["id"]] = seconds
        return (await scored([fault]))[0]
