"""Billing determinants over the Parquet lake: DuckDB aggregate vs the pure-Python path.

``python -m bench.billing [--meters 10000] [--days 31] [--python-sample 50]`` prints one JSON
object: lake generation time (separate), the DuckDB determinants of every meter over the
cycle, and the Python path on a sample of meters scaled to the fleet (the baseline).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

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
    """Write ``days`` UTC days (plus the closing capture) of cumulative captures of 4 channels
    for ``meters`` meters into ``root/lake/intervals/year=/month=/day=/part-0.parquet``, in the
    lake schema, sorted like ingest's compaction. Returns the number of rows."""
    rng = np.random.default_rng(seed)
    names = pa.array([f"M{i:06d}" for i in range(meters)], pa.string())
    chans = pa.array(list(CHANNELS), pa.string())
    cum = np.zeros((len(CHANNELS), meters))
    schema = lake_schema()
    total = 0
    for d in range(days + 1):
        n = 96 if d < days else 1  # the last day holds only the cycle's closing capture
        t0 = start + d * 86400
        times = t0 + np.arange(n, dtype=np.int64) * 900
        cols: dict[str, list[Any]] = {k: [] for k in schema.names}
        for ci in range(len(CHANNELS)):
            scale = (100.0, 20.0, 40.0, 5.0)[ci]
            inc = np.round(rng.gamma(2.0, scale / 2.0, (meters, n)))
            if d == 0:
                inc[:, 0] = 0.0
            c = cum[ci][:, None] + np.cumsum(inc, axis=1)
            cum[ci] = c[:, -1]
            m_idx = np.repeat(np.arange(meters, dtype=np.int32), n)
            cols["meter"].append(names.take(pa.array(m_idx)))
            cols["channel"].append(chans.take(pa.array(np.full(meters * n, ci, np.int32))))
            cols["capture_time"].append(pa.array(np.tile(times, meters)))
            cols["value"].append(pa.array(c.ravel()))
        rows = meters * n
        tab = pa.table(
            {
                "meter": pa.concat_arrays(cols["meter"]),
                "channel": pa.concat_arrays(cols["channel"]),
                "capture_time": pa.concat_arrays(cols["capture_time"]),
                "value": pa.concat_arrays(cols["value"]),
                "unit": pa.array(np.full(rows * 4, "Wh", object), pa.string()),
                "status": pa.array(np.zeros(rows * 4, np.int32)),
                "raw": pa.array(np.zeros(rows * 4, np.int64)),
                "scaler": pa.array(np.zeros(rows * 4, np.int32)),
                "multiplier": pa.array(np.ones(rows * 4)),
                "data_class": pa.array(np.full(rows * 4, 3, np.int32)),
                "batch_id": pa.array(np.full(rows * 4, "bench", object), pa.string()),
            },
            schema=schema,
        )
        day = datetime.fromtimestamp(t0, tz=timezone.utc)
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
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.billing")
    ap.add_argument("--meters", type=int, default=10000)
    ap.add_argument("--days", type=int, default=31)
    ap.add_argument("--python-sample", type=int, default=50)
    ap.add_argument("--dir", default=None, help="lake directory (default: a temporary one)")
    args = ap.parse_args(argv)
    tariff = Tariff.from_dict(BENCH_TARIFF)
    start = int(datetime(2024, 3, 1, tzinfo=timezone.utc).timestamp())
    cycle = BillingCycle(start, start + args.days * 86400, "bench")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        rows = generate_lake(root, args.meters, args.days, start)
        gen_s = time.perf_counter() - t
        size = sum(f.stat().st_size for f in root.rglob("*.parquet"))
        with LakeSource(root) as src:
            t = time.perf_counter()
            dets = determinants_for(None, cycle, tariff, src)
            sql_s = time.perf_counter() - t
            sample = [d.meter for d in dets[: args.python_sample]]
            t = time.perf_counter()
            py = determinants_for(sample, cycle, tariff, src, force_python=True)
            py_s = time.perf_counter() - t
        agree = all(
            abs(a.import_kwh - b.import_kwh) <= 1e-9 * max(1.0, a.import_kwh)
            and a.max_demand_15 == b.max_demand_15
            for a, b in zip(dets, py, strict=False)
        )
        py_fleet_s = py_s / max(1, len(sample)) * len(dets)
        result = {
            "bench": "billing",
            "meters": args.meters,
            "days": args.days,
            "rows": rows,
            "lake_bytes": size,
            "generate_s": round(gen_s, 3),
            "duckdb_determinants_s": round(sql_s, 3),
            "duckdb_meters_per_s": round(len(dets) / sql_s, 1) if sql_s else None,
            "python_sample_meters": len(sample),
            "python_fleet_s_scaled": round(py_fleet_s, 3),
            "speedup_vs_python": round(py_fleet_s / sql_s, 2) if sql_s else None,
            "target_s": 2.0,
            "meets_target": sql_s < 2.0,
            "sql_equals_python_on_sample": agree,
            "cores": os.cpu_count(),
        }
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
