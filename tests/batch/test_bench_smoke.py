"""Smoke runs of the uplink and spool-ingest benchmarks at tiny sizes."""

from __future__ import annotations

from bench.spool_ingest import run as run_ingest
from bench.uplink import run as run_uplink


def test_uplink_bench_smoke() -> None:
    out = run_uplink(meters=5, days=1, seed=2, levels=[3])
    assert out["values"] == out["json_per_read"]["messages"]  # type: ignore[index]
    assert out["ratios"]["bytes_json_over_batch"] > 20  # type: ignore[index]


def test_spool_ingest_bench_smoke() -> None:
    out = run_ingest(values=500, batch=100, put_size=96, concurrency=4)
    assert out["stored"] == {"sequential": 500, "worker": 500, "threads": 500}
    assert out["spool_values_per_s"] > 0
    assert 1 <= out["group_commits"] <= 6  # type: ignore[operator]
