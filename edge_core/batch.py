"""The compact batch format: many readings of one concentrator in one MQTT message.

The byte layout is specified in ``docs/batch-format.md``; this module is its reference
implementation and is sans-I/O (bytes in, value objects out).

Theory of operation
-------------------
A batch carries readings of one data class. The encoder groups them per meter and per channel
block (meter, OBIS, scaler, unit), sorted by (meter, OBIS, capture time); a block stores its
start time and period when the capture times are regular (nothing per value) or explicit time
deltas when there are gaps, the values as zigzag varints of the difference to the previous
value (cumulative registers grow by small steps), and the status bytes run-length encoded
(they are almost always zero). The body is compressed with zstd; the header (batch id, thing,
data class) stays readable without decompressing so that the cloud can deduplicate by batch id
cheaply.

``decode(encode(b))`` returns the readings of ``b`` in canonical order: sorted by meter, then
OBIS, then capture time (see :func:`canonical_order`). ``decode_batch`` raises only
:class:`~edge_core.errors.BatchFormatError` whatever the input, and bounds its memory: the
declared body size is limited (:data:`MAX_BODY_BYTES`) and checked before decompressing, and
every count is checked against the bytes left before anything is allocated for it.
"""

from __future__ import annotations

import itertools
import math
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import zstandard

from edge_core.errors import BatchFormatError
from edge_core.model import DataClass, Reading

__all__ = [
    "DEFAULT_LEVEL",
    "DEFAULT_MAX_BATCH_BYTES",
    "FLAG_ZSTD",
    "IOT_CORE_MAX_MESSAGE_BYTES",
    "IOT_CORE_UNIT_BYTES",
    "MAGIC",
    "MAX_BODY_BYTES",
    "MAX_READINGS",
    "TOPIC_ALLOWANCE",
    "VERSION",
    "Batch",
    "Columns",
    "Runs",
    "canonical_order",
    "decode_batch",
    "encode_batch",
    "encode_prefix",
    "encode_runs",
    "encode_split",
    "iot_core_units",
    "new_batch_id",
    "obis_from_bytes",
    "obis_to_bytes",
    "peek_batch_id",
    "split_for_limit",
]

MAGIC: Final = b"AMIB"
VERSION: Final = 1
FLAG_ZSTD: Final = 0x01
_KNOWN_FLAGS: Final = FLAG_ZSTD

# zstd level 19. zstd sizes its window to the (known) body size, so even level 19 needs only
# about 2.8 MB of compressor state for a 50,000-value seal (an 80 KB body), and costs ~40 ms of C
# time (the GIL released) against ~20 ms at level 3: a 1,000-meter DCU seals about eight such
# batches a day. It saves 8-9 % on the wire (bench/uplink.py "zstd_levels", 500 meters x 96 x 4:
# 0.690 vs 0.754 B/value at level 3). The level is the encoder's choice only: the decoder and
# the format are the same for every level.
DEFAULT_LEVEL: Final = 19

MAX_BODY_BYTES: Final = 8 * 1024 * 1024  # decoder limit on the uncompressed body (bytes)
MAX_READINGS: Final = 1_000_000  # decoder default limit on readings per batch
MAX_THING_BYTES: Final = 128  # AWS IoT thing names are at most 128 characters
MAX_METER_BYTES: Final = 255

IOT_CORE_MAX_MESSAGE_BYTES: Final = 128 * 1024  # hard limit per message (bytes)
IOT_CORE_UNIT_BYTES: Final = 5 * 1024  # metering unit of topic + payload (bytes)
TOPIC_ALLOWANCE: Final = 256  # room left for the topic (bytes); topics are far shorter
DEFAULT_MAX_BATCH_BYTES: Final = IOT_CORE_MAX_MESSAGE_BYTES - TOPIC_ALLOWANCE

_HEADER_FIXED: Final = 4 + 1 + 1 + 16 + 1 + 8 + 1  # up to and including the thing length
_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1
_UINT64: Final = 1 << 64


@dataclass(frozen=True, slots=True)
class Batch:
    """One batch: readings of one ``data_class`` from concentrator ``thing``.

    ``batch_id`` is 16 bytes (a UUID4 by default), the idempotency key of the cloud;
    ``created`` is UTC epoch seconds. Every reading's ``data_class`` equals the batch's.
    """

    batch_id: bytes
    thing: str
    data_class: DataClass
    created: int
    readings: tuple[Reading, ...]


def new_batch_id() -> bytes:
    """A fresh random 16-byte batch id (UUID4 bytes)."""
    return uuid.uuid4().bytes


def canonical_order(readings: Iterable[Reading]) -> tuple[Reading, ...]:
    """Readings sorted as a decoded batch returns them: by meter, OBIS, capture time."""
    return tuple(sorted(readings, key=_sort_key))


def _sort_key(r: Reading) -> tuple[str, bytes, int]:
    return (r.meter, obis_to_bytes(r.obis), r.capture_time)


# --- OBIS -----------------------------------------------------------------------------------

_OBIS_CACHE: dict[str, bytes] = {}


def obis_to_bytes(obis: str) -> bytes:
    """``"1.0.1.8.0.255"`` -> 6 bytes. Only the canonical dotted form round-trips."""
    cached = _OBIS_CACHE.get(obis)
    if cached is not None:
        return cached
    parts = obis.split(".")
    try:
        raw = bytes(int(p) for p in parts)
    except ValueError as exc:
        raise BatchFormatError(f"OBIS {obis!r} is not six dotted integers 0..255") from exc
    if len(raw) != 6 or obis_from_bytes(raw) != obis:
        raise BatchFormatError(f"OBIS {obis!r} is not in canonical dotted form A.B.C.D.E.F")
    if len(_OBIS_CACHE) < 4096:
        _OBIS_CACHE[obis] = raw
    return raw


def obis_from_bytes(raw: bytes) -> str:
    """6 bytes -> ``"A.B.C.D.E.F"`` (decimal, no leading zeros)."""
    return ".".join(str(b) for b in raw)


# --- varints --------------------------------------------------------------------------------


def _put_uvarint(out: bytearray, n: int) -> None:
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _wrap64(v: int) -> int:
    """Reduce an integer to int64 with two's-complement wrap-around."""
    v &= _UINT64 - 1
    return v - _UINT64 if v > _INT64_MAX else v


# --- encoder --------------------------------------------------------------------------------


def _check_header(batch: Batch) -> bytes:
    if not isinstance(batch.batch_id, bytes) or len(batch.batch_id) != 16:
        raise BatchFormatError("batch_id must be 16 bytes")
    thing = batch.thing.encode("utf-8")
    if not 1 <= len(thing) <= MAX_THING_BYTES:
        raise BatchFormatError(f"thing name must be 1..{MAX_THING_BYTES} bytes of UTF-8")
    if not 0 <= batch.created < (1 << 63):
        raise BatchFormatError("created must be a non-negative epoch second")
    DataClass(batch.data_class)
    return thing


def _encode_body(readings: Sequence[Reading], data_class: DataClass) -> bytes:
    if not readings:
        raise BatchFormatError("a batch carries at least one reading")
    for r in readings:
        if r.data_class != data_class:
            raise BatchFormatError(
                f"reading of class {DataClass(r.data_class).name} in a {data_class.name} batch"
            )
    ordered = sorted(readings, key=_sort_key)
    cols = Columns.from_readings(ordered)
    return _encode_columns(cols)


@dataclass(frozen=True, slots=True)
class Columns:
    """Readings of one batch as parallel columns (what the spool hands the encoder).

    Rows must be sorted by (meter, OBIS, capture time), where the OBIS order may be either
    the order of its 6 bytes or of its dotted text (SQLite's ``ORDER BY obis``): the encoder
    puts each meter's channel blocks into OBIS-byte order itself, so no Python-level sort of
    the rows is needed.
    """

    meters: Sequence[str]
    obis: Sequence[str]
    times: Sequence[int]
    values: Sequence[int]
    scalers: Sequence[int]
    units: Sequence[int]
    statuses: Sequence[int]

    def __len__(self) -> int:
        return len(self.times)

    @classmethod
    def from_readings(cls, rs: Sequence[Reading]) -> Columns:
        return cls(
            [r.meter for r in rs],
            [r.obis for r in rs],
            [r.capture_time for r in rs],
            [r.value for r in rs],
            [r.scaler for r in rs],
            [r.unit for r in rs],
            [r.status for r in rs],
        )

    def head(self, n: int) -> Columns:
        """The first ``n`` rows."""
        return Columns(
            self.meters[:n],
            self.obis[:n],
            self.times[:n],
            self.values[:n],
            self.scalers[:n],
            self.units[:n],
            self.statuses[:n],
        )


@dataclass(frozen=True, slots=True)
class Runs:
    """Readings of one batch as runs (what the spool hands the encoder without building a
    Python object per reading): ``keys[i]`` = (meter, OBIS, scaler, unit) holds ``counts[i]``
    consecutive rows of ``times``, ``values`` and ``statuses`` (int64 arrays). Runs are sorted
    by meter (then OBIS as bytes or text, as :class:`Columns`), rows of a run by capture time."""

    keys: Sequence[tuple[str, str, int, int]]
    counts: Sequence[int]
    times: np.ndarray
    values: np.ndarray
    statuses: np.ndarray

    def __len__(self) -> int:
        return len(self.times)


def encode_runs(
    runs: Runs,
    *,
    thing: str,
    data_class: DataClass,
    created: int,
    level: int = DEFAULT_LEVEL,
    batch_id: bytes | None = None,
) -> tuple[bytes, bytes]:
    """Encode every reading of ``runs`` into one batch; returns (batch id, payload). The caller
    checks the payload's size (the spool seals fewer readings when it is too big)."""
    bid = new_batch_id() if batch_id is None else batch_id
    head = _check_header(Batch(bid, thing, DataClass(data_class), created, ()))
    if len(runs) == 0:
        raise BatchFormatError("a batch carries at least one reading")
    if len(runs.keys) != len(runs.counts) or sum(runs.counts) != len(runs):
        raise BatchFormatError("runs do not cover the rows")
    if not len(runs.values) == len(runs.statuses) == len(runs):
        raise BatchFormatError("columns of different lengths")
    spans: list[tuple[tuple[str, str, int, int], int, int]] = []
    pos = 0
    for key, k in zip(runs.keys, runs.counts, strict=True):
        if k <= 0:
            raise BatchFormatError("empty run")
        spans.append((key, pos, pos + k))
        pos += k
    body = _encode_spans(
        spans,
        np.asarray(runs.times, dtype=np.int64),
        np.asarray(runs.values, dtype=np.int64),
        np.asarray(runs.statuses, dtype=np.int64),
    )
    payload = _frame(
        bid, head, data_class=DataClass(data_class), created=created, body=body, level=level
    )
    return bid, payload


def _int_array(seq: Sequence[int], what: str) -> np.ndarray:
    try:
        return np.fromiter(seq, dtype=np.int64, count=len(seq))
    except (OverflowError, ValueError, TypeError) as exc:
        raise BatchFormatError(f"{what} outside int64: {exc}") from exc


def _encode_columns(c: Columns) -> bytes:
    """The body (directory + values) of rows sorted as :class:`Columns` requires.

    Vectorised with numpy: the per-value work (time checks, differences, zigzag, the split
    varints of the values section) runs in C, so a 50,000-value seal costs milliseconds of
    interpreter time (the GIL) instead of the ~100 ms of a per-value Python loop.
    """
    n = len(c)
    if n == 0:
        raise BatchFormatError("a batch carries at least one reading")
    times = _int_array(c.times, "capture time")
    values = _int_array(c.values, "value")
    statuses = _int_array(c.statuses, "status")
    # Blocks: runs of equal (meter, obis, scaler, unit), found in C by groupby.
    keys = zip(c.meters, c.obis, c.scalers, c.units, strict=True)
    spans: list[tuple[tuple[str, str, int, int], int, int]] = []
    pos = 0
    for key, grp in itertools.groupby(keys):
        k = sum(1 for _ in grp)
        spans.append((key, pos, pos + k))
        pos += k
    return _encode_spans(spans, times, values, statuses)


def _encode_spans(
    spans: list[tuple[tuple[str, str, int, int], int, int]],
    times: np.ndarray,
    values: np.ndarray,
    statuses: np.ndarray,
) -> bytes:
    """The body of rows given as runs: ``spans`` = ((meter, OBIS, scaler, unit), start, end)
    over the int64 arrays, in meter order (see :class:`Columns`)."""
    n = len(times)
    if int(times.min()) < 0:
        raise BatchFormatError("capture times must be non-negative epoch seconds")
    if int(statuses.min()) < 0 or int(statuses.max()) > 255:
        raise BatchFormatError("status is not a byte")
    # Order each meter's blocks by (OBIS bytes, first time) and check the meters' order.
    meters: list[tuple[bytes, list[tuple[tuple[str, str, int, int], int, int]]]] = []
    prev_mid: bytes | None = None
    for meter, mspans in itertools.groupby(spans, key=lambda s: s[0][0]):
        mid = meter.encode("utf-8")
        if not 1 <= len(mid) <= MAX_METER_BYTES:
            raise BatchFormatError(f"meter id must be 1..{MAX_METER_BYTES} bytes of UTF-8")
        if prev_mid is not None and mid <= prev_mid:
            raise BatchFormatError(f"meter {meter!r} out of order or split")
        prev_mid = mid
        blocks = sorted(mspans, key=lambda s: (obis_to_bytes(s[0][1]), int(times[s[1]])))
        meters.append((mid, blocks))
    perm_parts: list[np.ndarray] = []
    starts: list[int] = []
    at = 0
    for _mid, blocks in meters:
        for _key, a, b in blocks:
            perm_parts.append(np.arange(a, b, dtype=np.int64))
            starts.append(at)
            at += b - a
    perm = np.concatenate(perm_parts)
    identity = bool(np.array_equal(perm, np.arange(n, dtype=np.int64)))
    if not identity:
        times, values, statuses = times[perm], values[perm], statuses[perm]
    first = np.zeros(n, dtype=bool)
    first[np.asarray(starts, dtype=np.int64)] = True
    # Capture times strictly increase within a block.
    dt = np.diff(times)
    if dt.size and bool(np.any((dt <= 0) & ~first[1:])):
        raise BatchFormatError("duplicate capture time in a channel")
    # The values section: differences to the previous value of the block (wrapping int64).
    prev = np.empty_like(values)
    prev[0] = 0
    prev[1:] = values[:-1]
    prev[first] = 0
    with np.errstate(over="ignore"):
        d = values - prev
    z = ((d << 1) ^ (d >> 63)).view(np.uint64)
    heads, tails = _split_varints(z)
    # Within a meter an OBIS may repeat (scaler change): its blocks must not overlap in time.
    directory = bytearray()
    _put_uvarint(directory, len(meters))
    bi = 0
    for mid, blocks in meters:
        _put_uvarint(directory, len(mid))
        directory += mid
        _put_uvarint(directory, len(blocks))
        seen: dict[str, list[tuple[int, int]]] = {}
        for (_meter, obis, scaler, unit), a, b in blocks:
            count = b - a
            s = starts[bi]
            bi += 1
            t0, t1 = int(times[s]), int(times[s + count - 1])
            for lo, hi in seen.get(obis, ()):
                if not (t1 < lo or t0 > hi):
                    raise BatchFormatError(f"overlapping capture times for {mid!r} {obis}")
            seen.setdefault(obis, []).append((t0, t1))
            if not -128 <= scaler <= 127:
                raise BatchFormatError(f"scaler {scaler} is not an int8")
            if not 0 <= unit <= 255:
                raise BatchFormatError(f"unit {unit} is not a uint8")
            directory += obis_to_bytes(obis)
            directory.append(scaler & 0xFF)
            directory.append(unit)
            _put_uvarint(directory, count)
            _put_uvarint(directory, t0)
            bdt = dt[s : s + count - 1]
            period = int(bdt[0]) if count > 1 and bool(np.all(bdt == bdt[0])) else 0
            _put_uvarint(directory, period)
            if period == 0:
                for x in bdt.tolist():
                    _put_uvarint(directory, x)
            bst = statuses[s : s + count]
            if count == 1 or not bool(np.any(bst != bst[0])):
                _put_uvarint(directory, count)
                directory.append(int(bst[0]))
            else:
                cuts = np.flatnonzero(np.diff(bst)) + 1
                edges = [0, *cuts.tolist(), count]
                for lo, hi in itertools.pairwise(edges):
                    _put_uvarint(directory, hi - lo)
                    directory.append(int(bst[lo]))
    return bytes(directory) + heads + tails


def _split_varints(z: np.ndarray) -> tuple[bytes, bytes]:
    """LEB128 varints of ``z`` (uint64) split into the first byte of each (``heads``) and the
    continuation bytes in value order (``tails``)."""
    groups = [(z & np.uint64(0x7F)).astype(np.uint8)]
    rest = z >> np.uint64(7)
    more = [rest != 0]
    while bool(more[-1].any()):
        groups.append((rest & np.uint64(0x7F)).astype(np.uint8))
        rest = rest >> np.uint64(7)
        more.append(rest != 0)
    g = np.stack(groups, axis=1)
    cont = np.stack(more, axis=1)
    g |= cont.astype(np.uint8) << np.uint8(7)
    heads = g[:, 0].tobytes()
    if g.shape[1] == 1:
        return heads, b""
    # continuation byte k of a value exists when byte k-1 had its continuation bit set
    present = cont[:, :-1]
    return heads, g[:, 1:][present].tobytes()


def encode_batch(batch: Batch, *, level: int = DEFAULT_LEVEL) -> bytes:
    """Encode ``batch`` (docs/batch-format.md, version 1).

    ``level`` is the zstd level; ``level=0`` stores the body uncompressed (flag bit 0 clear).
    Raises :class:`BatchFormatError` for a batch the format cannot carry (bad ids, a reading of
    another class, duplicate keys, values outside int64, non-canonical OBIS strings).
    """
    thing = _check_header(batch)
    body = _encode_body(batch.readings, DataClass(batch.data_class))
    return _frame(
        batch.batch_id,
        thing,
        data_class=DataClass(batch.data_class),
        created=batch.created,
        body=body,
        level=level,
    )


def _frame(
    batch_id: bytes, thing: bytes, *, data_class: DataClass, created: int, body: bytes, level: int
) -> bytes:
    if len(body) > MAX_BODY_BYTES:
        raise BatchFormatError(
            f"body of {len(body)} bytes exceeds {MAX_BODY_BYTES}; split the readings"
        )
    body_len = len(body)
    flags = 0
    if level > 0:
        body = zstandard.ZstdCompressor(
            level=level, write_content_size=True, write_checksum=False
        ).compress(body)
        flags |= FLAG_ZSTD
    head = bytearray(MAGIC)
    head.append(VERSION)
    head.append(flags)
    head += batch_id
    head.append(int(data_class))
    head += created.to_bytes(8, "big")
    head.append(len(thing))
    head += thing
    _put_uvarint(head, body_len)
    return bytes(head) + body


def encode_prefix(
    cols: Columns,
    *,
    thing: str,
    data_class: DataClass,
    created: int,
    max_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    level: int = DEFAULT_LEVEL,
    batch_id: bytes | None = None,
) -> tuple[bytes, bytes, int]:
    """Encode the longest prefix of ``cols`` (sorted as :class:`Columns` requires) that fits
    ``max_bytes``, cut at a meter boundary where possible; returns (batch id, payload, rows
    used). This is the spool's sealing path: no :class:`Reading` objects, no Python sort.
    Raises BatchFormatError when not even one row fits."""
    bid = new_batch_id() if batch_id is None else batch_id
    head = _check_header(Batch(bid, thing, DataClass(data_class), created, ()))
    n = len(cols)
    while True:
        part = cols if n == len(cols) else cols.head(n)
        body = _encode_columns(part)
        payload = _frame(
            bid, head, data_class=DataClass(data_class), created=created, body=body, level=level
        )
        if len(payload) <= max_bytes:
            return bid, payload, n
        if n == 1:
            raise BatchFormatError(f"one reading does not fit in {max_bytes} bytes")
        target = max(1, min(n - 1, int(n * max_bytes / len(payload) * 0.95)))
        cut = target
        meters = cols.meters
        while cut > 0 and meters[cut] == meters[cut - 1]:
            cut -= 1
        n = cut if cut > 0 else target


# --- decoder --------------------------------------------------------------------------------


def peek_batch_id(payload: bytes) -> bytes:
    """The batch id of ``payload`` without decoding the body (raises BatchFormatError)."""
    if len(payload) < _HEADER_FIXED or payload[:4] != MAGIC:
        raise BatchFormatError("not an ami-edge batch (magic)")
    if payload[4] != VERSION:
        raise BatchFormatError(f"unsupported batch version {payload[4]}")
    return bytes(payload[6:22])


class _Reader:
    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf)

    def byte(self) -> int:
        if self.pos >= self.end:
            raise BatchFormatError("truncated batch")
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def take(self, n: int) -> bytes:
        if n > self.end - self.pos:
            raise BatchFormatError("truncated batch")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def uvarint(self) -> int:
        buf, pos, end = self.buf, self.pos, self.end
        result = shift = 0
        while True:
            if pos >= end:
                raise BatchFormatError("truncated varint")
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
            if shift >= 70:
                raise BatchFormatError("varint longer than 10 bytes")
        if shift and b == 0:
            raise BatchFormatError("non-canonical varint (trailing zero byte)")
        if result >= _UINT64:
            raise BatchFormatError("varint exceeds 64 bits")
        self.pos = pos
        return result


def decode_batch(payload: bytes, *, max_readings: int = MAX_READINGS) -> Batch:
    """Decode a batch; raises :class:`BatchFormatError` (and nothing else) if it is malformed.

    Memory is bounded: the uncompressed body is at most :data:`MAX_BODY_BYTES` and at most
    ``max_readings`` readings are built.
    """
    try:
        return _decode(bytes(payload), max_readings)
    except BatchFormatError:
        raise
    except (
        ValueError,
        TypeError,
        IndexError,
        OverflowError,
        MemoryError,
        zstandard.ZstdError,
    ) as exc:
        raise BatchFormatError(f"malformed batch: {exc}") from exc


def _decode(payload: bytes, max_readings: int) -> Batch:
    rd = _Reader(payload)
    if rd.take(4) != MAGIC:
        raise BatchFormatError("not an ami-edge batch (magic)")
    version = rd.byte()
    if version != VERSION:
        raise BatchFormatError(f"unsupported batch version {version}")
    flags = rd.byte()
    if flags & ~_KNOWN_FLAGS:
        raise BatchFormatError(f"unknown flags 0x{flags:02x}")
    batch_id = rd.take(16)
    dc = rd.byte()
    if dc > max(DataClass):
        raise BatchFormatError(f"unknown data class {dc}")
    created = int.from_bytes(rd.take(8), "big")
    if created >= 1 << 63:
        raise BatchFormatError("created out of range")
    tlen = rd.byte()
    if not 1 <= tlen <= MAX_THING_BYTES:
        raise BatchFormatError("bad thing name length")
    try:
        thing = rd.take(tlen).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BatchFormatError("thing name is not UTF-8") from exc
    body_len = rd.uvarint()
    if body_len > MAX_BODY_BYTES:
        raise BatchFormatError(f"declared body of {body_len} bytes exceeds {MAX_BODY_BYTES}")
    rest = payload[rd.pos :]
    body = _decompress(rest, body_len) if flags & FLAG_ZSTD else rest
    if len(body) != body_len:
        raise BatchFormatError(f"body is {len(body)} bytes, header says {body_len}")
    data_class = DataClass(dc)
    readings = _decode_body(body, data_class, max_readings)
    return Batch(batch_id, thing, data_class, created, tuple(readings))


def _decompress(frame: bytes, body_len: int) -> bytes:
    # The frame must declare its content size, equal to the header's body length (checked
    # before any allocation), and nothing may follow the frame.
    try:
        params = zstandard.get_frame_parameters(frame)
    except zstandard.ZstdError as exc:
        raise BatchFormatError(f"bad zstd frame: {exc}") from exc
    if params.content_size != body_len:
        raise BatchFormatError("zstd content size missing or not the declared body length")
    try:
        return zstandard.ZstdDecompressor(max_window_size=1 << 23).decompress(
            frame, read_across_frames=False, allow_extra_data=False
        )
    except zstandard.ZstdError as exc:
        raise BatchFormatError(f"bad zstd frame: {exc}") from exc


def _decode_body(body: bytes, data_class: DataClass, max_readings: int) -> list[Reading]:
    rd = _Reader(body)
    uvarint = rd.uvarint
    # Directory: meters and their channel blocks (everything but the values).
    blocks: list[tuple[str, str, int, int, list[int], list[int]]] = []
    total = 0
    n_meters = uvarint()
    if n_meters == 0 or n_meters > len(body):
        raise BatchFormatError("bad meter count")
    prev_meter: str | None = None
    for _ in range(n_meters):
        mlen = uvarint()
        if not 1 <= mlen <= MAX_METER_BYTES:
            raise BatchFormatError("bad meter id length")
        try:
            meter = rd.take(mlen).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BatchFormatError("meter id is not UTF-8") from exc
        if prev_meter is not None and meter <= prev_meter:
            raise BatchFormatError(f"meter {meter!r} repeated or out of order")
        prev_meter = meter
        n_blocks = uvarint()
        if n_blocks == 0 or n_blocks > rd.end - rd.pos:
            raise BatchFormatError("bad channel count")
        times_by_obis: dict[str, set[int] | list[int]] = {}
        for _ in range(n_blocks):
            obis = obis_from_bytes(rd.take(6))
            scaler = rd.byte()
            if scaler > 127:
                scaler -= 256
            unit = rd.byte()
            count = uvarint()
            total += count
            # every value needs at least one head byte: a count can never exceed the body
            if count == 0 or total > rd.end - rd.pos:
                raise BatchFormatError("bad value count")
            if total > max_readings:
                raise BatchFormatError(f"more than {max_readings} readings")
            t0 = uvarint()
            period = uvarint()
            if period:
                times = list(range(t0, t0 + period * count, period))
            else:
                times = [t0]
                t = t0
                for _ in range(count - 1):
                    d = uvarint()
                    if d == 0:
                        raise BatchFormatError("zero time delta (duplicate capture time)")
                    t += d
                    times.append(t)
            if times[-1] >= 1 << 63:
                raise BatchFormatError("capture time out of range")
            earlier = times_by_obis.get(obis)
            if earlier is not None:  # the OBIS repeats in this meter (rare): check overlap
                seen = set(earlier)
                if not seen.isdisjoint(times):
                    raise BatchFormatError(f"duplicate capture time for {meter} {obis}")
                seen.update(times)
                times_by_obis[obis] = seen
            else:
                times_by_obis[obis] = times
            statuses = _read_status(rd, count)
            blocks.append((meter, obis, scaler, unit, times, statuses))
    # Values: `total` head bytes, then the tails stream, which must be consumed exactly.
    heads_end = rd.pos + total
    values = _read_values(body, rd.pos, heads_end, total)
    readings: list[Reading] = []
    vi = 0
    for meter, obis, scaler, unit, times, statuses in blocks:
        prev = 0
        for t, s in zip(times, statuses, strict=True):
            v = prev + values[vi]
            if not _INT64_MIN <= v <= _INT64_MAX:
                v = _wrap64(v)
            readings.append(Reading(meter, obis, t, v, scaler, unit, s, data_class))
            prev = v
            vi += 1
    return readings


def _read_values(body: bytes, heads_pos: int, tails_pos: int, total: int) -> list[int]:
    """The zigzag-decoded varints of the values section (differences, not yet summed)."""
    end = len(body)
    if tails_pos > end:
        raise BatchFormatError("truncated values section")
    out = [0] * total
    tp = tails_pos
    for i in range(total):
        b = body[heads_pos + i]
        if b < 0x80:
            z = b
        else:
            z = b & 0x7F
            shift = 7
            while True:
                if tp >= end:
                    raise BatchFormatError("truncated tails stream")
                b = body[tp]
                tp += 1
                z |= (b & 0x7F) << shift
                if b < 0x80:
                    break
                shift += 7
                if shift >= 70:
                    raise BatchFormatError("varint longer than 10 bytes")
            if b == 0:
                raise BatchFormatError("non-canonical varint (trailing zero byte)")
            if z >= _UINT64:
                raise BatchFormatError("varint exceeds 64 bits")
        out[i] = (z >> 1) ^ -(z & 1)
    if tp != end:
        raise BatchFormatError(f"{end - tp} bytes left after the values")
    return out


def _read_status(rd: _Reader, count: int) -> list[int]:
    statuses: list[int] = []
    while len(statuses) < count:
        run = rd.uvarint()
        status = rd.byte()
        if run == 0 or len(statuses) + run > count:
            raise BatchFormatError("bad status run length")
        statuses.extend([status] * run)
    return statuses


# --- sizing for IoT Core ----------------------------------------------------------------------


def iot_core_units(topic: str, payload: bytes) -> int:
    """IoT Core metering units of one message: started 5 KB (5120 bytes) of topic + payload."""
    size = len(topic.encode("utf-8")) + len(payload)
    return max(1, math.ceil(size / IOT_CORE_UNIT_BYTES))


def encode_split(
    readings: Sequence[Reading],
    *,
    thing: str,
    data_class: DataClass,
    max_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    created: int | None = None,
    level: int = DEFAULT_LEVEL,
) -> list[tuple[Batch, bytes]]:
    """Split ``readings`` into batches whose encodings are each at most ``max_bytes``.

    Returns (batch, payload) pairs covering every reading exactly once. Readings are cut at
    meter boundaries where possible (a meter's day stays in one message) and within a meter's
    readings only when one meter alone exceeds the limit. Raises BatchFormatError if a single
    reading cannot fit (``max_bytes`` absurdly small).
    """
    when = int(time.time()) if created is None else created
    ordered = list(canonical_order(readings))
    if not ordered:
        return []
    out: list[tuple[Batch, bytes]] = []
    _split_into(
        ordered,
        thing,
        DataClass(data_class),
        max_bytes=max_bytes,
        created=when,
        level=level,
        out=out,
    )
    return out


def _split_into(
    rs: list[Reading],
    thing: str,
    data_class: DataClass,
    *,
    max_bytes: int,
    created: int,
    level: int,
    out: list[tuple[Batch, bytes]],
) -> None:
    batch = Batch(new_batch_id(), thing, data_class, created, tuple(rs))
    payload = encode_batch(batch, level=level)
    if len(payload) <= max_bytes:
        out.append((batch, payload))
        return
    if len(rs) == 1:
        raise BatchFormatError(f"one reading does not fit in {max_bytes} bytes")
    # Estimate the number of pieces from the size (compression is roughly linear in readings)
    # and cut at meter boundaries near the even split points.
    pieces = max(2, math.ceil(len(payload) * 1.05 / max_bytes))
    cuts = _meter_cuts(rs, pieces)
    for a, b in itertools.pairwise(cuts):
        _split_into(
            rs[a:b], thing, data_class, max_bytes=max_bytes, created=created, level=level, out=out
        )


def _meter_cuts(rs: list[Reading], pieces: int) -> list[int]:
    n = len(rs)
    boundaries = [i for i in range(1, n) if rs[i].meter != rs[i - 1].meter]
    cuts = [0]
    for k in range(1, pieces):
        target = k * n // pieces
        if boundaries:
            # nearest meter boundary, unless it is far (then cut inside the meter)
            best = min(boundaries, key=lambda b: abs(b - target))
            pos = best if abs(best - target) <= n // (2 * pieces) else target
        else:
            pos = target
        if cuts[-1] < pos < n:
            cuts.append(pos)
    cuts.append(n)
    if len(cuts) == 2:  # could not cut at a boundary: halve
        cuts = [0, n // 2, n]
    return cuts


def split_for_limit(
    readings: Sequence[Reading],
    *,
    thing: str,
    data_class: DataClass,
    max_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    created: int | None = None,
    level: int = DEFAULT_LEVEL,
) -> list[Batch]:
    """Batches covering ``readings`` whose encodings each fit ``max_bytes`` (default: IoT
    Core's 128 KB less :data:`TOPIC_ALLOWANCE` for the topic). See :func:`encode_split`."""
    return [
        b
        for b, _ in encode_split(
            readings,
            thing=thing,
            data_class=data_class,
            max_bytes=max_bytes,
            created=created,
            level=level,
        )
    ]
