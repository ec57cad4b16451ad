"""A private Mosquitto for the benchmarks, on a free loopback port (never 1883).

:class:`LocalBroker` is :class:`edge_core.broker.LocalBroker` (the same start logic the test
fixtures use) with one option: ``tcp_nodelay`` adds Mosquitto's ``set_tcp_nodelay true``, so
the broker sends its PUBACKs at once instead of holding them under Nagle's algorithm behind a
delayed ACK (about 40 ms on Linux) while a bulk batch is still being acknowledged: what an alarm
measured against a stock Mosquitto waits for is then the broker, not the edge. The benchmarks
say which they used. Also the realistic backlog shared by the uplink benchmarks.
"""

from __future__ import annotations

import math
from pathlib import Path

from edge_core import broker as _broker
from edge_core.model import DataClass, Reading

__all__ = ["LocalBroker", "backlog"]


class LocalBroker(_broker.LocalBroker):
    """:class:`edge_core.broker.LocalBroker`, optionally with ``set_tcp_nodelay true``."""

    def __init__(
        self, port: int | None = None, workdir: str | Path | None = None, *, tcp_nodelay: bool
    ) -> None:
        super().__init__(port, workdir, tcp_nodelay=tcp_nodelay)


def backlog(values: int, *, seed: int = 1, meters_per_dcu: int = 500) -> list[Reading]:
    """``values`` interval readings of a realistic DCU (4 registers per meter every 15 min,
    as many days as needed), from bench.uplink's load-profile generator."""
    from bench.uplink import generate_readings

    per_meter_day = 96 * 4
    meters = max(1, min(meters_per_dcu, math.ceil(values / per_meter_day)))
    days = max(1, math.ceil(values / (meters * per_meter_day)))
    readings = generate_readings(meters, days, seed=seed, data_class=DataClass.INTERVAL)
    return readings[:values]
