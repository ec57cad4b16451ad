"""Acquisition against a fake meter and the real spool: ranges, backfill, dedupe, buses."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from pathlib import Path

import pytest

from edge_core.clock import ManualClock
from edge_core.config import EdgeConfig, MeterConfig
from edge_core.errors import MeterTimeoutError
from edge_core.model import DataClass, Reading
from edge_core.runtime.acquisition import (
    DAILY_PROFILE,
    HIGH_WATER_OBIS,
    LOAD_PROFILE,
    Acquisition,
    ReadOutcome,
    ReadPlan,
)
from edge_core.spool import Spool

T0 = 1_750_000_500.0  # 2025-06-15T15:15:00Z, a quarter-hour boundary


class FakeMeter:
    """Answers profile reads by range from a cumulative register rising 100 Wh per interval."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, datetime, datetime]] = []
        self.plans: list[ReadPlan] = []
        self.events: list[object] = []
        self.drift: float | None = 0.5
        self.fail = 0
        self.active = 0
        self.max_active = 0

    async def read(self, meter: MeterConfig, plan: ReadPlan) -> ReadOutcome:
        self.plans.append(plan)
        readings: list[Reading] = []
        for obis, rng, dc in (
            (LOAD_PROFILE, plan.profile, DataClass.INTERVAL),
            (DAILY_PROFILE, plan.daily, DataClass.DAILY),
        ):
            if rng is not None:
                readings += await self.read_range(meter, obis, rng[0], rng[1], dc)
        return ReadOutcome(readings, list(self.events), self.drift, False)

    async def read_range(
        self, meter: MeterConfig, obis: str, start: datetime, end: datetime, dc: DataClass
    ) -> list[Reading]:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(0.001)
            self.requests.append((meter.id, obis, start, end))
            if self.fail:
                self.fail -= 1
                raise MeterTimeoutError("no answer", meter=meter.id)
            period = 86400 if obis == DAILY_PROFILE else 900
            first = -(-int(start.timestamp()) // period) * period
            return [
                Reading(meter.id, HIGH_WATER_OBIS, t, t // 9, 0, 30, 0, dc)
                for t in range(first, int(end.timestamp()) + 1, period)
            ]
        finally:
            self.active -= 1


def _setup(tmp_path: Path, meters: list[dict]) -> tuple[Acquisition, FakeMeter, Spool, ManualClock]:
    cfg = EdgeConfig.from_mapping(
        {"thing_name": "dcu-t", "meters": meters, "schedule": {"daily_after_s": 300}}
    )
    spool = Spool.open(tmp_path / "spool.db")
    meter = FakeMeter()
    clock = ManualClock(T0)

    async def put(readings):
        return spool.put(readings)

    async def last(m, o, dc):
        return spool.last_capture(m, o, dc)

    acq = Acquisition(
        cfg, clock, put=put, last_capture=last, read=meter.read, initial_backfill_s=3600
    )
    return acq, meter, spool, clock


def test_first_read_backfills_the_initial_window_then_reads_only_new_intervals(
    tmp_path: Path,
) -> None:
    acq, meter, spool, clock = _setup(tmp_path, [{"id": "M1", "url": "tcp://127.0.0.1:1"}])
    m = acq.config.meters[0]
    stored = asyncio.run(acq.read_once(m))
    profile_reqs = [r for r in meter.requests if r[1] == LOAD_PROFILE]
    assert profile_reqs[0][2].timestamp() == T0 - 3600
    assert stored >= 5  # 4 intervals of the last hour, plus the daily capture of today
    assert spool.last_capture("M1", HIGH_WATER_OBIS) == T0
    clock.advance(900)
    assert asyncio.run(acq.read_once(m)) == 1
    assert meter.requests[-1][2].timestamp() == T0 + 1  # from just after the last stored capture
    spool.close()


def test_after_an_outage_the_missing_intervals_are_backfilled_exactly(tmp_path: Path) -> None:
    acq, meter, spool, clock = _setup(tmp_path, [{"id": "M1", "url": "tcp://127.0.0.1:1"}])
    m = acq.config.meters[0]
    comm: list[tuple[str, bool, int]] = []
    acq._on_comm = lambda mid, ok, n: comm.append((mid, ok, n))
    asyncio.run(acq.read_once(m))
    meter.fail = 3
    for _ in range(3):
        clock.advance(900)
        assert asyncio.run(acq.read_once(m)) == 0
    clock.advance(900)
    assert asyncio.run(acq.read_once(m)) == 4  # the three missed intervals and the new one
    assert comm == [("M1", False, 1), ("M1", False, 2), ("M1", False, 3), ("M1", True, 3)]
    times = [
        t
        for (t,) in spool._conn.execute(
            "SELECT capture_time FROM readings WHERE data_class = ? ORDER BY capture_time",
            (int(DataClass.INTERVAL),),
        )
    ]
    assert times == [int(T0 - 3600 + 900 * i) for i in range(9)]  # no gap, no duplicate
    assert acq.stats.meters["M1"].failures == 3
    spool.close()


def test_reading_an_overlapping_range_stores_nothing_twice(tmp_path: Path) -> None:
    acq, meter, spool, clock = _setup(tmp_path, [{"id": "M1", "url": "tcp://127.0.0.1:1"}])
    m = acq.config.meters[0]
    asyncio.run(acq.read_once(m))
    before = spool.stats().to_dict()
    # The meter answers a wider range than asked (some do): the spool refuses the repeats.
    original = meter.read_range

    async def wider(meter_cfg, obis, start, end, dc):
        return await original(
            meter_cfg, obis, datetime.fromtimestamp(T0 - 3600, timezone.utc), end, dc
        )

    meter.read_range = wider
    clock.advance(900)
    asyncio.run(acq.read_once(m))
    assert acq.stats.meters["M1"].duplicates >= 4
    after = spool.stats().to_dict()
    assert sum(after["backlog_readings"].values()) - sum(before["backlog_readings"].values()) == 1
    spool.close()


def test_meters_on_one_serial_bus_are_read_one_at_a_time(tmp_path: Path) -> None:
    meters = [{"id": f"S{i}", "url": "serial:///dev/ttyAMI0"} for i in range(4)]
    meters += [{"id": f"T{i}", "url": f"tcp://127.0.0.1:{4000 + i}"} for i in range(4)]
    acq, meter, spool, _clock = _setup(tmp_path, meters)

    async def all_at_once() -> None:
        serial = [acq.read_once(m) for m in acq.config.meters if m.bus]
        await asyncio.gather(*serial)
        serial_peak = meter.max_active
        meter.max_active = 0
        await asyncio.gather(*(acq.read_once(m) for m in acq.config.meters if not m.bus))
        assert serial_peak == 1
        assert meter.max_active > 1  # TCP meters do run concurrently

    asyncio.run(all_at_once())
    spool.close()


@pytest.mark.parametrize(("seconds_after_midnight", "expect_daily"), [(60, False), (3610, True)])
def test_daily_read_waits_until_after_midnight_meter_time(
    tmp_path: Path, seconds_after_midnight: int, expect_daily: bool
) -> None:
    acq, meter, spool, clock = _setup(tmp_path, [{"id": "M1", "url": "tcp://127.0.0.1:1"}])
    clock.t = datetime(2025, 6, 16, tzinfo=timezone.utc).timestamp() + seconds_after_midnight
    asyncio.run(acq.read_once(acq.config.meters[0]))
    daily = [r for r in meter.requests if r[1] == DAILY_PROFILE]
    assert bool(daily) is expect_daily
    if expect_daily:
        assert (
            spool.last_capture("M1", HIGH_WATER_OBIS, DataClass.DAILY)
            == datetime(2025, 6, 16, tzinfo=timezone.utc).timestamp()
        )
        # Once a day: a second read the same day does not ask again.
        clock.advance(900)
        asyncio.run(acq.read_once(acq.config.meters[0]))
        assert len([r for r in meter.requests if r[1] == DAILY_PROFILE]) == 1
    spool.close()


def test_one_poll_carries_profile_daily_events_and_clock_and_reports_events(tmp_path: Path) -> None:
    acq, meter, spool, clock = _setup(tmp_path, [{"id": "M1", "url": "tcp://127.0.0.1:1"}])
    seen: list[tuple[str, list, int]] = []

    async def on_events(mid, records, readings):
        seen.append((mid, list(records), len(readings)))

    acq._on_events = on_events
    meter.events = ["an event-log row"]
    meter.drift = 42.0
    m = acq.config.meters[0]
    asyncio.run(acq.read_once(m))
    first = meter.plans[0]
    assert first.profile is not None
    assert first.daily is not None
    assert first.events is not None
    assert first.events[0].timestamp() == T0 - 3600  # initial window, like the profile
    assert seen == [("M1", ["an event-log row"], seen[0][2])]
    assert acq.stats.meters["M1"].clock_drift_s == 42.0
    clock.advance(900)
    asyncio.run(acq.read_once(m))
    second = meter.plans[1]
    assert second.daily is None  # once per meter day
    assert second.events[0] == first.events[1]  # event logs continue where the last poll ended
    spool.close()
