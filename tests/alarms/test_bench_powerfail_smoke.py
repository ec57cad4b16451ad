"""The power-fail part of ``bench.alarm_latency`` runs end to end at tiny sizes.

Each scenario must have driven real last gasps through the value file, the monitor, the alarm
service, the uplink and Mosquitto: the bench's own subscriber heard every one of them.
"""

from __future__ import annotations

import argparse

import pytest

from bench import alarm_latency

pytestmark = [pytest.mark.broker, pytest.mark.slow]

SCENARIOS = ("idle", "draining", "meter_read")


def test_powerfail_scenarios_reach_the_broker() -> None:
    args = argparse.Namespace(
        backlog_values=2000,
        batch_values=500,
        alarms=3,
        interval_ms=20.0,
        drain_timeout_s=60.0,
        powerfail_cycles=3,
        powerfail_defaults_cycles=1,
        meter_frame_delay_ms=5.0,
    )
    out = alarm_latency.run(args)
    # The uplink figures the bench always reported are still there.
    assert out["baseline_idle"]["alarms"] >= 3
    assert out["draining"]["alarms"] >= 3
    pf = out["powerfail"]
    assert pf["mode"] in ("edge", "polled")
    assert pf["poll_interval_ms"] == 5.0
    for name in SCENARIOS:
        scenario = pf[name]
        assert scenario["last_gasps"] >= 3, name
        assert scenario["last_gasps_at_broker"] == scenario["last_gasps"], name
        assert scenario["alarms_failed"] == 0, name
        for key in ("p50_ms", "p99_ms", "max_ms"):
            assert scenario[key] is not None, (name, key)
        assert scenario["signal_to_uplink"]["p99_ms"] is not None
    assert pf["draining"]["backlog_values"] == 2000
    assert pf["meter_read"]["reads"] >= 1
    assert pf["meter_read"]["failed_while_busy"] >= 0
    assert pf["shipped_defaults_idle"]["last_gasps_at_broker"] == 1
    assert pf["shipped_defaults_idle"]["poll_interval_ms"] == 5.0  # a polled file
    assert isinstance(pf["target_p99_le_50ms"], bool)
    assert set(pf) >= {"ratio_p99_draining", "ratio_p99_meter_read"}
