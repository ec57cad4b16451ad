"""Client and server connections talking in memory (no sockets)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from edge_core.dlms.apdu import (
    AARE,
    AttributeDescriptor,
    Conformance,
    DataAccessResult,
    ExceptionResponse,
    GetResponseNormal,
    GetResponseWithDatablock,
    InitiateResponse,
    RangeDescriptor,
    decode_apdu,
)
from edge_core.dlms.axdr import Data, encode_data
from edge_core.dlms.client import (
    AssociationAccepted,
    BlockReceived,
    ClientConnection,
    ClientState,
    GetResults,
    ReleaseAccepted,
    check_result,
)
from edge_core.dlms.cosem import CaptureObject, CosemDateTime
from edge_core.dlms.obis import Obis
from edge_core.dlms.server import ServerConnection, ServerState
from edge_core.errors import (
    AssociationError,
    DataAccessError,
    ProtocolError,
    ServiceError,
    UnknownObjectError,
)
from edge_core.simulator.model import SimulatedMeter

NOW = datetime(2026, 11, 26, 12, 7, 30, tzinfo=UTC)
CLOCK = Obis.parse("0.0.1.0.0.255")
PROFILE = Obis.parse("1.0.99.1.0.255")
ENERGY = Obis.parse("1.0.1.8.0.255")


def _pair(
    *, pdu: int = 512, password: bytes | None = None, client_password: bytes | None = None
) -> tuple[ClientConnection, ServerConnection]:
    meter = SimulatedMeter(0, seed=3, start=date(2026, 11, 20), clock=lambda: NOW)
    return ClientConnection(password=client_password, meter="m0"), ServerConnection(
        meter, max_pdu_size=pdu, password=password
    )


def _roundtrip(c: ClientConnection, s: ServerConnection, request: bytes) -> object:
    answer = s.receive_apdu(request)
    assert answer is not None
    event = c.receive_apdu(answer)
    while isinstance(event, BlockReceived):
        answer = s.receive_apdu(event.next_request)
        assert answer is not None
        event = c.receive_apdu(answer)
    return event


def test_associate_get_release() -> None:
    c, s = _pair()
    ev = _roundtrip(c, s, c.associate())
    assert isinstance(ev, AssociationAccepted)
    assert c.state is ClientState.ASSOCIATED
    assert s.state is ServerState.ASSOCIATED
    assert ev.server_max_pdu_size == 512
    assert ev.conformance & Conformance.BLOCK_TRANSFER_WITH_GET
    ev = _roundtrip(c, s, c.get(AttributeDescriptor(8, CLOCK, 2)))
    assert isinstance(ev, GetResults)
    assert CosemDateTime.from_data(ev.results[0]).to_datetime() == NOW
    ev = _roundtrip(c, s, c.release())
    assert isinstance(ev, ReleaseAccepted)
    assert c.state is ClientState.IDLE
    assert s.state is ServerState.IDLE


def test_profile_by_range_uses_block_transfer() -> None:
    c, s = _pair(pdu=256)
    _roundtrip(c, s, c.associate())
    rng = RangeDescriptor(
        CaptureObject(8, CLOCK, 2, 0),
        CosemDateTime.from_datetime(NOW - timedelta(days=1)),
        CosemDateTime.from_datetime(NOW),
    )
    request = c.get(AttributeDescriptor(7, PROFILE, 2), rng.to_access())
    first = s.receive_apdu(request)
    assert first is not None
    assert len(first) <= 256
    event = c.receive_apdu(first)
    blocks = 1
    while isinstance(event, BlockReceived):
        answer = s.receive_apdu(event.next_request)
        assert answer is not None
        assert len(answer) <= 256
        event = c.receive_apdu(answer)
        blocks += 1
    assert isinstance(event, GetResults)
    assert blocks > 5
    assert event.blocks == blocks
    rows = event.results[0].value
    assert len(rows) == 96
    imports = [r.value[2].value for r in rows]
    assert imports == sorted(imports)


def test_with_list_mixes_data_and_errors() -> None:
    c, s = _pair()
    _roundtrip(c, s, c.associate())
    unknown = AttributeDescriptor(3, Obis.parse("1.0.1.8.9.255"), 2)
    items = [
        (AttributeDescriptor(3, ENERGY, 2), None),
        (unknown, None),
        (AttributeDescriptor(3, ENERGY, 3), None),
    ]
    ev = _roundtrip(c, s, c.get_with_list(items))
    assert isinstance(ev, GetResults)
    assert isinstance(ev.results[0], Data)
    assert ev.results[1] == DataAccessResult.OBJECT_UNDEFINED
    with pytest.raises(UnknownObjectError) as info:
        check_result(ev.results[1], unknown, "m0")
    assert info.value.obis == "1.0.1.8.9.255"
    assert info.value.meter == "m0"
    assert info.value.code == 4


def test_large_with_list_in_blocks() -> None:
    c, s = _pair(pdu=64)
    _roundtrip(c, s, c.associate())
    items = [(AttributeDescriptor(3, ENERGY, a), None) for a in (1, 2, 3) * 5]
    ev = _roundtrip(c, s, c.get_with_list(items))
    assert isinstance(ev, GetResults)
    assert ev.blocks > 1
    assert ev.results[0] == Data.octet_string(ENERGY.to_bytes())


def test_class_mismatch_is_data_access_error() -> None:
    c, s = _pair()
    _roundtrip(c, s, c.associate())
    d = AttributeDescriptor(1, ENERGY, 2)
    ev = _roundtrip(c, s, c.get(d))
    assert isinstance(ev, GetResults)
    with pytest.raises(DataAccessError) as info:
        check_result(ev.results[0], d)
    assert info.value.code == DataAccessResult.OBJECT_CLASS_INCONSISTENT


def test_wrong_password_rejected() -> None:
    c, s = _pair(password=b"secret", client_password=b"wrong")
    with pytest.raises(AssociationError) as info:
        _roundtrip(c, s, c.associate())
    assert info.value.code == 13
    assert c.state is ClientState.IDLE
    assert s.state is ServerState.IDLE
    c2 = ClientConnection(password=b"secret")
    ev = _roundtrip(c2, s, c2.associate())
    assert isinstance(ev, AssociationAccepted)


def test_get_before_association_gets_exception_response() -> None:
    _, s = _pair()
    other = ClientConnection()
    other.state = ClientState.ASSOCIATED  # a client that believes it is associated
    answer = s.receive_apdu(other.get(AttributeDescriptor(8, CLOCK, 2)))
    assert answer is not None
    assert isinstance(decode_apdu(answer), ExceptionResponse)
    with pytest.raises(ServiceError):
        other.receive_apdu(answer)
    assert other.state is ClientState.ASSOCIATED


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\xc0",
        b"\xc0\x01\xc1\x00",
        b"\x99\x00",
        b"\x60\x05\x00",
        b"\xc0\x02\xc1\x00\x00\x00\x07",
    ],
)
def test_server_survives_garbage(garbage: bytes) -> None:
    c, s = _pair()
    _roundtrip(c, s, c.associate())
    answer = s.receive_apdu(garbage)
    assert answer is not None
    assert isinstance(decode_apdu(answer), ExceptionResponse | GetResponseWithDatablock)
    ev = _roundtrip(c, s, c.get(AttributeDescriptor(8, CLOCK, 2)))  # still serving
    assert isinstance(ev, GetResults)


def test_client_refuses_out_of_state_requests() -> None:
    c = ClientConnection()
    with pytest.raises(ProtocolError):
        c.get(AttributeDescriptor(8, CLOCK, 2))
    c.associate()
    with pytest.raises(ProtocolError):
        c.associate()
    with pytest.raises(ProtocolError):
        c.receive_apdu(GetResponseNormal(Data.null(), 1).to_bytes())


def test_invoke_id_mismatch_detected() -> None:
    c = ClientConnection()
    c.associate()
    c.receive_apdu(AARE(0, 0, InitiateResponse(Conformance.GET, 512)).to_bytes())
    c.get(AttributeDescriptor(8, CLOCK, 2))
    with pytest.raises(ProtocolError):
        c.receive_apdu(GetResponseNormal(Data.null(), 9).to_bytes())


def test_nonconformant_meter_blocks_without_negotiation_and_trailing_bytes() -> None:
    """FIELD-NOTES: datablocks without negotiated block transfer, last one with trailing
    bytes after the raw data. The client trusts the raw-data length and the last-block flag."""
    c = ClientConnection()
    c.associate()
    c.receive_apdu(AARE(0, 0, InitiateResponse(Conformance.GET, 512)).to_bytes())
    value = Data.array(
        Data.structure((Data.unsigned(i), Data.double_long_unsigned(i * 1000))) for i in range(30)
    )
    raw = encode_data(value)
    c.get(AttributeDescriptor(7, PROFILE, 2))
    half = len(raw) // 2
    ev = c.receive_apdu(GetResponseWithDatablock(False, 1, raw[:half], 1).to_bytes())
    assert isinstance(ev, BlockReceived)
    assert decode_apdu(ev.next_request).block_number == 1  # type: ignore[union-attr]
    last = GetResponseWithDatablock(True, 2, raw[half:], 1).to_bytes() + b"\x00\x01\x02"
    ev = c.receive_apdu(last)
    assert isinstance(ev, GetResults)
    assert ev.results == (value,)
    assert c.state is ClientState.ASSOCIATED


def test_block_out_of_sequence_is_protocol_error() -> None:
    c = ClientConnection()
    c.associate()
    c.receive_apdu(AARE(0, 0, InitiateResponse(Conformance.GET, 512)).to_bytes())
    c.get(AttributeDescriptor(7, PROFILE, 2))
    c.receive_apdu(GetResponseWithDatablock(False, 1, b"\x01\x02", 1).to_bytes())
    with pytest.raises(ProtocolError):
        c.receive_apdu(GetResponseWithDatablock(True, 3, b"\x00", 1).to_bytes())
    assert c.state is ClientState.ASSOCIATED


def test_get_next_with_wrong_number_aborts_long_get() -> None:
    c, s = _pair(pdu=64)
    _roundtrip(c, s, c.associate())
    answer = s.receive_apdu(bytes.fromhex("c002c100000001"))
    block = decode_apdu(answer or b"")
    assert isinstance(block, GetResponseWithDatablock)
    assert block.raw_data == DataAccessResult.NO_LONG_GET_IN_PROGRESS
    first = s.receive_apdu(c.get(AttributeDescriptor(7, PROFILE, 3)))
    assert isinstance(decode_apdu(first or b""), GetResponseWithDatablock)
    answer = s.receive_apdu(bytes.fromhex("c002c100000005"))
    block = decode_apdu(answer or b"")
    assert isinstance(block, GetResponseWithDatablock)
    assert block.raw_data == DataAccessResult.DATA_BLOCK_NUMBER_INVALID
    assert block.last_block


def test_exception_response_raises_service_error() -> None:
    c = ClientConnection()
    c.associate()
    c.receive_apdu(AARE(0, 0, InitiateResponse(Conformance.GET, 512)).to_bytes())
    c.get(AttributeDescriptor(8, CLOCK, 2))
    with pytest.raises(ServiceError):
        c.receive_apdu(ExceptionResponse(1, 2).to_bytes())
    assert c.state is ClientState.ASSOCIATED
