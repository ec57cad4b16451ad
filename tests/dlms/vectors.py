"""Hex vectors as data: (name, hex, value). Used in both directions by the codec tests.

Sources: the AARQ/AARE/GET examples follow the DLMS UA Green Book's worked examples
(logical name referencing, no ciphering); the rest were written by hand from the A-XDR rules
and cross-checked against dlms-cosem 21.3.2 in test_peer_dlms_cosem.py.
"""

from __future__ import annotations

from edge_core.dlms.apdu import (
    AARE,
    AARQ,
    RLRE,
    RLRQ,
    AccessSelection,
    AttributeDescriptor,
    ConfirmedServiceError,
    Conformance,
    DataAccessResult,
    DataNotification,
    ExceptionResponse,
    GetRequestNext,
    GetRequestNormal,
    GetRequestWithList,
    GetResponseNormal,
    GetResponseWithDatablock,
    GetResponseWithList,
    InitiateRequest,
    InitiateResponse,
)
from edge_core.dlms.axdr import Data, DataType
from edge_core.dlms.cosem import CosemDateTime
from edge_core.dlms.obis import Obis

D = Data
T = DataType

# (name, hex, Data) — encode(Data) == hex and decode(hex) == Data
AXDR_VECTORS: list[tuple[str, str, Data]] = [
    ("null", "00", D.null()),
    ("dont-care", "ff", D(T.DONT_CARE)),
    ("boolean true", "0301", D.boolean(True)),
    ("boolean false", "0300", D.boolean(False)),
    ("bit-string 10 bits", "040ac040", D(T.BIT_STRING, "1100000001")),
    ("bit-string empty", "0400", D(T.BIT_STRING, "")),
    ("double-long -1", "05ffffffff", D.double_long(-1)),
    ("double-long-unsigned 1111", "0600000457", D.double_long_unsigned(1111)),
    ("octet-string obis", "09060100010800ff", D.octet_string(bytes.fromhex("0100010800ff"))),
    ("octet-string empty", "0900", D.octet_string(b"")),
    ("octet-string 200 bytes", "0981c8" + "ab" * 200, D.octet_string(b"\xab" * 200)),
    ("octet-string 300 bytes", "0982012c" + "cd" * 300, D.octet_string(b"\xcd" * 300)),
    ("visible-string", "0a03414243", D.visible_string("ABC")),
    ("utf8-string", "0c02c3a9", D(T.UTF8_STRING, "\u00e9")),
    ("bcd", "0d12", D(T.BCD, 0x12)),
    ("integer -1", "0fff", D.integer(-1)),
    ("long -123", "10ff85", D.long(-123)),
    ("unsigned 255", "11ff", D.unsigned(255)),
    ("long-unsigned 258", "120102", D.long_unsigned(258)),
    ("long64 -2", "14fffffffffffffffe", D.long64(-2)),
    ("long64-unsigned max", "15ffffffffffffffff", D.long64_unsigned(2**64 - 1)),
    ("enum Wh", "161e", D.enum(30)),
    ("float32 1.5", "173fc00000", D(T.FLOAT32, 1.5)),
    ("float64 -2.25", "18c002000000000000", D(T.FLOAT64, -2.25)),
    (
        "date-time",
        "1907ea0b1a040c1e0000ffc400",
        D(T.DATE_TIME, bytes.fromhex("07ea0b1a040c1e0000ffc400")),
    ),
    ("date", "1a07ea0b1aff", D(T.DATE, bytes.fromhex("07ea0b1aff"))),
    ("time", "1b0c1e00ff", D(T.TIME, bytes.fromhex("0c1e00ff"))),
    ("structure scaler-unit", "02020ffe161e", D.structure((D.integer(-2), D.enum(30)))),
    (
        "array of long-unsigned",
        "010212000112ffff",
        D.array((D.long_unsigned(1), D.long_unsigned(65535))),
    ),
    ("empty array", "0100", D.array(())),
    (
        "capture object",
        "020412000809060000010000ff0f02120000",
        D.structure(
            (
                D.long_unsigned(8),
                D.octet_string(bytes.fromhex("0000010000ff")),
                D.integer(2),
                D.long_unsigned(0),
            )
        ),
    ),
]

# Decode-only: non-canonical forms a meter may send.
AXDR_DECODE_ONLY: list[tuple[str, str, Data]] = [
    ("boolean 0xff", "03ff", D.boolean(True)),
    ("long-form length for a short string", "098103414243", D.octet_string(b"ABC")),
]

# Malformed: must raise DecodeError.
AXDR_BAD: list[tuple[str, str]] = [
    ("empty", ""),
    ("unknown tag", "07"),
    ("compact-array unsupported", "1300"),
    ("truncated u32", "06000004"),
    ("octet-string longer than data", "0905aabb"),
    ("array count larger than data", "0105"),
    ("length form 0x85", "0985"),
    ("length form 0x80", "0980"),
    ("bad utf8", "0c01ff"),
    ("truncated date-time", "1907ea"),
    ("structure missing element", "0202"),
]

CLOCK = Obis(0, 0, 1, 0, 0, 255)
ENERGY = Obis(1, 0, 1, 8, 0, 255)
PROFILE = Obis(1, 0, 99, 1, 0, 255)
AARQ_CONFORMANCE = Conformance(0x007E1F)
AARE_CONFORMANCE = Conformance(0x00501F)

RANGE_ACCESS = AccessSelection(
    1,
    D.structure(
        (
            D.structure(
                (
                    D.long_unsigned(8),
                    D.octet_string(CLOCK.to_bytes()),
                    D.integer(2),
                    D.long_unsigned(0),
                )
            ),
            D.octet_string(bytes.fromhex("07ea0b19030c0000000000" + "00")),
            D.octet_string(bytes.fromhex("07ea0b1a040c0000000000" + "00")),
            D.array(()),
        )
    ),
)

# (name, hex, APDU)
APDU_VECTORS: list[tuple[str, str, object]] = [
    (
        "AARQ lowest security",
        "601da109060760857405080101be10040e01000000065f1f0400007e1f04b0",
        AARQ(InitiateRequest(AARQ_CONFORMANCE, 0x04B0)),
    ),
    (
        "AARQ low-level security",
        "6036a1090607608574050801018a0207808b0760857405080201ac0a80083132333435363738"
        "be10040e01000000065f1f0400007e1f04b0",
        AARQ(
            InitiateRequest(AARQ_CONFORMANCE, 0x04B0), mechanism=1, authentication_value=b"12345678"
        ),
    ),
    (
        "AARE accepted",
        "6129a109060760857405080101a203020100a305a103020100be10040e0800065f1f040000501f01f40007",
        AARE(0, 0, InitiateResponse(AARE_CONFORMANCE, 0x01F4)),
    ),
    (
        "AARE rejected, initiate error",
        "611fa109060760857405080101a203020101a305a10302010dbe0604040e010601",
        AARE(1, 13, ConfirmedServiceError(1, 6, 1)),
    ),
    (
        "AARE rejected by the provider",
        "6117a109060760857405080101a203020101a305a203020102",
        AARE(1, 2, None, diagnostic_source=2),
    ),
    ("RLRQ normal", "6203800100", RLRQ(0)),
    ("RLRQ bare", "6200", RLRQ(None)),
    ("RLRE normal", "6303800100", RLRE(0)),
    (
        "GET normal clock time",
        "c001c100080000010000ff0200",
        GetRequestNormal(AttributeDescriptor(8, CLOCK, 2)),
    ),
    (
        "GET normal invoke 5 low priority",
        "c0014500030100010800ff0300",
        GetRequestNormal(AttributeDescriptor(3, ENERGY, 3), invoke_id=5, flags=0x40),
    ),
    (
        "GET profile by range",
        "c001c1000701006301 00ff0201"
        "0102040204120008 09060000010000ff 0f02 120000"
        "090c07ea0b19030c000000000000"
        "090c07ea0b1a040c000000000000"
        "0100",
        GetRequestNormal(AttributeDescriptor(7, PROFILE, 2), RANGE_ACCESS),
    ),
    ("GET next block 1", "c002c100000001", GetRequestNext(1)),
    (
        "GET with-list",
        "c003c1020003 0100010800ff 02 00 0003 0100010800ff 03 00",
        GetRequestWithList(
            ((AttributeDescriptor(3, ENERGY, 2), None), (AttributeDescriptor(3, ENERGY, 3), None))
        ),
    ),
    (
        "GET response clock",
        "c401c100090c07ea0b1a040c1e0000ffc400",
        GetResponseNormal(D.octet_string(bytes.fromhex("07ea0b1a040c1e0000ffc400"))),
    ),
    (
        "GET response object undefined",
        "c401c10104",
        GetResponseNormal(DataAccessResult.OBJECT_UNDEFINED),
    ),
    ("GET response unknown code", "c401c101c8", GetResponseNormal(200)),
    (
        "GET response datablock first",
        "c402c10000000001 0003 010203",
        GetResponseWithDatablock(False, 1, b"\x01\x02\x03"),
    ),
    (
        "GET response datablock last",
        "c402c10100000002 0002 0405",
        GetResponseWithDatablock(True, 2, b"\x04\x05"),
    ),
    (
        "GET response datablock error",
        "c402c10100000001 010e",
        GetResponseWithDatablock(True, 1, DataAccessResult.DATA_BLOCK_UNAVAILABLE),
    ),
    (
        "GET response with-list",
        "c403c102 00 0600000457 01 04",
        GetResponseWithList((D.double_long_unsigned(1111), DataAccessResult.OBJECT_UNDEFINED)),
    ),
    ("exception-response", "d80102", ExceptionResponse(1, 2)),
    ("exception-response invocation counter", "d8010600000010", ExceptionResponse(1, 6, 16)),
    ("confirmed-service-error", "0e010601", ConfirmedServiceError(1, 6, 1)),
    (
        "data-notification without time",
        "0f00000001 00 0202 09060100010800ff 0600000457",
        DataNotification(
            D.structure((D.octet_string(ENERGY.to_bytes()), D.double_long_unsigned(1111))), 1
        ),
    ),
    (
        "data-notification with time",
        "0f40000000 0c 07ea0b1a040c1e0000ffc400 1101",
        DataNotification(
            D.unsigned(1),
            0x40000000,
            CosemDateTime.from_bytes(bytes.fromhex("07ea0b1a040c1e0000ffc400")),
        ),
    ),
]

APDU_BAD: list[tuple[str, str]] = [
    ("empty", ""),
    ("unknown tag", "01"),
    ("GET unknown choice", "c009c1"),
    ("GET normal truncated", "c001c1000800"),
    ("GET normal trailing byte", "c001c100080000010000ff020000"),
    ("AARQ length mismatch", "601ea109060760857405080101"),
    ("AARQ without user-information", "600ba109060760857405080101"),
    ("AARE unknown context OID", "6117a109060760857405080201a203020100a305a103020100"),
    ("AARE ciphered user-information", "6116a109060760857405080101a203020100be0404022100"),
    ("with-list count too large", "c003c1ff"),
    ("exception-response truncated", "d801"),
    ("data-notification date of 5 bytes", "0f00000001050102030405"),
    ("datablock bad choice", "c402c1010000000105"),
]
