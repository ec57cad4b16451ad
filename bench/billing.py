"""Billing determinants over the Parquet lake: DuckDB aggregate vs the pure-Python path.

``python -m bench.billing [--meters 10000] [--days 31] [--python-sample 20] [--lake-sql]``
prints one JSON object: lake generation time, the billing-day build (the daily compaction step,
its time and bytes), the DuckDB determinants of every meter over a cycle of local days from
the billing days (the figure with the 2 s target), optionally the lake-only SQL path, and the
pure-Python path on a sample of meters scaled to the fleet (the baseline), checked equal.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cloud.billing.derived import BillingDays
from cloud.billing.sql import LakeSource, determinants_for, lake_schema
from cloud.billing.tou import BillingCycle, Tariff
from cloud.billing.vee import CHANNELS

__all__ = ["BENCH_TARIFF", "generate_lake", "main"]

BENCH_TARIFF = {
    "name": "tou3",
    "timezone": "Europe/Amsterdam",
    "default": "offpeak",
    "periods": [
        {"name": "peak", "days": "weekday", "from": "07:00", "to": "21:00"},
        {"name": "shoulder", "days": "weekend", "from": "09:00", "to": "17:00"},
    ],
    "holidays": ["2024-04-01"],
}


def generate_lake(root: Path, meters: int, days: int, start: int, seed: int = 1) -> int:
    """Write cumulative captures of 4 channels for ``meters`` meters at ``start``,
    ``start + 900``, ... ``start + days * 86400`` (inclusive) into
    ``root/lake/intervals/year=/month=/day=/part-0.parquet`` by UTC capture day, in the lake
    schema, sorted like ingest's compaction (meter, channel, capture_time). Returns the rows."""
    rng = np.random.default_rng(seed)
    names = pa.array([f"M{i:06d}" for i in range(meters)], pa.string())
    chans = pa.array(list(CHANNELS), pa.string())
    scale = np.array([100.0, 20.0, 40.0, 5.0])[None, :, None]
    carry = np.zeros((meters, len(CHANNELS), 1))
    schema = lake_schema()
    end = start + days * 86400
    total = 0
    t = start
    while t <= end:
        day_end = (t // 86400 + 1) * 86400
        times = np.arange(t, min(day_end, end + 1), 900, dtype=np.int64)
        n = len(times)
        inc = np.round(rng.gamma(2.0, 1.0, (meters, len(CHANNELS), n)) * (scale / 2.0))
        if t == start:
            inc[:, :, 0] = 0.0
        cum = carry + np.cumsum(inc, axis=2)
        carry = cum[:, :, -1:]
        rows = meters * len(CHANNELS) * n
        zeros = np.zeros(rows, np.int64)
        tab = pa.table(
            {
                "meter": names.take(pa.array(np.repeat(np.arange(meters), len(CHANNELS) * n))),
                "channel": chans.take(
                    pa.array(np.tile(np.repeat(np.arange(len(CHANNELS)), n), meters))
                ),
                "capture_time": pa.array(np.tile(times, meters * len(CHANNELS))),
                "value": pa.array(cum.reshape(-1)),
                "unit": pa.array(["Wh"], pa.string()).take(pa.array(zeros)),
                "status": pa.array(zeros.astype(np.int32)),
                "raw": pa.array(zeros),
                "scaler": pa.array(zeros.astype(np.int32)),
                "multiplier": pa.array(np.ones(rows)),
                "data_class": pa.array(np.full(rows, 3, np.int32)),
                "batch_id": pa.array(["bench"], pa.string()).take(pa.array(zeros)),
            },
            schema=schema,
        )
        day = datetime.fromtimestamp(t, tz=timezone.utc)
        path = (
            root
            / "lake/intervals"
            / f"year={day.year:04d}"
            / f"month={day.month:02d}"
            / f"day={day.day:02d}"
        )
        path.mkdir(parents=True, exist_ok=True)
        pq.write_table(tab, path / "part-0.parquet", compression="zstd")
        total += tab.num_rows
        t = day_end
    return total


def _same(a: Any, b: Any) -> bool:
    """Determinants equal up to the order of floating-point summation (1e-9 relative)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-9 * max(1.0, abs(a))
    return bool(a == b)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.billing")
    ap.add_argument("--meters", type=int, default=10000)
    ap.add_argument("--days", type=int, default=31)
    ap.add_argument("--python-sample", type=int, default=20)
    ap.add_argument("--lake-sql", action="store_true", help="also time the lake-only SQL path")
    ap.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: cores)")
    ap.add_argument("--dir", default=None, help="lake directory (default: a temporary one)")
    args = ap.parse_args(argv)
    tariff = Tariff.from_dict(BENCH_TARIFF)
    first = date(2024, 3, 1)  # a cycle of local days; 31 days include the spring-forward day
    cycle = BillingCycle(
        tariff.local_midnight(first),
        tariff.local_midnight(first + timedelta(days=args.days)),
        "bench",
    )
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        rows = generate_lake(root, args.meters, args.days, cycle.start)
        gen_s = time.perf_counter() - t
        lake_bytes = sum(f.stat().st_size for f in (root / "lake").rglob("*.parquet"))
        days = BillingDays(root, tariff)
        with LakeSource(root, threads=args.threads) as src:
            built = days.build(src, days.days_of(cycle) or [])
            t = time.perf_counter()
            dets = determinants_for(None, cycle, tariff, src, derived=days)
            sql_s = time.perf_counter() - t
            lake_s = None
            if args.lake_sql:
                t = time.perf_counter()
                lake = determinants_for(None, cycle, tariff, src)
                lake_s = time.perf_counter() - t
                if not all(
                    _same(a.to_dict(), b.to_dict()) for a, b in zip(dets, lake, strict=True)
                ):
                    raise SystemExit("lake SQL path differs from the billing-days path")
            sample = [d.meter for d in dets[: args.python_sample]]
            t = time.perf_counter()
            py = determinants_for(sample, cycle, tariff, src, force_python=True)
            py_s = time.perf_counter() - t
        agree = all(_same(a.to_dict(), b.to_dict()) for a, b in zip(dets, py, strict=False))
        py_fleet_s = py_s / max(1, len(sample)) * len(dets)
        result = {
            "bench": "billing",
            "meters": args.meters,
            "days": args.days,
            "intervals": cycle.intervals,
            "rows": rows,
            "lake_bytes": lake_bytes,
            "generate_s": round(gen_s, 3),
            "derived_build_s": round(built.seconds, 3),
            "derived_bytes": built.bytes,
            "derived_rows": built.rows,
            "derived_build_s_per_day": round(built.seconds / max(1, built.days), 3),
            "duckdb_determinants_s": round(sql_s, 3),
            "duckdb_meters_per_s": round(len(dets) / sql_s, 1) if sql_s else None,
            "lake_sql_determinants_s": None if lake_s is None else round(lake_s, 3),
            "python_sample_meters": len(sample),
            "python_s_per_meter": round(py_s / max(1, len(sample)), 4),
            "python_fleet_s_scaled": round(py_fleet_s, 3),
            "speedup_vs_python": round(py_fleet_s / sql_s, 1) if sql_s else None,
            "target_s": 2.0,
            "meets_target": sql_s < 2.0,
            "sql_equals_python_on_sample": agree,
            "cores": os.cpu_count(),
        }
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
