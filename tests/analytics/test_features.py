from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from edge_core.analytics.features import (
    FEATURE_NAMES,
    MAX_IMPUTED,
    N_FEATURES,
    Baselines,
    StatsHistory,
    build_features,
    windows_from_readings,
)
from edge_core.model import Reading

TZ = ZoneInfo("Europe/Berlin")


def captures(first_day: dt.date, days: int, wh: int = 100, skip=(), status=None) -> list[Reading]:
    """Cumulative import captures every 900 s from local midnight of first_day."""
    t0 = int(dt.datetime(first_day.year, first_day.month, first_day.day, tzinfo=TZ).timestamp())
    t1 = t0 + days * 86400 + 7200
    out, reg = [], 1_000_000
    for t in range(t0, t1 + 1, 900):
        if t not in skip:
            out.append(Reading("M1", "1.0.1.8.0.255", t, reg, 0, 30, (status or {}).get(t, 0)))
        reg += wh
    return out


@pytest.mark.parametrize(("day", "n"), [(dt.date(2025, 3, 30), 92), (dt.date(2025, 10, 26), 100)])
def test_dst_days_resampled_total_kept(day, n):
    ws = windows_from_readings(captures(day - dt.timedelta(days=1), 3), TZ)
    w = {x.day: x for x in ws.windows}[day.isoformat()]
    assert w.source_intervals == n
    assert w.resampled
    assert w.energy.shape == (96,)
    assert float(w.energy.sum()) == pytest.approx(n * 100, rel=1e-5)
    normal = {x.day: x for x in ws.windows}[(day - dt.timedelta(days=1)).isoformat()]
    assert normal.source_intervals == 96
    assert not normal.resampled
    assert float(normal.energy.sum()) == pytest.approx(9600)


def test_dst_days_skipped_with_reason():
    day = dt.date(2025, 3, 30)
    ws = windows_from_readings(captures(day - dt.timedelta(days=1), 3), TZ, dst="skip")
    assert [(s.day, s.reason) for s in ws.skipped] == [(day.isoformat(), "dst_day")]
    assert day.isoformat() not in {w.day for w in ws.windows}


def test_gaps_are_nan_and_status_kept():
    day = dt.date(2025, 6, 2)
    t0 = int(dt.datetime(2025, 6, 2, tzinfo=TZ).timestamp())
    gone = {t0 + 10 * 900, t0 + 11 * 900}
    st = {t0 + 14 * 900: 0x80}
    ws = windows_from_readings(captures(day, 1, skip=gone, status=st), TZ)
    w = ws.windows[0]
    # captures at 10 and 11 missing: intervals 9, 10, 11 have no pair of captures
    assert np.isnan(w.energy[[9, 10, 11]]).all()
    assert int(np.isnan(w.energy).sum()) == 3
    assert w.status[13] == 0x80  # the capture at 14 closes interval 13
    assert int(np.count_nonzero(w.status)) == 1


def test_feature_skip_reasons_and_no_crash():
    n = 5
    e = np.full((n, 96), 100.0, np.float32)
    e[1, :3] = np.nan  # imputable
    e[2, :MAX_IMPUTED + 1] = np.nan  # too many gaps
    e[3, :] = np.nan  # nothing at all
    x = np.zeros_like(e)
    base = Baselines.empty(n)
    full = Baselines(*(np.full(n, 9600.0, np.float32) for _ in range(5)),
                     history_days=np.full(n, 14, np.int32))
    fb = build_features(e, x, base)
    assert fb.reasons == ("no_history", "no_history", "gaps", "empty", "no_history")
    fb = build_features(e, x, full)
    assert fb.reasons == (None, None, "gaps", "empty", None)
    assert fb.imputed.tolist() == [False, True, False, False, False]
    assert fb.x.shape == (n, N_FEATURES)
    assert fb.x.dtype == np.float32
    assert np.isfinite(fb.x).all()
    i_wd = FEATURE_NAMES.index("log_ratio_weekday")
    assert fb.x[0, i_wd] == pytest.approx(0.0, abs=1e-6)
    assert fb.x[1, :96].sum() == pytest.approx(1.0, rel=1e-4)


def test_scale_down_visible_only_against_history():
    e = np.full((2, 96), 100.0, np.float32)
    e[1] *= 0.5
    base = Baselines(*(np.full(2, 9600.0, np.float32) for _ in range(2)),
                     np.full(2, 0.33, np.float32), np.full(2, 100.0, np.float32),
                     np.zeros(2, np.float32), np.full(2, 14, np.int32))
    fb = build_features(e, np.zeros_like(e), base)
    np.testing.assert_allclose(fb.x[0, :96], fb.x[1, :96], rtol=1e-5)  # same shape
    i = FEATURE_NAMES.index("log_ratio_14d")
    assert fb.x[1, i] < fb.x[0, i] - 0.6


def test_history_fallbacks_for_new_meter():
    hist = StatsHistory()
    ws = windows_from_readings(captures(dt.date(2025, 5, 1), 20), TZ).windows
    base = hist.baselines_for(ws[:1])
    assert base.history_days[0] == 0
    assert np.isnan(base.total_14d[0])
    hist.add(ws[:8])
    b = hist.baselines_for([ws[8]])
    assert b.history_days[0] == 8
    assert b.total_14d[0] == pytest.approx(9600.0)
    assert b.weekday_total[0] == pytest.approx(9600.0)
    fb = build_features(ws[8].energy[None], ws[8].export[None], b)
    assert fb.reasons == (None,)
    early = hist.baselines_for([ws[3]])  # only days strictly before
    assert early.history_days[0] == 3
    fb = build_features(ws[3].energy[None], ws[3].export[None], early)
    assert fb.reasons == ("no_history",)
