"""Veeder-Root TLS-350 profiles: which inquiries a console answers and in which units it reports.

A TLS console reports in the units it was set up with (US: gallons, inches, °F; elsewhere litres,
millimetres, °C), and its date and time are the console's local clock to the minute. The computer-format
inquiries used here are from the Veeder-Root *Serial Interface Manual for TLS-300 and TLS-350 UST
Monitoring Systems and TLS-350R*, manual 576013-635: §5 command format, §6.1 computer format, §6.3 ASCII
floating point (IEEE 754 single precision as 8 hex characters), function codes 201 (in-tank inventory)
and 202 (delivery report). What each field means is written where it is parsed (``bridges/tls.py``).
"""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from bridges.profile_base import ProfileBase

Inquiry = Literal["i201", "i202"]

LITRES_PER_US_GALLON = 3.785411784
MM_PER_INCH = 25.4


class Tls350Profile(ProfileBase):
    """A tank gauge console speaking the TLS-350 serial inquiry protocol (RS-232, or TCP via its
    TCP/IP card or a serial server)."""

    protocol: Literal["tls350"] = "tls350"
    kind: Literal["tank_gauge"] = "tank_gauge"
    inquiries: tuple[Inquiry, ...] = Field(default=("i201", "i202"),
                                           description="i201 in-tank inventory (required), i202 deliveries")
    delivery_poll_s: float = Field(default=60.0, gt=0, le=86_400, description="how often to ask for i202")
    volume_unit: Literal["litres", "gallons"] = "litres"
    height_unit: Literal["mm", "inches"] = "mm"
    temp_unit: Literal["C", "F"] = "C"
    timezone: str = Field(default="Asia/Shanghai", description="the console clock's time zone")
    security_code: str | None = Field(default=None, description="six characters sent before each command")
    timeout_s: float = Field(default=3.0, gt=0, le=60)
    heartbeat_s: float = Field(default=60.0, gt=0, le=3600,
                               description="re-send an unchanged reading after this long (a live gauge)")
    max_tanks: int = Field(default=12, ge=1, le=99)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @field_validator("security_code")
    @classmethod
    def _code(cls, v: str | None) -> str | None:
        if v is not None and (len(v) != 6 or not v.isascii() or not v.isprintable()):
            raise ValueError("a TLS security code is six printable ASCII characters")
        return v

    @model_validator(mode="after")
    def _needs_inventory(self) -> Tls350Profile:
        if "i201" not in self.inquiries:
            raise ValueError("inquiries must include i201 (in-tank inventory): it is what the twin reads")
        if len(set(self.inquiries)) != len(self.inquiries):
            raise ValueError("inquiries are listed twice")
        return self

    # ---- units -----------------------------------------------------------------------------------

    def litres(self, v: float) -> float:
        return v * LITRES_PER_US_GALLON if self.volume_unit == "gallons" else v

    def mm(self, v: float) -> float:
        return v * MM_PER_INCH if self.height_unit == "inches" else v

    def celsius(self, v: float) -> float:
        return (v - 32.0) * 5.0 / 9.0 if self.temp_unit == "F" else v

    def to_volume(self, litres: float) -> float:
        return litres / LITRES_PER_US_GALLON if self.volume_unit == "gallons" else litres

    def to_height(self, mm: float) -> float:
        return mm / MM_PER_INCH if self.height_unit == "inches" else mm

    def to_temp(self, c: float) -> float:
        return c * 9.0 / 5.0 + 32.0 if self.temp_unit == "F" else c
