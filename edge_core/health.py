"""Health counters of the uplink and the spool, as a snapshot dict and as JSON on topics.health.

Counters only grow (since the process started) except the backlog gauges, which are refreshed
from the spool's statistics. Publish latency is the time from handing a message to the bus to
its acknowledgement, in milliseconds, over the last ``window`` publishes of each lane (bulk,
alarm); percentiles use the nearest-rank method.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Health", "LatencyWindow", "percentile"]


def percentile(samples: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of ``samples``; None when empty."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class LatencyWindow:
    """The last ``size`` latencies (seconds in, milliseconds out)."""

    def __init__(self, size: int = 2048) -> None:
        self._samples: deque[float] = deque(maxlen=size)

    def add(self, seconds: float) -> None:
        self._samples.append(seconds * 1000.0)

    def summary(self) -> dict[str, float | int | None]:
        samples = list(self._samples)
        return {
            "count": len(samples),
            "p50_ms": percentile(samples, 50),
            "p99_ms": percentile(samples, 99),
            "max_ms": max(samples) if samples else None,
        }


class Health:
    """Counters of one uplink. ``wall_clock`` gives UTC epoch seconds for the report."""

    def __init__(
        self, *, thing: str, wall_clock: Callable[[], float] = time.time, window: int = 2048
    ) -> None:
        self.thing = thing
        self._wall_clock = wall_clock
        self.started = wall_clock()
        self.published_messages = 0
        self.published_bytes = 0
        self.alarms_published = 0
        self.publish_errors = 0
        self.spool_errors = 0
        self.health_reports = 0
        self.latency = {"bulk": LatencyWindow(window), "alarm": LatencyWindow(window)}
        self.spool: dict[str, Any] = {}
        self.in_flight = 0
        self.connected: bool | None = None

    def record_publish(self, lane: str, nbytes: int, latency_s: float) -> None:
        self.published_messages += 1
        self.published_bytes += nbytes
        if lane == "alarm":
            self.alarms_published += 1
        self.latency[lane].add(latency_s)

    def record_error(self) -> None:
        self.publish_errors += 1

    def update_spool(self, stats: Any) -> None:
        """Take the spool's statistics (``SpoolStats``, another dataclass or a mapping)."""
        to_dict = getattr(stats, "to_dict", None)
        if callable(to_dict):
            self.spool = _jsonable(to_dict())
        elif dataclasses.is_dataclass(stats) and not isinstance(stats, type):
            self.spool = _jsonable(dataclasses.asdict(stats))
        elif isinstance(stats, Mapping):
            self.spool = _jsonable(dict(stats))
        else:
            self.spool = {"repr": repr(stats)}

    def _spool_total(self, key: str) -> int | None:
        value = self.spool.get(key)
        if isinstance(value, Mapping):
            return sum(v for v in value.values() if isinstance(v, int))
        return value if isinstance(value, int) else None

    def snapshot(self) -> dict[str, Any]:
        """Counters and gauges as a JSON-ready dict (latencies in ms, ages in s)."""
        now = self._wall_clock()
        return {
            "thing": self.thing,
            "time": round(now, 3),
            "uptime_s": round(now - self.started, 3),
            "connected": self.connected,
            "published_messages": self.published_messages,
            "published_bytes": self.published_bytes,
            "alarms_published": self.alarms_published,
            "publish_errors": self.publish_errors,
            "spool_errors": self.spool_errors,
            "in_flight": self.in_flight,
            "stored": self._spool_total("stored"),
            "evicted": self._spool_total("evicted"),
            "backlog_readings": self._spool_total("backlog_readings"),
            "backlog_messages": self._spool_total("backlog_messages"),
            "backlog_age_s": self.spool.get("oldest_age_s"),
            "latency": {lane: w.summary() for lane, w in self.latency.items()},
            "spool": self.spool,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.snapshot(), separators=(",", ":"), sort_keys=True).encode()


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(_key(k)): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _key(k: Any) -> Any:
    name = getattr(k, "name", None)
    return name.lower() if isinstance(name, str) else k
