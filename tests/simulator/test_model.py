from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_core.dlms.apdu import AttributeDescriptor, RangeDescriptor
from edge_core.dlms.axdr import Data, DataType
from edge_core.dlms.cosem import CaptureObject, CosemDateTime, ScalerUnit
from edge_core.dlms.obis import Obis
from edge_core.errors import DataAccessError, UnknownObjectError
from edge_core.simulator.load import MeterLoad, unit_hash
from edge_core.simulator.model import CLOCK, DAILY_PROFILE, LOAD_PROFILE, SimulatedMeter

START = date(2026, 6, 1)
NOW = datetime(2026, 6, 15, 13, 40, tzinfo=UTC)
IMPORT = Obis.parse("1.0.1.8.0.255")
EXPORT = Obis.parse("1.0.2.8.0.255")


def _meter(index: int, now: datetime = NOW, seed: int = 7) -> SimulatedMeter:
    return SimulatedMeter(index, seed=seed, start=START, clock=lambda: now)


def _buffer(m: SimulatedMeter, obis: Obis, start: datetime, end: datetime) -> list[Data]:
    rng = RangeDescriptor(
        CaptureObject(8, CLOCK, 2, 0),
        CosemDateTime.from_datetime(start),
        CosemDateTime.from_datetime(end),
    )
    return list(m.get(AttributeDescriptor(7, obis, 2), rng.to_access()).value)


def _reg(m: SimulatedMeter, obis: Obis) -> int:
    return int(m.get(AttributeDescriptor(3, obis, 2), None).value)


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_profile_monotonic_and_register_at_least_last_capture(index: int) -> None:
    m = _meter(index)
    rows = _buffer(m, LOAD_PROFILE, datetime(2026, 6, 1, tzinfo=UTC), NOW)
    assert len(rows) == 14 * 96 + 13 * 4 + 2 + 1  # every boundary from the start up to now
    for col in (2, 3, 4, 5):
        series = [r.value[col].value for r in rows]
        assert all(a <= b for a, b in itertools.pairwise(series))
    assert _reg(m, IMPORT) >= rows[-1].value[2].value
    assert _reg(m, EXPORT) >= rows[-1].value[3].value


def test_pv_meter_exports_in_daytime_only() -> None:
    m = _meter(1)  # every third meter, from index 1, has PV
    assert m.load.has_pv
    assert not _meter(0).load.has_pv
    rows = _buffer(
        m, LOAD_PROFILE, datetime(2026, 6, 10, tzinfo=UTC), datetime(2026, 6, 14, tzinfo=UTC)
    )
    deltas = [
        (rows[i].value[0], rows[i + 1].value[3].value - rows[i].value[3].value)
        for i in range(len(rows) - 1)
    ]
    night = sum(d for i, (_, d) in enumerate(deltas) if (i % 96) < 20)
    day = sum(d for i, (_, d) in enumerate(deltas) if 44 <= (i % 96) < 60)
    assert night == 0
    assert day > 1000


def test_daily_shape_and_weekend_differ() -> None:
    load = MeterLoad(7, 0)
    # 2026-06-15 is a Monday, 2026-06-13 a Saturday
    monday = int(datetime(2026, 6, 15, tzinfo=UTC).timestamp()) // 900
    saturday = int(datetime(2026, 6, 13, tzinfo=UTC).timestamp()) // 900

    def day_profile(n0: int) -> list[int]:
        return [sum(load.interval(n0 + q * 4 + k).import_wh for k in range(4)) for q in range(24)]

    mon = day_profile(monday)
    sat = day_profile(saturday)
    assert max(mon[17:22]) > 2 * min(mon[1:5])  # evening peak well above the night
    assert mon != sat
    assert sum(sat[10:16]) > sum(mon[10:16])  # weekend daytime use


def test_deterministic_by_seed_and_index() -> None:
    a = _buffer(_meter(2), LOAD_PROFILE, NOW - timedelta(days=1), NOW)
    b = _buffer(_meter(2), LOAD_PROFILE, NOW - timedelta(days=1), NOW)
    c = _buffer(_meter(2, seed=8), LOAD_PROFILE, NOW - timedelta(days=1), NOW)
    assert a == b
    assert a != c
    assert 0 <= unit_hash(1, 2, 3) < 1
    assert unit_hash(1, 2, 3) == unit_hash(1, 2, 3)


def test_clock_advances_with_injected_clock() -> None:
    now = [NOW]
    m = SimulatedMeter(0, seed=7, start=START, clock=lambda: now[0])
    first = _reg(m, IMPORT)
    t = CosemDateTime.from_data(m.get(AttributeDescriptor(8, CLOCK, 2), None)).to_datetime()
    assert t == NOW
    now[0] = NOW + timedelta(hours=6)
    assert _reg(m, IMPORT) > first
    rows = _buffer(m, LOAD_PROFILE, NOW, now[0])
    assert len(rows) == 6 * 4 + 1 - 1  # boundaries in (13:40, 19:40]: 13:45 .. 19:30


def test_null_clock_compression_on_odd_meters() -> None:
    rows = _buffer(_meter(1), LOAD_PROFILE, NOW - timedelta(hours=2), NOW)
    assert rows[0].value[0].type == DataType.OCTET_STRING
    assert all(r.value[0].type == DataType.NULL_DATA for r in rows[1:])
    rows = _buffer(_meter(0), LOAD_PROFILE, NOW - timedelta(hours=2), NOW)
    assert all(r.value[0].type == DataType.OCTET_STRING for r in rows)


def test_daily_profile_and_attributes() -> None:
    m = _meter(0)
    assert m.get(AttributeDescriptor(7, DAILY_PROFILE, 4), None) == Data.double_long_unsigned(86400)
    assert m.get(AttributeDescriptor(7, LOAD_PROFILE, 4), None) == Data.double_long_unsigned(900)
    cols = [
        CaptureObject.from_data(c)
        for c in m.get(AttributeDescriptor(7, DAILY_PROFILE, 3), None).value
    ]
    assert [str(c.obis) for c in cols] == [
        "0.0.1.0.0.255",
        "0.0.96.10.1.255",
        "1.0.1.8.0.255",
        "1.0.2.8.0.255",
    ]
    rows = _buffer(m, DAILY_PROFILE, datetime(2026, 6, 10, tzinfo=UTC), NOW)
    assert len(rows) == 6
    volts = Obis.parse("1.0.32.7.0.255")
    assert ScalerUnit.from_data(m.get(AttributeDescriptor(3, volts, 3), None)) == ScalerUnit(-1, 35)
    v = m.get(AttributeDescriptor(3, volts, 2), None).value
    assert v == 0 or 2200 < v < 2400
    amps = ScalerUnit.from_data(
        m.get(AttributeDescriptor(3, Obis.parse("1.0.31.7.0.255"), 3), None)
    )
    assert amps == ScalerUnit(-2, 33)


def test_tou_rates_sum_to_total() -> None:
    m = _meter(0)
    rates = sum(_reg(m, Obis(1, 0, 1, 8, r, 255)) for r in (1, 2, 3, 4))
    assert rates > 0
    # rates start at 4 x start/4; their growth equals the total's growth
    start_total = m.load.start_wh
    assert abs((rates - 4 * (start_total // 4)) - (_reg(m, IMPORT) - start_total)) <= 4


def test_unknown_object_and_bad_access() -> None:
    m = _meter(0)
    with pytest.raises(UnknownObjectError):
        m.get(AttributeDescriptor(3, Obis.parse("1.0.1.8.9.255"), 2), None)
    with pytest.raises(DataAccessError):
        m.get(AttributeDescriptor(3, IMPORT, 9), None)
    rng = RangeDescriptor(
        CaptureObject(3, IMPORT, 2, 0),
        CosemDateTime.from_datetime(NOW),
        CosemDateTime.from_datetime(NOW),
    )
    with pytest.raises(DataAccessError):
        m.get(AttributeDescriptor(7, LOAD_PROFILE, 2), rng.to_access())


def test_selected_values_restrict_columns() -> None:
    m = _meter(0)
    rng = RangeDescriptor(
        CaptureObject(8, CLOCK, 2, 0),
        CosemDateTime.from_datetime(NOW - timedelta(hours=1)),
        CosemDateTime.from_datetime(NOW),
        (CaptureObject(8, CLOCK, 2, 0), CaptureObject(3, IMPORT, 2, 0)),
    )
    rows = m.get(AttributeDescriptor(7, LOAD_PROFILE, 2), rng.to_access()).value
    assert len(rows) == 4
    assert all(len(r.value) == 2 for r in rows)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 2**16),
    st.integers(0, 50),
    st.integers(0, 60 * 24 * 40),
)
def test_invariants_for_any_meter_and_time(seed: int, index: int, minutes: int) -> None:
    """Captures never decrease and the register now is at least the last capture."""
    now = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes, seconds=seed % 60)
    m = SimulatedMeter(index, seed=seed, start=date(2026, 1, 1), clock=lambda: now)
    rows = _buffer(m, LOAD_PROFILE, now - timedelta(hours=6), now)
    assert rows
    for col, obis in ((2, IMPORT), (3, EXPORT)):
        series = [r.value[col].value for r in rows]
        assert all(a <= b for a, b in itertools.pairwise(series))
        assert _reg(m, obis) >= series[-1]
