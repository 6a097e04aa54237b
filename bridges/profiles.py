"""Device profiles: load one from YAML (validated, with errors naming the file and the field) and the
registry of the profiles shipped in ``bridges/profiles/``.

A profile is chosen by its ``protocol`` (a pydantic discriminated union over the protocol modules that
are installed). Contracts every protocol module follows, so the runner and the simulator can drive
them all alike:

Bridge (``bridges/<protocol>.py``)::

    XxxBridge(device: DeviceConfig, profile: XxxProfile, station: StationSpec, sink: EventSink,
              *, clock=time.time)
    async run()        # until cancelled; reconnects with bridges.base.Backoff; never raises on device
                       # faults (a device fault is counted in health(), not an exception)
    health() -> BridgeHealth
    async check()      # optional: connect once and raise ProfileMismatch if the device does not answer
                       # the profile's points (unknown node, illegal address, wrong unit)
    source: str        # f"{protocol}:{station}:{device.id}", the events' source

``device`` is :class:`bridges.config.DeviceConfig` (endpoint, unit / namespace, channels: tank or
nozzle id → the device's channel number). ``sink(events)`` takes a list of raw event dicts of
``twin/events.py``; a value the bridge refuses (NaN, out of range, wrong type) goes into the same list
as a ``twin.events.Rejection`` (raw = what was read, reason = why), which the twin counts and
dead-letters like its own rejections. Events carry the device's time where the profile has one, a
per-source ``seq`` (bridges.base.SourceSequence) and ``quality``.

Simulator server (``simulators/servers/<protocol>.py``): see ``simulators/servers/__init__.py``.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import Field, TypeAdapter, ValidationError

from bridges.modbus_profile import ModbusProfile

log = logging.getLogger(__name__)

#: Where the shipped profiles live.
PROFILE_DIR = Path(__file__).parent / "profiles"

_KINDS: list[type] = [ModbusProfile]
try:  # helper B's protocols; a branch without them still loads Modbus profiles
    from bridges.opcua_profile import OpcUaProfile

    _KINDS.append(OpcUaProfile)
except ImportError:  # pragma: no cover - depends on what is merged
    OpcUaProfile = None  # type: ignore[assignment,misc]
try:
    from bridges.tls_profile import Tls350Profile

    _KINDS.append(Tls350Profile)
except ImportError:  # pragma: no cover
    Tls350Profile = None  # type: ignore[assignment,misc]

PROTOCOLS: tuple[str, ...] = tuple(k.model_fields["protocol"].annotation.__args__[0] for k in _KINDS)

if len(_KINDS) > 1:
    DeviceProfile: Any = Annotated[Union[tuple(_KINDS)], Field(discriminator="protocol")]  # noqa: UP007
else:  # a union of one is no union: pydantic refuses a discriminator on it
    DeviceProfile = _KINDS[0]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(DeviceProfile)


class ProfileError(ValueError):
    """A profile that cannot be used, with every problem as 'file: field.path: message'."""


def _loc(parts: tuple[Any, ...]) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif p in PROTOCOLS and not out:
            continue  # the union's branch name adds nothing for a person
        else:
            out += ("." if out else "") + str(p)
    return out or "(top level)"


def format_errors(exc: ValidationError, source: str, prefix: str = "") -> list[str]:
    lines = []
    for err in exc.errors(include_url=False):
        loc = _loc(tuple(err.get("loc", ())))
        loc = f"{prefix}.{loc}" if prefix and loc != "(top level)" else (prefix or loc)
        msg = err.get("msg", "invalid")
        if err.get("type") == "union_tag_invalid":
            msg = f"protocol must be one of {', '.join(PROTOCOLS)}"
        elif err.get("type") == "union_tag_not_found":
            msg = f"missing 'protocol' (one of {', '.join(PROTOCOLS)})"
        lines.append(f"{source}: {loc}: {msg}")
    return lines


def parse_profile(data: Any, source: str = "<profile>") -> Any:
    """Validate a profile's parsed YAML; :class:`ProfileError` lists every problem."""
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: a profile is a mapping of fields, got {type(data).__name__}")
    if data.get("protocol") not in PROTOCOLS:
        what = "missing 'protocol'" if "protocol" not in data else f"protocol {data['protocol']!r} is unknown"
        raise ProfileError(f"{source}: protocol: {what}: protocol must be one of {', '.join(PROTOCOLS)} "
                           "(the protocols installed)")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise ProfileError("\n".join(format_errors(exc, source))) from None


def read_profile(path: str | Path) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from None
    return parse_profile(data, str(path))


@lru_cache(maxsize=1)
def _shipped() -> dict[str, Path]:
    """Model name → file of every shipped profile whose protocol is installed."""
    out: dict[str, Path] = {}
    for path in sorted(PROFILE_DIR.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and data.get("protocol") in PROTOCOLS and data.get("model"):
            out[str(data["model"])] = path
    return out


def shipped_profiles() -> dict[str, Any]:
    """Every shipped profile by model name (validated)."""
    return {name: read_profile(path) for name, path in _shipped().items()}


def load_profile(path_or_name: str | Path, base_dir: str | Path | None = None) -> Any:
    """A profile by shipped model name, or from a YAML file (relative paths from ``base_dir``)."""
    name = str(path_or_name)
    shipped = _shipped()
    if name in shipped:
        return read_profile(shipped[name])
    path = Path(name)
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if path.suffix in (".yaml", ".yml") or path.exists():
        return read_profile(path)
    known = ", ".join(sorted(shipped)) or "(none)"
    raise ProfileError(f"unknown profile {name!r}: neither a shipped model ({known}) nor a YAML file")
