from __future__ import annotations

import numpy as np

from edge_core.analytics.detectors import (
    MeterConfig,
    detect_clock_drift,
    detect_level_drop,
    detect_level_rise,
    detect_missing_intervals,
    detect_register_backwards,
    detect_reverse_flow,
    detect_spikes,
    detect_stuck,
    detect_voltage_en50160,
)
from edge_core.analytics.features import DayWindow
from edge_core.model import Reading

START = 1_700_000_000 - 1_700_000_000 % 900


def window(energy=None, export=None, status=None) -> DayWindow:
    e = np.full(96, 100.0, np.float32) if energy is None else np.asarray(energy, np.float32)
    x = np.zeros(96, np.float32) if export is None else np.asarray(export, np.float32)
    s = np.zeros(96, np.uint8) if status is None else np.asarray(status, np.uint8)
    return DayWindow("M1", "2023-11-14", START, e, x, s)


def test_reverse_flow_only_without_pv():
    x = np.zeros(96)
    x[40:50] = 200.0
    w = window(export=x)
    found = detect_reverse_flow(w, MeterConfig("M1", has_pv=False))
    assert [f.kind for f in found] == ["reverse_flow"]
    assert found[0].value == 2000.0
    assert found[0].start == START + 40 * 900
    assert found[0].end == START + 50 * 900
    assert detect_reverse_flow(w, MeterConfig("M1", has_pv=True)) == []
    assert detect_reverse_flow(window(), MeterConfig("M1")) == []


def test_voltage_en50160_band_and_limit():
    t = np.arange(0, 7 * 86400, 60)  # 1-min samples, averaged into 10-min means
    good = np.full(len(t), 231.0)
    assert detect_voltage_en50160("M1", t, good) == []
    low = good.copy()
    low[: len(t) // 10] = 200.0  # 10 % of the week at 200 V: within 195.5 but out of band
    kinds = {f.kind for f in detect_voltage_en50160("M1", t, low)}
    assert kinds == {"voltage_band"}
    dip = good.copy()
    dip[100:110] = 190.0  # one 10-min mean below 195.5 V
    found = detect_voltage_en50160("M1", t, dip)
    assert [f.kind for f in found] == ["voltage_limit"]
    assert found[0].value == 190.0


def test_voltage_accepts_coarse_resolution():
    t = np.arange(0, 86400, 900)  # 15-min profile values used as given
    v = np.full(len(t), 230.0)
    v[5] = 260.0
    assert [f.kind for f in detect_voltage_en50160("M1", t, v)] == ["voltage_limit"]


def test_stuck_zero_with_voltage_but_not_power_down():
    e = np.full(96, 50.0)
    e[10:40] = 0.0
    assert [f.kind for f in detect_stuck(window(e), True)] == ["stuck_zero"]
    assert detect_stuck(window(e), False) == []
    st = np.zeros(96)
    st[10:40] = 0x80  # power down explains the zeros
    assert detect_stuck(window(e, status=st), True) == []
    assert detect_stuck(window(), True) == []


def test_spike_beyond_physical_maximum():
    cfg = MeterConfig("M1", rated_current_a=60, nominal_voltage_v=230, phases=1)
    assert cfg.max_interval_wh() == 60 * 230 * 0.25
    e = np.full(96, 100.0)
    e[7] = 4000.0
    found = detect_spikes(window(e), cfg)
    assert [(f.kind, f.value) for f in found] == [("spike", 4000.0)]
    e[7] = 3000.0  # below 3450 Wh
    assert detect_spikes(window(e), cfg) == []


def test_register_rollover_vs_reset():
    cfg = MeterConfig("M1", register_digits=6)  # rolls over at 999 999 kWh
    roll = [Reading("M1", "1.0.1.8.0.255", 0, 999_999_500, 0, 30),
            Reading("M1", "1.0.1.8.0.255", 900, 200, 0, 30)]
    assert [f.kind for f in detect_register_backwards(roll, cfg)] == ["register_rollover"]
    reset = [Reading("M1", "1.0.1.8.0.255", 0, 5_000_000, 0, 30),
             Reading("M1", "1.0.1.8.0.255", 900, 10, 0, 30)]
    assert [f.kind for f in detect_register_backwards(reset, cfg)] == ["register_reset"]
    fine = [Reading("M1", "1.0.1.8.0.255", 0, 10, 0, 30),
            Reading("M1", "1.0.1.8.0.255", 900, 20, 0, 30)]
    assert detect_register_backwards(fine, cfg) == []


def test_clock_drift_bound():
    cfg = MeterConfig("M1", max_clock_drift_s=30)
    found = detect_clock_drift("M1", [(1000, 1010), (2000, 2045)], cfg)
    assert [(f.kind, f.value) for f in found] == [("clock_drift", 45.0)]
    assert detect_clock_drift("M1", [(1000, 975)], cfg) == []


def test_missing_intervals_explained_by_status():
    times = [START + i * 900 for i in range(10) if i not in (3, 4)]
    status = [0] * len(times)
    found = detect_missing_intervals("M1", times, status, START, START + 10 * 900)
    assert [(f.kind, f.value, f.start) for f in found] == [
        ("missing_intervals", 2.0, START + 3 * 900)]
    status[times.index(START + 5 * 900)] = 0x80  # power down on the capture after the gap
    assert detect_missing_intervals("M1", times, status, START, START + 10 * 900) == []
    status[times.index(START + 5 * 900)] = 0x20  # clock adjusted
    assert detect_missing_intervals("M1", times, status, START, START + 10 * 900) == []


def test_level_rules_catch_uniform_scaling_both_ways_against_the_meters_own_level():
    # 96 x 100 Wh = 9.6 kWh a day is this meter's level; both baselines agree.
    normal, weekday = 9600.0, 9400.0
    halved = window(np.full(96, 50.0))
    doubled = window(np.full(96, 200.0))
    usual = window(np.full(96, 110.0))
    assert [f.kind for f in detect_level_drop(halved, normal, weekday, 14)] == ["level_drop"]
    assert [f.kind for f in detect_level_rise(doubled, normal, weekday, 14)] == ["level_rise"]
    assert detect_level_rise(usual, normal, weekday, 14) == []
    assert detect_level_drop(usual, normal, weekday, 14) == []
    # A new meter (too little history) and a rise the same weekday already had stay quiet.
    assert detect_level_rise(doubled, normal, weekday, 3) == []
    assert detect_level_rise(doubled, normal, 20000.0, 14) == []
