"""The compact batch format: many readings of one concentrator in one MQTT message.

The byte layout is specified in ``docs/batch-format.md``; this module is its reference
implementation and is sans-I/O (bytes in, value objects out).

Theory of operation
-------------------
A batch carries readings of one data class. The encoder groups them per meter and per channel
block (meter, OBIS, scaler, unit), sorted by (meter, OBIS, capture time); a block stores its
start time and period when the capture times are regular (nothing per value) or explicit time
deltas when there are gaps, and the status bytes run-length encoded (they are almost always
zero). The values follow the directory: in format version 1 as zigzag varints of the difference
to the previous value; in version 2 (the default) each block is predicted (first or second
difference, or the difference of an earlier channel of the meter scaled by a fixed-point weight:
reactive energy moves with active energy) and the residuals are Golomb-Rice coded with a
parameter per partition of :data:`DEFAULT_PARTITION` residuals, quotients and remainders in two
bit streams so that numpy can code and decode them without a loop per value. The body is
compressed with zstd; the header (batch id, thing, data class) stays readable without
decompressing so that the cloud can deduplicate by batch id cheaply. The decoder reads every
version in :data:`VERSIONS`, since batches spooled before an upgrade arrive later.

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
    "VERSIONS",
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
VERSION: Final = 2  # the newest; the encoder writes it unless version 1 is smaller
VERSIONS: Final = frozenset({1, 2})  # what the decoder reads (every version ever sent)
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


def _encode_body(
    readings: Sequence[Reading], data_class: DataClass, version: int | None
) -> dict[int, bytes]:
    if not readings:
        raise BatchFormatError("a batch carries at least one reading")
    for r in readings:
        if r.data_class != data_class:
            raise BatchFormatError(
                f"reading of class {DataClass(r.data_class).name} in a {data_class.name} batch"
            )
    ordered = sorted(readings, key=_sort_key)
    cols = Columns.from_readings(ordered)
    return _encode_columns(cols, version)


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
    version: int | None = None,
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
    bodies = _encode_spans(
        spans,
        np.asarray(runs.times, dtype=np.int64),
        np.asarray(runs.values, dtype=np.int64),
        np.asarray(runs.statuses, dtype=np.int64),
        version,
    )
    payload = _frame(
        bid, head, data_class=DataClass(data_class), created=created, bodies=bodies, level=level
    )
    return bid, payload


def _int_array(seq: Sequence[int], what: str) -> np.ndarray:
    try:
        return np.fromiter(seq, dtype=np.int64, count=len(seq))
    except (OverflowError, ValueError, TypeError) as exc:
        raise BatchFormatError(f"{what} outside int64: {exc}") from exc


def _encode_columns(c: Columns, version: int | None = None) -> dict[int, bytes]:
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
    return _encode_spans(spans, times, values, statuses, version)


def _encode_spans(
    spans: list[tuple[tuple[str, str, int, int], int, int]],
    times: np.ndarray,
    values: np.ndarray,
    statuses: np.ndarray,
    version: int | None = None,
) -> dict[int, bytes]:
    """The body of rows given as runs: ``spans`` = ((meter, OBIS, scaler, unit), start, end)
    over the int64 arrays, in meter order (see :class:`Columns`), in format ``version``; with
    ``version=None`` the candidates worth compressing: version 2 when the blocks hold at least
    three captures on average, else both versions (a single read round, one capture per block,
    has nothing to predict, and version 1 stores its values a few percent smaller after zstd).
    """
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
    out: dict[int, bytes] = {}
    if version == 1 or (version is None and n < 3 * len(starts)):
        out[1] = bytes(directory) + _encode_values_v1(values, first)
    if version != 1:
        starts_a = np.asarray(starts, dtype=np.int64)
        counts_a = np.diff(np.append(starts_a, n))
        per_meter = [len(b) for _m, b in meters]
        meter_first = np.repeat(np.cumsum([0, *per_meter])[:-1], per_meter)
        out[2] = bytes(directory) + _encode_values_v2(
            values, times, starts_a, counts_a, meter_first
        )
    return out


def _encode_values_v1(values: np.ndarray, first: np.ndarray) -> bytes:
    """The version-1 values section: zigzag varints of the differences to the previous value
    of the block (wrapping int64), split into heads and tails."""
    prev = np.empty_like(values)
    prev[0] = 0
    prev[1:] = values[:-1]
    prev[first] = 0
    with np.errstate(over="ignore"):
        d = values - prev
    heads, tails = _split_varints(_zigzag(d))
    return heads + tails


# --- values section, version 2: predicted residuals, Rice-coded ------------------------------

# A block's mode byte: the predictor in bits 0-1, MODE_UNSIGNED in bit 2, bits 3-7 zero.
PRED_DELTA: Final = 0  # residual = first difference of the values
PRED_DELTA2: Final = 1  # residual = second difference (the change of the first difference)
PRED_CROSS: Final = 2  # residual = first difference minus an earlier channel's, weighted
MODE_UNSIGNED: Final = 0x04  # residuals are non-negative and stored without zigzag
PARAM_ZERO: Final = 0xFF  # partition parameter: every residual of the partition is 0
ESCAPE_Q: Final = 32  # unary quotient that marks an escaped residual (a varint at the end)
MAX_PARTITION: Final = 4096
MAX_WEIGHT: Final = 1 << 31  # |weight| < 2^31 (units of 1/256)
# Residuals per Rice partition: shorter adapts faster to the daily load curve, longer pays fewer
# parameter bytes; on bench.uplink's day of 500 meters 16..32 are within 1 % of each other.
DEFAULT_PARTITION: Final = 24
_ESCAPE_COST_BITS: Final = 80.0  # the encoder's estimate of an escaped residual's varint


def _zigzag(r: np.ndarray) -> np.ndarray:
    return ((r << 1) ^ (r >> 63)).view(np.uint64)


def _unzigzag(u: np.ndarray) -> np.ndarray:
    return ((u >> np.uint64(1)) ^ (np.uint64(0) - (u & np.uint64(1)))).view(np.int64)


def _seg_cumsum(a: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Cumulative sums of the int64 array ``a`` restarting at each block start (wrapping)."""
    with np.errstate(over="ignore"):
        c = np.cumsum(a)
        prior = np.concatenate((np.zeros(1, dtype=np.int64), c[:-1]))[starts]
        out: np.ndarray = c - np.repeat(prior, counts)
    return out


def _rice_plan(u: np.ndarray, part_of: np.ndarray, n_parts: int) -> tuple[np.ndarray, np.ndarray]:
    """Per partition, the Rice parameter that (nearly) minimises its size and that size in bits
    (parameter byte included): the three parameters around log2 of the partition's mean are
    tried. A partition of zeros costs only its parameter byte (:data:`PARAM_ZERO`)."""
    n = np.bincount(part_of, minlength=n_parts).astype(np.float64)
    total = np.bincount(part_of, weights=u.astype(np.float64), minlength=n_parts)
    k0 = np.floor(np.log2(np.maximum(total / np.maximum(n, 1.0), 1.0))).astype(np.int64)
    best_bits = np.full(n_parts, np.inf)
    best_k = np.zeros(n_parts, dtype=np.int64)
    for dk in (-1, 0, 1):
        k = np.clip(k0 + dk, 0, 63)
        q = (u >> k[part_of].astype(np.uint64)).astype(np.float64)
        per_value = np.where(q >= ESCAPE_Q, ESCAPE_Q + _ESCAPE_COST_BITS, q) + 1.0
        bits = np.bincount(part_of, weights=per_value, minlength=n_parts) + n * k
        better = bits < best_bits
        best_bits = np.where(better, bits, best_bits)
        best_k = np.where(better, k, best_k)
    zero = total == 0
    best_k[zero] = PARAM_ZERO
    best_bits[zero] = 0.0
    return best_k, best_bits + 8.0


def _as_coded(r: np.ndarray, unsigned: np.ndarray) -> np.ndarray:
    """Residuals as the unsigned numbers the Rice code carries (zigzag unless unsigned)."""
    return np.where(unsigned, r.view(np.uint64), _zigzag(r))


def _uvarint_len(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)


class _Layout:
    """Where the residuals of each block sit: block b has ``counts[b] - 1`` residuals starting
    at ``roff[b]``, split into partitions of ``part`` residuals numbered from ``pbase[b]``."""

    def __init__(self, counts: np.ndarray, part: int) -> None:
        nb = len(counts)
        self.rcount = counts - 1
        self.roff = np.concatenate((np.zeros(1, dtype=np.int64), np.cumsum(self.rcount)[:-1]))
        self.block_of = np.repeat(np.arange(nb, dtype=np.int64), self.rcount)
        idx_in = np.arange(int(self.rcount.sum()), dtype=np.int64) - self.roff[self.block_of]
        self.parts_per = (self.rcount + part - 1) // part
        self.pbase = np.concatenate((np.zeros(1, dtype=np.int64), np.cumsum(self.parts_per)[:-1]))
        self.n_parts = int(self.parts_per.sum())
        self.part_of = self.pbase[self.block_of] + idx_in // part
        self.part_block = np.repeat(np.arange(nb, dtype=np.int64), self.parts_per)
        self.part_size = np.bincount(self.part_of, minlength=self.n_parts)


def _block_bits(r: np.ndarray, lay: _Layout, nb: int) -> tuple[np.ndarray, np.ndarray]:
    """Rice size (bits) of each block's residuals ``r``, and which blocks are non-negative."""
    neg = np.bincount(lay.block_of, weights=(r < 0).astype(np.float64), minlength=nb) > 0
    _k, bits = _rice_plan(_as_coded(r, ~neg[lay.block_of]), lay.part_of, lay.n_parts)
    return np.bincount(lay.part_block, weights=bits, minlength=nb), ~neg


def _one_block_bits(r: np.ndarray, part: int) -> float:
    unsigned = bool(np.all(r >= 0))
    u = r.view(np.uint64) if unsigned else _zigzag(r)
    part_of = np.arange(len(r), dtype=np.int64) // part
    _k, bits = _rice_plan(u, part_of, int(part_of[-1]) + 1)
    return float(bits.sum())


def _encode_values_v2(
    values: np.ndarray,
    times: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    meter_first: np.ndarray,
    *,
    part: int = DEFAULT_PARTITION,
) -> bytes:
    """The version-2 values section (docs/batch-format.md section 2.4) of blocks laid out back
    to back in ``values``/``times``; ``meter_first[b]`` is the index of the first block of
    block b's meter.

    Per block the encoder tries the first and the second difference as the residual and, when
    an earlier channel of the same meter has the same capture times, the difference minus that
    channel's difference scaled by a least-squares weight (reactive energy follows active
    energy through the load's power factor); it keeps the cheapest by Rice size. The per-value
    work runs in numpy; the Python loop is per block.
    """
    nb = len(starts)
    first = np.zeros(len(values), dtype=bool)
    first[starts] = True
    with np.errstate(over="ignore"):
        d = np.zeros_like(values)
        d[1:] = values[1:] - values[:-1]
        d[first] = 0
        s = np.zeros_like(d)
        s[1:] = d[1:] - d[:-1]
        s[first] = 0
    lay = _Layout(counts, part)
    rpos = np.flatnonzero(~first)
    r1, r2 = d[rpos], s[rpos]
    modes = np.full(nb, PRED_DELTA, dtype=np.int64)
    refs = np.full(nb, -1, dtype=np.int64)
    weights = np.zeros(nb, dtype=np.int64)
    if len(rpos):
        c1, _u1 = _block_bits(r1, lay, nb)
        c2, _u2 = _block_bits(r2, lay, nb)
        use2 = c2 < c1
        modes[use2] = PRED_DELTA2
        resid = np.where(use2[lay.block_of], r2, r1)
        cost = np.where(use2, c2, c1)
    else:
        resid = r1
        cost = np.zeros(nb)
    for b in range(1, nb):
        # a block that is (nearly) free already, or too short to pay for a weight, stays
        if cost[b] < 64 or counts[b] < 4:
            continue
        a, c = int(starts[b]), int(counts[b])
        db = d[a + 1 : a + c]
        best: tuple[float, int, int, np.ndarray] | None = None
        for ref in range(int(meter_first[b]), b):
            ra = int(starts[ref])
            if (
                int(counts[ref]) != c
                or modes[ref] == PRED_CROSS
                or not np.array_equal(times[a : a + c], times[ra : ra + c])
            ):
                continue
            e = d[ra + 1 : ra + c]
            ee = float(np.dot(e.astype(np.float64), e.astype(np.float64)))
            if ee == 0.0:
                continue
            w = round(256.0 * float(np.dot(db.astype(np.float64), e.astype(np.float64))) / ee)
            if w == 0 or abs(w) >= MAX_WEIGHT:
                continue
            with np.errstate(over="ignore"):
                r = db - ((e * np.int64(w) + np.int64(128)) >> np.int64(8))
            bits = _one_block_bits(r, part) + 8 * (
                _uvarint_len(ref - int(meter_first[b])) + _uvarint_len(abs(w) * 2)
            )
            if best is None or bits < best[0]:
                best = (bits, ref, w, r)
        if best is not None and best[0] < cost[b]:
            cost[b], refs[b], weights[b] = best[0], best[1], best[2]
            modes[b] = PRED_CROSS
            o = int(lay.roff[b])
            resid[o : o + c - 1] = best[3]
    # the final coding: signedness per block, one Rice parameter per partition
    neg = np.bincount(lay.block_of, weights=(resid < 0).astype(np.float64), minlength=nb) > 0
    unsigned = ~neg
    u = _as_coded(resid, unsigned[lay.block_of])
    ks, _bits = _rice_plan(u, lay.part_of, lay.n_parts)
    out = bytearray()
    _put_uvarint(out, part)
    firsts = values[starts]
    for b in range(nb):
        mode = int(modes[b]) | (MODE_UNSIGNED if unsigned[b] else 0)
        out.append(mode)
        if mode & 3 == PRED_CROSS:
            _put_uvarint(out, int(refs[b] - meter_first[b]))
            w = int(weights[b])
            _put_uvarint(out, (w << 1) ^ (w >> 63))
        f = int(firsts[b])
        _put_uvarint(out, ((f << 1) ^ (f >> 63)) & (_UINT64 - 1))
    out += ks.astype(np.uint8).tobytes()
    coded = ks[lay.part_of] != PARAM_ZERO
    uc = u[coded]
    kc = ks[lay.part_of][coded].astype(np.uint64)
    q = uc >> kc
    esc = q >= ESCAPE_Q
    q = np.where(esc, np.uint64(ESCAPE_Q), q).astype(np.int64)
    # unary stream: q one-bits then a zero-bit per residual, MSB first, zero padding
    ends = np.cumsum(q + 1)
    ubits = np.ones(int(ends[-1]) if len(ends) else 0, dtype=np.uint8)
    ubits[ends - 1] = 0
    unary = np.packbits(ubits).tobytes()
    # remainder stream: the low k bits of each residual, MSB first (zeros for an escape)
    rem = np.where(esc, np.uint64(0), uc & ((np.uint64(1) << kc) - np.uint64(1)))
    widths = kc.astype(np.int64)
    offs = np.cumsum(widths) - widths
    rbits = np.zeros(int(widths.sum()), dtype=np.uint8)
    for k in np.unique(widths).tolist():
        if k == 0:
            continue
        sel = widths == k
        shifts = np.arange(k - 1, -1, -1, dtype=np.uint64)
        pos = offs[sel][:, None] + np.arange(k, dtype=np.int64)
        rbits[pos] = ((rem[sel][:, None] >> shifts) & np.uint64(1)).astype(np.uint8)
    remainder = np.packbits(rbits).tobytes()
    _put_uvarint(out, len(unary))
    out += unary
    _put_uvarint(out, len(remainder))
    out += remainder
    for x in uc[esc].tolist():
        _put_uvarint(out, int(x))
    return bytes(out)


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


def encode_batch(batch: Batch, *, level: int = DEFAULT_LEVEL, version: int | None = None) -> bytes:
    """Encode ``batch`` (docs/batch-format.md) in format ``version`` (1 or 2), by default in
    whichever of them is smaller (version 2 but for batches of single read rounds).

    ``level`` is the zstd level; ``level=0`` stores the body uncompressed (flag bit 0 clear).
    ``version=1`` serves consumers that have not deployed a version-2 decoder yet.
    Raises :class:`BatchFormatError` for a batch the format cannot carry (bad ids, a reading of
    another class, duplicate keys, values outside int64, non-canonical OBIS strings).
    """
    if version is not None and version not in VERSIONS:
        raise BatchFormatError(f"unknown batch format version {version}")
    thing = _check_header(batch)
    return _frame(
        batch.batch_id,
        thing,
        data_class=DataClass(batch.data_class),
        created=batch.created,
        bodies=_encode_body(batch.readings, DataClass(batch.data_class), version),
        level=level,
    )


def _frame(
    batch_id: bytes,
    thing: bytes,
    *,
    data_class: DataClass,
    created: int,
    bodies: dict[int, bytes],
    level: int,
) -> bytes:
    """The message for the smallest of the candidate ``bodies`` (version -> body)."""
    best: bytes | None = None
    for version, raw in sorted(bodies.items(), reverse=True):
        if len(raw) > MAX_BODY_BYTES:
            raise BatchFormatError(
                f"body of {len(raw)} bytes exceeds {MAX_BODY_BYTES}; split the readings"
            )
        body = raw
        flags = 0
        if level > 0:
            body = zstandard.ZstdCompressor(
                level=level, write_content_size=True, write_checksum=False
            ).compress(raw)
            flags |= FLAG_ZSTD
        head = bytearray(MAGIC)
        head.append(version)
        head.append(flags)
        head += batch_id
        head.append(int(data_class))
        head += created.to_bytes(8, "big")
        head.append(len(thing))
        head += thing
        _put_uvarint(head, len(raw))
        if best is None or len(head) + len(body) < len(best):
            best = bytes(head) + body
    assert best is not None  # _encode_spans returns at least one body
    return best


def encode_prefix(
    cols: Columns,
    *,
    thing: str,
    data_class: DataClass,
    created: int,
    max_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    level: int = DEFAULT_LEVEL,
    batch_id: bytes | None = None,
    version: int | None = None,
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
        payload = _frame(
            bid,
            head,
            data_class=DataClass(data_class),
            created=created,
            bodies=_encode_columns(part, version),
            level=level,
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
    if payload[4] not in VERSIONS:
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
    if version not in VERSIONS:
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
    readings = _decode_body(body, data_class, max_readings, version)
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


def _decode_body(
    body: bytes, data_class: DataClass, max_readings: int, version: int
) -> list[Reading]:
    rd = _Reader(body)
    uvarint = rd.uvarint
    # Directory: meters and their channel blocks (everything but the values).
    blocks: list[tuple[str, str, int, int, list[int], list[int]]] = []
    meter_first: list[int] = []
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
        meter_first.extend([len(blocks)] * n_blocks)
        times_by_obis: dict[str, set[int] | list[int]] = {}
        for _ in range(n_blocks):
            obis = obis_from_bytes(rd.take(6))
            scaler = rd.byte()
            if scaler > 127:
                scaler -= 256
            unit = rd.byte()
            count = uvarint()
            total += count
            # version 1: every value needs at least one head byte, so a count can never exceed
            # the body; version 2 codes a run of zeros in nothing but a parameter byte per
            # partition, so only the reading limit bounds it
            if count == 0 or (version == 1 and total > rd.end - rd.pos):
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
    if version == 1:
        # `total` head bytes, then the tails stream, which must be consumed exactly.
        diffs = _read_values(body, rd.pos, rd.pos + total, total)
        values = _sum_blocks(diffs, [len(b[4]) for b in blocks])
    else:
        values = _read_values_v2(
            body, rd.pos, [len(b[4]) for b in blocks], meter_first, [b[4] for b in blocks]
        )
    readings: list[Reading] = []
    vi = 0
    for meter, obis, scaler, unit, times, statuses in blocks:
        for t, s in zip(times, statuses, strict=True):
            readings.append(Reading(meter, obis, t, values[vi], scaler, unit, s, data_class))
            vi += 1
    return readings


def _sum_blocks(diffs: list[int], counts: list[int]) -> list[int]:
    """Version 1: each block's values from its first value and differences (wrapping int64)."""
    out = [0] * len(diffs)
    i = 0
    for c in counts:
        v = 0
        for _ in range(c):
            v += diffs[i]
            if not _INT64_MIN <= v <= _INT64_MAX:
                v = _wrap64(v)
            out[i] = v
            i += 1
    return out


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


def _read_values_v2(
    body: bytes, pos: int, counts: list[int], meter_first: list[int], times: list[list[int]]
) -> list[int]:
    """The values of every block from a version-2 values section starting at ``pos``
    (docs/batch-format.md section 2.4); the section must end exactly at the end of ``body``."""
    rd = _Reader(body, pos)
    nb = len(counts)
    part = rd.uvarint()
    if not 1 <= part <= MAX_PARTITION:
        raise BatchFormatError(f"partition size {part} outside 1..{MAX_PARTITION}")
    modes = [0] * nb
    refs = [-1] * nb
    weights = [0] * nb
    firsts = [0] * nb
    for b in range(nb):
        mode = rd.byte()
        if mode & ~(3 | MODE_UNSIGNED) or mode & 3 == 3:
            raise BatchFormatError(f"unknown block mode 0x{mode:02x}")
        if mode & 3 == PRED_CROSS:
            ref = meter_first[b] + rd.uvarint()
            if ref >= b:
                raise BatchFormatError("cross-channel reference is not an earlier block")
            if modes[ref] & 3 == PRED_CROSS or times[ref] != times[b]:
                raise BatchFormatError(
                    "cross-channel reference has other times or is itself crossed"
                )
            zw = rd.uvarint()
            w = (zw >> 1) ^ -(zw & 1)
            if abs(w) >= MAX_WEIGHT:
                raise BatchFormatError("cross-channel weight out of range")
            refs[b], weights[b] = ref, w
        modes[b] = mode
        z = rd.uvarint()
        firsts[b] = _wrap64((z >> 1) ^ -(z & 1))
    counts_a = np.asarray(counts, dtype=np.int64)
    lay = _Layout(counts_a, part)
    ks = np.frombuffer(rd.take(lay.n_parts), dtype=np.uint8).astype(np.int64)
    if bool(np.any((ks > 63) & (ks != PARAM_ZERO))):
        raise BatchFormatError("Rice parameter above 63")
    coded_part = ks != PARAM_ZERO
    m = int(lay.part_size[coded_part].sum())
    unary_len = rd.uvarint()
    if unary_len > (33 * m + 7) // 8:  # at most 33 bits per residual: bounded before expanding
        raise BatchFormatError("unary stream longer than its residuals need")
    unary = np.unpackbits(np.frombuffer(rd.take(unary_len), dtype=np.uint8))
    zeros = np.flatnonzero(unary == 0)
    if len(zeros) < m:
        raise BatchFormatError("truncated unary stream")
    last = int(zeros[m - 1]) if m else -1
    tail = len(unary) - last - 1
    if tail >= 8 or (m and bool(unary[last + 1 :].any())):
        raise BatchFormatError("unary stream has bits after its last residual")
    if not m and len(unary):
        raise BatchFormatError("unary stream present without coded residuals")
    q = np.diff(zeros[:m], prepend=-1) - 1
    if bool(np.any(q > ESCAPE_Q)):
        raise BatchFormatError("unary quotient above the escape")
    coded = coded_part[lay.part_of]
    k = ks[lay.part_of][coded]
    widths = k
    total_bits = int(widths.sum())
    rem_bytes = rd.take(rd.uvarint())
    if len(rem_bytes) != (total_bits + 7) // 8:
        raise BatchFormatError("remainder stream of the wrong length")
    rbits = np.unpackbits(np.frombuffer(rem_bytes, dtype=np.uint8))
    if bool(rbits[total_bits:].any()):
        raise BatchFormatError("remainder stream padding is not zero")
    offs = np.cumsum(widths) - widths
    rem = np.zeros(m, dtype=np.uint64)
    for kk in np.unique(widths).tolist():
        if kk == 0:
            continue
        sel = widths == kk
        bits = rbits[offs[sel][:, None] + np.arange(kk, dtype=np.int64)].astype(np.uint64)
        rem[sel] = (bits << np.arange(kk - 1, -1, -1, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)
    esc = q == ESCAPE_Q
    big = (k >= 33) & ~esc
    if bool(np.any((q[big].astype(np.uint64) >> (64 - k[big]).astype(np.uint64)) != 0)):
        raise BatchFormatError("residual exceeds 64 bits")
    u = (q.astype(np.uint64) << k.astype(np.uint64)) | rem
    if bool(esc.any()):
        if bool(np.any(rem[esc] != 0)):
            raise BatchFormatError("escaped residual with remainder bits")
        ek = k[esc].tolist()
        escaped = []
        for kk in ek:
            x = rd.uvarint()
            if x >> kk < ESCAPE_Q:
                raise BatchFormatError("escaped residual small enough for the unary code")
            escaped.append(x)
        u[esc] = np.array(escaped, dtype=np.uint64)
    if rd.pos != rd.end:
        raise BatchFormatError(f"{rd.end - rd.pos} bytes left after the values")
    n_res = len(lay.block_of)
    uall = np.zeros(n_res, dtype=np.uint64)
    uall[coded] = u
    mode_a = np.asarray(modes, dtype=np.int64)
    unsigned = (mode_a & MODE_UNSIGNED) != 0
    r = np.where(unsigned[lay.block_of], uall.view(np.int64), _unzigzag(uall))
    # first differences of every block; a block's first position holds its first value
    starts = np.concatenate((np.zeros(1, dtype=np.int64), np.cumsum(counts_a)[:-1]))
    n = int(counts_a.sum())
    first = np.zeros(n, dtype=bool)
    first[starts] = True
    rpos = np.flatnonzero(~first)
    d = np.zeros(n, dtype=np.int64)
    d[rpos] = r
    pred = mode_a & 3
    if bool(np.any(pred == PRED_DELTA2)):
        d2 = _seg_cumsum(d, starts, counts_a)
        sel = np.repeat(pred == PRED_DELTA2, counts_a)
        d[sel] = d2[sel]
    with np.errstate(over="ignore"):
        for b in np.flatnonzero(pred == PRED_CROSS).tolist():
            a, c, ra = int(starts[b]), counts[b], int(starts[refs[b]])
            e = d[ra + 1 : ra + c]
            d[a + 1 : a + c] += (e * np.int64(weights[b]) + np.int64(128)) >> np.int64(8)
    d[starts] = np.asarray(firsts, dtype=np.int64)
    values: list[int] = _seg_cumsum(d, starts, counts_a).tolist()
    return values


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
    version: int | None = None,
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
        version=version,
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
    version: int | None,
    out: list[tuple[Batch, bytes]],
) -> None:
    batch = Batch(new_batch_id(), thing, data_class, created, tuple(rs))
    payload = encode_batch(batch, level=level, version=version)
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
            rs[a:b],
            thing,
            data_class,
            max_bytes=max_bytes,
            created=created,
            level=level,
            version=version,
            out=out,
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
