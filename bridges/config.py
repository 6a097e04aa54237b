"""Station configuration: what a district's stations are and which field device reports what.

One YAML file lists stations exactly as the registry declares them (``twin.registry.StationSpec``:
tanks with declared capacity, chart and grade; nozzles with grade and tank) plus, per station, its
``devices``: protocol, endpoint, profile (a shipped model name or a YAML path relative to the file),
the Modbus unit or OPC UA namespace when they differ from the profile's, and ``channels`` — which tank
or nozzle is which channel of the device. Loading validates all of it together, so a wrong tank id, a
channel the device does not have or a profile of another protocol is an error at start-up that names
the file and the field::

    time: wall              # or 'device': trust the devices' clocks (a simulator running fast)
    stations:
      - id: BH-0001
        name: …
        region: …
        lon: 117.7
        lat: 39.0
        tanks: [{id: T1, grade: "92#", declared_capacity_l: 30000, chart: {shape: …}}]
        nozzles: [{id: N1, tank: T1, grade: "92#"}]
        devices:
          - {id: atg, protocol: modbus, endpoint: "tcp://10.1.2.3:502", profile: MB-ATG-F32,
             channels: {T1: 1}}
        hj212: {mn: "…", password: "123456", nozzles: {"1": N1}}   # a vapor monitor that uploads
    hj212: {listen: "0.0.0.0:9212"}   # where the HJ 212 receiving server listens (needed with monitors)

A station's ``hj212`` is its vapor-recovery online monitor (GB 20952-2020 §4.5) uploading over HJ
212-2017 (``bridges/hj212.py``): unlike a device, the monitor connects to the platform, so the file says
where the platform's receiving server listens and, per station, the monitor's MN and password (checked
on every upload) and which gun number is which nozzle (default: gun 4 is ``N4``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bridges.hj212 import MonitorConfig
from bridges.profiles import PROTOCOLS, ProfileError, format_errors, load_profile
from twin.registry import District, StationSpec

TimeSource = Literal["wall", "device"]


class ConfigError(ValueError):
    """A station configuration that cannot be used; one 'file: field: problem' line per problem."""


class DeviceEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")
    protocol: str
    endpoint: str = Field(min_length=1)
    profile: str = Field(min_length=1)
    #: Modbus unit id, when not the profile's.
    unit: int | None = Field(default=None, ge=0, le=255)
    #: OPC UA namespace (index or URI), when not the profile's.
    namespace: int | str | None = None
    #: Tank or nozzle id → the device's channel number.
    channels: dict[str, int] = Field(default_factory=dict)
    #: Anything else a protocol needs (documented by its bridge).
    options: dict[str, Any] = Field(default_factory=dict)


class Hj212Entry(BaseModel):
    """A station's HJ 212 vapor monitor: its MN (HJ 212-2017: up to 24 characters), password (up to 9)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mn: str = Field(min_length=1, max_length=24, pattern=r"^[0-9A-Za-z_-]+$")
    password: str = Field(min_length=1, max_length=9)
    #: Gun number as uploaded → nozzle id.
    nozzles: dict[str, str] = Field(default_factory=dict)


class Hj212Listen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: host:port of the receiving server.
    listen: str = Field(min_length=1)


class StationEntry(StationSpec):
    devices: tuple[DeviceEntry, ...] = ()
    hj212: Hj212Entry | None = None

    def spec(self) -> StationSpec:
        return StationSpec.model_validate(self.model_dump(exclude={"devices", "hj212"}))


class ConfigFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "滨海新区"
    timezone: str = "Asia/Shanghai"
    time: TimeSource = "wall"
    hj212: Hj212Listen | None = None
    stations: tuple[StationEntry, ...] = Field(min_length=1)


@dataclass(frozen=True)
class DeviceConfig:
    """One field device of one station, resolved: what a bridge is built from."""

    id: str
    station: str
    protocol: str
    endpoint: str
    profile_ref: str
    profile: Any
    channels: dict[str, int]
    unit: int | None = None
    namespace: int | str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """The events' source: protocol, station and device, unique in a district."""
        return f"{self.protocol}:{self.station}:{self.id}"

    def host_port(self, default_port: int) -> tuple[str, int]:
        return host_port(self.endpoint, default_port)


@dataclass(frozen=True)
class SiteConfig:
    district: District
    devices: list[DeviceConfig]
    time: TimeSource = "wall"
    path: Path | None = None
    #: HJ 212 monitors (``bridges.hj212.MonitorConfig``) and where their receiving server listens.
    monitors: list[MonitorConfig] = field(default_factory=list)
    hj212_listen: tuple[str, int] | None = None

    def station_devices(self, station: str) -> list[DeviceConfig]:
        return [d for d in self.devices if d.station == station]


def host_port(endpoint: str, default_port: int) -> tuple[str, int]:
    """``tcp://host:port``, ``opc.tcp://host:port/path`` or ``host:port`` → (host, port)."""
    parts = urlsplit(endpoint if "://" in endpoint else f"tcp://{endpoint}")
    if not parts.hostname:
        raise ValueError(f"no host in endpoint {endpoint!r}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad port in endpoint {endpoint!r}") from exc
    return parts.hostname, port if port is not None else default_port


#: Which entities a device kind reports on.
_ENTITY_KIND = {"tank_gauge": "tank", "dispenser": "nozzle", "vapor_monitor": "nozzle",
                "safety_sensor": "tank"}


def _check_device(src: str, where: str, station: StationSpec, dev: DeviceEntry, profile: Any,
                  claimed: dict[tuple[str, str], str]) -> list[str]:
    problems: list[str] = []
    if profile.protocol != dev.protocol:
        problems.append(f"{src}: {where}.profile: {dev.profile} is a {profile.protocol} profile, "
                        f"but the device speaks {dev.protocol}")
    try:
        host_port(dev.endpoint, 0)
    except ValueError as exc:
        problems.append(f"{src}: {where}.endpoint: {exc}")
    entity = _ENTITY_KIND.get(profile.kind, "tank")
    ids = {t.id for t in station.tanks} if entity == "tank" else {n.id for n in station.nozzles}
    numbers = getattr(getattr(profile, "channels", None), "numbers", None)
    used: dict[int, str] = {}
    for eid, channel in dev.channels.items():
        at = f"{src}: {where}.channels.{eid}"
        if eid not in ids:
            problems.append(f"{at}: station {station.id} has no {entity} {eid!r} "
                            f"(a {profile.kind} reports on {entity}s: {', '.join(sorted(ids))})")
            continue
        if numbers is not None and channel not in numbers:
            problems.append(f"{at}: channel {channel} is not one of the device's channels "
                            f"{numbers.start}..{numbers.stop - 1} (profile {profile.model})")
        if channel in used:
            problems.append(f"{at}: channel {channel} is already {used[channel]}")
        used[channel] = eid
        key = (profile.kind, eid)
        if key in claimed:
            problems.append(f"{at}: {entity} {eid} is already reported by device {claimed[key]}")
        claimed[key] = dev.id
    # A vapor monitor or a safety panel reports for the station as a whole; channels are optional.
    if not dev.channels and entity in ("tank", "nozzle") and profile.kind not in ("vapor_monitor",
                                                                                     "safety_sensor"):
        problems.append(f"{src}: {where}.channels: map at least one {entity} to a channel")
    return problems


def parse_config(data: Any, source: str = "<config>", base_dir: str | Path | None = None) -> SiteConfig:
    """Validate a parsed configuration; :class:`ConfigError` lists every problem found."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a station configuration is a mapping with 'stations', "
                          f"got {type(data).__name__}")
    try:
        cfg = ConfigFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("\n".join(format_errors(exc, source))) from None
    problems: list[str] = []
    devices: list[DeviceConfig] = []
    stations: list[StationSpec] = []
    seen_stations: set[str] = set()
    cache: dict[str, Any] = {}
    monitors: list[MonitorConfig] = []
    mns: dict[str, str] = {}
    for i, entry in enumerate(cfg.stations):
        spec = entry.spec()
        stations.append(spec)
        if spec.id in seen_stations:
            problems.append(f"{source}: stations[{i}].id: duplicate station {spec.id}")
        seen_stations.add(spec.id)
        if entry.hj212 is not None:
            mon = _monitor(source, f"stations[{i}].hj212", spec, entry.hj212, mns, problems)
            if mon is not None:
                monitors.append(mon)
        claimed: dict[tuple[str, str], str] = {}
        ids: set[str] = set()
        for j, dev in enumerate(entry.devices):
            where = f"stations[{i}].devices[{j}]"
            if dev.id in ids:
                problems.append(f"{source}: {where}.id: duplicate device id {dev.id} at {spec.id}")
            ids.add(dev.id)
            if dev.protocol not in PROTOCOLS:
                problems.append(f"{source}: {where}.protocol: {dev.protocol!r} is not one of "
                                f"{', '.join(PROTOCOLS)} (the protocols installed)")
                continue
            try:
                profile = cache.get(dev.profile) or load_profile(dev.profile, base_dir)
            except ProfileError as exc:
                problems.append(f"{source}: {where}.profile: {exc}")
                continue
            cache[dev.profile] = profile
            problems.extend(_check_device(source, where, spec, dev, profile, claimed))
            devices.append(DeviceConfig(dev.id, spec.id, dev.protocol, dev.endpoint, dev.profile, profile,
                                        dict(dev.channels), dev.unit, dev.namespace, dict(dev.options)))
    listen: tuple[str, int] | None = None
    if cfg.hj212 is not None:
        try:
            listen = host_port(cfg.hj212.listen, 0)
        except ValueError as exc:
            problems.append(f"{source}: hj212.listen: {exc}")
        else:
            if not 0 < listen[1] < 65536:
                problems.append(f"{source}: hj212.listen: give the port the monitors upload to "
                                f"(host:port), got {cfg.hj212.listen!r}")
    elif monitors:
        problems.append(f"{source}: hj212: {len(monitors)} station(s) list an HJ 212 monitor, so say where "
                        "the receiving server listens: hj212: {listen: \"host:port\"}")
    if problems:
        raise ConfigError("\n".join(problems))
    try:
        district = District(name=cfg.name, timezone=cfg.timezone, stations=tuple(stations))
    except ValidationError as exc:
        raise ConfigError("\n".join(format_errors(exc, source))) from None
    return SiteConfig(district, devices, cfg.time, monitors=monitors, hj212_listen=listen)


def _monitor(src: str, where: str, station: StationSpec, entry: Hj212Entry, mns: dict[str, str],
             problems: list[str]) -> MonitorConfig | None:
    """The station's HJ 212 monitor as the receiving server checks it, or None (problems appended)."""
    bad = False
    if entry.mn in mns:
        problems.append(f"{src}: {where}.mn: MN {entry.mn} is already station {mns[entry.mn]}'s monitor")
        bad = True
    mns.setdefault(entry.mn, station.id)
    nozzles = {n.id for n in station.nozzles}
    for gun, nozzle in entry.nozzles.items():
        if nozzle not in nozzles:
            problems.append(f"{src}: {where}.nozzles.{gun}: station {station.id} has no nozzle {nozzle!r} "
                            f"(it has {', '.join(sorted(nozzles))})")
            bad = True
    if bad:
        return None
    return MonitorConfig(station=station.id, mn=entry.mn, password=entry.password, nozzles=entry.nozzles)


def load_config(path: str | Path) -> SiteConfig:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    cfg = parse_config(data, str(path), path.parent)
    return SiteConfig(cfg.district, cfg.devices, cfg.time, path, cfg.monitors, cfg.hj212_listen)


def config_dict(district: District, devices: dict[str, list[dict[str, Any]]], time: TimeSource = "wall",
                *, monitors: dict[str, dict[str, Any]] | None = None, hj212_listen: str | None = None
                ) -> dict[str, Any]:
    """The YAML-ready form of a district and its devices (station id → device entries), and of its HJ 212
    monitors (station id → ``{mn, password, nozzles}``) with where their server listens."""
    stations = []
    for spec in district.stations:
        st = spec.model_dump(mode="json", exclude_defaults=True)
        st["devices"] = devices.get(spec.id, [])
        if monitors and spec.id in monitors:
            st["hj212"] = monitors[spec.id]
        stations.append(st)
    out: dict[str, Any] = {"name": district.name, "timezone": district.timezone, "time": time}
    if hj212_listen is not None:
        out["hj212"] = {"listen": hj212_listen}
    out["stations"] = stations
    return out
