"""The uplink benchmarks run end to end at tiny sizes and report what they promise."""

from __future__ import annotations

import argparse

import pytest

from bench import alarm_latency, spool

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_alarm_latency_bench_tiny() -> None:
    args = argparse.Namespace(
        backlog_values=3000,
        batch_values=500,
        alarms=5,
        interval_ms=20.0,
        drain_timeout_s=60.0,
        seed=1,
        broker_tcp_nodelay=False,
    )
    out = alarm_latency.run(args)
    assert out["broker_tcp_nodelay"] is False
    assert out["baseline_idle"]["alarms"] >= 5
    assert out["draining"]["alarms"] >= 5
    assert out["outbox_left"] == 0
    assert out["draining"]["bulk_messages"] >= 6
    assert out["ratio_p99"] is not None


def test_spool_bench_tiny() -> None:
    args = argparse.Namespace(
        meters=3, days=1, batch_values=200, put_chunk=384, in_flight=4, timeout_s=60.0, seed=1
    )
    out = spool.run(args)
    assert 0 < out["values"] <= 3 * 96 * 4
    assert out["outbox_left"] == 0
    assert out["messages"] >= 6
    assert out["store_in_child_process"]["values_per_s"] > 0
    assert out["runtime_rss_mb"]["after_drain"] > 0
    assert out["ratio_publish_vs_bare_s"] is not None
