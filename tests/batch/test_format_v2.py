"""Format version 2 (docs/batch-format.md section 2.4): values sections written by hand from the
specification, what the decoder must reject, and what the encoder gains on realistic data."""

from __future__ import annotations

import dataclasses
import random

import pytest

from bench.uplink import generate_readings
from edge_core.batch import Batch, decode_batch, encode_batch, encode_split
from edge_core.errors import BatchFormatError
from edge_core.model import DataClass, Reading

T0 = 1717372800
IC = DataClass.INTERVAL
TINY = (
    Reading("m1", "1.0.1.8.0.255", T0 + 900, 1000, 0, 30, 0, IC),
    Reading("m1", "1.0.1.8.0.255", T0 + 1800, 1012, 0, 30, 0, IC),
    Reading("m1", "1.0.1.8.0.255", T0 + 2700, 1030, 0, 30, 0x80, IC),
    Reading("m1", "1.0.2.8.0.255", T0 + 900, 5, 0, 30, 0, IC),
    Reading("m1", "1.0.2.8.0.255", T0 + 4500, 3, 0, 30, 0, IC),
)
# Section 3b: the tiny example's version-2 values section.
TINY_VALUES = "18 05 d0 0f 00 0a 03 01 01 90 01 9a"


def _bits(spec: str) -> bytes:
    """'10 0 10' -> the bits MSB first, zero-padded to whole bytes."""
    bits = spec.replace(" ", "")
    bits += "0" * (-len(bits) % 8)
    return bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8))


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _payload(readings: tuple[Reading, ...], values: bytes) -> bytes:
    """A version-2 message: the reference encoder's header and directory for ``readings`` with
    ``values`` as the values section. The directory does not depend on the values, and with
    every value 0 an uncompressed version-1 values section is one byte per reading, so the
    directory is that body without its last len(readings) bytes."""
    zeros = tuple(dataclasses.replace(r, value=0) for r in readings)
    v1 = encode_batch(Batch(bytes(16), "dcu-1", IC, T0, zeros), level=0, version=1)
    head_end = 32 + len("dcu-1")
    body_len, pos = _read_varint(v1, head_end)
    directory = v1[pos : pos + body_len - len(readings)]
    body = directory + values
    return bytes([*v1[:4], 2, *v1[5:head_end]]) + _varint(len(body)) + body


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, pos


def _values(r: Batch) -> list[int]:
    return [x.value for x in r.readings]


def test_tiny_example_decodes_from_its_values_section() -> None:
    payload = _payload(TINY, bytes.fromhex(TINY_VALUES))
    assert _values(decode_batch(payload)) == [1000, 1012, 1030, 5, 3]
    assert encode_batch(Batch(bytes(16), "dcu-1", IC, T0, TINY), level=0, version=2) == payload


SAME_TIMES = (
    Reading("m1", "1.0.1.8.0.255", T0 + 900, 100, 0, 30, 0, IC),
    Reading("m1", "1.0.1.8.0.255", T0 + 1800, 110, 0, 30, 0, IC),
    Reading("m1", "1.0.1.8.0.255", T0 + 2700, 125, 0, 30, 0, IC),
    Reading("m1", "1.0.3.8.0.255", T0 + 900, 1000, 0, 32, 0, IC),
    Reading("m1", "1.0.3.8.0.255", T0 + 1800, 1005, 0, 32, 0, IC),
    Reading("m1", "1.0.3.8.0.255", T0 + 2700, 1012, 0, 32, 0, IC),
)


def test_cross_channel_predictor_by_hand() -> None:
    # block 1: delta, unsigned, residuals 10 and 15 (k = 3: 1|010, 1|111)
    # block 2: cross-channel on block 0 of the meter, weight 128 (one half): the predicted
    # differences are (10*128+128)>>8 = 5 and (15*128+128)>>8 = 8, the residuals 0 and -1
    # (zigzag 0 and 1, k = 0)
    values = (
        bytes.fromhex("18")
        + bytes.fromhex("04")
        + _varint(200)
        + bytes.fromhex("02 00")
        + _varint(256)
        + _varint(2000)
        + bytes.fromhex("03 00")
    )
    unary = _bits("10 10 0 10")
    rem = _bits("010 111")
    values += _varint(len(unary)) + unary + _varint(len(rem)) + rem
    got = decode_batch(_payload(SAME_TIMES, values))
    assert _values(got) == [100, 110, 125, 1000, 1005, 1012]


def test_escape_by_hand() -> None:
    # the tiny example with block 2's residual escaped: 32 one-bits, its k = 1 remainder bit 0,
    # and the residual u = 2**40 + 1 (zigzag: -(2**39) - 1) as a varint at the end
    u = (1 << 40) + 1
    unary = _bits("10 0 " + "1" * 32 + "0")
    rem = _bits("100 110 0")
    values = (
        bytes.fromhex("18 05 d0 0f 00 0a 03 01")
        + _varint(len(unary))
        + unary
        + _varint(len(rem))
        + rem
        + _varint(u)
    )
    got = decode_batch(_payload(TINY, values))
    assert _values(got) == [1000, 1012, 1030, 5, 5 - (1 << 39) - 1]
    # the same with the escaped residual too small for an escape (u >> k < 32)
    small = values[: -len(_varint(u))] + _varint(63)
    with pytest.raises(BatchFormatError, match="small enough"):
        decode_batch(_payload(TINY, small))


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ("00 05 d0 0f 00 0a 03 01 01 90 01 9a", "partition size"),
        ("18 03 d0 0f 00 0a 03 01 01 90 01 9a", "block mode"),
        ("18 0d d0 0f 00 0a 03 01 01 90 01 9a", "block mode"),
        ("18 02 00 02 d0 0f 00 0a 03 01 01 90 01 9a", "earlier block"),
        ("18 05 d0 0f 02 00 02 0a 03 01 01 90 01 9a", "other times"),
        ("18 05 d0 0f 00 0a 40 01 01 90 01 9a", "Rice parameter"),
        ("18 05 d0 0f 00 0a 03 01 01 91 01 9a", "after its last residual"),
        ("18 05 d0 0f 00 0a 03 01 02 90 00 01 9a", "after its last residual"),
        ("18 05 d0 0f 00 0a 03 01 01 fe 01 9a", "truncated unary"),
        ("18 05 d0 0f 00 0a 03 01 05 ff ff ff ff 80 01 9a", "above the escape"),
        ("18 05 d0 0f 00 0a 03 01 01 90 01 9b", "padding"),
        ("18 05 d0 0f 00 0a 03 01 01 90 02 9a 00", "wrong length"),
        ("18 05 d0 0f 00 0a 03 01 01 90 01 9a 00", "left after the values"),
        ("18 05 d0 0f 00 0a 03 01 7f 90 01 9a", "longer than"),
        ("18 05 d0 0f 00 0a 03", "truncated"),
    ],
)
def test_malformed_values_sections_are_rejected(values: str, match: str) -> None:
    with pytest.raises(BatchFormatError, match=match):
        decode_batch(_payload(TINY, bytes.fromhex(values)))


def test_weight_out_of_range_is_rejected() -> None:
    values = (
        bytes.fromhex("18 04")
        + _varint(200)
        + bytes.fromhex("02 00")
        + _varint(1 << 32)
        + _varint(2000)
        + bytes.fromhex("03 00")
    )
    unary, rem = _bits("10 10 0 10"), _bits("010 111")
    values += _varint(len(unary)) + unary + _varint(len(rem)) + rem
    with pytest.raises(BatchFormatError, match="weight"):
        decode_batch(_payload(SAME_TIMES, values))


def test_quotient_beyond_64_bits_is_rejected() -> None:
    # k = 63 and a quotient of 2: 2 << 63 does not fit in 64 bits
    values = bytes.fromhex("18 05 d0 0f 00 0a 3f 01") + _varint(1) + _bits("110 0 0")
    rem_bits = "1" * 63 + "0" * 63 + "1"
    rem = _bits(rem_bits)
    with pytest.raises(BatchFormatError, match="64 bits"):
        decode_batch(_payload(TINY, values + _varint(len(rem)) + rem))


def test_extreme_values_round_trip() -> None:
    rng = random.Random(11)
    edge = [-(1 << 63), (1 << 63) - 1, 0, -1, 1]
    readings = []
    for c, code in enumerate(("1.0.1.8.0.255", "1.0.3.8.0.255", "1.0.4.8.0.255")):
        for i in range(200):
            v = rng.choice(edge) if rng.random() < 0.3 else rng.getrandbits(62) - (1 << 61)
            if c == 1:  # follows channel 0 exactly in places, then wildly
                v = readings[i].value if i % 3 else v
            readings.append(Reading("m", code, T0 + 900 * i, v, 0, 30, 0, IC))
    # a smooth channel with one huge outlier in the middle of a partition (an escape)
    readings += [
        Reading("n", "1.0.1.8.0.255", T0 + 900 * i, 10 * i + (1 << 50) * (i == 40), 0, 30, 0, IC)
        for i in range(96)
    ]
    b = Batch(bytes(16), "t", IC, 0, tuple(readings))
    for level in (0, 3):
        got = decode_batch(encode_batch(b, level=level))
        assert sorted(got.readings, key=lambda r: r.key) == sorted(readings, key=lambda r: r.key)


def test_version_2_is_smaller_than_version_1_on_a_realistic_day() -> None:
    readings = generate_readings(40, 1, seed=5)
    size = {}
    for version in (1, 2):
        pairs = encode_split(readings, thing="dcu-1", data_class=IC, created=0, version=version)
        assert [r for b, _ in pairs for r in decode_batch(_p(pairs, b)).readings] == sorted(
            readings, key=lambda r: (r.meter, r.obis, r.capture_time)
        )
        size[version] = sum(len(p) for _, p in pairs) / len(readings)
    assert size[2] < size[1] * 0.9


def _p(pairs: list[tuple[Batch, bytes]], b: Batch) -> bytes:
    return next(p for bb, p in pairs if bb is b)


def test_default_encoder_picks_the_smaller_version() -> None:
    # one read round (one capture per block): nothing to predict, version 1 is smaller after
    # zstd; a day of profiles: version 2
    day = generate_readings(30, 1, seed=2)
    first = min(r.capture_time for r in day)
    one_round = tuple(r for r in day if r.capture_time == first)
    for readings, expected in ((one_round, 1), (tuple(day), 2)):
        b = Batch(bytes(16), "dcu-1", IC, 0, readings)
        payload = encode_batch(b)
        assert payload[4] == expected
        sizes = {v: len(encode_batch(b, version=v)) for v in (1, 2)}
        assert len(payload) == min(sizes.values())
        assert (
            decode_batch(payload).readings
            == decode_batch(encode_batch(b, version=3 - expected)).readings
        )
