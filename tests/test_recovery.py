"""A restarted program comes back as the twin it was: the last durable checkpoint, then the log after it.

The reference is a twin that never stopped; the restarted one must end in exactly its state (actors are
deterministic), with or without a checkpoint to start from.
"""

from __future__ import annotations

import pytest

from actors.base import make_runtime
from tests.test_pipeline import simulated_day
from twin.service import TwinService
from twin.store import Store

pytestmark = pytest.mark.timeout(120)


async def _run(store: Store, district, batches, checkpoint_at: int | None) -> TwinService:  # noqa: ANN001
    service = TwinService(district, store, make_runtime("local", district))
    for i, (raws, now) in enumerate(batches):
        if i == checkpoint_at:
            assert await service.checkpoint() == len(district.stations)
        await service.ingest(raws, now=now)
    await service.drain()
    return service


@pytest.mark.parametrize("checkpoint_at", [30, None], ids=["from-checkpoint", "whole-log"])
async def test_restart_recovers_the_twin_it_was(store: Store, checkpoint_at: int | None) -> None:
    district, batches = simulated_day(hours=12, step_s=600)
    reference = await _run(Store(store.r, prefix=store.p + "-ref"), district, batches, None)
    expected = await reference.runtime.states()
    await reference.close()

    crashed = await _run(store, district, batches, checkpoint_at)
    logged_after = sum(len(r) for r, _ in batches[checkpoint_at or 0:])
    assert await crashed.runtime.states() == expected
    await crashed.runtime.stop()  # the program dies: no checkpoint at exit

    restarted = TwinService(district, store, make_runtime("local", district))
    report = await restarted.recover()
    assert report.restored == (len(district.stations) if checkpoint_at else 0)
    assert report.replayed == logged_after
    assert await restarted.runtime.states() == expected
    assert {s: st["events"] for s, st in (await store.states()).items()} == {
        s: st["events"] for s, st in expected.items()}
    # and it goes on from there like the reference would
    out = await restarted.ingest(batches[-1][0], now=batches[-1][1])
    assert out.events == 0  # every event of that batch was seen before the restart: duplicates
    await restarted.close()
