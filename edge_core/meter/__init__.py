"""Reading meters: one association over any transport, and the one-call :func:`read_meter`."""

from edge_core.meter.reader import (
    DEFAULT_REGISTERS,
    ClockCheck,
    EventRecord,
    MeterRead,
    MeterReader,
    ProfileColumn,
    ProfileData,
    ProfileRow,
    open_transport,
    read_meter,
)

__all__ = [
    "DEFAULT_REGISTERS",
    "ClockCheck",
    "EventRecord",
    "MeterRead",
    "MeterReader",
    "ProfileColumn",
    "ProfileData",
    "ProfileRow",
    "open_transport",
    "read_meter",
]
