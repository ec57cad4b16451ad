from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    GetResponseWithDatablock,
    GetResponseWithList,
    InitiateRequest,
    InitiateResponse,
    RangeDescriptor,
    decode_apdu,
)
from edge_core.dlms.cosem import CaptureObject, CosemDateTime
from edge_core.dlms.obis import Obis
from edge_core.errors import DecodeError, EncodeError
from tests.dlms import strategies as s
from tests.dlms.vectors import APDU_BAD, APDU_VECTORS, CLOCK, RANGE_ACCESS


@pytest.mark.parametrize(("name", "hexstr", "apdu"), APDU_VECTORS, ids=[v[0] for v in APDU_VECTORS])
def test_encode_vector(name: str, hexstr: str, apdu: object) -> None:
    assert apdu.to_bytes().hex() == bytes.fromhex(hexstr).hex()  # type: ignore[attr-defined]


@pytest.mark.parametrize(("name", "hexstr", "apdu"), APDU_VECTORS, ids=[v[0] for v in APDU_VECTORS])
def test_decode_vector(name: str, hexstr: str, apdu: object) -> None:
    assert decode_apdu(bytes.fromhex(hexstr)) == apdu


@pytest.mark.parametrize(("name", "hexstr"), APDU_BAD, ids=[v[0] for v in APDU_BAD])
def test_malformed_apdu(name: str, hexstr: str) -> None:
    with pytest.raises(DecodeError):
        decode_apdu(bytes.fromhex(hexstr))


def test_datablock_trailing_bytes_tolerated() -> None:
    raw = bytes.fromhex("c402c10100000002 0002 0405 deadbeef")
    block = decode_apdu(raw)
    assert isinstance(block, GetResponseWithDatablock)
    assert block.raw_data == b"\x04\x05"
    assert block.trailing == 4
    assert block.last_block


def test_range_descriptor_roundtrip() -> None:
    rng = RangeDescriptor.from_access(RANGE_ACCESS)
    assert rng.restricting_object == CaptureObject(8, CLOCK, 2, 0)
    assert rng.from_value == CosemDateTime(2026, 11, 25, 12, 0, 0, 0, 3, 0, 0)
    assert rng.to_access() == RANGE_ACCESS
    with pytest.raises(DecodeError):
        RangeDescriptor.from_access(AccessSelection(2, RANGE_ACCESS.parameters))


def test_invoke_id_checked() -> None:
    with pytest.raises(EncodeError):
        GetRequestNormal(AttributeDescriptor(8, CLOCK, 2), invoke_id=16).to_bytes()
    with pytest.raises(EncodeError):
        AttributeDescriptor(70000, CLOCK, 2).to_bytes()


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    st.lists(
        st.tuples(st.integers(0, 0xFFFF), s.obis(), st.integers(-128, 127)), min_size=1, max_size=20
    ),
    st.integers(0, 15),
)
def test_get_with_list_roundtrip(items: list[tuple[int, Obis, int]], invoke: int) -> None:
    req = GetRequestWithList(tuple((AttributeDescriptor(*i), None) for i in items), invoke)
    assert decode_apdu(req.to_bytes()) == req


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.one_of(s.data(), st.integers(0, 255)), min_size=0, max_size=8))
def test_get_response_with_list_roundtrip(results: list[object]) -> None:
    resp = GetResponseWithList(tuple(results))  # type: ignore[arg-type]
    back = decode_apdu(resp.to_bytes())
    assert isinstance(back, GetResponseWithList)
    assert len(back.results) == len(results)
    assert back.to_bytes() == resp.to_bytes()


_u8 = st.integers(0, 255)
_initiate_req = st.builds(
    InitiateRequest,
    st.integers(0, 2**24 - 1).map(Conformance),
    st.integers(0, 0xFFFF),
    _u8,
    st.one_of(st.none(), st.binary(max_size=32)),
    st.booleans(),
    st.one_of(st.none(), _u8),
)
_initiate_resp = st.builds(
    InitiateResponse,
    st.integers(0, 2**24 - 1).map(Conformance),
    st.integers(0, 0xFFFF),
    _u8,
    st.integers(0, 0xFFFF),
    st.one_of(st.none(), _u8),
)
APDUS = st.one_of(
    st.builds(
        AARQ,
        _initiate_req,
        _u8,
        st.one_of(st.none(), _u8),
        st.one_of(st.none(), st.binary(max_size=40)),
        st.one_of(st.none(), st.binary(max_size=16)),
    ),
    st.builds(
        AARE,
        _u8,
        _u8,
        st.one_of(st.none(), _initiate_resp, st.builds(ConfirmedServiceError, _u8, _u8, _u8)),
        _u8,
        st.sampled_from([1, 2]),
        st.one_of(st.none(), _u8),
        st.one_of(st.none(), st.binary(max_size=40)),
        st.one_of(st.none(), st.binary(max_size=16)),
    ),
    st.builds(RLRQ, st.one_of(st.none(), _u8)),
    st.builds(RLRE, st.one_of(st.none(), _u8)),
    st.builds(
        GetRequestNext,
        st.integers(0, 2**32 - 1),
        st.integers(0, 15),
        st.sampled_from([0x00, 0x40, 0x80, 0xC0]),
    ),
    st.builds(
        GetResponseWithDatablock,
        st.booleans(),
        st.integers(0, 2**32 - 1),
        st.one_of(st.binary(max_size=300), st.sampled_from(list(DataAccessResult))),
        st.integers(0, 15),
    ),
    st.builds(ExceptionResponse, _u8, st.integers(0, 5)),
    st.builds(
        DataNotification,
        s.data(),
        st.integers(0, 2**32 - 1),
        st.one_of(st.none(), s.cosem_datetimes()),
    ),
)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(APDUS)
def test_apdu_roundtrip(apdu: object) -> None:
    raw = apdu.to_bytes()  # type: ignore[attr-defined]
    back = decode_apdu(raw)
    assert back.to_bytes() == raw
    if not isinstance(apdu, DataNotification):  # floats: compared through the bytes
        assert back == apdu
