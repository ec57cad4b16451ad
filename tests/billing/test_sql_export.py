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
from cloud.billing.determinants import compute_determinants
from cloud.billing.export import HEADER, export_name, write_billing_export
from cloud.billing.sql import LakeSource, aggregate, determinants_for, lake_schema
from cloud.billing.tou import BillingCycle
from cloud.billing.vee import CH_IMPORT, CHANNELS, STATUS_NOT_VALID, Capture, VeeConfig, vee_channel
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
