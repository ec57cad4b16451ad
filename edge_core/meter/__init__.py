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
from edge_core.meter.security import ReaderSecurity, resolve_reader_security

__all__ = [
    "DEFAULT_REGISTERS",
    "ClockCheck",
    "EventRecord",
    "MeterRead",
    "MeterReader",
    "ProfileColumn",
    "ProfileData",
    "ProfileRow",
    "ReaderSecurity",
    "open_transport",
    "read_meter",
    "resolve_reader_security",
]
