"""The DCU's own outage across the reboot that ends it (AlarmService + OutageEngine + a file)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from edge_core.alarms import AlarmMessage, AlarmType, DcuPowerFail
from edge_core.clock import ManualClock
from edge_core.runtime.alarm_service import AlarmService

METERS = ["M1", "M2", "M3"]


def _service(tmp_path: Path, clock: ManualClock, sent: list[AlarmMessage]) -> AlarmService:
    async def send(msg: AlarmMessage) -> None:
        sent.append(msg)

    return AlarmService(
        "dcu-1",
        METERS,
        clock,
        send,
        sequence_path=tmp_path / "alarm-seq",
        outage_path=tmp_path / "dcu-outage",
    )


def test_restore_after_reboot_carries_the_outage(tmp_path: Path) -> None:
    clock = ManualClock(1_700_000_000.0)
    sent: list[AlarmMessage] = []

    async def scenario() -> None:
        svc = _service(tmp_path, clock, sent)
        await svc.start()
        down_at = clock.now_dt()
        await svc.feed([DcuPowerFail(down_at)])
        await svc.stop()  # the supply is gone: no restore in this life
        assert [m.type for m in sent] == [AlarmType.LAST_GASP]
        assert set(sent[0].meters) == set(METERS)  # every meter was powered
        assert (tmp_path / "dcu-outage").exists()
        clock.advance(3600 + 17)
        sent.clear()
        again = _service(tmp_path, clock, sent)  # the next boot
        # (the first service's timer task may have moved the manual clock a little further)
        outage_s = int((clock.now_dt() - down_at).total_seconds())
        assert outage_s >= 3617
        await again.start()
        await again.stop()
        (restore,) = sent
        assert restore.type is AlarmType.RESTORE
        assert restore.meter is None  # the DCU's own restore
        assert restore.duration_s == outage_s
        assert restore.event_time - down_at == timedelta(seconds=outage_s)
        assert set(restore.meters) == set(METERS)
        assert not (tmp_path / "dcu-outage").exists()
        sent.clear()
        third = _service(tmp_path, clock, sent)  # nothing open: nothing reported
        await third.start()
        await third.stop()
        assert sent == []

    asyncio.run(scenario())


def test_unreadable_outage_record_is_dropped_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "dcu-outage").write_text("{not json")
    sent: list[AlarmMessage] = []

    async def scenario() -> None:
        svc = _service(tmp_path, ManualClock(), sent)
        await svc.start()
        await svc.stop()

    asyncio.run(scenario())
    assert sent == []
    assert not (tmp_path / "dcu-outage").exists()
