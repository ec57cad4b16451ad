"""Acquisition: the read plan of every meter, run against the clock, into the spool.

Theory of operation
-------------------
* Each meter has one task. TCP meters run concurrently (bounded by ``max_concurrent_tcp``);
  meters that share a serial bus take turns on that bus's lock: one transaction at a time.
* The load profile is read *by range*, from the last capture time the spool has stored for the
  meter (its high-water mark) to now. So after any gap — meter unreachable, DCU offline, a
  restart — the next read backfills exactly the missing intervals, and a read that overlaps
  what is stored only produces duplicates the spool refuses (dedupe on meter, channel, time).
  Nothing read twice is stored twice.
* The daily (midnight billing) profile is read once per meter day, ``daily_after_s`` after
  00:00, by range from its own high-water mark.
* One association per poll: the load profile range, the daily range when due, the event logs
  since the last poll and the clock check travel in the same session (fewer round trips, one
  login on the meter). Event-log rows and profile status bits go to ``on_events`` (the alarm
  engine, which dedupes what it has seen); the clock drift is counted and, where configuration
  allows, the meter clock is set by the reader.
* A failed read is counted and retried at the next period; consecutive failures are reported to
  the ``on_comm`` callback (comm loss / restore) so the alarm engine can decide.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from edge_core.clock import Clock
from edge_core.config import EdgeConfig, MeterConfig
from edge_core.errors import AmiError, MeterError, ProtocolError, TransportError
from edge_core.model import DataClass, Reading

__all__ = [
    "DAILY_PROFILE",
    "HIGH_WATER_OBIS",
    "LOAD_PROFILE",
    "Acquisition",
    "AcquisitionStats",
    "ReadOutcome",
    "ReadPlan",
]

log = logging.getLogger(__name__)

LOAD_PROFILE = "1.0.99.1.0.255"
DAILY_PROFILE = "1.0.99.2.0.255"
# The channel whose last stored capture time marks how far a profile has been read.
HIGH_WATER_OBIS = "1.0.1.8.0.255"
DAILY_INITIAL_BACKFILL_S = 3 * 86400

PutReadings = Callable[[Sequence[Reading]], Awaitable[object]]
LastCapture = Callable[[str, str, DataClass], Awaitable[int | None]]
CommCallback = Callable[[str, bool, int], None]


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """What one poll asks of one meter: aware (start, end) ranges, None for 'not this time'."""

    profile: tuple[datetime, datetime] | None
    daily: tuple[datetime, datetime] | None
    events: tuple[datetime, datetime] | None


@dataclass(frozen=True, slots=True)
class ReadOutcome:
    """What one poll got: readings to spool, event-log rows (``EventRecord``-like objects with
    meter, log, time, code, duration_s) and the clock drift (s, meter - DCU)."""

    readings: list[Reading]
    events: list[Any] = field(default_factory=list)
    clock_drift_s: float | None = None
    clock_adjusted: bool = False


ReadMeter = Callable[[MeterConfig, ReadPlan], Awaitable[ReadOutcome]]
EventsCallback = Callable[[str, list[Any], list[Reading]], Awaitable[None]]


@dataclass
class MeterState:
    reads: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_error: str = ""
    last_success: float = 0.0
    stored: int = 0
    duplicates: int = 0
    last_daily_day: str = ""
    last_event_time: float = 0.0  # newest event-log row seen (epoch s)
    clock_drift_s: float | None = None
    clock_adjustments: int = 0


@dataclass
class AcquisitionStats:
    meters: dict[str, MeterState] = field(default_factory=dict)

    def totals(self) -> dict[str, int]:
        return {
            "reads": sum(m.reads for m in self.meters.values()),
            "failures": sum(m.failures for m in self.meters.values()),
            "stored": sum(m.stored for m in self.meters.values()),
            "duplicates": sum(m.duplicates for m in self.meters.values()),
            "clock_adjustments": sum(m.clock_adjustments for m in self.meters.values()),
        }


class Acquisition:
    """Runs the read plan of every configured meter until :meth:`stop`."""

    def __init__(
        self,
        config: EdgeConfig,
        clock: Clock,
        *,
        put: PutReadings,
        last_capture: LastCapture,
        read: ReadMeter,
        on_comm: CommCallback | None = None,
        on_events: EventsCallback | None = None,
        initial_backfill_s: int = 86400,
        seed: int | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self._put = put
        self._last_capture = last_capture
        self._read = read
        self._on_comm = on_comm
        self._on_events = on_events
        self.initial_backfill_s = initial_backfill_s
        self.stats = AcquisitionStats({m.id: MeterState() for m in config.meters})
        self._bus_locks: dict[str, asyncio.Lock] = {}
        self._tcp_slots = asyncio.Semaphore(config.schedule.max_concurrent_tcp)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._rng = random.Random(seed)
        self._in_flight = 0

    @property
    def busy(self) -> bool:
        """True while a meter transaction is in progress."""
        return self._in_flight > 0

    async def start(self) -> None:
        for meter in self.config.meters:
            self._tasks.append(asyncio.create_task(self._meter_loop(meter), name=f"acq-{meter.id}"))

    async def stop(self) -> None:
        self._stop.set()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def _slot(self, meter: MeterConfig) -> asyncio.Lock | asyncio.Semaphore:
        if meter.bus:
            return self._bus_locks.setdefault(meter.bus, asyncio.Lock())
        return self._tcp_slots

    async def _meter_loop(self, meter: MeterConfig) -> None:
        period = self.config.schedule.profile_read_s
        jitter = self.config.schedule.jitter_s
        # Spread the fleet over the first period instead of reading every meter at once.
        await self.clock.sleep(self._rng.uniform(0, min(jitter, period)))
        while not self._stop.is_set():
            await self.read_once(meter)
            now = self.clock.now()
            # Next boundary of the period, plus jitter so that the meter has closed its interval.
            next_due = (now // period + 1) * period + self._rng.uniform(0, jitter)
            await self.clock.sleep(next_due - now)

    async def read_once(self, meter: MeterConfig) -> int:
        """Read what is due for one meter now and store it; returns the readings stored.

        Errors of the link or the meter are counted, logged and swallowed: the next period
        retries and backfills by range.
        """
        state = self.stats.meters[meter.id]
        try:
            async with self._slot(meter):
                self._in_flight += 1
                try:
                    plan = await self._plan(meter, state)
                    if plan is None:
                        return 0
                    outcome = await self._read(meter, plan)
                finally:
                    self._in_flight -= 1
        except (TransportError, MeterError, ProtocolError) as exc:
            state.failures += 1
            state.consecutive_failures += 1
            state.last_error = str(exc)
            log.warning(
                "meter %s: read failed (%d in a row): %s",
                meter.id,
                state.consecutive_failures,
                exc,
            )
            if self._on_comm:
                self._on_comm(meter.id, False, state.consecutive_failures)
            return 0
        except AmiError as exc:  # e.g. a configuration the meter cannot honour
            state.failures += 1
            state.last_error = str(exc)
            log.error("meter %s: read failed: %s: %s", meter.id, type(exc).__name__, exc)
            return 0
        if state.consecutive_failures and self._on_comm:
            self._on_comm(meter.id, True, state.consecutive_failures)
        state.consecutive_failures = 0
        state.reads += 1
        state.last_success = self.clock.now()
        if plan.daily is not None:
            state.last_daily_day = self._meter_day()
        stored = await self._store(meter, outcome.readings)
        self._note_clock(meter, state, outcome)
        if plan.events is not None:
            state.last_event_time = plan.events[1].timestamp()
        if self._on_events is not None and (outcome.events or outcome.readings):
            await self._on_events(meter.id, outcome.events, outcome.readings)
        return stored

    async def _plan(self, meter: MeterConfig, state: MeterState) -> ReadPlan | None:
        now = self.clock.now_dt()
        profile = await self._range(meter, DataClass.INTERVAL, now)
        daily = await self._range(meter, DataClass.DAILY, now) if self._daily_due(state) else None
        if state.last_event_time:
            since = datetime.fromtimestamp(state.last_event_time, timezone.utc)
        else:
            since = now - timedelta(seconds=self.initial_backfill_s)
        events = (since, now) if self.config.schedule.events and since < now else None
        if profile is None and daily is None and events is None:
            return None
        return ReadPlan(profile, daily, events)

    async def _range(
        self, meter: MeterConfig, data_class: DataClass, now: datetime
    ) -> tuple[datetime, datetime] | None:
        last = await self._last_capture(meter.id, HIGH_WATER_OBIS, data_class)
        oldest = now - timedelta(days=self.config.schedule.backfill_max_days)
        if last is None:
            # First contact: the last hours of load profile, the last days of daily values
            # (the cloud bills from the daily stream, so it gets a few days of history).
            backfill = self.initial_backfill_s
            if data_class is DataClass.DAILY:
                backfill = max(backfill, DAILY_INITIAL_BACKFILL_S)
            start = now - timedelta(seconds=backfill)
        else:
            start = datetime.fromtimestamp(last + 1, timezone.utc)
        start = max(start, oldest)
        return (start, now) if start < now else None

    async def _store(self, meter: MeterConfig, readings: list[Reading]) -> int:
        if not readings:
            return 0
        result = await self._put(readings)
        stored = int(getattr(result, "stored", len(readings)))
        state = self.stats.meters[meter.id]
        state.stored += stored
        state.duplicates += int(getattr(result, "duplicates", 0))
        return stored

    def _note_clock(self, meter: MeterConfig, state: MeterState, outcome: ReadOutcome) -> None:
        state.clock_drift_s = outcome.clock_drift_s
        if outcome.clock_adjusted:
            state.clock_adjustments += 1
            log.warning("meter %s: clock set (drift was %.1f s)", meter.id, outcome.clock_drift_s)
        elif (
            outcome.clock_drift_s is not None
            and abs(outcome.clock_drift_s) > self.config.schedule.max_clock_drift_s
        ):
            log.warning(
                "meter %s: clock drift %.1f s beyond %d s (setting not allowed)",
                meter.id,
                outcome.clock_drift_s,
                self.config.schedule.max_clock_drift_s,
            )

    def _meter_day(self) -> str:
        local = self.clock.now_dt().astimezone(ZoneInfo(self.config.timezone))
        return local.date().isoformat()

    def _daily_due(self, state: MeterState) -> bool:
        local = self.clock.now_dt().astimezone(ZoneInfo(self.config.timezone))
        since_midnight = local.hour * 3600 + local.minute * 60 + local.second
        return (
            state.last_daily_day != local.date().isoformat()
            and since_midnight >= self.config.schedule.daily_after_s
        )
