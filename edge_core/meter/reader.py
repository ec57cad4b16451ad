"""Reading a meter over any :class:`~edge_core.transport.base.ApduTransport`.

:class:`MeterReader` drives one :class:`~edge_core.dlms.client.ClientConnection` over one
transport: it sends what the connection produces, feeds back what the meter answers, follows
GET-next for block transfer, and turns data-access results into typed errors carrying the
meter id and OBIS code. :func:`read_meter` is the one-call read used by ``ami-edge read``
and the runtime: connect, associate, read clock, registers and optionally a profile range,
release, disconnect.

Profiles are read the way the meter describes them: capture objects (attribute 3) and
capture period (attribute 4) first, the scaler-unit of every register column once, then the
buffer (attribute 2) by a range on the clock column. Rows whose clock is null-data (the meter
compresses consecutive rows) get the previous row's time plus the capture period.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from edge_core.dlms.apdu import (
    AccessSelection,
    AttributeDescriptor,
    Conformance,
    MethodDescriptor,
    RangeDescriptor,
)
from edge_core.dlms.axdr import Data, DataType
from edge_core.dlms.client import (
    ActionCompleted,
    AssociationAccepted,
    AuthenticationRequired,
    BlockReceived,
    ClientConnection,
    ClientEvent,
    GetResults,
    NotificationReceived,
    SetCompleted,
    check_action,
    check_result,
    check_set,
)
from edge_core.dlms.cosem import CaptureObject, CosemDateTime, RegisterValue, ScalerUnit
from edge_core.dlms.obis import Obis
from edge_core.dlms.security import make_challenge
from edge_core.errors import (
    ConfigError,
    DecodeError,
    MeterError,
    ProtocolError,
    ServiceError,
    TransportError,
)
from edge_core.meter.security import ReaderSecurity
from edge_core.model import DataClass, Reading
from edge_core.transport.base import ApduTransport, WireStats

__all__ = [
    "CLOCK_OBIS",
    "DAILY_PROFILE_OBIS",
    "DEFAULT_REGISTERS",
    "EVENT_LOG_OBIS",
    "LOAD_PROFILE_OBIS",
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

logger = logging.getLogger(__name__)

CLOCK_OBIS = Obis(0, 0, 1, 0, 0, 255)
LOAD_PROFILE_OBIS = Obis(1, 0, 99, 1, 0, 255)
DAILY_PROFILE_OBIS = Obis(1, 0, 99, 2, 0, 255)
EVENT_LOG_OBIS = (
    Obis(0, 0, 99, 98, 0, 255),
    Obis(0, 0, 99, 98, 1, 255),
    Obis(0, 0, 99, 98, 4, 255),
    Obis(1, 0, 99, 97, 0, 255),
)
"""Standard, fraud detection, power quality and power failure event logs (IDIS)."""
_POWER_FAILURE_LOG = EVENT_LOG_OBIS[3]
_POWER_UP = 2
DEFAULT_REGISTERS = (
    Obis(1, 0, 1, 8, 0, 255),
    Obis(1, 0, 2, 8, 0, 255),
    Obis(1, 0, 3, 8, 0, 255),
    Obis(1, 0, 4, 8, 0, 255),
)
"""Energy registers read when none are named: +A, -A, +R, -R."""

_REGISTER_CLASSES = (3, 4, 5)
_WITH_LIST_ITEM = 10  # bytes per attribute descriptor + no access selection
_WITH_LIST_HEAD = 8  # tag, choice, invoke id, count (up to 3) + margin


@dataclass(frozen=True, slots=True)
class ProfileColumn:
    """One profile column: what is captured and its scaler-unit (None for non-registers)."""

    capture: CaptureObject
    scaler_unit: ScalerUnit | None = None

    @property
    def obis(self) -> Obis:
        return self.capture.obis

    @property
    def is_clock(self) -> bool:
        return self.capture.class_id == 8 and self.capture.attribute == 2

    @property
    def is_status(self) -> bool:
        o = self.capture.obis
        return self.capture.class_id == 1 and o.c == 96 and o.d == 10


@dataclass(frozen=True, slots=True)
class ProfileRow:
    """One captured row: its time (aware) and one raw cell per column (the clock column's
    cell is the same aware datetime)."""

    time: datetime
    cells: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class ProfileData:
    """A profile range as read: columns from attribute 3, period (s) from attribute 4."""

    obis: Obis
    capture_period_s: int
    columns: tuple[ProfileColumn, ...]
    rows: tuple[ProfileRow, ...]

    def value(self, row: ProfileRow, column: int) -> Any:
        """The cell with its scaler applied (registers), else as read."""
        cell = row.cells[column]
        su = self.columns[column].scaler_unit
        if su is not None and isinstance(cell, int) and not isinstance(cell, bool):
            return su.apply(cell)
        return cell

    def status(self, row: ProfileRow) -> int:
        """The IDIS status byte of a row (0 if the profile has no status column)."""
        for i, col in enumerate(self.columns):
            if col.is_status and isinstance(row.cells[i], int):
                return int(row.cells[i])
        return 0

    def to_readings(self, meter_id: str, data_class: DataClass | None = None) -> list[Reading]:
        """One Reading per row and register column: raw integer, scaler, unit, status, UTC s."""
        if data_class is None:
            data_class = DataClass.DAILY if self.capture_period_s >= 86400 else DataClass.INTERVAL
        out: list[Reading] = []
        registers = [
            (i, c, c.scaler_unit or ScalerUnit())
            for i, c in enumerate(self.columns)
            if not c.is_clock and not c.is_status
        ]
        for row in self.rows:
            t = int(row.time.timestamp())
            status = self.status(row)
            for i, col, su in registers:
                cell = row.cells[i]
                if not isinstance(cell, int) or isinstance(cell, bool):
                    continue
                out.append(
                    Reading(
                        meter_id,
                        str(col.obis),
                        t,
                        cell,
                        su.scaler,
                        int(su.unit),
                        status,
                        data_class,
                    )
                )
        return out


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One event-log row. ``code`` is the IDIS event code; rows of the power failure log
    (1.0.99.97.0.255), which record the end of a failure, carry code 2 (power up) and the
    failure's ``duration_s`` (s)."""

    meter: str
    log: Obis
    time: datetime
    code: int
    duration_s: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "log": str(self.log),
            "time": self.time.isoformat(),
            "code": self.code,
            "duration_s": self.duration_s,
        }


@dataclass(frozen=True, slots=True)
class ClockCheck:
    """The meter's clock against a reference: ``drift_s`` = meter - reference (s);
    ``adjusted`` True when the clock was set to the reference afterwards."""

    meter_time: datetime
    drift_s: float
    adjusted: bool


@dataclass(frozen=True, slots=True)
class MeterRead:
    """Everything one ``read_meter`` call got from one meter."""

    meter: str
    clock: datetime
    registers: tuple[RegisterValue, ...]
    load_profile: ProfileData | None
    wire: WireStats
    daily_profile: ProfileData | None = None
    events: tuple[EventRecord, ...] | None = None
    clock_check: ClockCheck | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``ami-edge read --json`` document."""
        doc: dict[str, Any] = {
            "meter": self.meter,
            "clock": self.clock.isoformat(),
            "registers": [
                {
                    "obis": str(r.obis),
                    "value": _jsonable(r.value),
                    "unit": r.scaler_unit.symbol,
                    "raw": r.raw,
                    "scaler": r.scaler,
                }
                for r in self.registers
            ],
            "wire": {
                "bytes_tx": self.wire.bytes_tx,
                "bytes_rx": self.wire.bytes_rx,
                "round_trips": self.wire.round_trips,
            },
        }
        if self.load_profile is not None:
            doc["load_profile"] = _profile_json(self.load_profile)
        if self.daily_profile is not None:
            doc["daily_profile"] = _profile_json(self.daily_profile)
        if self.events is not None:
            doc["events"] = [e.to_json() for e in self.events]
        if self.clock_check is not None:
            doc["clock_check"] = {
                "meter_time": self.clock_check.meter_time.isoformat(),
                "drift_s": self.clock_check.drift_s,
                "adjusted": self.clock_check.adjusted,
            }
        return doc


def _profile_json(p: ProfileData) -> dict[str, Any]:
    """The "load_profile" / "daily_profile" shape of ``ami-edge read --json``."""
    return {
        "obis": str(p.obis),
        "capture_period_s": p.capture_period_s,
        "columns": [
            {
                "obis": str(c.obis),
                "class_id": c.capture.class_id,
                "attribute": c.capture.attribute,
                "unit": c.scaler_unit.symbol if c.scaler_unit else None,
                "scaler": c.scaler_unit.scaler if c.scaler_unit else None,
            }
            for c in p.columns
        ],
        "rows": [
            [
                row.time.isoformat() if col.is_clock else _jsonable(p.value(row, i))
                for i, col in enumerate(p.columns)
            ]
            for row in p.rows
        ],
    }


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
        return int(v)
    return v


class MeterReader:
    """One association with one meter over ``transport`` (opened and closed by the caller).

    ``client_address``/``server_address`` are the DLMS SAPs the transport was built with
    (kept for logs). ``timeout`` bounds every request (s).
    """

    def __init__(
        self,
        transport: ApduTransport,
        client_address: int = 16,
        server_address: int = 1,
        *,
        meter_id: str = "",
        password: bytes | None = None,
        timeout: float = 10.0,
        max_pdu_size: int = 0xFFFF,
        security: ReaderSecurity | None = None,
    ) -> None:
        self.transport = transport
        self.client_address = client_address
        self.server_address = server_address
        self.meter_id = meter_id
        self.timeout = timeout
        self.security = security
        if security is None:
            self.connection = ClientConnection(
                max_pdu_size=max_pdu_size, password=password, meter=meter_id
            )
        else:
            if password is not None:
                raise ConfigError("use either a password (low) or HLS-GMAC", path="auth")
            context = security.new_context()
            self.connection = ClientConnection(
                max_pdu_size=max_pdu_size,
                meter=meter_id,
                security=context,
                refill=security.refill(context, meter_id),
                challenge=lambda: make_challenge(security.challenge_length),
            )
        self._scaler_units: dict[Obis, ScalerUnit] = {}
        self._with_list_refused = False

    async def _exchange(self, request: bytes) -> ClientEvent:
        event = self.connection.receive_apdu(await self.transport.request(request, self.timeout))
        while isinstance(event, NotificationReceived):
            logger.info("meter %s: push received during a request", self.meter_id)
            event = self.connection.receive_apdu(await self.transport.receive(self.timeout))
        return event

    async def _get(self, request: bytes) -> GetResults:
        event = await self._exchange(request)
        while isinstance(event, BlockReceived):
            event = await self._exchange(event.next_request)
        if not isinstance(event, GetResults):
            raise ProtocolError(f"unexpected {type(event).__name__} answering a GET")
        return event

    async def associate(self) -> AssociationAccepted:
        """AARQ/AARE (and, with HLS-GMAC, the reply_to_HLS_authentication exchange)."""
        event = await self._exchange(self.connection.associate())
        if isinstance(event, AuthenticationRequired):
            event = await self._exchange(event.next_request)
        if not isinstance(event, AssociationAccepted):
            raise ProtocolError(f"unexpected {type(event).__name__} answering AARQ")
        logger.debug(
            "meter %s associated: conformance %s, max PDU %d",
            self.meter_id,
            event.conformance,
            event.server_max_pdu_size,
        )
        return event

    async def release(self) -> None:
        """RLRQ/RLRE. The data is already read: a meter that refuses or does not answer the
        release (MeterTimeoutError after ``timeout``) costs a log line, not the read."""
        try:
            await self._exchange(self.connection.release())
        except (ProtocolError, ServiceError, TransportError) as exc:
            logger.info("meter %s: release: %s", self.meter_id, exc)

    async def get(
        self, descriptor: AttributeDescriptor, access: AccessSelection | None = None
    ) -> Data:
        """One attribute (typed error if the meter refuses it)."""
        res = await self._get(self.connection.get(descriptor, access))
        return check_result(res.results[0], descriptor, self.meter_id)

    async def get_many(self, descriptors: Sequence[AttributeDescriptor]) -> list[Data]:
        """Several attributes: GET-with-list in chunks that fit the meter's PDU size, or one
        GET each when the meter lacks (or refuses) with-list."""
        if not descriptors:
            return []
        multi = bool(self.connection.conformance & Conformance.MULTIPLE_REFERENCES)
        if len(descriptors) == 1 or not multi or self._with_list_refused:
            return [await self.get(d) for d in descriptors]
        limit = self.connection.server_max_pdu_size or 0xFFFF
        per = max(1, min(255, (limit - _WITH_LIST_HEAD) // _WITH_LIST_ITEM))
        out: list[Data] = []
        for i in range(0, len(descriptors), per):
            chunk = descriptors[i : i + per]
            try:
                res = await self._get(self.connection.get_with_list([(d, None) for d in chunk]))
            except ServiceError as exc:
                logger.info("meter %s refused GET with-list (%s): single GETs", self.meter_id, exc)
                self._with_list_refused = True
                return out + [await self.get(d) for d in descriptors[i:]]
            out.extend(
                check_result(r, d, self.meter_id) for r, d in zip(res.results, chunk, strict=True)
            )
        return out

    async def read_clock(self) -> datetime:
        """The meter's clock as an aware datetime (its own offset)."""
        data = await self.get(AttributeDescriptor(8, CLOCK_OBIS, 2))
        return _datetime(data, "clock")

    async def set(
        self,
        descriptor: AttributeDescriptor,
        value: Data,
        access: AccessSelection | None = None,
    ) -> None:
        """Write one attribute (typed error naming the meter and OBIS if refused)."""
        event = await self._exchange(self.connection.set(descriptor, value, access))
        if not isinstance(event, SetCompleted):
            raise ProtocolError(f"unexpected {type(event).__name__} answering a SET")
        check_set(event, self.meter_id)

    async def action(self, method: MethodDescriptor, parameters: Data | None = None) -> Data | None:
        """Invoke one method; its return data (None when the meter sent none)."""
        event = await self._exchange(self.connection.action(method, parameters))
        if not isinstance(event, ActionCompleted):
            raise ProtocolError(f"unexpected {type(event).__name__} answering an ACTION")
        return check_action(event, self.meter_id)

    async def set_clock(self, dt: datetime) -> None:
        """SET attribute 2 of the clock 0.0.1.0.0.255 to ``dt`` (aware; sent with its offset)."""
        if dt.tzinfo is None:
            raise ConfigError("set_clock needs an aware datetime", path="dt")
        await self.set(
            AttributeDescriptor(8, CLOCK_OBIS, 2), CosemDateTime.from_datetime(dt).to_data()
        )

    async def check_clock(
        self, reference: datetime, max_drift_s: float, *, adjust: bool = False
    ) -> ClockCheck:
        """Read the clock and compare with ``reference`` (aware, taken just before the call).

        ``drift_s`` = meter - reference, in s. When ``adjust`` is True (configuration allows
        clock setting) and ``abs(drift_s) > max_drift_s``, the clock is set to the reference
        plus the time elapsed since the check began, and ``adjusted`` is True.
        """
        if reference.tzinfo is None:
            raise ConfigError("check_clock needs an aware reference", path="reference")
        loop_start = time.monotonic()
        meter_time = await self.read_clock()
        drift = (meter_time - reference).total_seconds() - (time.monotonic() - loop_start) / 2
        adjusted = False
        if adjust and abs(drift) > max_drift_s:
            target = reference + timedelta(seconds=time.monotonic() - loop_start)
            await self.set_clock(target.astimezone(meter_time.tzinfo))
            adjusted = True
            logger.info("meter %s: clock off by %.1f s, set", self.meter_id, drift)
        return ClockCheck(meter_time, round(drift, 3), adjusted)

    async def read_events(self, obis: Obis, start: datetime, end: datetime) -> list[EventRecord]:
        """Rows of an event log (class 7) stamped in [start, end] (aware), read by range.

        The columns come from attribute 3: the clock column gives the time, a column of an
        event code object (x.x.96.11.x) the code, any other integer column a duration in s.
        """
        head = await self.get(AttributeDescriptor(7, obis, 3))
        if head.type != DataType.ARRAY:
            raise DecodeError(f"capture objects of {obis} is {head.type.name}, not an array")
        captures = tuple(CaptureObject.from_data(c) for c in head.value)
        clock_col = next(
            (i for i, c in enumerate(captures) if c.class_id == 8 and c.attribute == 2), None
        )
        if clock_col is None:
            raise DecodeError(f"event log {obis} has no clock column")
        code_col = next(
            (i for i, c in enumerate(captures) if c.obis.c == 96 and c.obis.d == 11), None
        )
        rng = RangeDescriptor(
            captures[clock_col],
            CosemDateTime.from_datetime(start),
            CosemDateTime.from_datetime(end),
        )
        buffer = await self.get(AttributeDescriptor(7, obis, 2), rng.to_access())
        if buffer.type != DataType.ARRAY:
            raise DecodeError(f"buffer of {obis} is {buffer.type.name}, not an array")
        out = []
        for entry in buffer.value:
            if entry.type != DataType.STRUCTURE or len(entry.value) != len(captures):
                raise DecodeError(f"row of {obis} does not match its {len(captures)} columns")
            t = _datetime(entry.value[clock_col], f"event time in {obis}")
            code = _POWER_UP if obis == _POWER_FAILURE_LOG else None
            duration = None
            for i, cell in enumerate(entry.value):
                if (
                    i == clock_col
                    or not isinstance(cell.value, int)
                    or isinstance(cell.value, bool)
                ):
                    continue
                if i == code_col:
                    code = cell.value
                else:
                    duration = cell.value
            if code is None:
                raise DecodeError(f"event log {obis} row without an event code")
            out.append(EventRecord(self.meter_id, obis, t, code, duration))
        return out

    async def read_clock_and_registers(
        self, obis_list: Sequence[Obis], class_id: int = 3
    ) -> tuple[datetime, list[RegisterValue]]:
        """The clock and the registers in one GET-with-list (one round trip when the meter
        supports with-list and it fits its PDU); no register GET at all for an empty list."""
        clock_d = AttributeDescriptor(8, CLOCK_OBIS, 2)
        if not obis_list:
            return await self.read_clock(), []
        need_su = [o for o in obis_list if o not in self._scaler_units]
        descriptors = [clock_d]
        descriptors += [AttributeDescriptor(class_id, o, 2) for o in obis_list]
        descriptors += [AttributeDescriptor(class_id, o, 3) for o in need_su]
        data = await self.get_many(descriptors)
        clock = _datetime(data[0], "clock")
        values = data[1 : 1 + len(obis_list)]
        for o, d in zip(need_su, data[1 + len(obis_list) :], strict=True):
            self._scaler_units[o] = _scaler_unit(d, o)
        return clock, self._registers(obis_list, values)

    def _registers(self, obis_list: Sequence[Obis], values: Sequence[Data]) -> list[RegisterValue]:
        out = []
        for o, d in zip(obis_list, values, strict=False):
            if not isinstance(d.value, int) or isinstance(d.value, bool):
                raise DecodeError(f"register {o} value is {d.type.name}, not an integer")
            out.append(RegisterValue(o, d.value, self._scaler_units[o]))
        return out

    async def read_registers(
        self, obis_list: Sequence[Obis], class_id: int = 3
    ) -> list[RegisterValue]:
        """Value (attribute 2) and scaler-unit (attribute 3, cached) of each register."""
        need_su = [o for o in obis_list if o not in self._scaler_units]
        descriptors = [AttributeDescriptor(class_id, o, 2) for o in obis_list]
        descriptors += [AttributeDescriptor(class_id, o, 3) for o in need_su]
        data = await self.get_many(descriptors)
        for o, d in zip(need_su, data[len(obis_list) :], strict=True):
            self._scaler_units[o] = _scaler_unit(d, o)
        return self._registers(obis_list, data)

    async def read_profile(self, obis: Obis, start: datetime, end: datetime) -> ProfileData:
        """Rows of a profile (class 7) captured in [start, end] (aware datetimes)."""
        head = await self.get_many(
            [AttributeDescriptor(7, obis, 3), AttributeDescriptor(7, obis, 4)]
        )
        if head[0].type != DataType.ARRAY:
            raise DecodeError(f"capture objects of {obis} is {head[0].type.name}, not an array")
        captures = tuple(CaptureObject.from_data(c) for c in head[0].value)
        period = head[1].value
        if not isinstance(period, int) or isinstance(period, bool):
            raise DecodeError(f"capture period of {obis} is {head[1].type.name}")
        registers = {
            c.obis: c.class_id
            for c in captures
            if c.class_id in _REGISTER_CLASSES
            and c.attribute == 2
            and c.obis not in self._scaler_units
        }
        if registers:
            su_data = await self.get_many(
                [AttributeDescriptor(cid, o, 3) for o, cid in registers.items()]
            )
            for o, d in zip(registers, su_data, strict=True):
                self._scaler_units[o] = _scaler_unit(d, o)
        columns = tuple(
            ProfileColumn(
                c,
                self._scaler_units.get(c.obis)
                if c.class_id in _REGISTER_CLASSES and c.attribute == 2
                else None,
            )
            for c in captures
        )
        clock_col = next((i for i, c in enumerate(columns) if c.is_clock), None)
        restricting = (
            captures[clock_col] if clock_col is not None else CaptureObject(8, CLOCK_OBIS, 2, 0)
        )
        rng = RangeDescriptor(
            restricting, CosemDateTime.from_datetime(start), CosemDateTime.from_datetime(end)
        )
        buffer = await self.get(AttributeDescriptor(7, obis, 2), rng.to_access())
        rows = _rows(
            buffer,
            columns=columns,
            clock_col=clock_col,
            period=period,
            start=start,
            obis=str(obis),
        )
        return ProfileData(obis, period, columns, rows)


def _datetime(data: Data, what: str) -> datetime:
    if data.type not in (DataType.OCTET_STRING, DataType.DATE_TIME):
        raise DecodeError(f"{what} is {data.type.name}, not a date-time")
    return CosemDateTime.from_bytes(data.value).to_datetime()


def _scaler_unit(data: Data, obis: Obis) -> ScalerUnit:
    try:
        return ScalerUnit.from_data(data)
    except DecodeError as exc:
        raise DecodeError(f"scaler_unit of {obis}: {exc}") from exc


def _rows(
    buffer: Data,
    *,
    columns: tuple[ProfileColumn, ...],
    clock_col: int | None,
    period: int,
    start: datetime,
    obis: str,
) -> tuple[ProfileRow, ...]:
    if buffer.type != DataType.ARRAY:
        raise DecodeError(f"buffer of {obis} is {buffer.type.name}, not an array")
    ncol = len(columns)
    step = timedelta(seconds=period)
    prev: datetime | None = None
    rows = []
    for entry in buffer.value:
        cells_data = entry.value
        if entry.type != DataType.STRUCTURE or len(cells_data) != ncol:
            raise DecodeError(f"row of {obis} does not match its {ncol} capture objects")
        cells = [d.value for d in cells_data]
        if clock_col is None:
            raise DecodeError(f"profile {obis} has no clock column")
        raw = cells_data[clock_col]
        if raw.type == DataType.NULL_DATA:
            if prev is None:
                # The first row without a clock: the first capture at or after start.
                epoch = start.timestamp()
                t = datetime.fromtimestamp(math.ceil(epoch / period) * period, UTC)
            else:
                t = prev + step
        else:
            t = _datetime(raw, f"row clock of {obis}")
        cells[clock_col] = t
        prev = t
        rows.append(ProfileRow(t, tuple(cells)))
    return tuple(rows)


# ---------------------------------------------------------------------------- one-call read


_SERIAL_SCHEMES = ("serial", "socket", "rfc2217")


def open_transport(
    url: str,
    *,
    transport: str = "wrapper",
    client: int = 16,
    server: int = 1,
    baud: int = 9600,
) -> ApduTransport:
    """A transport, not yet opened, for ``tcp://host:port`` (wrapper or HDLC framing) or a
    serial line with HDLC: ``serial:///dev/ttyUSB0``, ``socket://host:port`` (a TCP/serial
    gateway through pyserial), ``rfc2217://host:port``; ``baud`` applies to serial lines."""
    parts = urlsplit(url)
    if parts.scheme in _SERIAL_SCHEMES:
        if transport != "hdlc":
            raise ConfigError(
                f"a serial line ({url}) carries HDLC: use transport hdlc", path="transport"
            )
        port = parts.path if parts.scheme == "serial" else url
        if not port:
            raise ConfigError(f"no device in {url!r} (serial:///dev/ttyX)", path="url")
        from edge_core.transport.hdlc import HdlcSerialTransport

        return HdlcSerialTransport(port, baud, client, (server, None))
    if parts.scheme != "tcp" or not parts.hostname or parts.port is None:
        raise ConfigError(
            f"meter URL must look like tcp://HOST:PORT or serial:///dev/ttyX, got {url!r}",
            path="url",
        )
    if transport == "wrapper":
        from edge_core.transport.tcp import TcpWrapperTransport

        return TcpWrapperTransport(
            parts.hostname, parts.port, client_wport=client, server_wport=server
        )
    if transport == "hdlc":
        try:
            from edge_core.transport.hdlc import (
                HdlcTcpTransport,
            )
        except ImportError as exc:
            raise ConfigError("HDLC transport is not available in this build") from exc
        return HdlcTcpTransport(parts.hostname, parts.port, client, (server, None))
    raise ConfigError(f"unknown transport {transport!r} (wrapper or hdlc)", path="transport")


async def read_meter(
    url: str,
    *,
    client: int = 16,
    server: int = 1,
    obis: Sequence[Obis] | None = None,
    load_profile: tuple[datetime, datetime] | None = None,
    profile_obis: Obis = LOAD_PROFILE_OBIS,
    transport: str = "wrapper",
    timeout: float = 10.0,
    password: bytes | None = None,
    daily: tuple[datetime, datetime] | None = None,
    events: tuple[datetime, datetime] | None = None,
    event_logs: Sequence[Obis] = EVENT_LOG_OBIS,
    set_clock: bool = False,
    max_drift_s: float = 10.0,
    clock_reference: Callable[[], datetime] | None = None,
    baud: int = 9600,
    security: ReaderSecurity | None = None,
    meter_id: str | None = None,
) -> MeterRead:
    """Connect, associate, read clock + registers (+ profile ranges, event logs), release,
    disconnect.

    ``obis`` None reads :data:`DEFAULT_REGISTERS` that the meter has (at least +A and -A); an
    empty sequence reads no register (profile-only reads). ``load_profile``, ``daily`` and
    ``events`` are (start, end) as aware datetimes; ``events`` reads every log of
    ``event_logs``. The clock is always compared with ``clock_reference()`` (default: now,
    UTC) into ``clock_check``; it is set only when ``set_clock`` is True (configuration allows)
    and the drift exceeds ``max_drift_s`` (s). ``timeout`` (s) bounds each request. ``security``
    is an :class:`edge_core.meter.security.ReaderSecurity` (HLS-GMAC) or None; its invocation
    counters are kept per ``meter_id`` (default: the URL), so give the same id every time.
    """
    link = open_transport(url, transport=transport, client=client, server=server, baud=baud)
    name = meter_id or url
    reader = MeterReader(
        link, client, server, meter_id=name, password=password, timeout=timeout, security=security
    )
    now = clock_reference or (lambda: datetime.now(UTC))
    await link.open()
    try:
        await reader.associate()
        reference = now()
        started = time.monotonic()
        if obis is None:
            clock, registers = await _clock_and_default_registers(reader)
        else:
            clock, registers = await reader.read_clock_and_registers(list(obis))
        drift = (clock - reference).total_seconds() - (time.monotonic() - started) / 2
        adjusted = False
        if set_clock and abs(drift) > max_drift_s:
            await reader.set_clock(now().astimezone(clock.tzinfo))
            adjusted = True
        check = ClockCheck(clock, round(drift, 3), adjusted)
        profile = None
        if load_profile is not None:
            profile = await reader.read_profile(profile_obis, *load_profile)
        daily_profile = None
        if daily is not None:
            daily_profile = await reader.read_profile(DAILY_PROFILE_OBIS, *daily)
        records: tuple[EventRecord, ...] | None = None
        if events is not None:
            got: list[EventRecord] = []
            for log in event_logs:
                got.extend(await reader.read_events(log, *events))
            records = tuple(got)
        await reader.release()
    finally:
        await link.close()
    return MeterRead(
        name,
        clock,
        tuple(registers),
        profile,
        link.stats,
        daily_profile=daily_profile,
        events=records,
        clock_check=check,
    )


async def _clock_and_default_registers(
    reader: MeterReader,
) -> tuple[datetime, list[RegisterValue]]:
    try:
        return await reader.read_clock_and_registers(list(DEFAULT_REGISTERS))
    except MeterError:
        # Not every meter has reactive registers: read what it has, +A and -A at least.
        clock, out = await reader.read_clock_and_registers(list(DEFAULT_REGISTERS[:2]))
        for o in DEFAULT_REGISTERS[2:]:
            try:
                out.extend(await reader.read_registers([o]))
            except MeterError as exc:
                logger.info("meter %s has no %s: %s", reader.meter_id, o, exc)
        return clock, out


async def _default_registers(reader: MeterReader) -> list[RegisterValue]:
    """Kept for callers of the earlier API: the default registers without the clock."""
    _, registers = await _clock_and_default_registers(reader)
    return registers
