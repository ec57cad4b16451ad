"""COSEM value objects: units, scaler-unit, date-time, register values, capture objects.

Date-time (Blue Book 4.1.6.1) is 12 bytes: year (2, 0xFFFF unspecified), month, day of month,
day of week (1 = Monday), hour, minute, second, hundredths (each 0xFF unspecified), deviation
(signed 2 bytes, minutes, 0x8000 unspecified) and clock status (0xFF unspecified). The
deviation is defined from local time *to* UTC: ``UTC = local + deviation``, so a meter on
CET (UTC+01:00) sends -60. :meth:`CosemDateTime.to_datetime` applies that convention.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from edge_core.dlms.axdr import Data, DataType
from edge_core.dlms.obis import Obis
from edge_core.errors import DecodeError, EncodeError

__all__ = [
    "CLOCK_STATUS_DST",
    "CaptureObject",
    "CosemDateTime",
    "RegisterValue",
    "ScalerUnit",
    "Unit",
    "unit_symbol",
]

CLOCK_STATUS_DST = 0x80
DEVIATION_UNSPECIFIED = -0x8000
_DT = struct.Struct(">HBBBBBBBhB")


class Unit(enum.IntEnum):
    """DLMS unit enumeration (Blue Book, class 3 scaler_unit), the subset meters use."""

    YEAR = 1
    MONTH = 2
    WEEK = 3
    DAY = 4
    HOUR = 5
    MINUTE = 6
    SECOND = 7
    DEGREE = 8
    DEGREE_CELSIUS = 9
    CURRENCY = 10
    METRE = 11
    CUBIC_METRE = 13
    CUBIC_METRE_PER_HOUR = 15
    WATT = 27
    VOLT_AMPERE = 28  # apparent power S (Blue Book: 28 = VA, 29 = var)
    VAR = 29
    WATT_HOUR = 30
    VOLT_AMPERE_HOUR = 31
    VAR_HOUR = 32
    AMPERE = 33
    COULOMB = 34
    VOLT = 35
    HERTZ = 44
    PERCENT = 56
    AMPERE_HOUR = 57
    COUNT = 255  # "no unit, unitless, count"


_SYMBOLS = {
    Unit.YEAR: "a",
    Unit.MONTH: "mo",
    Unit.WEEK: "wk",
    Unit.DAY: "d",
    Unit.HOUR: "h",
    Unit.MINUTE: "min",
    Unit.SECOND: "s",
    Unit.DEGREE: "deg",
    Unit.DEGREE_CELSIUS: "°C",
    Unit.CURRENCY: "currency",
    Unit.METRE: "m",
    Unit.CUBIC_METRE: "m3",
    Unit.CUBIC_METRE_PER_HOUR: "m3/h",
    Unit.WATT: "W",
    Unit.VOLT_AMPERE: "VA",
    Unit.VAR: "var",
    Unit.WATT_HOUR: "Wh",
    Unit.VOLT_AMPERE_HOUR: "VAh",
    Unit.VAR_HOUR: "varh",
    Unit.AMPERE: "A",
    Unit.COULOMB: "C",
    Unit.VOLT: "V",
    Unit.HERTZ: "Hz",
    Unit.PERCENT: "%",
    Unit.AMPERE_HOUR: "Ah",
    Unit.COUNT: "",
}


def unit_symbol(unit: int) -> str:
    """The printable symbol of a DLMS unit code (``"Wh"`` for 30); ``"unit<n>"`` if unknown."""
    try:
        return _SYMBOLS[Unit(unit)]
    except ValueError:
        return f"unit{unit}"


@dataclass(frozen=True, slots=True)
class ScalerUnit:
    """Class 3 attribute 3: the value is ``raw * 10**scaler`` in ``unit`` (DLMS code)."""

    scaler: int = 0
    unit: int = Unit.COUNT

    @classmethod
    def from_data(cls, data: Data) -> ScalerUnit:
        v = data.value
        if (
            data.type != DataType.STRUCTURE
            or len(v) != 2
            or not isinstance(v[0].value, int)
            or not isinstance(v[1].value, int)
            or isinstance(v[0].value, bool)
        ):
            raise DecodeError(f"scaler_unit is not structure{{integer, enum}}: {data!r}")
        return cls(v[0].value, v[1].value)

    def to_data(self) -> Data:
        return Data.structure((Data.integer(self.scaler), Data.enum(int(self.unit))))

    def apply(self, raw: int | float) -> float:
        """The physical value of a raw register value."""
        if self.scaler >= 0:
            return float(raw) * float(10**self.scaler)
        return float(raw) / float(10 ** (-self.scaler))

    @property
    def symbol(self) -> str:
        return unit_symbol(self.unit)


@dataclass(frozen=True, slots=True)
class CosemDateTime:
    """A DLMS date-time. ``None`` in a field means "not specified" (0xFF / 0xFFFF / 0x8000).

    ``deviation`` is in minutes, local time to UTC (``UTC = local + deviation``).
    """

    year: int | None
    month: int | None
    day: int | None
    hour: int | None
    minute: int | None
    second: int | None
    hundredths: int | None = 0
    day_of_week: int | None = None
    deviation: int | None = 0
    clock_status: int | None = 0

    @classmethod
    def from_bytes(cls, raw: bytes) -> CosemDateTime:
        if len(raw) != 12:
            raise DecodeError(f"date-time needs 12 bytes, got {len(raw)}", data=bytes(raw))
        y, mo, d, dow, h, mi, s, hs, dev, st = _DT.unpack(raw)

        def u8(v: int) -> int | None:
            return None if v == 0xFF else v

        return cls(
            year=None if y == 0xFFFF else y,
            month=u8(mo),
            day=u8(d),
            hour=u8(h),
            minute=u8(mi),
            second=u8(s),
            hundredths=u8(hs),
            day_of_week=u8(dow),
            deviation=None if dev == DEVIATION_UNSPECIFIED else dev,
            clock_status=u8(st),
        )

    def to_bytes(self) -> bytes:
        def u8(v: int | None) -> int:
            return 0xFF if v is None else v

        try:
            return _DT.pack(
                0xFFFF if self.year is None else self.year,
                u8(self.month),
                u8(self.day),
                u8(self.day_of_week),
                u8(self.hour),
                u8(self.minute),
                u8(self.second),
                u8(self.hundredths),
                DEVIATION_UNSPECIFIED if self.deviation is None else self.deviation,
                u8(self.clock_status),
            )
        except struct.error as exc:
            raise EncodeError(f"date-time field out of range: {self!r}") from exc

    @classmethod
    def from_datetime(cls, dt: datetime, *, clock_status: int | None = 0) -> CosemDateTime:
        """From an aware datetime (a naive one is taken as UTC); keeps its UTC offset."""
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        offset = dt.utcoffset() or timedelta(0)
        return cls(
            year=dt.year,
            month=dt.month,
            day=dt.day,
            hour=dt.hour,
            minute=dt.minute,
            second=dt.second,
            hundredths=dt.microsecond // 10_000,
            day_of_week=dt.isoweekday(),
            deviation=-int(offset.total_seconds() // 60),
            clock_status=clock_status,
        )

    @property
    def is_complete(self) -> bool:
        return None not in (self.year, self.month, self.day, self.hour, self.minute, self.second)

    def to_datetime(self, default_deviation: int = 0) -> datetime:
        """The aware datetime; an unspecified deviation uses ``default_deviation`` (minutes).

        Unspecified hundredths count as 0; any other unspecified field raises DecodeError.
        """
        if not self.is_complete:
            raise DecodeError(f"date-time not fully specified: {self!r}")
        dev = default_deviation if self.deviation is None else self.deviation
        try:
            tz = UTC if dev == 0 else timezone(timedelta(minutes=-dev))
            return datetime(
                self.year,  # type: ignore[arg-type]
                self.month,  # type: ignore[arg-type]
                self.day,  # type: ignore[arg-type]
                self.hour,  # type: ignore[arg-type]
                self.minute,  # type: ignore[arg-type]
                self.second,  # type: ignore[arg-type]
                (self.hundredths or 0) * 10_000,
                tzinfo=tz,
            )
        except ValueError as exc:
            raise DecodeError(f"invalid date-time {self!r}: {exc}") from exc

    @classmethod
    def from_data(cls, data: Data) -> CosemDateTime:
        """From an octet-string (or date-time typed) value of 12 bytes."""
        if data.type not in (DataType.OCTET_STRING, DataType.DATE_TIME):
            raise DecodeError(f"date-time expected, got {data.type.name}")
        return cls.from_bytes(data.value)

    def to_data(self) -> Data:
        return Data.octet_string(self.to_bytes())


@dataclass(frozen=True, slots=True)
class RegisterValue:
    """A register read: raw integer with its scaler-unit; ``value`` is the physical value."""

    obis: Obis
    raw: int
    scaler_unit: ScalerUnit

    @property
    def value(self) -> float:
        return self.scaler_unit.apply(self.raw)

    @property
    def scaler(self) -> int:
        return self.scaler_unit.scaler

    @property
    def unit(self) -> int:
        return self.scaler_unit.unit


@dataclass(frozen=True, slots=True)
class CaptureObject:
    """One column of a profile: ``capture_object_definition`` of class 7 attribute 3."""

    class_id: int
    obis: Obis
    attribute: int = 2
    data_index: int = 0

    @classmethod
    def from_data(cls, data: Data) -> CaptureObject:
        v = data.value
        if data.type != DataType.STRUCTURE or len(v) != 4:
            raise DecodeError(f"capture object is not a 4-element structure: {data!r}")
        cid, ln, attr, idx = v
        if (
            not isinstance(cid.value, int)
            or not isinstance(ln.value, bytes)
            or not isinstance(attr.value, int)
            or not isinstance(idx.value, int)
        ):
            raise DecodeError(f"capture object has wrong element types: {data!r}")
        return cls(cid.value, Obis.from_bytes(ln.value), attr.value, idx.value)

    def to_data(self) -> Data:
        return Data.structure(
            (
                Data.long_unsigned(self.class_id),
                Data.octet_string(self.obis.to_bytes()),
                Data.integer(self.attribute),
                Data.long_unsigned(self.data_index),
            )
        )
