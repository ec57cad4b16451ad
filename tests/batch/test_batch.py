"""Batch codec: round trips, limits, fuzzing and the golden files."""

from __future__ import annotations

import contextlib
import json
import random
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.uplink import generate_readings
from edge_core.batch import (
    DEFAULT_MAX_BATCH_BYTES,
    Batch,
    canonical_order,
    decode_batch,
    encode_batch,
    encode_split,
    iot_core_units,
    new_batch_id,
    peek_batch_id,
    split_for_limit,
)
from edge_core.errors import BatchFormatError
from edge_core.model import DataClass, Reading

from .strategies import batches

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
GOLDEN_FILES = sorted(GOLDEN.glob("batch-*.bin"))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches(), st.sampled_from([0, 1, 3]), st.sampled_from([1, 2]))
def test_round_trip(batch: Batch, level: int, version: int) -> None:
    payload = encode_batch(batch, level=level, version=version)
    assert payload[4] == version
    out = decode_batch(payload)
    assert out.batch_id == batch.batch_id
    assert out.thing == batch.thing
    assert out.data_class == batch.data_class
    assert out.created == batch.created
    assert out.readings == canonical_order(batch.readings)
    assert peek_batch_id(payload) == batch.batch_id


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches(), st.integers(300, 4000))
def test_split_never_over_limit_and_covers_everything(batch: Batch, limit: int) -> None:
    pairs = encode_split(
        batch.readings,
        thing=batch.thing,
        data_class=batch.data_class,
        max_bytes=limit,
        created=batch.created,
    )
    got: list[Reading] = []
    for b, payload in pairs:
        assert len(payload) <= limit
        assert decode_batch(payload).readings == b.readings
        got.extend(b.readings)
    assert sorted(got, key=lambda r: r.key) == sorted(batch.readings, key=lambda r: r.key)
    assert len({b.batch_id for b, _ in pairs}) == len(pairs)


def test_realistic_day_fits_and_is_compact() -> None:
    readings = generate_readings(60, 1, seed=3)
    batches_ = split_for_limit(readings, thing="dcu-1", data_class=DataClass.INTERVAL)
    total = 0
    for b in batches_:
        payload = encode_batch(b)
        assert len(payload) <= DEFAULT_MAX_BATCH_BYTES
        total += len(payload)
    # far below JSON-per-read (~130 B/value) and below one byte per value
    assert total / len(readings) < 1.0


def test_split_of_one_huge_meter_cuts_inside_it() -> None:
    rng = random.Random(5)
    readings = [
        Reading("big", "1.0.1.8.0.255", 900 * i, rng.getrandbits(24)) for i in range(30_000)
    ]
    pairs = encode_split(readings, thing="t", data_class=DataClass.INTERVAL, max_bytes=8_000)
    assert len(pairs) > 1
    assert all(len(p) <= 8_000 for _, p in pairs)
    assert sum(len(b.readings) for b, _ in pairs) == len(readings)


def test_iot_core_units() -> None:
    assert iot_core_units("t", b"") == 1
    assert iot_core_units("abcd", b"x" * 5116) == 1
    assert iot_core_units("abcd", b"x" * 5117) == 2
    assert iot_core_units("dt/ami/x/interval", b"x" * 128 * 1024) == 26


@pytest.mark.parametrize(
    "bad",
    [
        Batch(b"short", "t", DataClass.INTERVAL, 0, (Reading("m", "1.0.1.8.0.255", 0, 1),)),
        Batch(new_batch_id(), "", DataClass.INTERVAL, 0, (Reading("m", "1.0.1.8.0.255", 0, 1),)),
        Batch(new_batch_id(), "t", DataClass.INTERVAL, 0, ()),
        Batch(new_batch_id(), "t", DataClass.DAILY, 0, (Reading("m", "1.0.1.8.0.255", 0, 1),)),
        Batch(new_batch_id(), "t", DataClass.INTERVAL, 0, (Reading("m", "1.0.1.8.0", 0, 1),)),
        Batch(new_batch_id(), "t", DataClass.INTERVAL, 0, (Reading("m", "1.0.01.8.0.255", 0, 1),)),
        Batch(
            new_batch_id(), "t", DataClass.INTERVAL, 0, (Reading("m", "1.0.1.8.0.255", 0, 1 << 63),)
        ),
        Batch(new_batch_id(), "t", DataClass.INTERVAL, 0, (Reading("m", "1.0.1.8.0.255", -1, 1),)),
        Batch(
            new_batch_id(),
            "t",
            DataClass.INTERVAL,
            0,
            (Reading("m", "1.0.1.8.0.255", 5, 1), Reading("m", "1.0.1.8.0.255", 5, 2)),
        ),
    ],
)
def test_encoder_rejects_what_the_format_cannot_carry(bad: Batch) -> None:
    with pytest.raises(BatchFormatError):
        encode_batch(bad)


def _valid_payloads() -> list[bytes]:
    return [p.read_bytes() for p in GOLDEN_FILES]


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(st.data())
def test_fuzz_decode_raises_only_batch_format_error(data: st.DataObject) -> None:
    base = data.draw(st.sampled_from(_valid_payloads()))
    mode = data.draw(st.sampled_from(["flip", "truncate", "insert", "random", "raw_body"]))
    buf = bytearray(base)
    if mode == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(buf) - 1))
            buf[i] ^= data.draw(st.integers(1, 255))
    elif mode == "truncate":
        del buf[data.draw(st.integers(0, len(buf) - 1)) :]
    elif mode == "insert":
        i = data.draw(st.integers(0, len(buf)))
        buf[i:i] = data.draw(st.binary(min_size=1, max_size=16))
    elif mode == "random":
        buf = bytearray(data.draw(st.binary(max_size=200)))
    else:  # corrupt an uncompressed body (reaches the body parser with garbage)
        raw = bytearray(encode_batch(decode_batch(base), level=0))
        for _ in range(data.draw(st.integers(1, 6))):
            i = data.draw(st.integers(32, len(raw) - 1))
            raw[i] = data.draw(st.integers(0, 255))
        buf = raw
    with contextlib.suppress(BatchFormatError):
        decode_batch(bytes(buf))


def test_decoder_bounds_memory_before_allocating() -> None:
    good = encode_batch(
        Batch(new_batch_id(), "t", DataClass.INTERVAL, 0, (Reading("m", "1.0.1.8.0.255", 0, 1),)),
        level=0,
        version=2,
    )
    thing_end = 32 + 1
    # declared body length of 2**40 bytes: rejected from the header alone
    huge = good[:thing_end] + bytes([0x80, 0x80, 0x80, 0x80, 0x80, 0x20])
    with pytest.raises(BatchFormatError, match="exceeds"):
        decode_batch(huge)
    # a value count of a billion with a tiny body
    body = bytes([1, 1, ord("m"), 1, 1, 0, 1, 8, 0, 255, 0, 30, 0x80, 0x94, 0xEB, 0xDC, 0x03, 0, 0])
    payload = good[:thing_end] + bytes([len(body)]) + body
    with pytest.raises(BatchFormatError, match="count"):
        decode_batch(bytes([*payload[:4], 1, *payload[5:]]))  # version 1: count > bytes left
    with pytest.raises(BatchFormatError, match="more than 1000000 readings"):
        decode_batch(payload)  # version 2 codes zeros in nothing: the reading limit bounds it
    # a zstd bomb: 8 MiB + 1 of zeros declared as such
    bomb = zstandard.ZstdCompressor().compress(b"\0" * (8 * 1024 * 1024 + 1))
    header = bytearray(good[:thing_end])
    header[5] = 1
    payload = bytes(header) + bytes([0x81, 0x80, 0x80, 0x04]) + bomb
    with pytest.raises(BatchFormatError):
        decode_batch(payload)
    with pytest.raises(BatchFormatError, match="more than"):
        decode_batch(
            encode_batch(
                Batch(
                    new_batch_id(),
                    "t",
                    DataClass.INTERVAL,
                    0,
                    tuple(Reading("m", "1.0.1.8.0.255", i, i) for i in range(50)),
                )
            ),
            max_readings=49,
        )


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.stem)
def test_golden_files_decode_to_their_sidecar(path: Path) -> None:
    expected = json.loads(path.with_suffix(".json").read_text("utf-8"))
    batch = decode_batch(path.read_bytes())
    assert batch.batch_id.hex() == expected["batch_id"]
    assert batch.thing == expected["thing"]
    assert int(batch.data_class) == expected["data_class"]
    assert batch.created == expected["created"]
    assert [
        [r.meter, r.obis, r.capture_time, r.value, r.scaler, r.unit, r.status]
        for r in batch.readings
    ] == expected["readings"]
    assert all(r.data_class == batch.data_class for r in batch.readings)


def test_golden_files_are_reproduced_by_the_encoder() -> None:
    # a change of encoder output is a format change: regenerate with scripts/make_golden.py
    for path in GOLDEN_FILES:
        batch = decode_batch(path.read_bytes())
        raw = path.read_bytes()
        level = 0 if raw[5] == 0 else 3
        assert encode_batch(batch, level=level, version=raw[4]) == raw, path.name


@pytest.mark.parametrize(("heading", "version"), [("## 3. Annotated", 1), ("## 3b. The same", 2)])
def test_doc_example_bytes(heading: str, version: int) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "batch-format.md").read_text()
    v1_block = doc.split("## 3. Annotated example")[1].split("```")[1]
    lines = [ln for ln in v1_block.splitlines() if ln and not ln.startswith("--")]
    if version == 2:
        # the header and directory of the version-1 example, version 02, body length 55, then
        # the values section annotated in section 3b
        lines = [ln for ln in lines if not ln.endswith(("heads, one per value", "tails"))]
        lines = [
            "02" if ln.endswith("version 1") else "37" if ln.endswith("body length 49") else ln
            for ln in lines
        ]
        lines += doc.split(heading)[1].split("```")[1].splitlines()
    hexdigits = "".join(ln.split("  ")[0] for ln in lines if ln)
    payload = bytes.fromhex(hexdigits)
    assert payload[4] == version
    b = decode_batch(payload)
    assert [(r.obis, r.capture_time - 1717372800, r.value, r.status) for r in b.readings] == [
        ("1.0.1.8.0.255", 900, 1000, 0),
        ("1.0.1.8.0.255", 1800, 1012, 0),
        ("1.0.1.8.0.255", 2700, 1030, 0x80),
        ("1.0.2.8.0.255", 900, 5, 0),
        ("1.0.2.8.0.255", 4500, 3, 0),
    ]
    assert encode_batch(b, level=0, version=version) == payload
