"""The A-XDR table fast path (arrays of uniform structures of fixed-size scalars) gives
exactly what the generic decoder gives, for profile-like buffers, for irregular ones and for
damaged bytes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_core.dlms import axdr
from edge_core.dlms.axdr import Data, DataType, decode_data, encode_data
from edge_core.errors import DecodeError

from .strategies import _INT_RANGES, data, float_equal, scalar_data

T = DataType


def _generic(buf: bytes, monkeypatch: pytest.MonkeyPatch) -> Data:
    with monkeypatch.context() as m:
        m.setattr(axdr, "_decode_table", lambda *_: None)
        return decode_data(buf)


def _outcome(fn: Callable[[], Data]) -> Any:
    try:
        return fn()
    except DecodeError:
        return "DecodeError"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Data) and isinstance(b, Data):
        return float_equal(a, b)
    return bool(a == b)


def _cell_kinds() -> st.SearchStrategy[Callable[[st.DataObject], Data]]:
    """A column: draws a value of one fixed type for each row."""
    ints = [
        (lambda d, t=t, lo=lo, hi=hi: Data(t, d.draw(st.integers(lo, hi))))
        for t, (lo, hi) in _INT_RANGES.items()
    ]
    fixed = [
        lambda d: Data(T.DATE_TIME, d.draw(st.binary(min_size=12, max_size=12))),
        lambda d: Data.octet_string(d.draw(st.binary(min_size=12, max_size=12))),
        lambda d: Data(T.FLOAT64, d.draw(st.floats(allow_nan=False))),
        lambda d: Data.null(),
    ]
    return st.sampled_from([*ints, *fixed])


@settings(max_examples=80, deadline=None)
@given(st.lists(_cell_kinds(), min_size=1, max_size=8), st.integers(2, 40), st.data())
def test_profile_like_tables_match_the_generic_decoder(
    columns: list[Callable[[st.DataObject], Data]],
    rows: int,
    draw: st.DataObject,
) -> None:
    table = []
    for _ in range(rows):
        cells = [col(draw) for col in columns]
        # Sometimes a compressed clock (null-data), sometimes a foreign row.
        if draw.draw(st.integers(0, 9)) == 0:
            cells[0] = Data.null()
        if draw.draw(st.integers(0, 19)) == 0:
            cells.append(draw.draw(scalar_data()))
        table.append(Data.structure(cells))
    value = Data.array(table)
    raw = encode_data(value)
    mp = pytest.MonkeyPatch()
    assert float_equal(decode_data(raw), value)
    assert float_equal(_generic(raw, mp), value)


@settings(max_examples=120, deadline=None)
@given(data(), st.data())
def test_any_data_and_damage_match_the_generic_decoder(value: Data, draw: st.DataObject) -> None:
    raw = bytearray(encode_data(Data.array([value, value])))
    mp = pytest.MonkeyPatch()
    if draw.draw(st.booleans()) and raw:
        i = draw.draw(st.integers(0, len(raw) - 1))
        raw[i] = draw.draw(st.integers(0, 255))
    if draw.draw(st.booleans()):
        raw = raw[: draw.draw(st.integers(0, len(raw)))]
    fast = _outcome(lambda: decode_data(bytes(raw)))
    slow = _outcome(lambda: _generic(bytes(raw), mp))
    assert _same(fast, slow)


def test_simulator_profile_buffer_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime, timedelta

    from edge_core.dlms.apdu import AttributeDescriptor, RangeDescriptor
    from edge_core.dlms.cosem import CaptureObject, CosemDateTime
    from edge_core.simulator.model import CLOCK, LOAD_PROFILE, SimulatedMeter

    now = datetime(2026, 3, 4, tzinfo=UTC)
    for index in (0, 1):  # meter 1 compresses clocks to null-data
        meter = SimulatedMeter(
            index, seed=1, start=(now - timedelta(days=2)).date(), clock=lambda: now
        )
        rng = RangeDescriptor(
            CaptureObject(8, CLOCK, 2, 0),
            CosemDateTime.from_datetime(now - timedelta(days=1)),
            CosemDateTime.from_datetime(now - timedelta(seconds=1)),
        )
        raw = encode_data(meter.get(AttributeDescriptor(7, LOAD_PROFILE, 2), rng.to_access()))
        table = axdr._decode_table(raw, 2, raw[1])
        assert table is not None
        assert table == (_generic(raw, monkeypatch), len(raw))
