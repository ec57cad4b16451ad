"""Uplink logic on a real spool and the in-memory bus (virtual time where pacing matters)."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from pathlib import Path

import pytest

from edge_core.batch import decode_batch, peek_batch_id
from edge_core.bus.memory import MemoryBus
from edge_core.config import UplinkConfig
from edge_core.errors import BusUnavailableError, ConfigError, PayloadTooLargeError, PublishError
from edge_core.model import DataClass, Reading, Topics
from edge_core.uplink import Backoff, RateBudget, SpoolWorker, Uplink, UplinkSettings

from .helpers import keys_of, open_spool, readings
from .vtime import CountingWorker, run_virtual

TOPICS = Topics("dcu1")
FAST = UplinkSettings(
    max_batch_values=200,
    max_batch_age_s=0,
    max_publish_per_s=100,
    max_bytes_per_s=512 * 1024,
    backoff_min_s=0.05,
    backoff_max_s=0.5,
    poll_interval_s=0.05,
)


def _class_of(topic: str) -> DataClass:
    suffix = topic.rsplit("/", 1)[-1]
    return (
        {c.topic_suffix: c for c in DataClass}[suffix]
        if topic.startswith("dt/")
        else (DataClass.ALARM)
    )


def test_settings_parse_and_validate() -> None:
    s = UplinkSettings.from_mapping({"max_batch_values": "1000", "max_publish_per_s": 20})
    assert (s.max_batch_values, s.max_publish_per_s) == (1000, 20.0)
    with pytest.raises(ConfigError):
        UplinkSettings.from_mapping({"nope": 1})
    with pytest.raises(ConfigError):
        UplinkSettings.from_mapping({"max_in_flight": "x"})
    with pytest.raises(ConfigError):
        UplinkSettings(max_in_flight=0)
    with pytest.raises(ConfigError):
        UplinkSettings(backoff_min_s=2, backoff_max_s=1)
    with pytest.raises(ConfigError):
        UplinkSettings(qos=2)
    cfg = UplinkSettings.from_config(UplinkConfig(max_batch_values=123, max_publish_per_s=10))
    assert (cfg.max_batch_values, cfg.max_publish_per_s) == (123, 10)


def test_rate_budget_reserve_is_for_priority_only() -> None:
    b = RateBudget(
        messages_per_s=10,
        bytes_per_s=10_000,
        reserve_messages=2,
        reserve_bytes=1000,
        burst_s=0.5,
        now=0.0,
    )
    # capacity: 2 + 5 messages; bulk may take 5, then must wait while alarms still may go.
    taken = 0
    while b.try_take(10, priority=False, now=0.0) == 0:
        taken += 1
    assert taken == 5
    assert b.try_take(10, priority=True, now=0.0) == 0
    assert b.try_take(10, priority=True, now=0.0) == 0
    assert b.try_take(10, priority=True, now=0.0) > 0
    # a message larger than the whole byte bucket goes once the bucket is full
    big = RateBudget(
        messages_per_s=10,
        bytes_per_s=100,
        reserve_messages=0,
        reserve_bytes=0,
        burst_s=0.1,
        now=0.0,
        max_message_bytes=1000,
    )
    assert big.try_take(5000, priority=False, now=0.0) == 0
    assert big.try_take(10, priority=False, now=0.0) > 0


def test_backoff_grows_with_jitter_and_resets() -> None:
    b = Backoff(0.1, 1.0, random.Random(1))
    delays = [b.next_delay() for _ in range(6)]
    for n, d in enumerate(delays):
        cap = min(1.0, 0.1 * 2**n)
        assert cap / 2 <= d <= cap
    b.reset()
    assert b.next_delay() <= 0.1


def test_spool_worker_runs_alarm_jobs_while_a_bulk_job_runs() -> None:
    worker = SpoolWorker()
    gate = threading.Event()
    order: list[str] = []
    try:
        blocker = worker.submit(SpoolWorker.BULK, gate.wait, 5)
        bulk = [worker.submit(SpoolWorker.BULK, order.append, f"bulk{i}") for i in range(3)]
        alarm = worker.submit(SpoolWorker.ALARM, order.append, "alarm")
        alarm.result(5)  # done while the bulk thread is still blocked
        assert order == ["alarm"]
        assert not blocker.done()
        gate.set()
        for f in [blocker, *bulk]:
            f.result(5)
        assert order == ["alarm", "bulk0", "bulk1", "bulk2"]
    finally:
        worker.close()


def test_spool_worker_coalesces_queued_puts_into_one_group_commit(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    worker = SpoolWorker()
    gate = threading.Event()
    calls: list[int] = []
    put_many = spool.put_many

    def counting_put_many(batches: list[list[Reading]]) -> list[object]:
        calls.append(len(batches))
        return put_many(batches)

    spool.put_many = counting_put_many  # type: ignore[method-assign]
    rows = readings(DataClass.INTERVAL, meters=6, per_meter=10)
    try:
        blocker = worker.submit(SpoolWorker.BULK, gate.wait, 5)
        puts = [
            worker.submit(SpoolWorker.BULK, spool.put, rows[i : i + 10]) for i in range(0, 60, 10)
        ]
        dup = worker.submit(SpoolWorker.BULK, spool.put, rows[:10])
        gate.set()
        blocker.result(5)
        assert [f.result(5).stored for f in puts] == [10] * 6
        assert dup.result(5).duplicates == 10
        assert calls == [7]  # one coalesced call for the seven queued puts
        assert spool.stats().backlog_readings[DataClass.INTERVAL] == 60
    finally:
        worker.close()
        spool.close()


def test_backlog_of_several_classes_drains_in_priority_order(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    put = (
        readings(DataClass.DIAGNOSTIC, meters=5, per_meter=100)
        + readings(DataClass.INTERVAL, meters=5, per_meter=200)
        + readings(DataClass.DAILY, meters=5, per_meter=60, period=86400)
    )
    spool.put(put)
    bus = MemoryBus()

    async def main() -> None:
        await bus.start()
        async with Uplink(spool, bus, TOPICS, FAST) as uplink:
            alarm_id = await uplink.send_alarm(TOPICS.alarm_power, b'{"event":"last_gasp"}')
            await uplink.drain(timeout=30)
            await uplink.wait_published(alarm_id, 1)

    asyncio.run(main())
    classes = [_class_of(p.topic) for p in bus.published]
    assert classes[0] is DataClass.ALARM
    assert classes == sorted(classes), "bulk classes must leave highest priority first"
    assert {DataClass.DAILY, DataClass.INTERVAL, DataClass.DIAGNOSTIC} <= set(classes)
    bulk = [p.payload for p in bus.published if p.topic.startswith("dt/")]
    assert sorted(keys_of(bulk)) == sorted(r.key for r in put)  # no loss, no duplicate
    assert spool.pending() == []
    spool.close()


def test_publish_failure_keeps_rows_and_retries_with_backoff(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    put = readings(DataClass.INTERVAL, meters=3, per_meter=100)
    spool.put(put)
    bus = MemoryBus()
    settings = UplinkSettings(
        max_batch_values=100,
        max_batch_age_s=0,
        backoff_min_s=0.5,
        backoff_max_s=4.0,
        poll_interval_s=0.1,
        max_in_flight=1,
    )

    async def main() -> None:
        uplink = Uplink(spool, bus, TOPICS, settings, worker=CountingWorker())
        run = asyncio.create_task(uplink.run())
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.sleep(20.0)  # virtual: the bus is down the whole time
        assert bus.published == []
        rows = await uplink.worker.call(spool.pending)
        assert rows, "nothing may leave the spool without an acknowledgement"
        # With backoff doubling from 0.5 s up to 4 s, 20 s allow about 8 attempts, not 200.
        assert 3 <= bus.attempts <= 12, bus.attempts
        assert sum(r.attempts for r in rows) == bus.attempts
        bus.fail_next(2)
        await bus.start()
        await uplink.drain(timeout=60)
        assert loop.time() - t0 < 60
        await uplink.stop()
        await run
        uplink.worker.close()

    run_virtual(main())
    assert sorted(keys_of(p.payload for p in bus.published)) == sorted(r.key for r in put)
    assert spool.pending() == []
    spool.close()


def test_pacing_respects_message_and_byte_rates(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    spool.put(readings(DataClass.INTERVAL, meters=40, per_meter=96))
    bus = MemoryBus()
    rate, byte_rate = 20.0, 4000.0
    settings = UplinkSettings(
        max_batch_values=40,
        max_batch_age_s=0,
        max_publish_per_s=rate,
        max_bytes_per_s=byte_rate,
        alarm_reserve_messages=2,
        alarm_reserve_bytes=500,
        burst_s=0.25,
        max_in_flight=8,
        poll_interval_s=0.5,
    )
    state: dict[str, float] = {}

    async def main() -> None:
        await bus.start()
        uplink = Uplink(spool, bus, TOPICS, settings, worker=CountingWorker())
        loop = asyncio.get_running_loop()
        state["t0"] = loop.time()
        await uplink.drain(timeout=3600)
        state["t1"] = loop.time()
        uplink.worker.close()

    run_virtual(main())
    stamps = [p.time for p in bus.published]
    sizes = [len(p.payload) + len(p.topic) for p in bus.published]
    n = len(stamps)
    assert n == 96  # 3840 values in batches of 40
    msg_capacity = 2 + max(1.0, rate * 0.25)
    byte_capacity = 500 + 128 * 1024  # the byte bucket always holds one full message
    for window in (1.0, 5.0):
        for i in range(n):
            j = i
            while j < n and stamps[j] < stamps[i] + window:
                j += 1
            assert j - i <= rate * window + msg_capacity
            assert sum(sizes[i:j]) <= byte_rate * window + byte_capacity
    # ... and the budget is used: the drain cannot be faster than the rates allow.
    elapsed = state["t1"] - state["t0"]
    assert elapsed >= max((n - msg_capacity) / rate, (sum(sizes) - byte_capacity) / byte_rate)
    spool.close()


def test_alarm_during_big_drain_goes_before_remaining_bulk(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    spool.put(readings(DataClass.INTERVAL, meters=50, per_meter=96))
    bus = MemoryBus()
    settings = UplinkSettings(
        max_batch_values=48,
        max_batch_age_s=0,
        max_publish_per_s=20,
        max_bytes_per_s=100_000,
        alarm_reserve_messages=1,
        burst_s=0.1,
        max_in_flight=4,
        poll_interval_s=0.5,
    )
    marks: dict[str, int] = {}

    async def main() -> None:
        await bus.start()
        bus.set_delay(0.05)  # 50 ms to each PUBACK
        uplink = Uplink(spool, bus, TOPICS, settings, worker=CountingWorker())
        run = asyncio.create_task(uplink.run())
        uplink.notify()
        bus.set_update_gate(uplink.update_deferral)
        while len(bus.published) < 10:
            await asyncio.sleep(0.01)
        assert bus.ask_update() > 0  # batches in flight: defer the update
        marks["before"] = len(bus.published)
        alarm_id = await uplink.send_alarm(TOPICS.alarm_power, b'{"event":"power_down"}')
        await uplink.wait_published(alarm_id, 5)
        marks["alarm_at"] = bus.topics().index(TOPICS.alarm_power)
        await uplink.drain(timeout=3600)
        assert bus.ask_update() == 0
        await uplink.stop()
        await run
        uplink.worker.close()

    run_virtual(main())
    topics = bus.topics()
    assert topics.count(TOPICS.alarm_power) == 1
    bulk_total = len(topics) - 1
    assert bulk_total == 100
    # Only what was already in flight (max_in_flight) may overtake the alarm.
    assert marks["alarm_at"] - marks["before"] <= settings.max_in_flight
    assert marks["alarm_at"] < bulk_total / 2
    spool.close()


def test_on_demand_response_uses_alarm_lane_and_recovered_rows_are_sent(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    spool.put(readings(DataClass.INTERVAL, meters=20, per_meter=96))
    # Rows left by a previous run: an alarm and an on-demand response already in the outbox.
    old_alarm = spool.put_message(DataClass.ALARM, TOPICS.alarm_power, b'{"n":1}')
    old_resp = spool.put_message(DataClass.ON_DEMAND, TOPICS.read_response, b'{"n":2}')
    bus = MemoryBus()

    async def main() -> None:
        await bus.start()
        async with Uplink(spool, bus, TOPICS, FAST) as uplink:
            with pytest.raises(PublishError):
                await uplink.send_alarm("dt/ami/dcu1/x", b"x", data_class=DataClass.INTERVAL)
            with pytest.raises(PayloadTooLargeError):
                await uplink.send_alarm(TOPICS.alarm_power, bytes(200_000))
            rid = await uplink.send_alarm(
                TOPICS.read_response, b'{"n":3}', data_class=DataClass.ON_DEMAND
            )
            await uplink.drain(timeout=30)
            await uplink.wait_published(rid, 1)

    asyncio.run(main())
    topics = bus.topics()
    assert sorted(p.payload for p in bus.published if not p.topic.startswith("dt/")) == [
        b'{"n":1}',
        b'{"n":2}',
        b'{"n":3}',
    ]
    first_bulk = next(i for i, t in enumerate(topics) if t.startswith("dt/"))
    assert first_bulk >= 1
    assert spool.pending() == []
    assert old_alarm != old_resp
    spool.close()


def test_crash_before_ack_resends_same_rows_with_same_batch_ids(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    put = readings(DataClass.INTERVAL, meters=10, per_meter=96)
    spool.put(put)
    first_bus, second_bus = MemoryBus(), MemoryBus()

    async def crashed_run() -> None:
        await first_bus.start()
        first_bus.hold()  # PUBACKs never come: the process "dies" with batches in flight
        uplink = Uplink(spool, first_bus, TOPICS, FAST)
        run = asyncio.create_task(uplink.run())
        uplink.notify()
        for _ in range(200):
            if first_bus.attempts >= 3:
                break
            await asyncio.sleep(0.01)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        uplink.worker.close()

    asyncio.run(crashed_run())
    sealed = {r.id: (r.batch_id, r.payload) for r in spool.pending(1000)}
    assert sealed, "the crashed run sealed batches it never got acknowledged"
    spool.close()

    reopened = open_spool(tmp_path)

    async def second_run() -> None:
        await second_bus.start()
        async with Uplink(reopened, second_bus, TOPICS, FAST) as uplink:
            await uplink.drain(timeout=30)

    asyncio.run(second_run())
    by_id: dict[bytes, bytes] = {}
    for p in second_bus.published:
        by_id[peek_batch_id(p.payload)] = p.payload
    for batch_id, payload in sealed.values():
        assert by_id[batch_id] == payload  # re-sent unchanged: same id, same bytes
    assert sorted(keys_of(by_id.values())) == sorted(r.key for r in put)
    reopened.close()


def test_oversized_row_is_skipped_not_deleted(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    big = spool.put_message(DataClass.DAILY, TOPICS.daily, bytes(130 * 1024))
    spool.put(readings(DataClass.INTERVAL, meters=2, per_meter=10))
    bus = MemoryBus()

    async def main() -> None:
        await bus.start()
        async with Uplink(spool, bus, TOPICS, FAST) as uplink:
            await uplink.drain(timeout=30)
            assert uplink.snapshot()["publish_errors"] == 1

    asyncio.run(main())
    assert [r.id for r in spool.pending()] == [big]
    assert len(bus.published) == 1
    spool.close()


def test_health_snapshot_and_report(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    spool.put(readings(DataClass.INTERVAL, meters=4, per_meter=96))
    bus = MemoryBus()

    async def main() -> dict[str, object]:
        await bus.start()
        async with Uplink(spool, bus, TOPICS, FAST) as uplink:
            await uplink.send_alarm(TOPICS.alarm_power, b"{}")
            await uplink.drain(timeout=30)
            await uplink.publish_health()
            return uplink.snapshot()

    snap = asyncio.run(main())
    report = json.loads(bus.published[-1].payload)
    assert bus.published[-1].topic == TOPICS.health
    assert report["published_messages"] == snap["published_messages"] == len(bus.published) - 1
    assert report["stored"] == 384
    assert report["backlog_readings"] == 0
    assert report["alarms_published"] == 1
    assert report["latency"]["bulk"]["count"] == len(bus.published) - 2
    assert report["latency"]["alarm"]["p99_ms"] is not None
    assert report["spool"]["acked"]["interval"] == len(bus.published) - 2
    decoded = [decode_batch(p.payload) for p in bus.published if p.topic == TOPICS.interval]
    assert sum(len(b.readings) for b in decoded) == 384
    spool.close()


def test_drain_timeout_raises_and_stop_is_clean(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    spool.put(readings(DataClass.INTERVAL, meters=2, per_meter=10))
    bus = MemoryBus()

    async def main() -> None:
        uplink = Uplink(spool, bus, TOPICS, FAST, worker=CountingWorker())
        with pytest.raises(PublishError):
            await uplink.drain(timeout=5)  # the bus never connects
        assert bus.attempts >= 1
        uplink.worker.close()

    run_virtual(main())
    assert spool.pending() != []
    spool.close()


def test_memory_bus_outage_error_type_is_retried(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    put = readings(DataClass.DAILY, meters=3, per_meter=30, period=86400)
    spool.put(put)
    bus = MemoryBus()

    async def main() -> None:
        await bus.start()
        bus.fail_next(3, BusUnavailableError)
        uplink = Uplink(spool, bus, TOPICS, FAST, worker=CountingWorker())
        await uplink.drain(timeout=600)
        uplink.worker.close()

    run_virtual(main())
    assert sorted(keys_of(p.payload for p in bus.published)) == sorted(r.key for r in put)
    spool.close()


@pytest.mark.parametrize("early", [True, False])
def test_alarm_first_attempt_fails_then_lane_retries(tmp_path: Path, early: bool) -> None:
    spool = open_spool(tmp_path)
    bus = MemoryBus()
    settings = UplinkSettings(
        alarm_publish_while_persisting=early, backoff_min_s=0.05, poll_interval_s=0.05
    )

    async def main() -> None:
        await bus.start()
        async with Uplink(spool, bus, TOPICS, settings) as uplink:
            run = asyncio.create_task(uplink.run())
            bus.fail_next(2)
            oid = await uplink.send_alarm(TOPICS.alarm_power, b'{"e":1}')
            assert [r.id for r in await uplink.worker.call(spool.pending)] in ([oid], [])
            await uplink.wait_published(oid, 10)
            await uplink.drain(timeout=10)
            await uplink.stop()
            await run

    asyncio.run(main())
    assert bus.topics() == [TOPICS.alarm_power]
    assert bus.attempts == 3
    assert spool.pending() == []
    spool.close()


def test_drain_finishes_while_alarms_keep_coming(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    spool.put(readings(DataClass.INTERVAL, meters=20, per_meter=96))
    bus = MemoryBus()

    async def main() -> int:
        await bus.start()
        async with Uplink(spool, bus, TOPICS, FAST) as uplink:
            run = asyncio.create_task(uplink.run())
            drain = asyncio.create_task(uplink.drain(timeout=30))
            raised = 0
            while not drain.done():
                await uplink.send_alarm(TOPICS.alarm_power, b'{"n":%d}' % raised)
                raised += 1
                await asyncio.sleep(0.02)  # 50 alarms/s, within the 100/s budget
            await drain
            await uplink.stop()
            await run
        return raised

    raised = asyncio.run(main())
    assert raised >= 1
    assert sum(1 for t in bus.topics() if t.startswith("dt/")) == 10
    assert bus.topics().count(TOPICS.alarm_power) >= raised - 1
    spool.close()
