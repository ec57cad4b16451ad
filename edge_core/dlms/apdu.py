"""ACSE and xDLMS APDUs (IEC 62056-5-3), as frozen value objects with symmetric codecs.

ACSE (AARQ 0x60, AARE 0x61, RLRQ 0x62, RLRE 0x63) is BER; the xDLMS InitiateRequest /
InitiateResponse travel A-XDR-encoded inside the ACSE user-information octet string.
xDLMS services (GET 0xC0/0xC4, exception-response 0xD8, confirmed-service-error 0x0E,
data-notification 0x0F), SET (0xC1/0xC5) and ACTION (0xC3/0xC7) are A-XDR.

Only the logical-name, no-ciphering application context is produced; others are decoded and
reported so that the client can refuse them clearly. Every ``from_bytes`` raises
:class:`~edge_core.errors.DecodeError` for anything malformed and nothing else.
:func:`decode_apdu` dispatches on the first byte.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from edge_core.dlms.axdr import Data, decode_data_at, decode_length, encode_data, encode_length
from edge_core.dlms.cosem import CaptureObject, CosemDateTime
from edge_core.dlms.obis import Obis
from edge_core.dlms.security import GloCiphered
from edge_core.errors import DecodeError, EncodeError

__all__ = [
    "AARE",
    "AARQ",
    "GLO_INITIATE_REQUEST",
    "GLO_INITIATE_RESPONSE",
    "RLRE",
    "RLRQ",
    "AccessSelection",
    "ActionRequestNormal",
    "ActionResponseNormal",
    "ActionResult",
    "Apdu",
    "ApplicationContext",
    "AssociationResult",
    "AttributeDescriptor",
    "AuthMechanism",
    "ConfirmedServiceError",
    "Conformance",
    "DataAccessResult",
    "DataNotification",
    "ExceptionResponse",
    "GetRequestNext",
    "GetRequestNormal",
    "GetRequestWithList",
    "GetResponseNormal",
    "GetResponseWithDatablock",
    "GetResponseWithList",
    "GetResult",
    "InitiateRequest",
    "InitiateResponse",
    "MethodDescriptor",
    "RangeDescriptor",
    "SetRequestNormal",
    "SetRequestWithDatablock",
    "SetRequestWithFirstDatablock",
    "SetResponseDatablock",
    "SetResponseLastDatablock",
    "SetResponseNormal",
    "decode_apdu",
    "decode_results",
]

_CONTEXT_PREFIX = bytes.fromhex("60857405080101")[:-1]  # 2.16.756.5.8.1.x
_MECHANISM_PREFIX = bytes.fromhex("60857405080201")[:-1]  # 2.16.756.5.8.2.x
DEFAULT_FLAGS = 0xC0
"""Invoke-id-and-priority high bits: priority high (bit 7), service class confirmed (bit 6)."""


class ApplicationContext(enum.IntEnum):
    LOGICAL_NAME = 1
    SHORT_NAME = 2
    LOGICAL_NAME_CIPHERING = 3
    SHORT_NAME_CIPHERING = 4


class AuthMechanism(enum.IntEnum):
    LOWEST = 0
    LOW = 1
    HIGH = 2
    HIGH_MD5 = 3
    HIGH_SHA1 = 4
    HIGH_GMAC = 5
    HIGH_SHA256 = 6
    HIGH_ECDSA = 7


class AssociationResult(enum.IntEnum):
    ACCEPTED = 0
    REJECTED_PERMANENT = 1
    REJECTED_TRANSIENT = 2


class Conformance(enum.IntFlag):
    """The 24-bit xDLMS conformance block; bit n of the standard is ``1 << (23 - n)``."""

    GENERAL_PROTECTION = 1 << 22
    GENERAL_BLOCK_TRANSFER = 1 << 21
    READ = 1 << 20
    WRITE = 1 << 19
    UNCONFIRMED_WRITE = 1 << 18
    ATTRIBUTE0_WITH_SET = 1 << 15
    PRIORITY_MGMT = 1 << 14
    ATTRIBUTE0_WITH_GET = 1 << 13
    BLOCK_TRANSFER_WITH_GET = 1 << 12
    BLOCK_TRANSFER_WITH_SET = 1 << 11
    BLOCK_TRANSFER_WITH_ACTION = 1 << 10
    MULTIPLE_REFERENCES = 1 << 9
    INFORMATION_REPORT = 1 << 8
    DATA_NOTIFICATION = 1 << 7
    ACCESS = 1 << 6
    PARAMETERIZED_ACCESS = 1 << 5
    GET = 1 << 4
    SET = 1 << 3
    SELECTIVE_ACCESS = 1 << 2
    EVENT_NOTIFICATION = 1 << 1
    ACTION = 1 << 0


class DataAccessResult(enum.IntEnum):
    SUCCESS = 0
    HARDWARE_FAULT = 1
    TEMPORARY_FAILURE = 2
    READ_WRITE_DENIED = 3
    OBJECT_UNDEFINED = 4
    OBJECT_CLASS_INCONSISTENT = 9
    OBJECT_UNAVAILABLE = 11
    TYPE_UNMATCHED = 12
    SCOPE_OF_ACCESS_VIOLATED = 13
    DATA_BLOCK_UNAVAILABLE = 14
    LONG_GET_ABORTED = 15
    NO_LONG_GET_IN_PROGRESS = 16
    LONG_SET_ABORTED = 17
    NO_LONG_SET_IN_PROGRESS = 18
    DATA_BLOCK_NUMBER_INVALID = 19
    OTHER_REASON = 250


def _access_result(code: int) -> DataAccessResult | int:
    try:
        return DataAccessResult(code)
    except ValueError:
        return code


GetResult = Data | DataAccessResult | int
"""A Get-Data-Result: the data, or a data-access-result code (an int if not in the enum)."""


# ---------------------------------------------------------------------------- cursor


class _Reader:
    """Bounds-checked cursor over an APDU; every overrun raises DecodeError."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos

    def u8(self) -> int:
        if self.pos >= len(self.buf):
            raise DecodeError("truncated APDU", data=self.buf)
        v = self.buf[self.pos]
        self.pos += 1
        return v

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.buf):
            raise DecodeError(f"truncated APDU: {n} bytes needed", data=self.buf)
        v = self.buf[self.pos : end]
        self.pos = end
        return v

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def length(self) -> int:
        n, self.pos = decode_length(self.buf, self.pos)
        return n

    def data(self) -> Data:
        d, self.pos = decode_data_at(self.buf, self.pos)
        return d

    @property
    def left(self) -> int:
        return len(self.buf) - self.pos

    def end(self) -> None:
        if self.pos != len(self.buf):
            raise DecodeError(f"{self.left} trailing bytes in APDU", data=self.buf)


def _u8(v: int, what: str) -> int:
    if not isinstance(v, int) or not 0 <= v <= 255:
        raise EncodeError(f"{what} must be 0..255, got {v!r}")
    return v


def _invoke_byte(invoke_id: int, flags: int) -> int:
    if not 0 <= invoke_id <= 15 or flags & 0x0F:
        raise EncodeError(f"invoke id 0..15 and flags in the high nibble: {invoke_id}, {flags}")
    return flags | invoke_id


# ---------------------------------------------------------------------------- descriptors


@dataclass(frozen=True, slots=True)
class AttributeDescriptor:
    """Cosem-Attribute-Descriptor: class id, logical name, attribute index (signed)."""

    class_id: int
    obis: Obis
    attribute: int

    def to_bytes(self) -> bytes:
        try:
            return (
                struct.pack(">H", self.class_id)
                + self.obis.to_bytes()
                + struct.pack(">b", self.attribute)
            )
        except struct.error as exc:
            raise EncodeError(f"attribute descriptor out of range: {self!r}") from exc

    @classmethod
    def read(cls, r: _Reader) -> AttributeDescriptor:
        class_id = r.u16()
        obis = Obis.from_bytes(r.take(6))
        attr = r.u8()
        return cls(class_id, obis, attr - 256 if attr > 127 else attr)


@dataclass(frozen=True, slots=True)
class AccessSelection:
    """Selective access: selector (1 = range, 2 = entry) and its parameters."""

    selector: int
    parameters: Data

    def to_bytes(self) -> bytes:
        return bytes((_u8(self.selector, "access selector"),)) + encode_data(self.parameters)

    @classmethod
    def read(cls, r: _Reader) -> AccessSelection:
        return cls(r.u8(), r.data())


def _write_optional_access(access: AccessSelection | None) -> bytes:
    return b"\x00" if access is None else b"\x01" + access.to_bytes()


def _read_optional_access(r: _Reader) -> AccessSelection | None:
    flag = r.u8()
    if flag == 0:
        return None
    if flag != 1:
        raise DecodeError(f"bad access-selection presence flag {flag}", data=r.buf)
    return AccessSelection.read(r)


@dataclass(frozen=True, slots=True)
class RangeDescriptor:
    """Parameters of selector 1: rows whose restricting value lies in [from, to].

    ``selected_values`` empty means all columns.
    """

    restricting_object: CaptureObject
    from_value: CosemDateTime
    to_value: CosemDateTime
    selected_values: tuple[CaptureObject, ...] = ()

    def to_access(self) -> AccessSelection:
        return AccessSelection(
            1,
            Data.structure(
                (
                    self.restricting_object.to_data(),
                    self.from_value.to_data(),
                    self.to_value.to_data(),
                    Data.array(c.to_data() for c in self.selected_values),
                )
            ),
        )

    @classmethod
    def from_access(cls, access: AccessSelection) -> RangeDescriptor:
        p = access.parameters
        if access.selector != 1 or p.type != 2 or len(p.value) != 4:
            raise DecodeError(f"not a range descriptor: {access!r}")
        obj, frm, to, sel = p.value
        if sel.type != 1:
            raise DecodeError("range descriptor selected_values is not an array")
        return cls(
            CaptureObject.from_data(obj),
            CosemDateTime.from_data(frm),
            CosemDateTime.from_data(to),
            tuple(CaptureObject.from_data(c) for c in sel.value),
        )


# ---------------------------------------------------------------------------- xDLMS initiate


def _conformance_bytes(c: int) -> bytes:
    return b"\x5f\x1f\x04\x00" + int(c).to_bytes(3, "big")


def _read_conformance(r: _Reader) -> Conformance:
    head = r.take(4)
    if head[:3] != b"\x5f\x1f\x04":
        raise DecodeError(f"bad conformance header {head.hex()}", data=r.buf)
    return Conformance(int.from_bytes(r.take(3), "big"))


@dataclass(frozen=True, slots=True)
class InitiateRequest:
    """xDLMS InitiateRequest (tag 0x01). ``max_receive_pdu_size`` in bytes (client side)."""

    conformance: Conformance
    max_receive_pdu_size: int = 0xFFFF
    dlms_version: int = 6
    dedicated_key: bytes | None = None
    response_allowed: bool = True
    quality_of_service: int | None = None

    TAG = 0x01

    def to_bytes(self) -> bytes:
        out = bytearray((self.TAG,))
        if self.dedicated_key is None:
            out.append(0)
        else:
            out += b"\x01" + encode_length(len(self.dedicated_key)) + self.dedicated_key
        out += b"\x00" if self.response_allowed else b"\x01\x00"
        out += b"\x00" if self.quality_of_service is None else bytes((1, self.quality_of_service))
        out.append(_u8(self.dlms_version, "dlms version"))
        out += _conformance_bytes(self.conformance)
        if not 0 <= self.max_receive_pdu_size <= 0xFFFF:
            raise EncodeError(f"max pdu size out of range: {self.max_receive_pdu_size}")
        out += struct.pack(">H", self.max_receive_pdu_size)
        return bytes(out)

    @classmethod
    def from_bytes(cls, buf: bytes) -> InitiateRequest:
        r = _Reader(buf)
        if r.u8() != cls.TAG:
            raise DecodeError("not an InitiateRequest", data=buf)
        key = r.take(r.length()) if r.u8() else None
        allowed = True
        if r.u8():
            allowed = r.u8() != 0
        qos = r.u8() if r.u8() else None
        version = r.u8()
        conf = _read_conformance(r)
        size = r.u16()
        r.end()
        return cls(conf, size, version, key, allowed, qos)


@dataclass(frozen=True, slots=True)
class InitiateResponse:
    """xDLMS InitiateResponse (tag 0x08). ``max_receive_pdu_size`` in bytes (server side)."""

    conformance: Conformance
    max_receive_pdu_size: int
    dlms_version: int = 6
    vaa_name: int = 0x0007
    quality_of_service: int | None = None

    TAG = 0x08

    def to_bytes(self) -> bytes:
        out = bytearray((self.TAG,))
        out += b"\x00" if self.quality_of_service is None else bytes((1, self.quality_of_service))
        out.append(_u8(self.dlms_version, "dlms version"))
        out += _conformance_bytes(self.conformance)
        try:
            out += struct.pack(">HH", self.max_receive_pdu_size, self.vaa_name)
        except struct.error as exc:
            raise EncodeError(f"InitiateResponse field out of range: {self!r}") from exc
        return bytes(out)

    @classmethod
    def from_bytes(cls, buf: bytes) -> InitiateResponse:
        r = _Reader(buf)
        if r.u8() != cls.TAG:
            raise DecodeError("not an InitiateResponse", data=buf)
        qos = r.u8() if r.u8() else None
        version = r.u8()
        conf = _read_conformance(r)
        size = r.u16()
        vaa = r.u16()
        r.end()
        return cls(conf, size, version, vaa, qos)


@dataclass(frozen=True, slots=True)
class ConfirmedServiceError:
    """confirmed-service-error (0x0E): which service failed, the error class and its code.

    ``service`` 1 = initiate, 5 = read, 6 = write; ``error_class`` 6 = initiate, 5 = access,
    3 = service ...; ``code`` the enum within that class.
    """

    service: int
    error_class: int
    code: int

    TAG = 0x0E

    def to_bytes(self) -> bytes:
        return bytes(
            (
                self.TAG,
                _u8(self.service, "service"),
                _u8(self.error_class, "error class"),
                _u8(self.code, "code"),
            )
        )

    @classmethod
    def from_bytes(cls, buf: bytes) -> ConfirmedServiceError:
        r = _Reader(buf)
        if r.u8() != cls.TAG:
            raise DecodeError("not a confirmed-service-error", data=buf)
        v = cls(r.u8(), r.u8(), r.u8())
        r.end()
        return v


def _decode_user_information(
    raw: bytes,
) -> InitiateRequest | InitiateResponse | ConfirmedServiceError:
    if not raw:
        raise DecodeError("empty user-information")
    tag = raw[0]
    if tag == InitiateRequest.TAG:
        return InitiateRequest.from_bytes(raw)
    if tag == InitiateResponse.TAG:
        return InitiateResponse.from_bytes(raw)
    if tag == ConfirmedServiceError.TAG:
        return ConfirmedServiceError.from_bytes(raw)
    raise DecodeError(f"user-information holds unsupported APDU 0x{tag:02x} (ciphered?)", data=raw)


GLO_INITIATE_REQUEST = 0x21
"""glo-initiate-request: a ciphered InitiateRequest in the AARQ user-information."""
GLO_INITIATE_RESPONSE = 0x28
"""glo-initiate-response: a ciphered InitiateResponse in the AARE user-information."""


def _ciphered_user_information(raw: bytes, tag: int) -> bytes | None:
    """``raw`` itself when it is a well-formed glo-initiate APDU with tag ``tag`` (the caller
    deciphers it with its SecurityContext), None when it is something else."""
    if not raw or raw[0] != tag:
        return None
    try:
        GloCiphered.from_bytes(raw)
    except DecodeError as exc:
        raise DecodeError(f"bad ciphered user-information: {exc}", data=raw) from exc
    return raw


# ---------------------------------------------------------------------------- ACSE (BER)


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes((tag,)) + encode_length(len(value)) + value


def _ber_items(buf: bytes, start: int, end: int) -> list[tuple[int, bytes]]:
    items = []
    r = _Reader(buf[:end], start)
    while r.left:
        tag = r.u8()
        if tag & 0x1F == 0x1F:
            raise DecodeError(f"multi-byte BER tag 0x{tag:02x} not supported", data=buf)
        items.append((tag, r.take(r.length())))
    return items


def _open_ber(buf: bytes, tag: int, name: str) -> list[tuple[int, bytes]]:
    r = _Reader(buf)
    if r.u8() != tag:
        raise DecodeError(f"not an {name}", data=buf)
    n = r.length()
    end = r.pos + n
    if end != len(buf):
        raise DecodeError(f"{name} length {n} does not match {len(buf) - r.pos} bytes", data=buf)
    return _ber_items(buf, r.pos, end)


def _context_name(ctx: int) -> bytes:
    return _tlv(0xA1, _tlv(0x06, _CONTEXT_PREFIX + bytes((_u8(ctx, "context"),))))


def _read_oid_last(inner: bytes, prefix: bytes, what: str) -> int:
    if len(inner) != len(prefix) + 1 or not inner.startswith(prefix):
        raise DecodeError(f"unknown {what} OID {inner.hex()}", data=inner)
    return inner[-1]


def _read_context(value: bytes) -> int:
    if len(value) < 2 or value[0] != 0x06 or value[1] != len(value) - 2:
        raise DecodeError(f"bad application-context-name {value.hex()}", data=value)
    return _read_oid_last(value[2:], _CONTEXT_PREFIX, "application context")


def _int_value(value: bytes, what: str) -> int:
    """A BER INTEGER (tag 0x02) of one byte, as used in AARE result fields."""
    if len(value) != 3 or value[0] != 0x02 or value[1] != 1:
        raise DecodeError(f"bad {what} {value.hex()}", data=value)
    return value[2]


def _auth_value(value: bytes) -> bytes:
    if len(value) < 2 or value[0] != 0x80 or value[1] != len(value) - 2:
        raise DecodeError(f"bad authentication-value {value.hex()}", data=value)
    return value[2:]


def _user_info(value: bytes) -> bytes:
    r = _Reader(value)
    if r.u8() != 0x04:
        raise DecodeError("user-information is not an octet string", data=value)
    raw = r.take(r.length())
    r.end()
    return raw


def _user_information_bytes(
    info: InitiateRequest | InitiateResponse | ConfirmedServiceError | bytes,
) -> bytes:
    return bytes(info) if isinstance(info, bytes | bytearray) else info.to_bytes()


@dataclass(frozen=True, slots=True)
class AARQ:
    """A-ASSOCIATE request. ``authentication_value`` is the LLS password (mechanism LOW) or
    the HLS challenge CtoS. ``user_information`` is an InitiateRequest, or the raw bytes of a
    glo-initiate-request (0x21, ciphered: see :mod:`edge_core.dlms.security`)."""

    user_information: InitiateRequest | bytes
    application_context: int = ApplicationContext.LOGICAL_NAME
    mechanism: int | None = None
    authentication_value: bytes | None = None
    calling_ap_title: bytes | None = None

    TAG = 0x60

    def to_bytes(self) -> bytes:
        body = bytearray(_context_name(self.application_context))
        if self.calling_ap_title is not None:
            body += _tlv(0xA6, _tlv(0x04, self.calling_ap_title))
        if self.mechanism is not None:
            body += _tlv(0x8A, b"\x07\x80")
            body += _tlv(0x8B, _MECHANISM_PREFIX + bytes((_u8(self.mechanism, "mechanism"),)))
        if self.authentication_value is not None:
            body += _tlv(0xAC, _tlv(0x80, self.authentication_value))
        body += _tlv(0xBE, _tlv(0x04, _user_information_bytes(self.user_information)))
        return _tlv(self.TAG, bytes(body))

    @classmethod
    def from_bytes(cls, buf: bytes) -> AARQ:
        ctx: int | None = None
        mech = None
        auth = None
        title = None
        ui: InitiateRequest | bytes | None = None
        for tag, value in _open_ber(buf, cls.TAG, "AARQ"):
            if tag == 0xA1:
                ctx = _read_context(value)
            elif tag == 0xA6:
                title = _user_info(value)
            elif tag == 0x8B:
                mech = _read_oid_last(value, _MECHANISM_PREFIX, "mechanism")
            elif tag == 0xAC:
                auth = _auth_value(value)
            elif tag == 0xBE:
                raw = _user_info(value)
                ui = _ciphered_user_information(raw, GLO_INITIATE_REQUEST)
                if ui is None:
                    info = _decode_user_information(raw)
                    if not isinstance(info, InitiateRequest):
                        raise DecodeError(
                            "AARQ user-information is not an InitiateRequest", data=buf
                        )
                    ui = info
        if ctx is None or ui is None:
            raise DecodeError("AARQ without application context or user-information", data=buf)
        return cls(ui, ctx, mech, auth, title)


@dataclass(frozen=True, slots=True)
class AARE:
    """A-ASSOCIATE response. ``diagnostic_source`` 1 = acse-service-user, 2 = -provider."""

    result: int
    diagnostic: int = 0
    user_information: InitiateResponse | ConfirmedServiceError | bytes | None = None
    application_context: int = ApplicationContext.LOGICAL_NAME
    diagnostic_source: int = 1
    mechanism: int | None = None
    authentication_value: bytes | None = None
    responding_ap_title: bytes | None = None

    TAG = 0x61

    def to_bytes(self) -> bytes:
        body = bytearray(_context_name(self.application_context))
        body += _tlv(0xA2, _tlv(0x02, bytes((_u8(self.result, "result"),))))
        if self.diagnostic_source not in (1, 2):
            raise EncodeError(f"diagnostic source must be 1 or 2, not {self.diagnostic_source}")
        body += _tlv(
            0xA3,
            _tlv(0xA0 | self.diagnostic_source, _tlv(0x02, bytes((_u8(self.diagnostic, "diag"),)))),
        )
        if self.responding_ap_title is not None:
            body += _tlv(0xA4, _tlv(0x04, self.responding_ap_title))
        if self.mechanism is not None:
            body += _tlv(0x88, b"\x07\x80")
            body += _tlv(0x89, _MECHANISM_PREFIX + bytes((_u8(self.mechanism, "mechanism"),)))
        if self.authentication_value is not None:
            body += _tlv(0xAA, _tlv(0x80, self.authentication_value))
        if self.user_information is not None:
            body += _tlv(0xBE, _tlv(0x04, _user_information_bytes(self.user_information)))
        return _tlv(self.TAG, bytes(body))

    @classmethod
    def from_bytes(cls, buf: bytes) -> AARE:
        ctx: int | None = None
        result: int | None = None
        diag = 0
        source = 1
        mech = None
        auth = None
        title = None
        ui: InitiateResponse | ConfirmedServiceError | bytes | None = None
        for tag, value in _open_ber(buf, cls.TAG, "AARE"):
            if tag == 0xA1:
                ctx = _read_context(value)
            elif tag == 0xA2:
                result = _int_value(value, "association result")
            elif tag == 0xA3:
                if not value or value[0] not in (0xA1, 0xA2):
                    raise DecodeError(f"bad result-source-diagnostic {value.hex()}", data=buf)
                source = value[0] & 0x0F
                inner = _ber_items(value, 0, len(value))
                if len(inner) != 1:
                    raise DecodeError("bad result-source-diagnostic", data=buf)
                diag = _int_value(inner[0][1], "diagnostic")
            elif tag == 0xA4:
                title = _user_info(value)
            elif tag == 0x89:
                mech = _read_oid_last(value, _MECHANISM_PREFIX, "mechanism")
            elif tag == 0xAA:
                auth = _auth_value(value)
            elif tag == 0xBE:
                raw = _user_info(value)
                ui = _ciphered_user_information(raw, GLO_INITIATE_RESPONSE)
                if ui is None:
                    info = _decode_user_information(raw)
                    if isinstance(info, InitiateRequest):
                        raise DecodeError("AARE user-information is an InitiateRequest", data=buf)
                    ui = info
        if ctx is None or result is None:
            raise DecodeError("AARE without application context or result", data=buf)
        return cls(result, diag, ui, ctx, source, mech, auth, title)


@dataclass(frozen=True, slots=True)
class RLRQ:
    """A-RELEASE request; ``reason`` 0 = normal (None: field omitted)."""

    reason: int | None = 0
    TAG = 0x62

    def to_bytes(self) -> bytes:
        body = b"" if self.reason is None else _tlv(0x80, bytes((_u8(self.reason, "reason"),)))
        return _tlv(self.TAG, body)

    @classmethod
    def from_bytes(cls, buf: bytes) -> RLRQ:
        reason = None
        for tag, value in _open_ber(buf, cls.TAG, "RLRQ"):
            if tag == 0x80:
                if len(value) != 1:
                    raise DecodeError("bad release reason", data=buf)
                reason = value[0]
        return cls(reason)


@dataclass(frozen=True, slots=True)
class RLRE:
    """A-RELEASE response; ``reason`` 0 = normal (None: field omitted)."""

    reason: int | None = 0
    TAG = 0x63

    def to_bytes(self) -> bytes:
        body = b"" if self.reason is None else _tlv(0x80, bytes((_u8(self.reason, "reason"),)))
        return _tlv(self.TAG, body)

    @classmethod
    def from_bytes(cls, buf: bytes) -> RLRE:
        reason = None
        for tag, value in _open_ber(buf, cls.TAG, "RLRE"):
            if tag == 0x80:
                if len(value) != 1:
                    raise DecodeError("bad release reason", data=buf)
                reason = value[0]
        return cls(reason)


# ---------------------------------------------------------------------------- GET


@dataclass(frozen=True, slots=True)
class GetRequestNormal:
    descriptor: AttributeDescriptor
    access: AccessSelection | None = None
    invoke_id: int = 1
    flags: int = DEFAULT_FLAGS

    TAG = 0xC0
    CHOICE = 1

    def to_bytes(self) -> bytes:
        return (
            bytes((self.TAG, self.CHOICE, _invoke_byte(self.invoke_id, self.flags)))
            + self.descriptor.to_bytes()
            + _write_optional_access(self.access)
        )

    @classmethod
    def read(cls, r: _Reader, invoke: int) -> GetRequestNormal:
        d = AttributeDescriptor.read(r)
        return cls(d, _read_optional_access(r), invoke & 0x0F, invoke & 0xF0)


@dataclass(frozen=True, slots=True)
class GetRequestNext:
    block_number: int
    invoke_id: int = 1
    flags: int = DEFAULT_FLAGS

    TAG = 0xC0
    CHOICE = 2

    def to_bytes(self) -> bytes:
        try:
            number = struct.pack(">I", self.block_number)
        except struct.error as exc:
            raise EncodeError(f"block number out of range: {self.block_number}") from exc
        return bytes((self.TAG, self.CHOICE, _invoke_byte(self.invoke_id, self.flags))) + number

    @classmethod
    def read(cls, r: _Reader, invoke: int) -> GetRequestNext:
        return cls(r.u32(), invoke & 0x0F, invoke & 0xF0)


@dataclass(frozen=True, slots=True)
class GetRequestWithList:
    items: tuple[tuple[AttributeDescriptor, AccessSelection | None], ...]
    invoke_id: int = 1
    flags: int = DEFAULT_FLAGS

    TAG = 0xC0
    CHOICE = 3

    def to_bytes(self) -> bytes:
        out = bytearray((self.TAG, self.CHOICE, _invoke_byte(self.invoke_id, self.flags)))
        out += encode_length(len(self.items))
        for descriptor, access in self.items:
            out += descriptor.to_bytes() + _write_optional_access(access)
        return bytes(out)

    @classmethod
    def read(cls, r: _Reader, invoke: int) -> GetRequestWithList:
        count = r.length()
        if count * 10 > r.left:
            raise DecodeError(f"GET with-list of {count} items in {r.left} bytes", data=r.buf)
        items = []
        for _ in range(count):
            d = AttributeDescriptor.read(r)
            items.append((d, _read_optional_access(r)))
        return cls(tuple(items), invoke & 0x0F, invoke & 0xF0)


def _write_result(result: GetResult) -> bytes:
    if isinstance(result, Data):
        return b"\x00" + encode_data(result)
    return b"\x01" + bytes((_u8(int(result), "data-access-result"),))


def _read_result(r: _Reader) -> GetResult:
    choice = r.u8()
    if choice == 0:
        return r.data()
    if choice == 1:
        return _access_result(r.u8())
    raise DecodeError(f"bad Get-Data-Result choice {choice}", data=r.buf)


@dataclass(frozen=True, slots=True)
class GetResponseNormal:
    result: GetResult
    invoke_id: int = 1
    flags: int = DEFAULT_FLAGS

    TAG = 0xC4
    CHOICE = 1

    def to_bytes(self) -> bytes:
        return bytes(
            (self.TAG, self.CHOICE, _invoke_byte(self.invoke_id, self.flags))
        ) + _write_result(self.result)

    @classmethod
    def read(cls, r: _Reader, invoke: int) -> GetResponseNormal:
        return cls(_read_result(r), invoke & 0x0F, invoke & 0xF0)


@dataclass(frozen=True, slots=True)
class GetResponseWithDatablock:
    """One block of a long GET answer; ``raw_data`` is a slice of the encoded result.

    ``trailing`` counts bytes found after the raw-data on decode (tolerated, see the client).
    """

    last_block: bool
    block_number: int
    raw_data: bytes | DataAccessResult | int
    invoke_id: int = 1
    flags: int = DEFAULT_FLAGS
    trailing: int = field(default=0, compare=False)

    TAG = 0xC4
    CHOICE = 2

    def to_bytes(self) -> bytes:
        out = bytearray((self.TAG, self.CHOICE, _invoke_byte(self.invoke_id, self.flags)))
        out.append(0x01 if self.last_block else 0x00)
        try:
            out += struct.pack(">I", self.block_number)
        except struct.error as exc:
            raise EncodeError(f"block number out of range: {self.block_number}") from exc
        if isinstance(self.raw_data, bytes | bytearray):
            out += b"\x00" + encode_length(len(self.raw_data)) + self.raw_data
        else:
            out += b"\x01" + bytes((_u8(int(self.raw_data), "data-access-result"),))
        return bytes(out)

    @classmethod
    def read(cls, r: _Reader, invoke: int) -> GetResponseWithDatablock:
        last = r.u8() != 0
        number = r.u32()
        choice = r.u8()
        raw: bytes | DataAccessResult | int
        if choice == 0:
            raw = r.take(r.length())
        elif choice == 1:
            raw = _access_result(r.u8())
        else:
            raise DecodeError(f"bad DataBlock-G result choice {choice}", data=r.buf)
        trailing = r.left
        r.pos = len(r.buf)  # tolerated: some meters append bytes after the raw data
        return cls(last, number, raw, invoke & 0x0F, invoke & 0xF0, trailing)


@dataclass(frozen=True, slots=True)
class GetResponseWithList:
    results: tuple[GetResult, ...]
    invoke_id: int = 1
    flags: int = DEFAULT_FLAGS

    TAG = 0xC4
    CHOICE = 3

    def to_bytes(self) -> bytes:
        out = bytearray((self.TAG, self.CHOICE, _invoke_byte(self.invoke_id, self.flags)))
        out += encode_length(len(self.results))
        for result in self.results:
            out += _write_result(result)
        return bytes(out)

    @classmethod
    def read(cls, r: _Reader, invoke: int) -> GetResponseWithList:
        return cls(_read_results(r), invoke & 0x0F, invoke & 0xF0)


def _read_results(r: _Reader) -> tuple[GetResult, ...]:
    count = r.length()
    if count * 2 > r.left:
        raise DecodeError(f"{count} results in {r.left} bytes", data=r.buf)
    return tuple(_read_result(r) for _ in range(count))


def decode_results(raw: bytes) -> tuple[GetResult, ...]:
    """Decode the reassembled raw data of a with-list answer sent in blocks."""
    r = _Reader(bytes(raw))
    results = _read_results(r)
    r.end()
    return results


# ---------------------------------------------------------------------------- errors, push


@dataclass(frozen=True, slots=True)
class ExceptionResponse:
    """exception-response (0xD8). ``state_error`` 1 service-not-allowed, 2 service-unknown;
    ``service_error`` 1 operation-not-possible, 2 service-not-supported, 3 other-reason,
    4 pdu-too-long, 5 deciphering-error, 6 invocation-counter-error (+ ``invocation_counter``).
    """

    state_error: int
    service_error: int
    invocation_counter: int | None = None

    TAG = 0xD8

    def to_bytes(self) -> bytes:
        out = bytes(
            (self.TAG, _u8(self.state_error, "state error"), _u8(self.service_error, "service"))
        )
        if self.service_error == 6:
            out += struct.pack(">I", self.invocation_counter or 0)
        return out

    @classmethod
    def from_bytes(cls, buf: bytes) -> ExceptionResponse:
        r = _Reader(buf)
        if r.u8() != cls.TAG:
            raise DecodeError("not an exception-response", data=buf)
        state = r.u8()
        service = r.u8()
        counter = r.u32() if service == 6 else None
        r.end()
        return cls(state, service, counter)


@dataclass(frozen=True, slots=True)
class DataNotification:
    """data-notification (0x0F): a push. ``long_invoke_id`` is the 4-byte invoke id and
    priority; ``date_time`` is optional (encoded as an empty octet string when absent)."""

    body: Data
    long_invoke_id: int = 0
    date_time: CosemDateTime | None = None

    TAG = 0x0F

    def to_bytes(self) -> bytes:
        try:
            head = struct.pack(">BI", self.TAG, self.long_invoke_id)
        except struct.error as exc:
            raise EncodeError(f"long invoke id out of range: {self.long_invoke_id}") from exc
        stamp = b"\x00" if self.date_time is None else b"\x0c" + self.date_time.to_bytes()
        return head + stamp + encode_data(self.body)

    @classmethod
    def from_bytes(cls, buf: bytes) -> DataNotification:
        r = _Reader(buf)
        if r.u8() != cls.TAG:
            raise DecodeError("not a data-notification", data=buf)
        invoke = r.u32()
        n = r.length()
        if n not in (0, 12):
            raise DecodeError(f"data-notification date-time of {n} bytes", data=buf)
        stamp = CosemDateTime.from_bytes(r.take(12)) if n else None
        body = r.data()
        r.end()
        return cls(body, invoke, stamp)


# ---------------------------------------------------------------------------- SET, ACTION


@dataclass(frozen=True, slots=True)
class MethodDescriptor:
    """Cosem-Method-Descriptor: class id, logical name, method index (signed)."""

    class_id: int
    obis: Obis
    method: int

    def to_bytes(self) -> bytes:
        try:
            return (
                struct.pack(">H", self.class_id)
                + self.obis.to_bytes()
                + struct.pack(">b", self.method)
            )
        except struct.error as exc:
            raise EncodeError(f"method descriptor out of range: {self!r}") from exc

    @classmethod
    def read(cls, r: _Reader) -> MethodDescriptor:
        class_id = r.u16()
        obis = Obis.from_bytes(r.take(6))
        method = r.u8()
        return cls(class_id, obis, method - 256 if method > 127 else method)


class ActionResult(enum.IntEnum):
    """Action-Result (Green Book): the subset meters send."""

    SUCCESS = 0
    HARDWARE_FAULT = 1
    TEMPORARY_FAILURE = 2
    READ_WRITE_DENIED = 3
    OBJECT_UNDEFINED = 4
    OBJECT_CLASS_INCONSISTENT = 9
    OBJECT_UNAVAILABLE = 11
    TYPE_UNMATCHED = 12
    SCOPE_OF_ACCESS_VIOLATED = 13
    DATA_BLOCK_UNAVAILABLE = 14
    LONG_ACTION_ABORTED = 15
    NO_LONG_ACTION_IN_PROGRESS = 16
    OTHER_REASON = 250


def _action_result(code: int) -> ActionResult | int:
    try:
        return ActionResult(code)
    except ValueError:
        return code


def _block_number(n: int) -> bytes:
    try:
        return struct.pack(">I", n)
    except struct.error as exc:
        raise EncodeError(f"block number out of range: {n}") from exc


def _datablock_sa(last: bool, number: int, raw: bytes) -> bytes:
    """DataBlock-SA: last-block, block-number, raw-data (octet string)."""
    return bytes((1 if last else 0,)) + _block_number(number) + encode_length(len(raw)) + raw


def _read_datablock_sa(r: _Reader) -> tuple[bool, int, bytes]:
    last = r.u8() != 0
    number = r.u32()
    return last, number, r.take(r.length())


@dataclass(frozen=True, slots=True)
class SetRequestNormal:
    """SET-Request-Normal: write ``value`` to one attribute."""

    descriptor: AttributeDescriptor
    value: Data
    access: AccessSelection | None = None
    invoke_id: int = 1
    flags: int = DEFAULT_FLAGS

    TAG = 0xC1
    CHOICE = 1

    def to_bytes(self) -> bytes:
        return (
            bytes((self.TAG, self.CHOICE, _invoke_byte(self.invoke_id, self.flags)))
            + self.descriptor.to_bytes()
            + _write_optional_access(self.access)
            + encode_data(self.value)
        )

    @classmethod
    def read(cls, r: _Reader, invoke: int) -> SetRequestNormal:
        d = AttributeDescriptor.read(r)
        access = _read_optional_access(r)
        return cls(d, r.data(), access, invoke & 0x0F, invoke & 0xF0)


@dataclass(frozen=True, slots=True)
class SetRequestWithFirstDatablock:
    """SET-Request-With-First-Datablock: the first slice of an encoded value."""

    descriptor: AttributeDescriptor
    last_block: bool
    block_number: int
    raw_data: bytes
    access: AccessSelection | None = None
    invoke_id: int = 1
    flags: int = DEFAULT_FLAGS

    TAG = 0xC1
    CHOICE = 2

    def to_bytes(self) -> bytes:
        return (
            bytes((self.TAG, self.CHOICE, _invoke_byte(self.invoke_id, self.flags)))
            + self.descriptor.to_bytes()
            + _write_optional_access(self.access)
            + _datablock_sa(self.last_block, self.block_number, self.raw_data)
        )

    @classmethod
    def read(cls, r: _Reader, invoke: int) -> SetRequestWithFirstDatablock:
        d = AttributeDescriptor.read(r)
        access = _read_optional_access(r)
        last, number, raw = _read_datablock_sa(r)
        return cls(d, last, number, raw, access, invoke & 0x0F, invoke & 0xF0)


@dataclass(frozen=True, slots=True)
class SetRequestWithDatablock:
    """SET-Request-With-Datablock: a following slice of the value."""

    last_block: bool
    block_number: int
    raw_data: bytes
    invoke_id: int = 1
    flags: int = DEFAULT_FLAGS

    TAG = 0xC1
    CHOICE = 3

    def to_bytes(self) -> bytes:
        return bytes(
            (self.TAG, self.CHOICE, _invoke_byte(self.invoke_id, self.flags))
        ) + _datablock_sa(self.last_block, self.block_number, self.raw_data)

    @classmethod
    def read(cls, r: _Reader, invoke: int) -> SetRequestWithDatablock:
        last, number, raw = _read_datablock_sa(r)
        return cls(last, number, raw, invoke & 0x0F, invoke & 0xF0)


@dataclass(frozen=True, slots=True)
class SetResponseNormal:
    """SET-Response-Normal: the data-access-result of the write."""

    result: DataAccessResult | int
    invoke_id: int = 1
    flags: int = DEFAULT_FLAGS

    TAG = 0xC5
    CHOICE = 1

    def to_bytes(self) -> bytes:
        return bytes(
            (
                self.TAG,
                self.CHOICE,
                _invoke_byte(self.invoke_id, self.flags),
                _u8(int(self.result), "data-access-result"),
            )
        )

    @classmethod
    def read(cls, r: _Reader, invoke: int) -> SetResponseNormal:
        return cls(_access_result(r.u8()), invoke & 0x0F, invoke & 0xF0)


@dataclass(frozen=True, slots=True)
class SetResponseDatablock:
    """SET-Response-Datablock: block ``block_number`` received, send the next."""

    block_number: int
    invoke_id: int = 1
    flags: int = DEFAULT_FLAGS

    TAG = 0xC5
    CHOICE = 2

    def to_bytes(self) -> bytes:
        return bytes(
            (self.TAG, self.CHOICE, _invoke_byte(self.invoke_id, self.flags))
        ) + _block_number(self.block_number)

    @classmethod
    def read(cls, r: _Reader, invoke: int) -> SetResponseDatablock:
        return cls(r.u32(), invoke & 0x0F, invoke & 0xF0)


@dataclass(frozen=True, slots=True)
class SetResponseLastDatablock:
    """SET-Response-Last-Datablock: the result of a write sent in blocks."""

    result: DataAccessResult | int
    block_number: int
    invoke_id: int = 1
    flags: int = DEFAULT_FLAGS

    TAG = 0xC5
    CHOICE = 3

    def to_bytes(self) -> bytes:
        return bytes(
            (
                self.TAG,
                self.CHOICE,
                _invoke_byte(self.invoke_id, self.flags),
                _u8(int(self.result), "data-access-result"),
            )
        ) + _block_number(self.block_number)

    @classmethod
    def read(cls, r: _Reader, invoke: int) -> SetResponseLastDatablock:
        result = _access_result(r.u8())
        return cls(result, r.u32(), invoke & 0x0F, invoke & 0xF0)


@dataclass(frozen=True, slots=True)
class ActionRequestNormal:
    """ACTION-Request-Normal: invoke one method, with optional parameters."""

    method: MethodDescriptor
    parameters: Data | None = None
    invoke_id: int = 1
    flags: int = DEFAULT_FLAGS

    TAG = 0xC3
    CHOICE = 1

    def to_bytes(self) -> bytes:
        head = bytes((self.TAG, self.CHOICE, _invoke_byte(self.invoke_id, self.flags)))
        if self.parameters is None:
            return head + self.method.to_bytes() + b"\x00"
        return head + self.method.to_bytes() + b"\x01" + encode_data(self.parameters)

    @classmethod
    def read(cls, r: _Reader, invoke: int) -> ActionRequestNormal:
        method = MethodDescriptor.read(r)
        flag = r.u8()
        if flag not in (0, 1):
            raise DecodeError(f"bad method-invocation-parameters flag {flag}", data=r.buf)
        return cls(method, r.data() if flag else None, invoke & 0x0F, invoke & 0xF0)


@dataclass(frozen=True, slots=True)
class ActionResponseNormal:
    """ACTION-Response-Normal: the action result and the optional return parameters.

    ``return_parameters`` None means the optional Get-Data-Result is absent. On decode the
    presence byte itself may be missing (some meters end the APDU after the result; the
    Green Book makes the field optional, FIELD-NOTES): that reads as absent too.
    """

    result: ActionResult | int
    return_parameters: GetResult | None = None
    invoke_id: int = 1
    flags: int = DEFAULT_FLAGS
    presence_byte: bool = field(default=True, compare=False)

    TAG = 0xC7
    CHOICE = 1

    def to_bytes(self) -> bytes:
        out = bytes(
            (
                self.TAG,
                self.CHOICE,
                _invoke_byte(self.invoke_id, self.flags),
                _u8(int(self.result), "action-result"),
            )
        )
        if self.return_parameters is None:
            return out + (b"\x00" if self.presence_byte else b"")
        return out + b"\x01" + _write_result(self.return_parameters)

    @classmethod
    def read(cls, r: _Reader, invoke: int) -> ActionResponseNormal:
        result = _action_result(r.u8())
        if not r.left:
            return cls(result, None, invoke & 0x0F, invoke & 0xF0, presence_byte=False)
        flag = r.u8()
        if flag == 0:
            return cls(result, None, invoke & 0x0F, invoke & 0xF0)
        if flag != 1:
            raise DecodeError(f"bad return-parameters presence flag {flag}", data=r.buf)
        return cls(result, _read_result(r), invoke & 0x0F, invoke & 0xF0)


Apdu = (
    AARQ
    | AARE
    | RLRQ
    | RLRE
    | GetRequestNormal
    | GetRequestNext
    | GetRequestWithList
    | GetResponseNormal
    | GetResponseWithDatablock
    | GetResponseWithList
    | SetRequestNormal
    | SetRequestWithFirstDatablock
    | SetRequestWithDatablock
    | SetResponseNormal
    | SetResponseDatablock
    | SetResponseLastDatablock
    | ActionRequestNormal
    | ActionResponseNormal
    | ExceptionResponse
    | ConfirmedServiceError
    | DataNotification
)

_GET_REQUESTS: dict[int, type[GetRequestNormal | GetRequestNext | GetRequestWithList]] = {
    1: GetRequestNormal,
    2: GetRequestNext,
    3: GetRequestWithList,
}
_GET_RESPONSES: dict[
    int, type[GetResponseNormal | GetResponseWithDatablock | GetResponseWithList]
] = {1: GetResponseNormal, 2: GetResponseWithDatablock, 3: GetResponseWithList}
_CHOICES: dict[int, dict[int, Callable[[_Reader, int], Apdu]]] = {
    0xC0: {k: v.read for k, v in _GET_REQUESTS.items()},
    0xC4: {k: v.read for k, v in _GET_RESPONSES.items()},
    0xC1: {
        1: SetRequestNormal.read,
        2: SetRequestWithFirstDatablock.read,
        3: SetRequestWithDatablock.read,
    },
    0xC5: {
        1: SetResponseNormal.read,
        2: SetResponseDatablock.read,
        3: SetResponseLastDatablock.read,
    },
    0xC3: {1: ActionRequestNormal.read},
    0xC7: {1: ActionResponseNormal.read},
}
_SERVICE_NAMES = {
    0xC0: "GET",
    0xC4: "GET",
    0xC1: "SET",
    0xC5: "SET",
    0xC3: "ACTION",
    0xC7: "ACTION",
}
_SIMPLE: dict[int, Callable[[bytes], Apdu]] = {
    AARQ.TAG: AARQ.from_bytes,
    AARE.TAG: AARE.from_bytes,
    RLRQ.TAG: RLRQ.from_bytes,
    RLRE.TAG: RLRE.from_bytes,
    ExceptionResponse.TAG: ExceptionResponse.from_bytes,
    ConfirmedServiceError.TAG: ConfirmedServiceError.from_bytes,
    DataNotification.TAG: DataNotification.from_bytes,
}


def decode_apdu(buf: bytes) -> Apdu:
    """Decode one APDU; raises DecodeError for anything unknown or malformed."""
    buf = bytes(buf)
    if not buf:
        raise DecodeError("empty APDU")
    tag = buf[0]
    simple = _SIMPLE.get(tag)
    if simple is not None:
        return simple(buf)
    table = _CHOICES.get(tag)
    if table is not None:
        r = _Reader(buf, 1)
        choice = r.u8()
        read = table.get(choice)
        if read is None:
            raise DecodeError(f"unknown {_SERVICE_NAMES[tag]} choice {choice}", data=buf)
        invoke = r.u8()
        apdu: Apdu = read(r, invoke)
        r.end()
        return apdu
    raise DecodeError(f"unsupported APDU tag 0x{tag:02x}", data=buf)
