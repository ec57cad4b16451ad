"""Billing determinants and VEE: hand-computed cases, each rule positive and negative."""

from __future__ import annotations

import math
from datetime import date

import pytest

from cloud.billing.determinants import compute_determinants
from cloud.billing.tou import BillingCycle, CycleGroup, Tariff
from cloud.billing.vee import (
    ACTUAL,
    CH_IMPORT,
    CH_Q_IMPORT,
    ESTIMATED,
    MISSING,
    STATUS_NOT_VALID,
    STATUS_POWER_DOWN,
    VeeConfig,
    apply_multipliers,
    captures_from_energies,
    quantile,
    vee_channel,
)
from cloud.storage.base import MeterRecord
from edge_core.errors import ConfigError
from tests.billing.helpers import TARIFF, cumulative, utc

AMS = TARIFF.zone
MON = utc(2024, 3, 3, 23)  # 2024-03-04 00:00 local (Monday, UTC+1)


# -- TOU and cycles --------------------------------------------------------------------------


def test_periods_by_local_time_weekday_weekend_holiday() -> None:
    assert TARIFF.period_at(MON + 6 * 3600 + 45 * 60) == "offpeak"  # 06:45 local
    assert TARIFF.period_at(MON + 7 * 3600) == "peak"  # 07:00 local
    assert TARIFF.period_at(MON + 21 * 3600) == "offpeak"  # 21:00 local
    sat = MON + 5 * 86400
    assert TARIFF.period_at(sat + 9 * 3600) == "shoulder"  # 09:00 local Saturday
    easter_monday = utc(2024, 3, 31, 22)  # 2024-04-01 00:00 local (UTC+2), a holiday
    assert TARIFF.period_at(easter_monday + 10 * 3600) == "shoulder"  # like a weekend
    assert TARIFF.period_at(easter_monday + 10 * 3600 + 86400) == "peak"  # Tuesday


def test_wrapping_rule_and_bad_tariffs() -> None:
    t = Tariff.from_dict(
        {
            "name": "night",
            "timezone": "UTC",
            "default": "day",
            "periods": [{"name": "night", "days": "all", "from": "22:00", "to": "06:00"}],
        }
    )
    assert t.period_at(utc(2024, 1, 1, 23)) == "night"
    assert t.period_at(utc(2024, 1, 1, 5, 45)) == "night"
    assert t.period_at(utc(2024, 1, 1, 6)) == "day"
    assert Tariff.from_dict(t.to_dict()) == t
    with pytest.raises(ConfigError):
        Tariff.from_dict({"name": "x", "timezone": "Mars/Olympus"})
    with pytest.raises(ConfigError):
        Tariff.from_dict({"name": "x", "timezone": "UTC", "periods": [{"name": "p", "days": "x"}]})


def test_cycle_group_read_day_local_midnights() -> None:
    cyc = CycleGroup("g05", 5).cycle(2024, 4, TARIFF)
    assert cyc.start == utc(2024, 3, 4, 23)  # 2024-03-05 00:00 +01:00
    assert cyc.end == utc(2024, 4, 4, 22)  # 2024-04-05 00:00 +02:00 (after spring forward)
    assert cyc.intervals == 31 * 96 - 4
    assert CycleGroup("g31", 31).read_date(2024, 2) == date(2024, 2, 29)
    with pytest.raises(ConfigError):
        BillingCycle(100, 50)


# -- determinants, hand computed -------------------------------------------------------------


def _hand_fleet() -> dict[str, list]:
    imp = [100.0] * 96
    imp[40] = 400.0  # 10:00 local
    # CT ratio doubles from capture 48 (12:00 local): intervals starting there count x2.
    caps = cumulative(MON, imp)
    caps = [c if i < 48 else type(c)(c.time, c.value * 2, 0, 2.0) for i, c in enumerate(caps)]
    q = cumulative(MON, [50.0] * 96)
    q = [c if i < 48 else type(c)(c.time, c.value * 2, 0, 2.0) for i, c in enumerate(q)]
    return {CH_IMPORT: caps, CH_Q_IMPORT: q}


def test_determinants_hand_computed_with_ct_change() -> None:
    cycle = BillingCycle(MON, MON + 86400, "d1")
    d = compute_determinants("m1", _hand_fleet(), cycle, TARIFF)
    by = {p.period: p for p in d.periods}
    assert d.import_kwh == pytest.approx(14.7)  # 47x100 + 400 + 48x200 Wh
    assert by["peak"].import_kwh == pytest.approx(9.5)  # 07:00-21:00: 19x100+400+36x200
    assert by["offpeak"].import_kwh == pytest.approx(5.2)
    assert by["shoulder"].import_kwh == 0
    assert d.kvarh_import == pytest.approx(7.2)
    assert d.power_factor == pytest.approx(14.7 / math.hypot(14.7, 7.2))
    assert d.max_demand_15 is not None
    assert d.max_demand_15.kw == pytest.approx(1.6)
    assert d.max_demand_15.local == "2024-03-04T10:00:00+01:00"
    assert d.max_demand_30 is not None
    assert d.max_demand_30.kw == pytest.approx(1.0)  # (400 + 100) Wh over 30 min
    assert d.max_demand_30.start == MON + 40 * 900
    assert (d.intervals_actual, d.intervals_estimated, d.intervals_missing) == (96, 0, 0)
    assert d.register_check == "ok"
    assert d.register_delta_kwh == pytest.approx(14.7)
    assert d.flags == ()
    assert type(d).from_json(d.to_json()) == d


def test_apply_multipliers_by_capture_time() -> None:
    hist = [
        MeterRecord("m", "dcu", 100.0, 1.0, 0, MON + 3600),
        MeterRecord("m", "dcu", 200.0, 1.0, MON + 3600, None),
    ]
    caps = apply_multipliers([(MON, 10, 0), (MON + 3600, 12, 0), (MON + 4500, 13, 0)], hist)
    assert [c.value for c in caps] == [1000.0, 2400.0, 2600.0]
    assert [c.multiplier for c in caps] == [100.0, 200.0, 200.0]


@pytest.mark.parametrize(
    ("day", "count", "shoulder", "offpeak"),
    [((2024, 3, 30, 23), 92, 320.0, 600.0), ((2024, 10, 26, 22), 100, 320.0, 680.0)],
)
def test_dst_days_are_not_gaps(day: tuple[int, ...], count: int, shoulder: float, offpeak: float):
    start = utc(*day)  # local midnight of a Sunday with a DST change
    cycle = BillingCycle(start, start + count * 900)
    d = compute_determinants("m", {CH_IMPORT: cumulative(start, [10.0] * count)}, cycle, TARIFF)
    assert d.intervals_expected == count
    assert d.intervals_actual == count
    assert d.intervals_missing == 0
    assert dict(d.flags).get("gap", 0) == 0
    assert d.dst_days == ((date.fromtimestamp(start + 7200).isoformat(), count),)
    by = {p.period: p.import_kwh * 1000 for p in d.periods}
    assert by["shoulder"] == pytest.approx(shoulder)
    assert by["offpeak"] == pytest.approx(offpeak)


# -- VEE rules -------------------------------------------------------------------------------


def test_short_gap_interpolated_on_register() -> None:
    incs = [float(10 + i) for i in range(96)]
    caps = cumulative(MON, incs, drop={10, 11, 12})  # intervals 9..12 lose an end
    v = vee_channel(caps, MON, MON + 86400, zone=AMS, config=VeeConfig(like_days=0))
    assert v.quality[9:13] == (ESTIMATED,) * 4
    assert v.method[9:13] == ("interpolated",) * 4
    assert v.energy[9] == pytest.approx(sum(incs[9:13]) / 4)
    assert v.total() == pytest.approx(sum(incs))
    assert v.register_ok(VeeConfig()) is True
    assert sum(1 for r in v.flags.values() if "gap" in r) == 4
    clean = vee_channel(cumulative(MON, incs), MON, MON + 86400, zone=AMS)
    assert clean.flags == {}
    assert set(clean.quality) == {ACTUAL}


def test_long_gap_like_day_scaled_to_register() -> None:
    shape = [float(10 + (i % 96)) for i in range(96)]
    week = shape * 7 + [2 * s for s in shape]  # the cycle day consumes twice the history
    start = MON - 7 * 86400
    caps = cumulative(start, week, drop=set(range(7 * 96 + 20, 7 * 96 + 41)))
    v = vee_channel(caps, MON, MON + 86400, zone=AMS)
    assert v.method[19:41] == ("like_day",) * 22
    for i in range(19, 41):
        assert v.energy[i] == pytest.approx(2 * shape[i])  # shape x scale = the truth
    assert v.total() == pytest.approx(sum(week[-96:]))


def test_unanchored_long_gap_without_history_stays_missing() -> None:
    caps = cumulative(MON, [10.0] * 96)[:50]  # the register stops after capture 49
    v = vee_channel(caps, MON, MON + 86400, zone=AMS)
    assert v.quality[49:] == (MISSING,) * 47
    assert v.register_delta is None
    assert v.register_ok(VeeConfig()) is None


def test_negative_interval_estimated_and_register_mismatch() -> None:
    incs = [10.0] * 96
    incs[30] = -500.0  # register ran backwards
    v = vee_channel(cumulative(MON, incs), MON, MON + 86400, zone=AMS)
    assert "negative" in v.flags[30]
    assert v.quality[30] == ESTIMATED
    assert v.energy[30] == pytest.approx(10.0)
    assert v.register_ok(VeeConfig()) is False


def test_status_not_valid_voids_capture_power_down_only_flags() -> None:
    incs = [10.0] * 96
    caps = cumulative(MON, incs, status={5: STATUS_NOT_VALID, 60: STATUS_POWER_DOWN})
    v = vee_channel(caps, MON, MON + 86400, zone=AMS)
    assert "status_invalid" in v.flags[4]
    assert "gap" in v.flags[5]
    assert v.quality[4] == v.quality[5] == ESTIMATED
    assert v.flags[59] == ("power_down",)
    assert v.quality[59] == ACTUAL


def test_spike_and_physical_max() -> None:
    incs = [10.0 + (i % 7) for i in range(96)]
    incs[50] = 200.0
    v = vee_channel(cumulative(MON, incs), MON, MON + 86400, zone=AMS, consumption_rules=True)
    assert v.flags == {50: ("spike",)}
    incs[50] = 40.0  # under 5 x P99
    v = vee_channel(cumulative(MON, incs), MON, MON + 86400, zone=AMS, consumption_rules=True)
    assert v.flags == {}
    cfg = VeeConfig(physical_max_wh=30.0)
    v = vee_channel(
        cumulative(MON, incs), MON, MON + 86400, zone=AMS, config=cfg, consumption_rules=True
    )
    assert v.flags == {50: ("spike",)}


def test_zero_runs() -> None:
    incs = [10.0] * 96
    for i in range(20, 36):
        incs[i] = 0.0
    v = vee_channel(cumulative(MON, incs), MON, MON + 86400, zone=AMS, consumption_rules=True)
    assert sorted(i for i, r in v.flags.items() if "zero_run" in r) == list(range(20, 36))
    short = [10.0] * 96
    for i in range(20, 25):
        short[i] = 0.0
    v = vee_channel(cumulative(MON, short), MON, MON + 86400, zone=AMS, consumption_rules=True)
    assert v.flags == {}
    mostly_zero = [0.0] * 80 + [10.0] * 16  # a meter that usually does not consume
    v = vee_channel(
        cumulative(MON, mostly_zero), MON, MON + 86400, zone=AMS, consumption_rules=True
    )
    assert v.flags == {}


def test_interval_energy_input_and_quantile() -> None:
    caps = captures_from_energies(MON, [5.0, 6.0, 0.0, 7.0], statuses=[0, 0, STATUS_POWER_DOWN, 0])
    v = vee_channel(caps, MON, MON + 3600, zone=AMS, config=VeeConfig(like_days=0))
    assert v.energy == (5.0, 6.0, 0.0, 7.0)
    assert v.flags == {2: ("power_down",)}
    with pytest.raises(ConfigError):
        captures_from_energies(MON, [5.0, None])
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
