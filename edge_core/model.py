"""Value objects that flow from acquisition through the spool to the uplink.

A :class:`Reading` is one captured value of one meter channel at one time, exactly as the meter
gave it: an integer with its DLMS scaler and unit. Scaling is applied only where a human or a
bill needs a number (``Reading.scaled``); the wire and the spool keep integers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["DataClass", "Reading", "Topics"]


class DataClass(enum.IntEnum):
    """Data classes of the spool, highest priority first.

    The integer is the priority (lower is more urgent) and the order of eviction is the
    reverse: diagnostics are evicted first, alarms last.
    """

    ALARM = 0
    DAILY = 1  # daily / midnight billing reads, monthly billing
    ON_DEMAND = 2  # responses to on-demand (off-cycle) reads
    INTERVAL = 3  # 15-minute load profile
    DIAGNOSTIC = 4  # instantaneous values, health, diagnostics

    @property
    def topic_suffix(self) -> str:
        return _SUFFIX[self]


_SUFFIX = {
    DataClass.ALARM: "events",
    DataClass.DAILY: "daily",
    DataClass.ON_DEMAND: "ondemand",
    DataClass.INTERVAL: "interval",
    DataClass.DIAGNOSTIC: "diagnostic",
}


@dataclass(frozen=True, slots=True)
class Reading:
    """One captured value.

    ``capture_time`` is UTC in whole seconds since the epoch (the meter's clock converted with the
    deviation it reports). ``value`` is the raw integer from the meter; the physical value is
    ``value * 10**scaler`` in ``unit`` (DLMS unit enumeration, e.g. 30 = Wh, 35 = V).
    ``status`` is the IDIS profile status byte for profile rows (0 for register reads).
    """

    meter: str
    obis: str
    capture_time: int
    value: int
    scaler: int = 0
    unit: int = 255
    status: int = 0
    data_class: DataClass = DataClass.INTERVAL

    @property
    def key(self) -> tuple[str, str, int]:
        """The dedupe key: (meter, channel, capture time)."""
        return (self.meter, self.obis, self.capture_time)

    @property
    def scaled(self) -> float:
        return float(self.value) * (10.0**self.scaler)


class Topics:
    """MQTT topics of one concentrator, after the AWS IoT topic-design conventions.

    ``dt/ami/{thing}/{type}`` for data, ``alarm/ami/{thing}/power`` for power alarms and
    ``cmd/ami/{thing}/read/req|res`` for on-demand reads.
    """

    def __init__(self, thing: str, prefix: str = "ami") -> None:
        if not thing or any(c in thing for c in "/#+"):
            raise ValueError(f"invalid thing name {thing!r}")
        self.thing = thing
        self.prefix = prefix

    def data(self, data_class: DataClass) -> str:
        return f"dt/{self.prefix}/{self.thing}/{data_class.topic_suffix}"

    @property
    def interval(self) -> str:
        return self.data(DataClass.INTERVAL)

    @property
    def daily(self) -> str:
        return self.data(DataClass.DAILY)

    @property
    def events(self) -> str:
        return f"dt/{self.prefix}/{self.thing}/events"

    @property
    def anomaly(self) -> str:
        return f"dt/{self.prefix}/{self.thing}/anomaly"

    @property
    def health(self) -> str:
        return f"dt/{self.prefix}/{self.thing}/health"

    @property
    def alarm_power(self) -> str:
        return f"alarm/{self.prefix}/{self.thing}/power"

    # Local (on-device) topics between components; they never leave the concentrator, so
    # they carry no thing name.
    @property
    def local_readings(self) -> str:
        """Concentrator -> analytics: each stored set of readings as a batch (batch format)."""
        return f"{self.prefix}/local/readings"

    @property
    def local_anomaly(self) -> str:
        """Analytics -> concentrator: anomaly events (JSON) to spool and publish."""
        return f"{self.prefix}/local/anomaly"

    @property
    def read_request(self) -> str:
        return f"cmd/{self.prefix}/{self.thing}/read/req"

    @property
    def read_response(self) -> str:
        return f"cmd/{self.prefix}/{self.thing}/read/res"
