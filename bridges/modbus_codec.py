"""Registers ↔ values for a :class:`~bridges.modbus_profile.ModbusPoint`.

Byte layout: a register travels most significant byte first. ``byte_order: little`` swaps the two
bytes inside every register; ``word_order: little`` puts the least significant register first. So a
float32 is ABCD (big/big), CDAB (word little: common in PLCs and many gauges), BADC (byte little) or
DCBA (both little). BCD packs one decimal digit per nibble (a register holds 0000–9999); a nibble above
9 is garbage, not a number (bcd48: 12 digits, for totalizers at 0.01 L). Strings are ASCII, two
characters a register, padded with NUL or spaces.

The bridge decodes with this module and the protocol simulator encodes with it, so tests check the
decoder against values packed independently (``struct``) and against pymodbus's own encoder.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from bridges.modbus_profile import BIT_FUNCTIONS, INTEGER_DTYPES, REGISTERS, ModbusPoint, ModbusProfile

Value = float | int | str | bool


class BadValue(ValueError):
    """A register holds something the profile says it cannot (NaN, out of range, unknown code)."""


_STRUCT = {"uint16": ">H", "int16": ">h", "uint32": ">I", "int32": ">i", "float32": ">f"}


def _ordered_bytes(regs: Sequence[int], word: str, byte: str, *, words: bool = True) -> bytes:
    rs = list(regs)
    if words and word == "little":
        rs.reverse()
    raw = b"".join(int(r).to_bytes(2, "big") for r in rs)
    if byte == "little":
        raw = b"".join(raw[i + 1:i + 2] + raw[i:i + 1] for i in range(0, len(raw), 2))
    return raw


def _registers(raw: bytes, word: str, byte: str, *, words: bool = True) -> list[int]:
    if byte == "little":
        raw = b"".join(raw[i + 1:i + 2] + raw[i:i + 1] for i in range(0, len(raw), 2))
    rs = [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]
    if words and word == "little":
        rs.reverse()
    return rs


def raw_value(regs: Sequence[int], profile: ModbusProfile, p: ModbusPoint) -> Value:
    """The number or text the registers hold, before scale, offset and checks."""
    word, byte = profile.word(p), profile.byte(p)
    if profile.fn(p) in BIT_FUNCTIONS:
        return bool(regs[0])
    if p.dtype == "bool":
        return regs[0] != 0
    if p.dtype == "string":
        text = _ordered_bytes(regs, word, byte, words=False)
        return text.rstrip(b"\x00 ").decode("ascii", errors="replace")
    raw = _ordered_bytes(regs, word, byte)
    if p.dtype.startswith("bcd"):
        digits = raw.hex()
        if not digits.isdigit():
            raise BadValue(f"{digits!r} is not BCD")
        return int(digits)
    return struct.unpack(_STRUCT[p.dtype], raw)[0]


def decode(regs: Sequence[int], profile: ModbusProfile, p: ModbusPoint) -> Value | None:
    """The point's value (scaled, mapped through its enum), None for the device's 'no value' code, or
    :class:`BadValue` with the reason."""
    raw = raw_value(regs, profile, p)
    if isinstance(raw, (str, bool)):
        return raw
    if p.missing is not None and raw == p.missing:
        return None
    if p.enum is not None:
        if raw not in p.enum:
            raise BadValue(f"code {raw} is not one of {sorted(p.enum)}")
        return p.enum[raw]
    if isinstance(raw, float) and not math.isfinite(raw):
        raise BadValue(f"{raw} is not a number")
    value = raw * p.scale + p.offset
    if p.dtype in INTEGER_DTYPES and p.scale == 1 and p.offset == 0:
        value = int(raw)
    elif p.decimals is not None:
        value = round(value, p.decimals)
    if (p.min is not None and value < p.min) or (p.max is not None and value > p.max):
        raise BadValue(f"{value:g} is outside {p.min:g}…{p.max:g}" if p.min is not None and p.max is not None
                       else f"{value:g} is out of range")
    return value


def encode(value: Value | None, profile: ModbusProfile, p: ModbusPoint) -> list[int]:
    """Registers (or one bit as 0/1) holding ``value``: the inverse of :func:`decode`."""
    word, byte = profile.word(p), profile.byte(p)
    if value is None:
        if p.missing is None:
            raise ValueError("no value, and the point has no 'missing' code")
        value = p.missing * p.scale + p.offset
    if profile.fn(p) in BIT_FUNCTIONS or p.dtype == "bool":
        return [1 if value else 0]
    if p.dtype == "string":
        data = str(value).encode("ascii", errors="replace")[: 2 * p.registers]
        data = data.ljust(2 * p.registers, b"\x00")
        return _registers(data, word, byte, words=False)
    if p.enum is not None:
        codes = {name: code for code, name in p.enum.items()}
        if value not in codes:
            raise ValueError(f"{value!r} has no code in the enum {p.enum}")
        raw: float | int = codes[value]  # type: ignore[index]
    else:
        raw = (float(value) - p.offset) / p.scale
    if p.dtype == "float32":
        data = struct.pack(">f", raw)
    elif p.dtype.startswith("bcd"):
        n = round(raw)
        digits = 4 * REGISTERS[p.dtype]
        if not 0 <= n < 10 ** digits:
            raise ValueError(f"{n} does not fit {digits} BCD digits")
        data = bytes.fromhex(f"{n:0{digits}d}")
    else:
        data = struct.pack(_STRUCT[p.dtype], _clamp(round(raw), p.dtype))
    return _registers(data, word, byte)


_LIMITS = {"uint16": (0, 0xFFFF), "int16": (-0x8000, 0x7FFF), "uint32": (0, 0xFFFFFFFF),
           "int32": (-0x80000000, 0x7FFFFFFF)}


def _clamp(n: int, dtype: str) -> int:
    lo, hi = _LIMITS[dtype]
    if not lo <= n <= hi:
        raise ValueError(f"{n} does not fit {dtype}")
    return n
