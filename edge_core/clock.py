"""Time sources. The runtime never reads the wall clock directly: it asks a :class:`Clock`.

:class:`SystemClock` is the real one. :class:`AcceleratedClock` runs simulated time ``speed``
times faster than real time from a chosen start, so the demo can live through a week of meter
data in minutes; sleeping on it sleeps ``seconds / speed`` of real time. :class:`ManualClock`
only moves when a test says so.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import Protocol

__all__ = ["AcceleratedClock", "Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (UTC)."""

    def now_dt(self) -> datetime:
        """The same instant as an aware UTC datetime."""

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of this clock's time."""


class SystemClock:
    def now(self) -> float:
        return time.time()

    def now_dt(self) -> datetime:
        return datetime.now(timezone.utc)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class AcceleratedClock:
    """Simulated time: ``start + (monotonic elapsed) * speed``."""

    def __init__(self, start: float, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.start = start
        self.speed = speed
        self._t0 = time.monotonic()

    def now(self) -> float:
        return self.start + (time.monotonic() - self._t0) * self.speed

    def now_dt(self) -> datetime:
        return datetime.fromtimestamp(self.now(), timezone.utc)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)


class ManualClock:
    """A clock for tests: ``advance`` moves it; ``sleep`` returns at once after advancing."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def now_dt(self) -> datetime:
        return datetime.fromtimestamp(self.t, timezone.utc)

    def advance(self, seconds: float) -> None:
        self.t += seconds

    async def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)
