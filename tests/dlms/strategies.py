"""Shared hypothesis strategies for the DLMS tests."""

from __future__ import annotations

import math
import struct

from hypothesis import strategies as st

from edge_core.dlms.axdr import Data, DataType
from edge_core.dlms.cosem import CosemDateTime
from edge_core.dlms.obis import Obis

T = DataType

_INT_RANGES = {
    T.DOUBLE_LONG: (-(2**31), 2**31 - 1),
    T.DOUBLE_LONG_UNSIGNED: (0, 2**32 - 1),
    T.BCD: (-128, 127),
    T.INTEGER: (-128, 127),
    T.LONG: (-(2**15), 2**15 - 1),
    T.UNSIGNED: (0, 255),
    T.LONG_UNSIGNED: (0, 2**16 - 1),
    T.LONG64: (-(2**63), 2**63 - 1),
    T.LONG64_UNSIGNED: (0, 2**64 - 1),
    T.ENUM: (0, 255),
}


def _f32(x: float) -> float:
    return float(struct.unpack(">f", struct.pack(">f", x))[0])


def scalar_data() -> st.SearchStrategy[Data]:
    ints = [
        st.integers(lo, hi).map(lambda v, t=t: Data(t, v)) for t, (lo, hi) in _INT_RANGES.items()
    ]
    return st.one_of(
        st.just(Data.null()),
        st.just(Data(T.DONT_CARE)),
        st.booleans().map(Data.boolean),
        st.text("01", max_size=40).map(lambda s: Data(T.BIT_STRING, s)),
        st.binary(max_size=300).map(Data.octet_string),
        st.text(st.characters(max_codepoint=255), max_size=30).map(Data.visible_string),
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=20).map(
            lambda s: Data(T.UTF8_STRING, s)
        ),
        st.floats(width=32, allow_nan=False).map(lambda f: Data(T.FLOAT32, _f32(f))),
        st.floats(allow_nan=False).map(lambda f: Data(T.FLOAT64, f)),
        st.binary(min_size=12, max_size=12).map(lambda b: Data(T.DATE_TIME, b)),
        st.binary(min_size=5, max_size=5).map(lambda b: Data(T.DATE, b)),
        st.binary(min_size=4, max_size=4).map(lambda b: Data(T.TIME, b)),
        *ints,
    )


def data() -> st.SearchStrategy[Data]:
    return st.recursive(
        scalar_data(),
        lambda children: st.one_of(
            st.lists(children, max_size=6).map(Data.array),
            st.lists(children, max_size=6).map(Data.structure),
        ),
        max_leaves=25,
    )


def obis() -> st.SearchStrategy[Obis]:
    b = st.integers(0, 255)
    return st.builds(Obis, b, b, b, b, b, b)


def opt(s: st.SearchStrategy[int]) -> st.SearchStrategy[int | None]:
    return st.one_of(st.none(), s)


def cosem_datetimes() -> st.SearchStrategy[CosemDateTime]:
    return st.builds(
        CosemDateTime,
        year=opt(st.integers(0, 0xFFFE)),
        month=opt(st.integers(1, 12)),
        day=opt(st.integers(1, 31)),
        hour=opt(st.integers(0, 23)),
        minute=opt(st.integers(0, 59)),
        second=opt(st.integers(0, 59)),
        hundredths=opt(st.integers(0, 99)),
        day_of_week=opt(st.integers(1, 7)),
        deviation=opt(st.integers(-720, 720)),
        clock_status=opt(st.integers(0, 254)),
    )


def float_equal(a: Data, b: Data) -> bool:
    """Structural equality treating -0.0 and 0.0 as distinct (the wire does)."""
    if a.type != b.type:
        return False
    if a.type in (T.ARRAY, T.STRUCTURE):
        return len(a.value) == len(b.value) and all(map(float_equal, a.value, b.value))
    if isinstance(a.value, float):
        return math.copysign(1, a.value) == math.copysign(1, b.value) and a.value == b.value
    return a == b
