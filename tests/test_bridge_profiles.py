"""Device profiles and station configurations: validation with errors a person can act on, the shipped
registry, and the Modbus codec against values packed independently here with ``struct``."""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridges.config import ConfigError, load_config, parse_config
from bridges.modbus_codec import BadValue, decode, encode
from bridges.modbus_profile import ModbusPoint, ModbusProfile
from bridges.profiles import ProfileError, load_profile, parse_profile, read_profile, shipped_profiles
from tests.conftest import station_spec

MINIMAL = {"protocol": "modbus", "model": "T-1", "kind": "tank_gauge", "channels": {"first": 1, "count": 4},
           "blocks": [{"emit": "tank.reading", "base": 0, "stride": 8,
                       "fields": {"level_mm": {"address": 0, "dtype": "float32"},
                                  "temp_c": {"address": 2, "dtype": "int16", "scale": 0.01}}}]}


def _with(**changes: Any) -> dict[str, Any]:
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    for path, value in changes.items():
        node = data
        keys = path.split("__")
        for k in keys[:-1]:
            node = node[int(k)] if k.isdigit() else node[k]
        node[keys[-1]] = value
    return data


def test_shipped_profiles_cover_kinds_and_conventions() -> None:
    profiles = shipped_profiles()
    modbus = {n: p for n, p in profiles.items() if p.protocol == "modbus"}
    kinds = [p.kind for p in modbus.values()]
    assert kinds.count("tank_gauge") >= 2 and kinds.count("dispenser") >= 3 and "vapor_monitor" in kinds
    points = [pt for p in modbus.values() for b in [*p.blocks, *p.rings]
              for pt in (b.points() if hasattr(b, "points") else b.record_points()).values()]
    orders = {(p.word(pt), pt.dtype) for p in modbus.values() for b in p.blocks for pt in b.points().values()}
    assert ("big", "float32") in orders and ("little", "float32") in orders
    assert any(pt.dtype.startswith("bcd") for pt in points)
    assert any(pt.scale != 1 and pt.dtype in ("int16", "uint16", "uint32") for pt in points)
    assert any(r.emit == "nozzle.txn" for p in modbus.values() for r in p.rings)
    assert any(p.byte_order == "little" for p in modbus.values())
    for name in modbus:  # the registry finds each by model name
        assert load_profile(name).model == name


@pytest.mark.parametrize(("data", "expect"), [
    (_with(protocol="profibus"), "protocol must be one of"),
    (_with(blocks__0__fields__level={"address": 0, "dtype": "float32"}), "tank.reading has no field level"),
    (_with(blocks__0__fields={"level_mm": {"address": 0, "dtype": "float32"}}), "tank.reading needs temp_c"),
    (_with(blocks__0__fields__temp_c={"address": 2, "dtype": "float64"}), "blocks[0].fields.temp_c.dtype"),
    (_with(blocks__0__fields__temp_c={"address": 2, "dtype": "string"}), "needs its length"),
    (_with(blocks__0__fields__temp_c={"address": 2, "dtype": "float32", "function": "coil"}),
     "dtype must be bool"),
    (_with(blocks__0__stride=2), "more than its stride"),
    (_with(blocks__0__fields__temp_c={"address": 70000}), "blocks[0].fields.temp_c.address"),
    (_with(kind="dispenser"), "must provide nozzle.txn"),
    (_with(poll_interval_s=0), "poll_interval_s"),
])
def test_profile_errors_name_the_field(data: dict[str, Any], expect: str) -> None:
    with pytest.raises(ProfileError) as err:
        parse_profile(data, "acme.yaml")
    assert "acme.yaml: " in str(err.value)
    assert expect in str(err.value)


def test_profile_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("protocol: modbus\nmodel: [unclosed\n", encoding="utf-8")
    with pytest.raises(ProfileError, match="bad.yaml: not valid YAML"):
        read_profile(bad)
    ring = _with(kind="dispenser", blocks=[], rings=[{"emit": "nozzle.txn", "counter": {"address": 0},
                                                      "base": 10, "record_stride": 4, "size": 5,
                                                      "fields": {"txn_no": {"address": 0}}}])
    (tmp_path / "ring.yaml").write_text(yaml.safe_dump(ring), encoding="utf-8")
    with pytest.raises(ProfileError) as err:
        read_profile(tmp_path / "ring.yaml")
    assert "rings[0]" in str(err.value) and "needs" in str(err.value)
    with pytest.raises(ProfileError, match="unknown profile 'NOPE'"):
        load_profile("NOPE")


# ---- codec -----------------------------------------------------------------------------------------


def _profile(word: str = "big", byte: str = "big") -> ModbusProfile:
    return ModbusProfile.model_validate(_with(word_order=word, byte_order=byte))


def _regs(data: bytes) -> list[int]:
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


#: Wire byte order of a 4-byte ABCD value under (word_order, byte_order); 2-byte values: AB or BA.
PERM4 = {("big", "big"): (0, 1, 2, 3), ("little", "big"): (2, 3, 0, 1), ("big", "little"): (1, 0, 3, 2),
         ("little", "little"): (3, 2, 1, 0)}


@pytest.mark.parametrize("word", ["big", "little"])
@pytest.mark.parametrize("byte", ["big", "little"])
@pytest.mark.parametrize(("dtype", "fmt", "value"), [
    ("uint16", "H", 51234), ("int16", "h", -1234), ("uint32", "I", 3_000_000_123),
    ("int32", "i", -2_000_000_123), ("float32", "f", 1234.5625), ("float32", "f", -0.15625),
])
def test_decode_every_dtype_and_order(dtype: str, fmt: str, value: float, word: str, byte: str) -> None:
    packed = struct.pack(">" + fmt, value)  # ABCD (or AB)
    if len(packed) == 4:
        wire = bytes(packed[i] for i in PERM4[(word, byte)])
    else:
        wire = packed[::-1] if byte == "little" else packed
    p = _profile(word, byte)
    point = ModbusPoint(address=0, dtype=dtype)  # type: ignore[arg-type]
    assert decode(_regs(wire), p, point) == pytest.approx(value, rel=0, abs=0)
    assert encode(value, p, point) == _regs(wire)


def test_scale_offset_bcd_and_strings() -> None:
    p = _profile()
    temp = ModbusPoint(address=0, dtype="int16", scale=0.01, offset=-40.0, decimals=2)
    assert decode(_regs(struct.pack(">h", 5837)), p, temp) == pytest.approx(18.37)
    assert decode([0x1234, 0x5678], p, ModbusPoint(address=0, dtype="bcd32")) == 12_345_678
    assert decode([0x5678, 0x1234], _profile("little"), ModbusPoint(address=0, dtype="bcd32")) == 12_345_678
    tot = ModbusPoint(address=0, dtype="bcd48", scale=0.01, decimals=2)
    assert decode([0x0012, 0x3456, 0x7890], p, tot) == pytest.approx(12_345_678.90)
    assert encode(12_345_678.90, p, tot) == [0x0012, 0x3456, 0x7890]
    serial = ModbusPoint(address=0, dtype="string", length=3)
    assert decode([0x4142, 0x4300, 0x0000], p, serial) == "ABC"
    assert decode([0x4241, 0x0043, 0x0000], _profile(byte="little"), serial) == "ABC"
    state = ModbusPoint(address=0, dtype="uint16", enum={0: "idle", 2: "fuelling"})
    assert decode([2], p, state) == "fuelling"
    assert encode("idle", p, state) == [0]


@pytest.mark.parametrize(("regs", "point", "why"), [
    (_regs(struct.pack(">f", math.nan)), ModbusPoint(address=0, dtype="float32"), "not a number"),
    (_regs(struct.pack(">f", math.inf)), ModbusPoint(address=0, dtype="float32"), "not a number"),
    (_regs(struct.pack(">f", 9000.0)), ModbusPoint(address=0, dtype="float32", min=0, max=4000), "outside"),
    ([0x12A4], ModbusPoint(address=0, dtype="bcd16"), "not BCD"),
    ([7], ModbusPoint(address=0, dtype="uint16", enum={0: "idle"}), "code 7"),
])
def test_garbage_is_a_bad_value(regs: list[int], point: ModbusPoint, why: str) -> None:
    with pytest.raises(BadValue, match=why):
        decode(regs, _profile(), point)


# ---- station configuration -------------------------------------------------------------------------


def _config(devices: list[dict[str, Any]], **station: Any) -> dict[str, Any]:
    spec = station_spec("BH-0001")
    spec.update(station)
    spec["devices"] = devices
    return {"time": "wall", "stations": [spec]}


GOOD = [{"id": "atg", "protocol": "modbus", "endpoint": "tcp://127.0.0.1:1502", "profile": "MB-ATG-F32",
         "channels": {"T1": 1, "T2": 2, "T3": 3}},
        {"id": "fcc", "protocol": "modbus", "endpoint": "127.0.0.1:1503", "profile": "MB-FCC-BCD",
         "channels": {f"N{i}": i for i in range(1, 9)}}]


def test_config_builds_the_registry_and_devices(tmp_path: Path) -> None:
    path = tmp_path / "st.yaml"
    path.write_text(yaml.safe_dump(_config(GOOD), allow_unicode=True), encoding="utf-8")
    cfg = load_config(path)
    station = cfg.district.station("BH-0001")
    assert [t.id for t in station.tanks] == ["T1", "T2", "T3"]
    assert [d.source for d in cfg.devices] == ["modbus:BH-0001:atg", "modbus:BH-0001:fcc"]
    assert cfg.devices[1].host_port(502) == ("127.0.0.1", 1503)
    assert cfg.devices[0].profile.model == "MB-ATG-F32"


@pytest.mark.parametrize(("change", "expect"), [
    (lambda d: d[0]["channels"].update(T9=4),
     "stations[0].devices[0].channels.T9: station BH-0001 has no tank"),
    (lambda d: d[0]["channels"].update(T1=40), "channel 40 is not one of the device's channels 1..12"),
    (lambda d: d[0].update(profile="MB-FCC-BCD"), "has no nozzle 'T1'"),
    (lambda d: d[0].update(protocol="opcua" if "opcua" in __import__("bridges.profiles").profiles.PROTOCOLS
                           else "bacnet"), "stations[0].devices[0]"),
    (lambda d: d[1]["channels"].update(N2=1), "channel 1 is already N1"),
    (lambda d: d[0].update(profile="nope.yaml"), "devices[0].profile: nope.yaml: cannot read"),
    (lambda d: d[0].update(endpoint="tcp://:99"), "devices[0].endpoint: no host"),
    (lambda d: d.append(dict(d[0])), "duplicate device id atg"),
    (lambda d: d[0].update(colour="red"), "stations[0].devices[0].colour: Extra inputs are not permitted"),
])
def test_config_errors_name_file_and_field(change: Any, expect: str) -> None:
    devices = yaml.safe_load(yaml.safe_dump(GOOD))
    change(devices)
    with pytest.raises(ConfigError) as err:
        parse_config(_config(devices), "st.yaml")
    assert expect in str(err.value)
    assert str(err.value).startswith("st.yaml: ")


def test_config_registry_errors_come_from_the_registry() -> None:
    bad = _config(GOOD)
    bad["stations"][0]["nozzles"][0]["grade"] = "95#"
    with pytest.raises(ConfigError, match="st.yaml: stations\\[0\\]: .*nozzle N1 sells 95#"):
        parse_config(bad, "st.yaml")


MONITOR = {"mn": "FTVRMBH00010000000000000", "password": "123456", "nozzles": {"1": "N1", "2": "N2"}}


def test_config_hj212_monitor_becomes_the_servers_monitor() -> None:
    data = _config(GOOD)
    data["hj212"] = {"listen": "0.0.0.0:9212"}
    data["stations"][0]["hj212"] = dict(MONITOR)
    cfg = parse_config(data, "st.yaml")
    assert cfg.hj212_listen == ("0.0.0.0", 9212)
    [mon] = cfg.monitors
    assert (mon.station, mon.mn, mon.password) == ("BH-0001", MONITOR["mn"], "123456")
    assert mon.nozzle_id("2") == "N2" and mon.nozzle_id("7") == "N7"
    # The registry's station is the same without the monitor: it is not a station field.
    assert cfg.district == parse_config(_config(GOOD), "st.yaml").district


@pytest.mark.parametrize(("change", "expect"), [
    (lambda c: c.pop("hj212"), "st.yaml: hj212: 1 station(s) list an HJ 212 monitor, so say where"),
    (lambda c: c["hj212"].update(listen="0.0.0.0"), "st.yaml: hj212.listen: give the port"),
    (lambda c: c["stations"][0]["hj212"]["nozzles"].update({"9": "N99"}),
     "st.yaml: stations[0].hj212.nozzles.9: station BH-0001 has no nozzle 'N99'"),
    (lambda c: c["stations"][0]["hj212"].update(password="1234567890"),
     "st.yaml: stations[0].hj212.password: String should have at most 9 characters"),
    (lambda c: c["stations"].append({**c["stations"][0], "id": "BH-0002"}),
     "stations[1].hj212.mn: MN FTVRMBH00010000000000000 is already station BH-0001's monitor"),
])
def test_config_hj212_errors_name_the_field(change: Any, expect: str) -> None:
    data = _config(GOOD)
    data["hj212"] = {"listen": "127.0.0.1:9212"}
    data["stations"][0]["hj212"] = yaml.safe_load(yaml.safe_dump(MONITOR))
    change(data)
    with pytest.raises(ConfigError) as err:
        parse_config(data, "st.yaml")
    assert expect in str(err.value)
