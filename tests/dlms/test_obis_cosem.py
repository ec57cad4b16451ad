from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_core.dlms.axdr import Data
from edge_core.dlms.cosem import (
    CaptureObject,
    CosemDateTime,
    RegisterValue,
    ScalerUnit,
    Unit,
    unit_symbol,
)
from edge_core.dlms.obis import Obis
from edge_core.errors import DecodeError, EncodeError
from tests.dlms import strategies as s

OBIS_TEXT = [
    ("1.0.1.8.0.255", Obis(1, 0, 1, 8, 0, 255)),
    ("1-0:1.8.0*255", Obis(1, 0, 1, 8, 0, 255)),
    ("1-0:1.8.0.255", Obis(1, 0, 1, 8, 0, 255)),
    ("0.0.1.0.0", Obis(0, 0, 1, 0, 0, 255)),
    ("1-0:99.1.0*255", Obis(1, 0, 99, 1, 0, 255)),
]


@pytest.mark.parametrize(("text", "obis"), OBIS_TEXT)
def test_obis_parse(text: str, obis: Obis) -> None:
    assert Obis.parse(text) == obis


@pytest.mark.parametrize(
    "bad", ["", "1.0.1.8", "1.0.1.8.0.256", "a.b.c.d.e.f", "1.0.1.8.0.255.1", "-1.0.1.8.0.255"]
)
def test_obis_parse_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="OBIS"):
        Obis.parse(bad)


@pytest.mark.parametrize("args", [(256, 0, 0, 0, 0, 0), (0, 0, 0, 0, 0, -1), (0, 0, 0, 0, True, 0)])
def test_obis_fields_validated(args: tuple[int, ...]) -> None:
    with pytest.raises(EncodeError):
        Obis(*args)


def test_obis_bytes() -> None:
    o = Obis.parse("1.0.1.8.0.255")
    assert o.to_bytes().hex() == "0100010800ff"
    assert str(o) == "1.0.1.8.0.255"
    assert o.reduced == "1-0:1.8.0*255"
    with pytest.raises(DecodeError):
        Obis.from_bytes(b"\x01\x02")


@settings(deadline=None)
@given(s.obis())
def test_obis_roundtrip(o: Obis) -> None:
    assert Obis.from_bytes(o.to_bytes()) == o
    assert Obis.parse(str(o)) == o
    assert Obis.parse(o.reduced) == o


# (hex, CosemDateTime, aware datetime or None)
DATETIME_VECTORS = [
    (
        "07ea0b1a040c1e0000ffc400",
        CosemDateTime(2026, 11, 26, 12, 30, 0, 0, 4, -60, 0),
        datetime(2026, 11, 26, 12, 30, tzinfo=timezone(timedelta(hours=1))),
    ),
    (
        "07ea0b1a040c1e00000000" + "80",
        CosemDateTime(2026, 11, 26, 12, 30, 0, 0, 4, 0, 0x80),
        datetime(2026, 11, 26, 12, 30, tzinfo=UTC),
    ),
    (
        "ffffffffffffffffff8000ff",
        CosemDateTime(None, None, None, None, None, None, None, None, None, None),
        None,
    ),
]


@pytest.mark.parametrize(("hexstr", "value", "dt"), DATETIME_VECTORS)
def test_datetime_vectors(hexstr: str, value: CosemDateTime, dt: datetime | None) -> None:
    assert value.to_bytes().hex() == hexstr
    assert CosemDateTime.from_bytes(bytes.fromhex(hexstr)) == value
    if dt is None:
        with pytest.raises(DecodeError):
            value.to_datetime()
    else:
        assert value.to_datetime() == dt
        assert value.to_datetime().utcoffset() == dt.utcoffset()


@settings(deadline=None)
@given(s.cosem_datetimes())
def test_cosem_datetime_roundtrip(v: CosemDateTime) -> None:
    assert CosemDateTime.from_bytes(v.to_bytes()) == v


@settings(deadline=None)
@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2099, 12, 31),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5, minutes=-30))]
        ),
    )
)
def test_aware_datetime_roundtrip(dt: datetime) -> None:
    dt = dt.replace(microsecond=dt.microsecond // 10_000 * 10_000)
    back = CosemDateTime.from_datetime(dt).to_datetime()
    assert back == dt
    assert back.utcoffset() == dt.utcoffset()


def test_datetime_invalid_calendar_day() -> None:
    with pytest.raises(DecodeError):
        CosemDateTime(2026, 2, 30, 0, 0, 0).to_datetime()
    with pytest.raises(EncodeError):
        CosemDateTime(70000, 1, 1, 0, 0, 0).to_bytes()


def test_units() -> None:
    assert (Unit.WATT, Unit.VOLT_AMPERE, Unit.VAR, Unit.WATT_HOUR) == (27, 28, 29, 30)
    assert (Unit.VOLT_AMPERE_HOUR, Unit.VAR_HOUR, Unit.AMPERE, Unit.VOLT) == (31, 32, 33, 35)
    assert (Unit.HERTZ, Unit.SECOND, Unit.COUNT) == (44, 7, 255)
    assert unit_symbol(30) == "Wh"
    assert unit_symbol(32) == "varh"
    assert unit_symbol(200) == "unit200"


def test_scaler_unit_and_register() -> None:
    su = ScalerUnit.from_data(Data.structure((Data.integer(-1), Data.enum(35))))
    assert su == ScalerUnit(-1, 35)
    assert su.to_data() == Data.structure((Data.integer(-1), Data.enum(35)))
    reg = RegisterValue(Obis.parse("1.0.32.7.0.255"), 2301, su)
    assert reg.value == pytest.approx(230.1)
    assert RegisterValue(Obis.parse("1.0.1.8.0.255"), 12, ScalerUnit(3, 30)).value == 12000.0
    with pytest.raises(DecodeError):
        ScalerUnit.from_data(Data.integer(1))


def test_capture_object_roundtrip() -> None:
    c = CaptureObject(3, Obis.parse("1.0.1.8.0.255"), 2, 0)
    assert CaptureObject.from_data(c.to_data()) == c
    with pytest.raises(DecodeError):
        CaptureObject.from_data(Data.structure((Data.integer(1),)))
