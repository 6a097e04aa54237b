"""Protocol simulators: each simulated field device served over its real protocol, per its profile.

Contract every ``simulators/servers/<protocol>.py`` follows, so ``fueltwin simulate --serve``
(``simulators/serve.py``) can drive them all alike::

    XxxDeviceServer(profile, channels: Mapping[str, int], *, host="127.0.0.1", port=0, **options)
    async start() -> str     # listen; returns the endpoint a bridge connects to (tcp://h:p, opc.tcp://…)
                             # a second start() after stop() listens on the same port (a device restart)
    async stop()
    apply(events: list[dict]) -> None
                             # update what the device exposes from the simulator's raw event dicts of
                             # one station (tank.reading, nozzle.state, nozzle.txn, device.info,
                             # clock.tick … as DistrictSimulator.advance produces them, in ts order);
                             # events of entities not in ``channels`` are ignored

``channels`` maps the station's tank or nozzle ids to the device's channel numbers, exactly as in the
station configuration the simulator writes, so the bridge reading the device and the server agree.
Device clocks are the simulator's event time: a reading's device time is its ``ts``.
"""
