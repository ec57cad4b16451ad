"""A-XDR encoding of COSEM data (IEC 62056-6-2 ``Data`` CHOICE), sans-I/O.

Every value is a :class:`Data`: a frozen (type, value) pair. The Python type of ``value``
depends on the DLMS type:

=====================================  ===========================================
DLMS type (tag)                        ``Data.value``
=====================================  ===========================================
null-data (0), dont-care (255)         ``None``
array (1), structure (2)               ``tuple[Data, ...]``
boolean (3)                            ``bool``
bit-string (4)                         ``str`` of ``"0"``/``"1"`` (first bit first)
integer types (5, 6, 15-18, 20-22)     ``int`` (range-checked on encode)
octet-string (9), date-time (25),      ``bytes`` (date-time 12, date 5, time 4 bytes;
date (26), time (27)                   :mod:`edge_core.dlms.cosem` interprets them)
visible-string (10), utf8-string (12)  ``str`` (visible-string as Latin-1, tolerant)
bcd (13)                               ``int`` (one byte, signed, as sent)
float32 (23), float64 (24)             ``float``
=====================================  ===========================================

compact-array (19) is not implemented: it raises :class:`DecodeError` / :class:`EncodeError`.

Lengths use the BER short form below 128 and the long form (0x81..0x84 + big-endian) above.
Decoding is bounded: nesting deeper than :data:`MAX_DEPTH` and element counts or lengths larger
than the bytes left raise :class:`DecodeError`; nothing else escapes the decoder.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from edge_core.errors import DecodeError, EncodeError

__all__ = [
    "MAX_DEPTH",
    "Data",
    "DataType",
    "decode_data",
    "decode_data_at",
    "decode_length",
    "encode_data",
    "encode_length",
]

MAX_DEPTH = 16
"""Deepest array/structure nesting accepted by the decoder (profiles need 3)."""


class DataType(enum.IntEnum):
    """Tags of the ``Data`` CHOICE."""

    NULL_DATA = 0
    ARRAY = 1
    STRUCTURE = 2
    BOOLEAN = 3
    BIT_STRING = 4
    DOUBLE_LONG = 5
    DOUBLE_LONG_UNSIGNED = 6
    OCTET_STRING = 9
    VISIBLE_STRING = 10
    UTF8_STRING = 12
    BCD = 13
    INTEGER = 15
    LONG = 16
    UNSIGNED = 17
    LONG_UNSIGNED = 18
    COMPACT_ARRAY = 19
    LONG64 = 20
    LONG64_UNSIGNED = 21
    ENUM = 22
    FLOAT32 = 23
    FLOAT64 = 24
    DATE_TIME = 25
    DATE = 26
    TIME = 27
    DONT_CARE = 255


# Fixed-size integer types: tag -> (struct format, size in bytes, min, max).
_INT_FORMATS: dict[int, tuple[str, int, int, int]] = {
    DataType.DOUBLE_LONG: (">i", 4, -(2**31), 2**31 - 1),
    DataType.DOUBLE_LONG_UNSIGNED: (">I", 4, 0, 2**32 - 1),
    DataType.BCD: (">b", 1, -128, 127),
    DataType.INTEGER: (">b", 1, -128, 127),
    DataType.LONG: (">h", 2, -(2**15), 2**15 - 1),
    DataType.UNSIGNED: (">B", 1, 0, 255),
    DataType.LONG_UNSIGNED: (">H", 2, 0, 2**16 - 1),
    DataType.LONG64: (">q", 8, -(2**63), 2**63 - 1),
    DataType.LONG64_UNSIGNED: (">Q", 8, 0, 2**64 - 1),
    DataType.ENUM: (">B", 1, 0, 255),
}
_INT_STRUCTS = {tag: struct.Struct(fmt) for tag, (fmt, _, _, _) in _INT_FORMATS.items()}
_FIXED_OCTETS = {DataType.DATE_TIME: 12, DataType.DATE: 5, DataType.TIME: 4}
_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")
# tag byte -> DataType member (None: unknown or unsupported); a list index is faster than
# the enum constructor on the decoder's hot path.
_TYPE_OF: list[DataType | None] = [None] * 256
for _t in DataType:
    if _t != DataType.COMPACT_ARRAY:
        _TYPE_OF[_t] = _t
_INT_BY_TAG: list[struct.Struct | None] = [None] * 256
for _tag, _st in _INT_STRUCTS.items():
    _INT_BY_TAG[_tag] = _st
_new = object.__new__
_set = object.__setattr__


def _make(t: DataType, value: Any) -> Data:
    """Data without the frozen-dataclass __init__ (same result, less overhead)."""
    d = _new(Data)
    _set(d, "type", t)
    _set(d, "value", value)
    return d


@dataclass(frozen=True, slots=True)
class Data:
    """One COSEM data value: its DLMS type and its Python value (see the module table)."""

    type: DataType
    value: Any = None

    # Alternative constructors, named after the DLMS types.
    @classmethod
    def null(cls) -> Data:
        return _NULL

    @classmethod
    def array(cls, items: Iterable[Data]) -> Data:
        return cls(DataType.ARRAY, tuple(items))

    @classmethod
    def structure(cls, items: Iterable[Data]) -> Data:
        return cls(DataType.STRUCTURE, tuple(items))

    @classmethod
    def boolean(cls, value: bool) -> Data:
        return cls(DataType.BOOLEAN, bool(value))

    @classmethod
    def octet_string(cls, value: bytes) -> Data:
        return cls(DataType.OCTET_STRING, bytes(value))

    @classmethod
    def visible_string(cls, value: str) -> Data:
        return cls(DataType.VISIBLE_STRING, value)

    @classmethod
    def integer(cls, value: int) -> Data:
        return cls(DataType.INTEGER, value)

    @classmethod
    def long(cls, value: int) -> Data:
        return cls(DataType.LONG, value)

    @classmethod
    def unsigned(cls, value: int) -> Data:
        return cls(DataType.UNSIGNED, value)

    @classmethod
    def long_unsigned(cls, value: int) -> Data:
        return cls(DataType.LONG_UNSIGNED, value)

    @classmethod
    def double_long(cls, value: int) -> Data:
        return cls(DataType.DOUBLE_LONG, value)

    @classmethod
    def double_long_unsigned(cls, value: int) -> Data:
        return cls(DataType.DOUBLE_LONG_UNSIGNED, value)

    @classmethod
    def long64(cls, value: int) -> Data:
        return cls(DataType.LONG64, value)

    @classmethod
    def long64_unsigned(cls, value: int) -> Data:
        return cls(DataType.LONG64_UNSIGNED, value)

    @classmethod
    def enum(cls, value: int) -> Data:
        return cls(DataType.ENUM, value)

    @property
    def is_null(self) -> bool:
        return self.type == DataType.NULL_DATA

    def to_python(self) -> Any:
        """The value with nested Data unwrapped (lists for arrays/structures)."""
        if self.type in (DataType.ARRAY, DataType.STRUCTURE):
            return [d.to_python() for d in self.value]
        return self.value


_NULL = Data(DataType.NULL_DATA, None)


# ---------------------------------------------------------------------------- lengths


def encode_length(n: int) -> bytes:
    """BER length: one byte below 128, else 0x80|count followed by ``count`` bytes."""
    if n < 0:
        raise EncodeError(f"negative length {n}")
    if n < 0x80:
        return bytes((n,))
    size = (n.bit_length() + 7) // 8
    if size > 4:
        raise EncodeError(f"length {n} too large")
    return bytes((0x80 | size,)) + n.to_bytes(size, "big")


def decode_length(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a BER length at ``pos``; returns (length, position after it)."""
    if pos >= len(buf):
        raise DecodeError("truncated length", data=buf)
    first = buf[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    size = first & 0x7F
    if size == 0 or size > 4:
        raise DecodeError(f"bad length form 0x{first:02x}", data=buf)
    if pos + size > len(buf):
        raise DecodeError("truncated length", data=buf)
    return int.from_bytes(buf[pos : pos + size], "big"), pos + size


# ---------------------------------------------------------------------------- encode


def encode_data(data: Data) -> bytes:
    """Encode one value with its type tag."""
    out = bytearray()
    _encode_into(data, out, 0)
    return bytes(out)


def _encode_into(data: Data, out: bytearray, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise EncodeError("data nested too deep")
    t = data.type
    v = data.value
    out.append(int(t))
    if t in (DataType.NULL_DATA, DataType.DONT_CARE):
        return
    if t in (DataType.ARRAY, DataType.STRUCTURE):
        if not isinstance(v, tuple):
            raise EncodeError(f"{t.name} needs a tuple of Data")
        out += encode_length(len(v))
        for item in v:
            if not isinstance(item, Data):
                raise EncodeError(f"{t.name} element is not Data: {item!r}")
            _encode_into(item, out, depth + 1)
        return
    fmt = _INT_FORMATS.get(t)
    if fmt is not None:
        if not isinstance(v, int) or isinstance(v, bool):
            raise EncodeError(f"{t.name} needs an int, got {v!r}")
        _, _, lo, hi = fmt
        if not lo <= v <= hi:
            raise EncodeError(f"{v} out of range for {t.name} [{lo}, {hi}]")
        out += _INT_STRUCTS[t].pack(v)
        return
    if t == DataType.BOOLEAN:
        if not isinstance(v, bool):
            raise EncodeError(f"boolean needs a bool, got {v!r}")
        out.append(0x01 if v else 0x00)  # any non-zero decodes as TRUE
        return
    if t == DataType.BIT_STRING:
        if not isinstance(v, str) or v.strip("01"):
            raise EncodeError(f"bit-string needs a str of 0/1, got {v!r}")
        out += encode_length(len(v))
        padded = v + "0" * (-len(v) % 8)
        out += int(padded, 2).to_bytes(len(padded) // 8, "big") if padded else b""
        return
    if t == DataType.OCTET_STRING:
        if not isinstance(v, bytes | bytearray):
            raise EncodeError(f"octet-string needs bytes, got {v!r}")
        out += encode_length(len(v))
        out += v
        return
    if t in _FIXED_OCTETS:
        if not isinstance(v, bytes) or len(v) != _FIXED_OCTETS[t]:
            raise EncodeError(f"{t.name} needs {_FIXED_OCTETS[t]} bytes, got {v!r}")
        out += v
        return
    if t == DataType.VISIBLE_STRING:
        if not isinstance(v, str):
            raise EncodeError(f"visible-string needs a str, got {v!r}")
        try:
            raw = v.encode("latin-1")
        except UnicodeEncodeError as exc:
            raise EncodeError(f"visible-string not 8-bit: {v!r}") from exc
        out += encode_length(len(raw))
        out += raw
        return
    if t == DataType.UTF8_STRING:
        if not isinstance(v, str):
            raise EncodeError(f"utf8-string needs a str, got {v!r}")
        try:
            raw = v.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise EncodeError(f"utf8-string not encodable: {v!r}") from exc
        out += encode_length(len(raw))
        out += raw
        return
    if t == DataType.FLOAT32:
        try:
            out += _F32.pack(v)
        except (struct.error, OverflowError) as exc:
            raise EncodeError(f"float32 cannot hold {v!r}") from exc
        return
    if t == DataType.FLOAT64:
        try:
            out += _F64.pack(v)
        except struct.error as exc:
            raise EncodeError(f"float64 cannot hold {v!r}") from exc
        return
    raise EncodeError(f"cannot encode DLMS type {t!r}")


# ---------------------------------------------------------------------------- decode


def decode_data(buf: bytes) -> Data:
    """Decode exactly one value filling ``buf``; trailing bytes raise :class:`DecodeError`."""
    data, pos = decode_data_at(buf, 0)
    if pos != len(buf):
        raise DecodeError(f"{len(buf) - pos} trailing bytes after data", data=buf)
    return data


def decode_data_at(buf: bytes, pos: int) -> tuple[Data, int]:
    """Decode one value starting at ``pos``; returns (value, position after it)."""
    return _decode(buf if type(buf) is bytes else bytes(buf), pos, 0)


def _decode(buf: bytes, pos: int, depth: int) -> tuple[Data, int]:
    n = len(buf)
    if pos >= n:
        raise DecodeError("truncated data: missing type tag", data=buf)
    tag = buf[pos]
    pos += 1
    t = _TYPE_OF[tag]
    if t is None:
        raise DecodeError(f"unknown or unsupported data type tag {tag}", data=buf)
    st = _INT_BY_TAG[tag]
    if st is not None:
        end = pos + st.size
        if end > n:
            raise DecodeError(f"truncated {t.name}", data=buf)
        return _make(t, st.unpack_from(buf, pos)[0]), end
    if t == DataType.NULL_DATA:
        return _NULL, pos
    if t == DataType.DONT_CARE:
        return Data(t), pos
    if t in (DataType.ARRAY, DataType.STRUCTURE):
        if depth >= MAX_DEPTH:
            raise DecodeError("data nested too deep", data=buf)
        count, pos = decode_length(buf, pos)
        if count > n - pos:  # every element takes at least one byte
            raise DecodeError(f"{t.name} of {count} elements in {n - pos} bytes", data=buf)
        if t == DataType.ARRAY and count > 1 and depth + 1 < MAX_DEPTH and buf[pos] == 2:
            table = _decode_table(buf, pos, count)
            if table is not None:
                return table
        items = []
        for _ in range(count):
            item, pos = _decode(buf, pos, depth + 1)
            items.append(item)
        return _make(t, tuple(items)), pos
    if t == DataType.BOOLEAN:
        if pos >= n:
            raise DecodeError("truncated boolean", data=buf)
        return Data(t, buf[pos] != 0), pos + 1
    if t in _FIXED_OCTETS:
        end = pos + _FIXED_OCTETS[t]
        if end > n:
            raise DecodeError(f"truncated {t.name}", data=buf)
        return Data(t, buf[pos:end]), end
    if t == DataType.FLOAT32:
        if pos + 4 > n:
            raise DecodeError("truncated float32", data=buf)
        return Data(t, _F32.unpack_from(buf, pos)[0]), pos + 4
    if t == DataType.FLOAT64:
        if pos + 8 > n:
            raise DecodeError("truncated float64", data=buf)
        return Data(t, _F64.unpack_from(buf, pos)[0]), pos + 8
    length, pos = decode_length(buf, pos)
    if t == DataType.BIT_STRING:
        nbytes = (length + 7) // 8
        end = pos + nbytes
        if end > n:
            raise DecodeError("truncated bit-string", data=buf)
        bits = "".join(format(b, "08b") for b in buf[pos:end])[:length]
        return Data(t, bits), end
    end = pos + length
    if end > n:
        raise DecodeError(f"truncated {t.name}: {length} bytes announced", data=buf)
    raw = buf[pos:end]
    if t == DataType.OCTET_STRING:
        return _make(t, raw), end
    try:
        text = raw.decode("latin-1" if t == DataType.VISIBLE_STRING else "utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"invalid {t.name}", data=buf) from exc
    return Data(t, text), end


# ---------------------------------------------------------------------------- table fast path
#
# Profile buffers are arrays of structures whose cells are fixed-size scalars (date-time as a
# 12-byte octet-string, status, 32-bit registers) laid out the same way in every row. For
# those, one precompiled Struct unpacks a whole row, tag and length bytes included; the row is
# accepted only if every tag and length byte equals the template's, so the result is exactly
# what the generic decoder gives (tests/dlms/test_axdr.py checks this property). Any row that
# fits no template (a variable-length cell, a nested structure, a truncated buffer) makes the
# fast path give up, and the generic decoder decodes the array from its start.

_MAX_TEMPLATES = 4
_STRUCT_FORMATS: dict[int, str] = {
    DataType.DOUBLE_LONG: "i",
    DataType.DOUBLE_LONG_UNSIGNED: "I",
    DataType.BCD: "b",
    DataType.INTEGER: "b",
    DataType.LONG: "h",
    DataType.UNSIGNED: "B",
    DataType.LONG_UNSIGNED: "H",
    DataType.LONG64: "q",
    DataType.LONG64_UNSIGNED: "Q",
    DataType.ENUM: "B",
    DataType.FLOAT32: "f",
    DataType.FLOAT64: "d",
}
_set_type = Data.__dict__["type"].__set__
_set_value = Data.__dict__["value"].__set__


@dataclass(frozen=True, slots=True)
class _RowTemplate:
    size: int  # bytes per row
    row: struct.Struct  # unpacks tag/length bytes and values alike
    tags: Any  # itemgetter of the tag/length fields of an unpacked row
    expected: tuple[int, ...]  # what ``tags`` must return
    values: Any  # itemgetter of the value fields
    plan: tuple[DataType | None, ...]  # cell types; None = null-data (no value field)


def _row_template(buf: bytes, pos: int) -> _RowTemplate | None:
    """The template of the row at ``pos``, or None if it is not a structure of at most 127
    fixed-size scalars."""
    n = len(buf)
    if pos + 2 > n or buf[pos] != DataType.STRUCTURE or not 0 < buf[pos + 1] < 0x80:
        return None
    fmt = [">BB"]
    tag_idx = [0, 1]
    val_idx: list[int] = []
    plan: list[DataType | None] = []
    field_no = 2
    q = pos + 2
    for _ in range(buf[pos + 1]):
        if q >= n:
            return None
        tag = buf[q]
        q += 1
        fmt.append("B")
        tag_idx.append(field_no)
        field_no += 1
        if tag == DataType.NULL_DATA:
            plan.append(None)
            continue
        code = _STRUCT_FORMATS.get(tag)
        if code is not None:
            size = struct.calcsize(">" + code)
        elif tag in _FIXED_OCTETS:
            size = _FIXED_OCTETS[DataType(tag)]
            code = f"{size}s"
        elif tag == DataType.OCTET_STRING and q < n and buf[q] < 0x80:
            size = buf[q]
            q += 1
            fmt.append("B")
            tag_idx.append(field_no)
            field_no += 1
            code = f"{size}s"
        else:
            return None
        fmt.append(code)
        val_idx.append(field_no)
        field_no += 1
        plan.append(DataType(tag))
        q += size
    if q > n or len(val_idx) < 2:
        return None
    row = struct.Struct("".join(fmt))
    expected = tuple(row.unpack_from(buf, pos)[i] for i in tag_idx)
    return _RowTemplate(
        row.size, row, itemgetter(*tag_idx), expected, itemgetter(*val_idx), tuple(plan)
    )


def _decode_table(buf: bytes, pos: int, count: int) -> tuple[Data, int] | None:
    """An array of ``count`` uniform rows at ``pos`` (see above), or None."""
    n = len(buf)
    templates: list[_RowTemplate] = []
    tpl: _RowTemplate | None = None
    new, set_type, set_value = _new, _set_type, _set_value
    structure, null = DataType.STRUCTURE, _NULL
    rows = []
    for _ in range(count):
        if (
            tpl is None
            or pos + tpl.size > n
            or tpl.tags(tpl.row.unpack_from(buf, pos)) != tpl.expected
        ):
            tpl = _find_template(templates, buf, pos)
            if tpl is None:
                return None
        values = tpl.values(tpl.row.unpack_from(buf, pos))
        cells = []
        if None in tpl.plan:
            it = iter(values)
            for ct in tpl.plan:
                if ct is None:
                    cells.append(null)
                    continue
                d = new(Data)
                set_type(d, ct)
                set_value(d, next(it))
                cells.append(d)
        else:
            for ct, v in zip(tpl.plan, values, strict=True):
                d = new(Data)
                set_type(d, ct)
                set_value(d, v)
                cells.append(d)
        r = new(Data)
        set_type(r, structure)
        set_value(r, tuple(cells))
        rows.append(r)
        pos += tpl.size
    return _make(DataType.ARRAY, tuple(rows)), pos


def _find_template(templates: list[_RowTemplate], buf: bytes, pos: int) -> _RowTemplate | None:
    n = len(buf)
    for known in templates:
        if pos + known.size <= n and known.tags(known.row.unpack_from(buf, pos)) == known.expected:
            return known
    if len(templates) >= _MAX_TEMPLATES:
        return None
    tpl = _row_template(buf, pos)
    if tpl is not None:
        templates.append(tpl)
    return tpl
