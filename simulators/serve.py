"""``fueltwin simulate --serve``: a simulated district whose devices speak their real protocols.

Every station gets a tank gauge, a dispenser controller for its nozzles and, where it sells gasoline,
a vapor-recovery monitor, each a protocol server laid out by a shipped profile. Profiles are dealt to
stations in turn (station *i* gets the *i*-th gauge profile, modulo how many there are), so a district
of a few stations exercises every shipped profile of every protocol whose simulator is installed.
The station configuration written next to it names exactly those devices, endpoints and channels, so
``fueltwin serve --config`` reads back what the simulator plays.

The district simulator runs its vapor-recovery model (issue 6), so the monitors serve its A/L per fill
and system samples; a scenario without vapor (``vapor: false``) leaves them silent. A station's vapor
monitor is one of two things (``vapor_via``): a Modbus device the platform polls (profile ``MB-VRM``),
or — as GB 20952-2020 §4.5 monitors report to the bureau — an HJ 212-2017 client
(``simulators/servers/hj212_client.py``) that connects to the platform's receiving server and uploads
each fill and system sample, keeping what it could not upload yet until the server is there (E.3.5:
missed uploads are back-filled). ``hj212`` gives every gasoline station an uploading monitor,
``modbus`` a polled one, ``mixed`` deals them in turn (even stations Modbus, odd ones HJ 212), never
both at one station (the twin would count each fill twice). Only device data goes over the
protocols; the simulator's documents and posted prices are not field data and stay out (they come
through document imports, a later issue).
"""

from __future__ import annotations

import importlib
import logging
import random
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bridges.config import config_dict
from bridges.profiles import shipped_profiles
from simulators.feed import DistrictSimulator
from simulators.servers.hj212_client import Hj212MonitorClient
from twin.events import DIESEL_GRADES

log = logging.getLogger(__name__)

SERVER_MODULES = {"modbus": "simulators.servers.modbus", "opcua": "simulators.servers.opcua",
                  "tls350": "simulators.servers.tls"}
#: Kinds of device each station gets, in order.
ROLES = (("atg", "tank_gauge"), ("fcc", "dispenser"), ("vrm", "vapor_monitor"), ("safe", "safety_sensor"))
#: What a healthy station's safety sensors read (the simulator has no safety physics): no gas, a dry
#: interstitial space, the unloading clamp on.
HEALTHY_SAFETY = {"gas_lel": {"value": 0.0}, "interstitial": {"state": "ok"},
                  "grounding": {"state": "grounded", "unloading": False}}
#: How a station's vapor monitor reports (module docstring).
VAPOR_VIA = ("hj212", "modbus", "mixed")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free now, for a server that starts later in another program (the HJ 212 receiver)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def monitor_mn(station: str) -> str:
    """A 24-character MN (HJ 212-2017's width for MN) naming the station: FTVRM + its id's characters."""
    body = "FTVRM" + "".join(ch for ch in station.upper() if ch.isalnum())
    return body[:24].ljust(24, "0")


def server_class(protocol: str) -> type | None:
    """The protocol's ``…DeviceServer`` class, or None when its simulator is not installed."""
    try:
        module = importlib.import_module(SERVER_MODULES[protocol])
    except (KeyError, ImportError):
        return None
    return next((obj for name, obj in vars(module).items()
                 if name.endswith("DeviceServer") and isinstance(obj, type)), None)


def available_profiles(protocols: Iterable[str] | None = None) -> dict[str, list[Any]]:
    """Shipped profiles with an installed simulator, by device kind, in a stable order."""
    wanted = set(protocols) if protocols else None
    out: dict[str, list[Any]] = {}
    for _, prof in sorted(shipped_profiles().items()):
        if wanted is not None and prof.protocol not in wanted:
            continue
        if server_class(prof.protocol) is None:
            continue
        out.setdefault(prof.kind, []).append(prof)
    return out


@dataclass
class ServedDevice:
    station: str
    id: str
    profile: Any
    channels: dict[str, int]
    server: Any
    endpoint: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def entry(self) -> dict[str, Any]:
        e: dict[str, Any] = {"id": self.id, "protocol": self.profile.protocol, "endpoint": self.endpoint,
                             "profile": self.profile.model, "channels": self.channels}
        if self.options:
            e["options"] = self.options
        return e


def _channels(ids: list[str], profile: Any) -> dict[str, int] | None:
    numbers_of = getattr(getattr(profile, "channels", None), "numbers", None)
    numbers = list(numbers_of) if numbers_of is not None else list(range(1, len(ids) + 1))
    if len(ids) > len(numbers):
        return None
    return {eid: numbers[k] for k, eid in enumerate(ids)}


class SimulatedSites:
    """The protocol servers of every simulated station, fed from a :class:`DistrictSimulator`."""

    def __init__(self, sim: DistrictSimulator, *, host: str = "127.0.0.1",
                 protocols: Iterable[str] | None = None, poll_interval_s: float | None = None,
                 vapor_via: str = "modbus", hj212: tuple[str, int] | None = None, seed: int = 0):
        if vapor_via not in VAPOR_VIA:
            raise ValueError(f"vapor_via must be one of {', '.join(VAPOR_VIA)}, not {vapor_via!r}")
        if vapor_via != "modbus" and hj212 is None:
            raise ValueError("HJ 212 monitors need the receiving server's (host, port)")
        self.sim = sim
        self.host = host
        self.poll_interval_s = poll_interval_s
        self.hj212 = hj212
        self.profiles = available_profiles(protocols)
        self.devices: list[ServedDevice] = []
        #: Station id → its HJ 212 monitor and the configuration entry the receiving server checks.
        self.monitors: dict[str, tuple[Hj212MonitorClient, dict[str, Any]]] = {}
        self._by_station: dict[str, list[Any]] = {}
        rng = random.Random(f"hj212-passwords-{seed}")
        for i, spec in enumerate(sim.district.stations):
            uploads = vapor_via == "hj212" or (vapor_via == "mixed" and i % 2 == 1)
            for role, kind in ROLES:
                if kind == "vapor_monitor" and uploads:
                    self._add_monitor(spec, rng)
                    continue
                choices = self.profiles.get(kind, [])
                if not choices:
                    continue
                if kind == "tank_gauge":
                    ids = [t.id for t in spec.tanks]
                elif kind == "dispenser":
                    ids = [n.id for n in spec.nozzles]
                elif kind == "safety_sensor":
                    ids = []  # the station's panel, not one tank's or nozzle's
                else:
                    ids = [n.id for n in spec.nozzles if n.grade not in DIESEL_GRADES]
                    if not ids:
                        continue
                profile = next((p for k in range(len(choices))
                                if _channels(ids, p := choices[(i + k) % len(choices)]) is not None), None)
                if profile is None:
                    log.warning("%s: no %s profile has channels for %d entities", spec.id, kind, len(ids))
                    continue
                channels = _channels(ids, profile)
                assert channels is not None
                cls = server_class(profile.protocol)
                assert cls is not None
                server = cls(profile, channels, host=host)
                if kind == "safety_sensor":
                    server.apply([{"kind": "safety.reading", "ts": sim.now, "station": spec.id, "entity": "",
                                   "device": b.constants.get("device"), **HEALTHY_SAFETY.get(
                                       str(b.constants.get("sensor")), {})}
                                  for b in getattr(profile, "blocks", ())])
                options = {"poll_interval_s": poll_interval_s} if poll_interval_s else {}
                dev = ServedDevice(spec.id, role, profile, channels, server, options=options)
                self.devices.append(dev)
                self._by_station.setdefault(spec.id, []).append(dev)

    def _add_monitor(self, spec: Any, rng: random.Random) -> None:
        guns = {n.id: "".join(ch for ch in n.id if ch.isdigit()) or str(k + 1)
                for k, n in enumerate(spec.nozzles) if n.grade not in DIESEL_GRADES}
        if not guns or self.hj212 is None:
            return
        mn, password = monitor_mn(spec.id), f"{rng.randrange(10 ** 6):06d}"
        client = Hj212MonitorClient(spec.id, mn, password, self.hj212[0], self.hj212[1], nozzles=guns)
        self.monitors[spec.id] = (client, {"mn": mn, "password": password,
                                           "nozzles": {gun: nid for nid, gun in guns.items()}})
        self._by_station.setdefault(spec.id, []).append(client)

    async def start(self) -> None:
        for dev in self.devices:
            dev.endpoint = await dev.server.start()
        for client, _ in self.monitors.values():
            await client.start()  # uploads in the background, reconnecting until the server is there

    async def stop(self) -> None:
        for dev in self.devices:
            try:
                await dev.server.stop()
            except Exception:  # noqa: BLE001 - stop the rest regardless
                log.exception("stopping %s/%s", dev.station, dev.id)
        for client, _ in self.monitors.values():
            await client.stop()

    def apply(self, events: list[dict[str, Any]]) -> None:
        """Hand each station's events (in ts order) to its devices."""
        per: dict[str, list[dict[str, Any]]] = {}
        for ev in events:
            per.setdefault(ev["station"], []).append(ev)
        for sid, evs in per.items():
            for dev in self._by_station.get(sid, ()):
                (dev.server if isinstance(dev, ServedDevice) else dev).apply(evs)

    async def sink(self, events: list[dict[str, Any]], now: float) -> None:
        """A ``run_live`` sink."""
        self.apply(events)

    def config(self) -> dict[str, Any]:
        """The station configuration for these devices (device clocks: the simulator's event time)."""
        per: dict[str, list[dict[str, Any]]] = {}
        for dev in self.devices:
            per.setdefault(dev.station, []).append(dev.entry())
        monitors = {sid: entry for sid, (_, entry) in self.monitors.items()}
        listen = f"{self.hj212[0]}:{self.hj212[1]}" if monitors and self.hj212 else None
        return config_dict(self.sim.district, per, time="device", monitors=monitors, hj212_listen=listen)

    def profiles_used(self) -> list[str]:
        return sorted({d.profile.model for d in self.devices})


async def run_served(*, stations: int, seed: int, start_ts: float, speed: float, reading_interval_s: float,
                     poll_interval_s: float | None, config_out: Any, host: str = "127.0.0.1",
                     scenario: Any = None, announce: Any = print, vapor_via: str = "hj212",
                     hj212_port: int | None = None) -> None:
    """Build the district (or the scenario's), serve its devices, write the configuration, play it.

    HJ 212 monitors upload to ``host:hj212_port`` (default: a port free now), where ``fueltwin serve
    --config`` will listen; until it does they keep their uploads queued."""
    import asyncio
    from pathlib import Path

    import yaml

    from simulators.district import synthetic_district
    from simulators.feed import run_live

    until = None
    if scenario is not None:
        from twin.scenario_runner import build_district, build_simulator

        seed = scenario.seed
        sim = build_simulator(scenario, seed, build_district(scenario, seed))
        until = scenario.end
    else:
        # Served until stopped, scored by nobody: no true state per reading (it only grew).
        sim = DistrictSimulator(synthetic_district(stations, seed), seed=seed, start_ts=start_ts,
                                reading_interval_s=reading_interval_s, vapor=True, truth_every=None)
    if poll_interval_s is None and speed > 1:
        # Every reading must be on its device when it is polled, and the twin must not see 5 minutes of
        # event time pass between two polls of a live gauge: poll twice per reading interval at most.
        poll_interval_s = round(max(0.05, min(1.0, sim.timing.reading_interval_s / speed / 2)), 3)
    hj212 = None if vapor_via == "modbus" else (host, hj212_port or free_port(host))
    sites = SimulatedSites(sim, host=host, poll_interval_s=poll_interval_s, vapor_via=vapor_via, hj212=hj212,
                           seed=seed)
    await sites.start()
    try:
        path = Path(config_out)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(sites.config(), allow_unicode=True, sort_keys=False, default_flow_style=None,
                              width=110)
        path.write_text(text, encoding="utf-8")
        what = f", scenario {scenario.name}" if scenario is not None else ""
        lines = [f"fueltwin simulate: {len(sim.district.stations)} stations, {len(sites.devices)} devices, "
                 f"simulated time ×{speed:g}{what}"]
        lines += [f"  {d.station} {d.id:<4} {d.profile.protocol:<7} {d.endpoint:<26} {d.profile.model}"
                  for d in sites.devices]
        lines += [f"  {sid} vrm  hj212   uploads to tcp://{c.host}:{c.port}  MN {entry['mn']}"
                  for sid, (c, entry) in sites.monitors.items()]
        lines += [f"configuration: {path}", f"  fueltwin serve --config {path}", "Ctrl-C stops."]
        announce("\n".join(lines))
        step = max(0.5, min(reading_interval_s, speed * 0.1))
        await run_live(sim, sites.sink, speed=speed, step_s=step, until_ts=until)
        if until is not None:
            announce("scenario finished: the devices keep their last values; Ctrl-C stops.")
            await asyncio.Event().wait()
    finally:
        await sites.stop()
