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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from edge_core.dlms.apdu import AccessSelection, AttributeDescriptor, Conformance, RangeDescriptor
from edge_core.dlms.axdr import Data, DataType
from edge_core.dlms.client import (
    AssociationAccepted,
    BlockReceived,
    ClientConnection,
    ClientEvent,
    GetResults,
    NotificationReceived,
    check_result,
)
from edge_core.dlms.cosem import CaptureObject, CosemDateTime, RegisterValue, ScalerUnit
from edge_core.dlms.obis import Obis
from edge_core.errors import (
    ConfigError,
    DecodeError,
    MeterError,
    ProtocolError,
    ServiceError,
    TransportError,
)
from edge_core.model import DataClass, Reading
from edge_core.transport.base import ApduTransport, WireStats

__all__ = [
    "CLOCK_OBIS",
    "DEFAULT_REGISTERS",
    "LOAD_PROFILE_OBIS",
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
class MeterRead:
    """Everything one ``read_meter`` call got from one meter."""

    meter: str
    clock: datetime
    registers: tuple[RegisterValue, ...]
    load_profile: ProfileData | None
    wire: WireStats

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
            p = self.load_profile
            doc["load_profile"] = {
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
        return doc


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
    ) -> None:
        self.transport = transport
        self.client_address = client_address
        self.server_address = server_address
        self.meter_id = meter_id
        self.timeout = timeout
        self.connection = ClientConnection(
            max_pdu_size=max_pdu_size, password=password, meter=meter_id
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
        event = await self._exchange(self.connection.associate())
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
        out = []
        for o, d in zip(obis_list, data, strict=False):
            if not isinstance(d.value, int) or isinstance(d.value, bool):
                raise DecodeError(f"register {o} value is {d.type.name}, not an integer")
            out.append(RegisterValue(o, d.value, self._scaler_units[o]))
        return out

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


def open_transport(
    url: str, *, transport: str = "wrapper", client: int = 16, server: int = 1
) -> ApduTransport:
    """A transport for ``tcp://host:port`` (wrapper or HDLC framing); not yet opened."""
    parts = urlsplit(url)
    if parts.scheme != "tcp" or not parts.hostname or parts.port is None:
        raise ConfigError(f"meter URL must look like tcp://HOST:PORT, got {url!r}", path="url")
    if transport == "wrapper":
        from edge_core.transport.tcp import TcpWrapperTransport  # noqa: PLC0415 - asyncio only when reading

        return TcpWrapperTransport(
            parts.hostname, parts.port, client_wport=client, server_wport=server
        )
    if transport == "hdlc":
        try:
            from edge_core.transport.hdlc import (  # noqa: PLC0415 - optional HDLC part
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
) -> MeterRead:
    """Connect, associate, read clock + registers (+ a profile range), release, disconnect.

    ``obis`` None reads :data:`DEFAULT_REGISTERS` that the meter has (at least +A and -A);
    ``load_profile`` is (start, end) as aware datetimes; ``timeout`` (s) bounds each request.
    """
    link = open_transport(url, transport=transport, client=client, server=server)
    reader = MeterReader(link, client, server, meter_id=url, password=password, timeout=timeout)
    await link.open()
    try:
        await reader.associate()
        clock = await reader.read_clock()
        if obis is None:
            registers = await _default_registers(reader)
        else:
            registers = await reader.read_registers(list(obis))
        profile = None
        if load_profile is not None:
            profile = await reader.read_profile(profile_obis, *load_profile)
        await reader.release()
    finally:
        await link.close()
    return MeterRead(url, clock, tuple(registers), profile, link.stats)


async def _default_registers(reader: MeterReader) -> list[RegisterValue]:
    try:
        return await reader.read_registers(list(DEFAULT_REGISTERS))
    except MeterError:
        # Not every meter has reactive registers: read what it has, +A and -A at least.
        out = list(await reader.read_registers(list(DEFAULT_REGISTERS[:2])))
        for o in DEFAULT_REGISTERS[2:]:
            try:
                out.extend(await reader.read_registers([o]))
            except MeterError as exc:
                logger.info("meter %s has no %s: %s", reader.meter_id, o, exc)
        return out
