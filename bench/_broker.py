"""A private Mosquitto for the benchmarks, on a free loopback port (never 1883).

Thin wrapper over :class:`edge_core.broker.LocalBroker` (the same start logic the test fixtures
use), plus the realistic backlog shared by the uplink benchmarks.
"""

from __future__ import annotations

import math

from edge_core.broker import LocalBroker
from edge_core.model import DataClass, Reading

__all__ = ["LocalBroker", "backlog"]


def backlog(values: int, *, seed: int = 1, meters_per_dcu: int = 500) -> list[Reading]:
    """``values`` interval readings of a realistic DCU (4 registers per meter every 15 min,
    as many days as needed), from bench.uplink's load-profile generator."""
    from bench.uplink import generate_readings

    per_meter_day = 96 * 4
    meters = max(1, min(meters_per_dcu, math.ceil(values / per_meter_day)))
    days = max(1, math.ceil(values / (meters * per_meter_day)))
    readings = generate_readings(meters, days, seed=seed, data_class=DataClass.INTERVAL)
    return readings[:values]
