"""Veeder-Root TLS-300/350 serial interface, computer format: frames, checksum, hex floats, i201/i202.

From the *Serial Interface Manual for TLS-300 and TLS-350 UST Monitoring Systems and TLS-350R*
(Veeder-Root manual 576013-635):

* Command (§5): ``<SOH>`` [six-character security code, if the console has one] ``i`` + function
  code + device (tank) number ``TT`` (``00`` = all), e.g. ``\\x01i20100``. Lowercase ``i`` asks for
  the computer format; uppercase ``I`` for the printable display format.
* Response (§6.1): ``<SOH>`` + the echoed function and tank (``i20100``) + the console's date and time
  ``YYMMDDHHmm`` + data + ``&&`` + a 4-hex-digit checksum + ``<ETX>``. The checksum makes the 16-bit
  sum of every character from ``<SOH>`` through ``&&``, plus the checksum's own value, zero: it is the
  two's complement of that sum.
* A command the console does not recognise (or a wrong security code) is answered ``<SOH>9999FF1B<ETX>``.
* Numbers (§6.3): an IEEE 754 single-precision float written as 8 hex digits, most significant first.
* i201 in-tank inventory, per tank: ``TT`` tank, ``p`` product code (one character), ``ssss`` tank
  status bits (hex; bit 0 = delivery in progress, bit 1 = leak test in progress, bit 2 = invalid fuel
  height alarm), ``NN`` number of 8-character fields that follow (hex), then in order: volume,
  temperature-compensated volume, ullage, height, water height, temperature, water volume.
* i202 delivery report, per tank: ``TT``, ``p``, ``dd`` number of deliveries that follow (hex), and
  per delivery: start ``YYMMDDHHmm``, end ``YYMMDDHHmm``, ``NN`` fields (hex), then starting volume,
  starting TC volume, starting water, starting temperature, ending volume, ending TC volume, ending
  water, ending temperature, starting height, ending height (the heights in later software versions).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

SOH = b"\x01"
ETX = b"\x03"
UNRECOGNISED = b"9999FF1B"

I201_FIELDS = ("volume", "tc_volume", "ullage", "height", "water", "temp", "water_volume")
I202_FIELDS = ("start_volume", "start_tc_volume", "start_water", "start_temp", "end_volume",
               "end_tc_volume", "end_water", "end_temp", "start_height", "end_height")


class FrameError(ValueError):
    """A response that is not a well-formed TLS computer-format message."""


class ChecksumError(FrameError):
    """A response whose checksum does not match its content (line noise, a garbled device)."""


class Unrecognised(FrameError):
    """The console answered 9999FF1B: it does not know the command (or the security code is wrong)."""


# ---- primitives -----------------------------------------------------------------------------------


def checksum(body: bytes) -> int:
    """16-bit two's complement of the sum of ``body`` (``<SOH>`` … ``&&`` inclusive)."""
    return (-sum(body)) & 0xFFFF


def hex_float(value: float) -> str:
    return struct.pack(">f", value).hex().upper()


def parse_hex_float(text: str) -> float:
    if len(text) != 8:
        raise FrameError(f"float field {text!r} is not 8 hex digits")
    try:
        return struct.unpack(">f", bytes.fromhex(text))[0]
    except ValueError:
        raise FrameError(f"float field {text!r} is not hex") from None


def command(function: str, tank: int = 0, security_code: str | None = None) -> bytes:
    """A computer-format inquiry, e.g. ``command("201")`` → ``b"\\x01i20100"``."""
    return SOH + (security_code or "").encode("ascii") + f"i{function}{tank:02d}".encode("ascii")


def frame(payload: str) -> bytes:
    """Wrap a response payload (echo + date + data): ``<SOH>`` payload ``&&`` checksum ``<ETX>``."""
    body = SOH + payload.encode("ascii") + b"&&"
    return body + f"{checksum(body):04X}".encode("ascii") + ETX


def unframe(message: bytes) -> str:
    """The payload of a response (between ``<SOH>`` and ``&&``), its checksum verified."""
    if not message.startswith(SOH) or not message.endswith(ETX):
        raise FrameError("response is not framed by SOH … ETX")
    inner = message[1:-1]
    if inner == UNRECOGNISED:
        raise Unrecognised("the console does not recognise the command (9999FF1B)")
    if len(inner) < 6 or inner[-6:-4] != b"&&":
        raise FrameError("response has no '&&' data terminator before its checksum")
    try:
        given = int(inner[-4:].decode("ascii"), 16)
    except ValueError:
        raise FrameError(f"checksum {inner[-4:]!r} is not hex") from None
    body = message[:-5]
    if (sum(body) + given) & 0xFFFF != 0:
        raise ChecksumError(f"bad checksum: message says {given:04X}, content sums to need "
                            f"{checksum(body):04X}")
    try:
        return inner[:-6].decode("ascii")
    except UnicodeDecodeError:
        raise FrameError("response has non-ASCII characters") from None


def device_time(text: str, tz: ZoneInfo) -> float:
    """``YYMMDDHHmm`` of the console's local clock → UTC epoch seconds."""
    if len(text) != 10 or not text.isdigit():
        raise FrameError(f"date/time {text!r} is not YYMMDDHHmm")
    try:
        local = datetime(2000 + int(text[0:2]), int(text[2:4]), int(text[4:6]), int(text[6:8]),
                         int(text[8:10]), tzinfo=tz)
    except ValueError as exc:
        raise FrameError(f"date/time {text!r}: {exc}") from None
    return local.timestamp()


def format_time(ts: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, tz).strftime("%y%m%d%H%M")


# ---- reports --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Inventory:
    tank: int
    product: str
    status: int
    fields: dict[str, float]


@dataclass(frozen=True, slots=True)
class Delivery:
    tank: int
    product: str
    start_ts: float
    end_ts: float
    fields: dict[str, float]


class _Reader:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def take(self, n: int, what: str) -> str:
        if self.pos + n > len(self.text):
            raise FrameError(f"response ends inside {what} at character {self.pos}")
        out = self.text[self.pos:self.pos + n]
        self.pos += n
        return out

    def number(self, n: int, what: str, base: int) -> int:
        raw = self.take(n, what)
        try:
            return int(raw, base)
        except ValueError:
            raise FrameError(f"{what} {raw!r} is not a {'hex' if base == 16 else 'decimal'} number") from None

    def floats(self, names: tuple[str, ...], what: str) -> dict[str, float]:
        count = self.number(2, f"{what} field count", 16)
        values = [parse_hex_float(self.take(8, f"{what} field {i + 1}")) for i in range(count)]
        return dict(zip(names, values, strict=False))

    @property
    def done(self) -> bool:
        return self.pos >= len(self.text)


def _header(payload: str, function: str, tz: ZoneInfo) -> tuple[float, _Reader]:
    r = _Reader(payload)
    echo = r.take(6, "function echo")
    if echo[:4] != f"i{function}":
        raise FrameError(f"response is for {echo!r}, not i{function}")
    return device_time(r.take(10, "date/time"), tz), r


def parse_i201(payload: str, tz: ZoneInfo) -> tuple[float, list[Inventory]]:
    """Device time and one inventory per tank of an i201 response payload."""
    ts, r = _header(payload, "201", tz)
    out: list[Inventory] = []
    while not r.done:
        tank = r.number(2, "tank number", 10)
        product = r.take(1, "product code")
        status = r.number(4, "tank status", 16)
        out.append(Inventory(tank, product, status, r.floats(I201_FIELDS, f"tank {tank}")))
    return ts, out


def parse_i202(payload: str, tz: ZoneInfo) -> tuple[float, list[Delivery]]:
    """Device time and every delivery of an i202 response payload."""
    ts, r = _header(payload, "202", tz)
    out: list[Delivery] = []
    while not r.done:
        tank = r.number(2, "tank number", 10)
        product = r.take(1, "product code")
        count = r.number(2, f"tank {tank} delivery count", 16)
        for k in range(count):
            start = device_time(r.take(10, "delivery start"), tz)
            end = device_time(r.take(10, "delivery end"), tz)
            fields = r.floats(I202_FIELDS, f"tank {tank} delivery {k + 1}")
            out.append(Delivery(tank, product, start, end, fields))
    return ts, out


def build_i201(ts: float, tz: ZoneInfo, tanks: list[Inventory], tank: int = 0) -> bytes:
    parts = [f"i201{tank:02d}", format_time(ts, tz)]
    for inv in tanks:
        values = [inv.fields.get(name, 0.0) for name in I201_FIELDS]
        parts.append(f"{inv.tank:02d}{inv.product[:1] or '1'}{inv.status:04X}{len(values):02X}")
        parts += [hex_float(v) for v in values]
    return frame("".join(parts))


def build_i202(ts: float, tz: ZoneInfo, by_tank: list[tuple[int, str, list[Delivery]]],
               tank: int = 0) -> bytes:
    parts = [f"i202{tank:02d}", format_time(ts, tz)]
    for number, product, deliveries in by_tank:
        parts.append(f"{number:02d}{product[:1] or '1'}{len(deliveries):02X}")
        for d in deliveries:
            values = [d.fields.get(name, 0.0) for name in I202_FIELDS]
            parts += [format_time(d.start_ts, tz), format_time(d.end_ts, tz), f"{len(values):02X}"]
            parts += [hex_float(v) for v in values]
    return frame("".join(parts))
