"""The SQL path equals the Python path; billing export files; the estimation property."""

from __future__ import annotations

import csv
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.billing import generate_lake
from cloud.billing.derived import BillingDays
from cloud.billing.determinants import compute_determinants, dst_days
from cloud.billing.export import HEADER, export_name, write_billing_export
from cloud.billing.sql import (
    LakeSource,
    aggregate,
    aggregate_derived,
    determinants_for,
    lake_schema,
)
from cloud.billing.tou import BillingCycle, Tariff
from cloud.billing.vee import CH_IMPORT, CHANNELS, STATUS_NOT_VALID, Capture, VeeConfig, vee_channel
from cloud.storage.base import StorageError
from tests.billing.helpers import TARIFF, cumulative, utc

START = utc(2024, 3, 1)
CYCLE = BillingCycle(START, START + 3 * 86400, "c1")


def _write_extra(root: Path, meters: dict[str, dict[str, list[Capture]]]) -> None:
    """Append hand-built meters to the lake as extra files (one per UTC day)."""
    by_day: dict[str, list[tuple]] = {}
    for m, chans in meters.items():
        for ch, caps in chans.items():
            for c in caps:
                day = datetime.fromtimestamp(c.time, tz=timezone.utc)
                key = f"year={day.year:04d}/month={day.month:02d}/day={day.day:02d}"
                by_day.setdefault(key, []).append((m, ch, c))
    for key, rows in by_day.items():
        tab = pa.table(
            {
                "meter": [r[0] for r in rows],
                "channel": [r[1] for r in rows],
                "capture_time": [r[2].time for r in rows],
                "value": [r[2].value for r in rows],
                "unit": ["Wh"] * len(rows),
                "status": [r[2].status for r in rows],
                "raw": [0] * len(rows),
                "scaler": [0] * len(rows),
                "multiplier": [r[2].multiplier for r in rows],
                "data_class": [3] * len(rows),
                "batch_id": ["t"] * len(rows),
            },
            schema=lake_schema(),
        )
        path = root / "lake/intervals" / key
        path.mkdir(parents=True, exist_ok=True)
        pq.write_table(tab, path / "extra.parquet")


def _dirty_fleet() -> dict[str, dict[str, list[Capture]]]:
    n = 3 * 96
    incs = [20.0 + (i % 96) / 4 for i in range(n)]
    fleet: dict[str, dict[str, list[Capture]]] = {}
    full = {ch: cumulative(START, incs) for ch in CHANNELS}
    fleet["X-gap"] = {**full, CH_IMPORT: cumulative(START, incs, drop={10, 11, 100})}
    ct = [
        c if i < 150 else Capture(c.time, c.value * 3, 0, 3.0)
        for i, c in enumerate(cumulative(START, incs))
    ]
    fleet["X-ct"] = {**full, CH_IMPORT: ct}
    spiky = list(incs)
    spiky[77] = 5000.0
    fleet["X-spike"] = {**full, CH_IMPORT: cumulative(START, spiky)}
    fleet["X-status"] = {**full, CH_IMPORT: cumulative(START, incs, status={5: STATUS_NOT_VALID})}
    return fleet


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lake")
    generate_lake(root, 6, 3, START)
    _write_extra(root, _dirty_fleet())
    return root


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= 1e-9 * max(1.0, abs(a))


def test_sql_path_equals_python_path(lake: Path) -> None:
    with LakeSource(lake) as src:
        aggs = aggregate(src, CYCLE, TARIFF)
        fast = determinants_for(None, CYCLE, TARIFF, src)
        slow = determinants_for(None, CYCLE, TARIFF, src, force_python=True)
    clean = {m for m, a in aggs.items() if a.clean(CYCLE, VeeConfig())}
    assert clean == {f"M{i:06d}" for i in range(6)}  # every dirty meter is routed to Python
    assert [d.meter for d in fast] == [d.meter for d in slow]
    assert len(fast) == 10
    for a, b in zip(fast, slow, strict=True):
        assert a.meter == b.meter
        for f in ("import_kwh", "export_kwh", "kvarh_import", "kvarh_export", "power_factor"):
            assert _close(getattr(a, f), getattr(b, f)), (a.meter, f)
        for pa_, pb in zip(a.periods, b.periods, strict=True):
            assert pa_.period == pb.period
            assert _close(pa_.import_kwh, pb.import_kwh)
            assert _close(pa_.export_kwh, pb.export_kwh)
        assert a.max_demand_15 == b.max_demand_15
        assert a.max_demand_30 == b.max_demand_30
        assert (a.intervals_actual, a.intervals_estimated, a.flags, a.register_check) == (
            b.intervals_actual,
            b.intervals_estimated,
            b.flags,
            b.register_check,
        )
    by = {d.meter: d for d in fast}
    assert by["X-gap"].intervals_estimated == 5  # intervals 9-11 and 99-100
    assert dict(by["X-spike"].flags) == {"spike": 1}
    assert dict(by["X-status"].flags) == {"gap": 1, "status_invalid": 1}


def test_sql_page_of_meters_and_unknown_meter(lake: Path) -> None:
    with LakeSource(lake) as src:
        page = determinants_for(["M000001", "X-ct", "nobody"], CYCLE, TARIFF, src)
    assert [d.meter for d in page] == ["M000001", "X-ct", "nobody"]
    assert page[2].intervals_missing == CYCLE.intervals
    ct = page[1]
    n = 3 * 96
    incs = [20.0 + (i % 96) / 4 for i in range(n)]
    assert ct.import_kwh == pytest.approx((sum(incs[:150]) + 3 * sum(incs[150:])) / 1000)


def test_export_files(tmp_path: Path, lake: Path) -> None:
    with LakeSource(lake) as src:
        dets = determinants_for(None, CYCLE, TARIFF, src)
    paths = write_billing_export(
        dets,
        tmp_path / "outbox",
        utility="acme",
        group="g01",
        cycle=CYCLE,
        tariff=TARIFF,
        page_size=4,
    )
    assert [p.name for p in paths] == [f"billing_acme_g01_20240304_{i:03d}.csv" for i in (1, 2, 3)]
    assert not list((tmp_path / "outbox").glob(".tmp-*"))
    with paths[0].open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == HEADER
    meters = {r[0] for r in rows[1:]}
    assert meters == {d.meter for d in sorted(dets, key=lambda d: d.meter)[:4]}
    total = next(r for r in rows[1:] if r[4] == "TOTAL")
    first = sorted(dets, key=lambda d: d.meter)[0]
    assert total[5] == f"{first.import_kwh:.3f}"
    assert total[1] == "2024-03-01T01:00:00+01:00"
    assert len(rows) == 1 + 4 * (len(TARIFF.period_names) + 1)
    assert export_name("acme", "g01", CYCLE, TARIFF, 12).endswith("_012.csv")


@settings(max_examples=40, deadline=None)
@given(
    incs=st.lists(st.integers(0, 500), min_size=20, max_size=96),
    drops=st.sets(st.integers(1, 95)),
    voids=st.sets(st.integers(1, 95)),
)
def test_estimation_preserves_register_delta(
    incs: list[int], drops: set[int], voids: set[int]
) -> None:
    n = len(incs)
    start = START
    caps = cumulative(
        start,
        [float(x) for x in incs],
        drop={d for d in drops if d < n},
        status={v: STATUS_NOT_VALID for v in voids if v < n},
    )
    v = vee_channel(caps, start, start + n * 900, zone=TARIFF.zone)
    assert v.register_delta == pytest.approx(float(sum(incs)))
    assert all(e is not None for e in v.energy)
    assert v.total() == pytest.approx(float(sum(incs)), abs=1e-6)
    d = compute_determinants("m", {CH_IMPORT: caps}, BillingCycle(start, start + n * 900), TARIFF)
    assert d.register_check == "ok"
    assert d.intervals_actual + d.intervals_estimated == n


# -- billing-day dataset (cloud.billing.derived) ---------------------------------------------

LSTART = TARIFF.local_midnight(datetime(2024, 3, 29).date())  # Fri; 31 March is 23 h long
LCYCLE = BillingCycle(LSTART, TARIFF.local_midnight(datetime(2024, 4, 2).date()), "l1")


def _dirty_local_fleet() -> dict[str, dict[str, list[Capture]]]:
    n = LCYCLE.intervals
    incs = [20.0 + (i % 96) / 4 for i in range(n)]
    full = {ch: cumulative(LSTART, incs) for ch in CHANNELS}
    spiky = list(incs)
    spiky[130] = 5000.0
    back = cumulative(LSTART, incs)
    back[200] = Capture(back[200].time, back[200].value - 500.0)  # export register runs back
    tie = [10.0] * n  # every interval ties: the earliest block must win
    zeros = [0.0 if 40 <= i < 60 else incs[i] for i in range(n)]  # 20 zeros: a zero run
    ct = [
        c if i < 150 else Capture(c.time, c.value * 3, 0, 3.0)
        for i, c in enumerate(cumulative(LSTART, incs))
    ]
    return {
        "X-gap": {**full, CH_IMPORT: cumulative(LSTART, incs, drop={10, 11, 100})},
        "X-ct": {**full, CH_IMPORT: ct},
        "X-spike": {**full, CH_IMPORT: cumulative(LSTART, spiky)},
        "X-back": {**full, CHANNELS[1]: back},
        "X-tie": {ch: cumulative(LSTART, tie) for ch in CHANNELS},
        "X-zero": {**full, CH_IMPORT: cumulative(LSTART, zeros)},
        "X-status": {**full, CH_IMPORT: cumulative(LSTART, incs, status={5: STATUS_NOT_VALID})},
    }


@pytest.fixture(scope="module")
def local_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("llake")
    generate_lake(root, 5, 4, LSTART)
    _write_extra(root, _dirty_local_fleet())
    return root


def test_billing_days_path_equals_python_path(local_lake: Path) -> None:
    days = BillingDays(local_lake, TARIFF)
    with LakeSource(local_lake) as src:
        stats = days.build(src, days.days_of(LCYCLE) or [])
        assert stats.days == 4
        assert stats.rows > 0
        assert stats.bytes > 0
        files = days.files_for(LCYCLE)
        assert files is not None
        aggs = aggregate_derived(src, files, LCYCLE, TARIFF)
        fast = determinants_for(None, LCYCLE, TARIFF, src, derived=days)
        lake = determinants_for(None, LCYCLE, TARIFF, src)
        slow = determinants_for(None, LCYCLE, TARIFF, src, force_python=True)
    clean = {m for m, a in aggs.items() if a.clean(LCYCLE, VeeConfig())}
    assert clean == {f"M{i:06d}" for i in range(5)} | {"X-tie"}
    assert len(fast) == len(slow) == 12
    for a, b, c in zip(fast, slow, lake, strict=True):
        da, db, dc = a.to_dict(), b.to_dict(), c.to_dict()
        for k in db:
            if isinstance(db[k], float):
                assert _close(da[k], db[k]), (a.meter, k)
                assert _close(dc[k], db[k]), (a.meter, k)
            elif k == "periods":
                for pa_, pb, pc in zip(da[k], db[k], dc[k], strict=True):
                    assert _close(pa_["import_kwh"], pb["import_kwh"]), a.meter
                    assert _close(pc["export_kwh"], pb["export_kwh"]), a.meter
            else:
                assert da[k] == db[k], (a.meter, k)
                assert dc[k] == db[k], (a.meter, k)
    by = {d.meter: d for d in fast}
    assert by["X-tie"].max_demand_15 is not None
    assert by["X-tie"].max_demand_15.start == LSTART  # earliest of all equal intervals
    assert dict(by["X-back"].flags).get("negative") == 1
    assert dict(by["X-zero"].flags).get("zero_run") == 20
    assert dict(dst_days(TARIFF, LCYCLE.start, LCYCLE.end)) == {"2024-03-31": 92}


def test_billing_days_freshness_and_fallback(tmp_path: Path) -> None:
    generate_lake(tmp_path, 3, 4, LSTART)
    days = BillingDays(tmp_path, TARIFF)
    wanted = days.days_of(LCYCLE) or []
    assert days.stale(wanted) == wanted
    with LakeSource(tmp_path) as src:
        assert days.files_for(LCYCLE) is None  # nothing built: the lake path answers
        before = determinants_for(None, LCYCLE, TARIFF, src, derived=days)
        days.refresh(src, wanted)
        assert days.stale(wanted) == []
        built = determinants_for(None, LCYCLE, TARIFF, src, derived=days)
        assert [d.to_json() for d in built] != []
        assert len(built) == len(before)
        for a, b in zip(built, before, strict=True):
            assert _close(a.import_kwh, b.import_kwh)
        # Late data recompacted into one UTC day: only the local days built from it are stale.
        part = next(iter(sorted((tmp_path / "lake/intervals").rglob("day=30/*.parquet"))))
        pq.write_table(pq.read_table(part), part)
        stale = days.stale(wanted)
        assert stale
        assert set(stale) < set(wanted)
        assert days.refresh(src, wanted).days == len(stale)
        # A cycle not on local midnights is not served by billing days.
        assert days.days_of(BillingCycle(LSTART + 3600, LCYCLE.end)) is None
        other = Tariff.from_dict({**TARIFF.to_dict(), "default": "night"})
        with pytest.raises(StorageError):
            determinants_for(None, LCYCLE, other, src, derived=days)
