"""Fields every device profile has, whatever its protocol.

A profile (``bridges/profiles/*.yaml``) describes one device *model*: how its points map to event
fields. Each protocol module defines a subclass with its own ``protocol`` literal and point models
(``bridges/modbus_profile.py``, ``bridges/opcua_profile.py``, ``bridges/tls_profile.py``), and
``bridges/profiles.py`` loads a YAML file into the right one with errors a person can act on.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DeviceKind = Literal["tank_gauge", "dispenser", "vapor_monitor", "safety_sensor"]


class ProfileBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1, description="device model id, e.g. 'acme-atg-3000'")
    maker: str = Field(default="", description="manufacturer")
    kind: DeviceKind
    description: str = ""
    poll_interval_s: float = Field(default=1.0, gt=0, le=3600)
