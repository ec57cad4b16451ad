from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_core.dlms.axdr import (
    MAX_DEPTH,
    Data,
    DataType,
    decode_data,
    decode_length,
    encode_data,
    encode_length,
)
from edge_core.errors import DecodeError, EncodeError
from tests.dlms import strategies as s
from tests.dlms.vectors import AXDR_BAD, AXDR_DECODE_ONLY, AXDR_VECTORS


@pytest.mark.parametrize(
    ("name", "hexstr", "value"), AXDR_VECTORS, ids=[v[0] for v in AXDR_VECTORS]
)
def test_encode_vector(name: str, hexstr: str, value: Data) -> None:
    assert encode_data(value).hex() == bytes.fromhex(hexstr).hex()


@pytest.mark.parametrize(
    ("name", "hexstr", "value"),
    AXDR_VECTORS + AXDR_DECODE_ONLY,
    ids=[v[0] for v in AXDR_VECTORS + AXDR_DECODE_ONLY],
)
def test_decode_vector(name: str, hexstr: str, value: Data) -> None:
    assert decode_data(bytes.fromhex(hexstr)) == value


@pytest.mark.parametrize(("name", "hexstr"), AXDR_BAD, ids=[v[0] for v in AXDR_BAD])
def test_malformed_raises_decode_error(name: str, hexstr: str) -> None:
    with pytest.raises(DecodeError):
        decode_data(bytes.fromhex(hexstr))


@pytest.mark.parametrize(
    "value",
    [
        Data.unsigned(256),
        Data.integer(-129),
        Data.long_unsigned(-1),
        Data.double_long_unsigned(2**32),
        Data(DataType.LONG64_UNSIGNED, 2**64),
        Data.unsigned(True),
        Data(DataType.BIT_STRING, "012"),
        Data(DataType.DATE_TIME, b"\x00" * 11),
        Data(DataType.VISIBLE_STRING, "\u20ac"),
        Data(DataType.FLOAT32, 1e40),
        Data(DataType.COMPACT_ARRAY, b""),
        Data(DataType.ARRAY, [Data.null()]),
        Data(DataType.OCTET_STRING, "text"),
    ],
)
def test_encode_rejects_out_of_range(value: Data) -> None:
    with pytest.raises(EncodeError):
        encode_data(value)


def test_trailing_bytes_rejected() -> None:
    with pytest.raises(DecodeError):
        decode_data(bytes.fromhex("110100"))


def test_nesting_is_bounded() -> None:
    deep = bytes.fromhex("0101") * (MAX_DEPTH + 1) + b"\x00"
    with pytest.raises(DecodeError):
        decode_data(deep)
    ok = bytes.fromhex("0101") * (MAX_DEPTH - 1) + b"\x00"
    assert decode_data(ok).type == DataType.ARRAY


@pytest.mark.parametrize(
    ("n", "hexstr"),
    [(0, "00"), (127, "7f"), (128, "8180"), (255, "81ff"), (256, "820100"), (70000, "83011170")],
)
def test_length_forms(n: int, hexstr: str) -> None:
    assert encode_length(n).hex() == hexstr
    assert decode_length(bytes.fromhex(hexstr), 0) == (n, len(hexstr) // 2)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(s.data())
def test_roundtrip(value: Data) -> None:
    back = decode_data(encode_data(value))
    assert s.float_equal(back, value)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.integers(0, 2**32 - 1))
def test_length_roundtrip(n: int) -> None:
    raw = encode_length(n)
    assert decode_length(raw, 0) == (n, len(raw))


def test_to_python_unwraps() -> None:
    v = Data.structure((Data.integer(-2), Data.array((Data.enum(30),))))
    assert v.to_python() == [-2, [30]]
