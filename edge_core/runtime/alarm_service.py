"""The alarm path of the concentrator: events in, alarm messages persisted and sent first.

Theory of operation
-------------------
* Sources feed :meth:`AlarmService.feed`: the acquisition's comm callbacks, event-log and
  power-failure-log rows read during polling, profile status bits, pushed DataNotifications and
  the DCU's own power-fail input (:class:`~edge_core.alarms.PowerFailMonitor`).
* The engine decides (qualification, momentary, flapping, aggregation); every message it
  returns is handed to ``send`` in the engine's priority order. ``send`` is the uplink's alarm
  lane: it persists the message in the spool (fsync) and then publishes it ahead of bulk data,
  so on the DCU's own power failure the last gasp is on disk before it is on the wire.
* Timers: a background task wakes at the engine's next deadline (at least every second of
  clock time) and calls ``tick``.
* Sequence numbers survive restarts: :class:`FileSequence` reserves blocks on disk ahead of use,
  so a crash skips numbers but never repeats one.
* The DCU's own open outage survives the reboot that usually ends it: once its last gasp is
  persisted, its start and meters go to a small file (``outage_path``); a service that starts
  and finds it reports the DCU's restore with the outage's duration, and a restore clears it.
* This module imports nothing from analytics: the alarm path carries no ML dependency.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edge_core.alarms import (
    AlarmMessage,
    AlarmSettings,
    AlarmType,
    DcuPowerRestored,
    MeterCommLost,
    MeterCommRestored,
    MeterPowerDown,
    MeterPowerUp,
    OutageEngine,
    PowerFailMonitor,
    PowerFailSettings,
    event_log_to_events,
    power_failure_log_to_events,
    profile_status_to_events,
)
from edge_core.clock import Clock
from edge_core.errors import AmiError, SpoolError
from edge_core.model import Reading

__all__ = ["POWER_FAILURE_LOG", "AlarmService", "FileSequence", "records_to_events"]

POWER_FAILURE_LOG = "1.0.99.97.0.255"
LAST_GASP_BIT = 0x01  # alarm register bit 0 (SMR5 / IDIS alarm push)
POWER_UP_BIT = 0x02  # alarm register bit 1: supply returned (meters set to push on power-up)
QUALITY_BITS = 0x24  # profile status: bit 5 clock adjusted, bit 2 data not valid


def records_to_events(meter: str, records: Iterable[Any], readings: Iterable[Reading]) -> list[Any]:
    """Event-log rows and profile status bits of one poll as engine inputs, oldest first.

    ``records`` are ``EventRecord``-like (log, time, code, duration_s). Power-failure log rows
    become power-ups carrying the outage duration the meter measured; every other log row goes
    through the IDIS code table. Status bits repeat on every channel of a row: one event per
    capture time."""
    out: list[tuple[datetime, int, Any]] = []
    for rec in records:
        events: Sequence[Any]
        if str(rec.log) == POWER_FAILURE_LOG and rec.duration_s is not None:
            events = power_failure_log_to_events(meter, [(rec.time, int(rec.duration_s))])
        else:
            events = event_log_to_events([(meter, int(rec.code), rec.time)])
        out.extend((rec.time, 1, e) for e in events)
    seen: set[int] = set()
    for r in readings:
        if r.status & QUALITY_BITS and r.capture_time not in seen:
            seen.add(r.capture_time)
            t = datetime.fromtimestamp(r.capture_time, timezone.utc)
            out.extend((t, 0, e) for e in profile_status_to_events(meter, t, r.status))
    out.sort(key=lambda item: (item[0], item[1]))
    return [e for _, _, e in out]


log = logging.getLogger(__name__)

SendAlarm = Callable[[AlarmMessage], Awaitable[None]]


class FileSequence:
    """A persisted, strictly increasing sequence. ``block`` numbers are reserved per write."""

    def __init__(self, path: str | Path, block: int = 1000) -> None:
        self.path = Path(path)
        self.block = block
        try:
            start = int(self.path.read_text().strip() or 0)
        except FileNotFoundError:
            start = 0
        except (OSError, ValueError) as exc:
            raise SpoolError(f"alarm sequence file {self.path} unreadable: {exc}") from exc
        self.value = start  # numbers up to here may have been used by an earlier run
        self._reserved = start
        self._reserve()

    def _reserve(self) -> None:
        self._reserved = self.value + self.block
        tmp = self.path.with_suffix(".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w") as f:
                f.write(str(self._reserved))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            raise SpoolError(f"cannot persist alarm sequence at {self.path}: {exc}") from exc

    def __call__(self) -> int:
        self.value += 1
        if self.value >= self._reserved:
            self._reserve()
        return self.value


class _OutageMarker:
    """A small JSON file holding the DCU's open outage (start, meters), written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def save(self, start: datetime, meters: Iterable[str]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        data = json.dumps({"outage_start": start.isoformat(), "meters": sorted(meters)})
        try:
            with tmp.open("w", encoding="utf-8") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(self.path)
        except OSError as exc:
            log.error("cannot record the DCU outage in %s: %s", self.path, exc)

    def load(self) -> tuple[datetime, tuple[str, ...]] | None:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            start = datetime.fromisoformat(raw["outage_start"])
            meters = tuple(str(m) for m in raw["meters"])
            if start.tzinfo is None:
                raise ValueError("outage_start without a time zone")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("unreadable DCU outage record %s (%s): dropped", self.path, exc)
            self.clear()
            return None
        return start, meters

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class AlarmService:
    def __init__(
        self,
        dcu: str,
        meters: Iterable[str],
        clock: Clock,
        send: SendAlarm,
        *,
        settings: AlarmSettings | None = None,
        powerfail: PowerFailSettings | None = None,
        sequence_path: str | Path,
        outage_path: str | Path | None = None,
    ) -> None:
        self.clock = clock
        self.engine = OutageEngine(
            dcu,
            settings,
            sequence=FileSequence(sequence_path),
            clock=clock.now_dt,
            meters=list(meters),
        )
        self._send = send
        self._powerfail = powerfail
        # The DCU's own open outage survives the reboot that usually ends it: written once its
        # last gasp is persisted, removed once its restore is; see _restore_after_reboot.
        self._outage = _OutageMarker(Path(outage_path)) if outage_path is not None else None
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()
        self.sent = 0
        self.failed = 0

    async def start(self) -> None:
        await self._restore_after_reboot()
        self._tasks.append(asyncio.create_task(self._timer_loop(), name="alarm-timers"))
        if self._powerfail is not None:
            self._tasks.append(asyncio.create_task(self._powerfail_loop(), name="powerfail"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def feed(self, events: Iterable[Any]) -> list[AlarmMessage]:
        """Hand events to the engine and send what it decides, in its order."""
        async with self._lock:
            msgs = self.engine.handle_many(list(events), now=self.clock.now_dt())
            await self._deliver(msgs)
        return msgs

    async def feed_meter_records(
        self, meter: str, records: list[Any], readings: list[Reading]
    ) -> list[AlarmMessage]:
        """One poll's event-log rows and profile statuses (see :func:`records_to_events`)."""
        events = records_to_events(meter, records, readings)
        return await self.feed(events) if events else []

    async def feed_push(self, push: Any) -> list[AlarmMessage]:
        """A DataNotification push: the alarm register's last-gasp bit is a power-down, its
        power-up bit a restore (the event log read at the next poll confirms both)."""
        bits = next((v for v in reversed(push.values) if isinstance(v, int)), 0)
        when = push.time or self.clock.now_dt()
        events: list[Any] = []
        if bits & LAST_GASP_BIT:
            events.append(MeterPowerDown(push.meter, when, source="push"))
        if bits & POWER_UP_BIT:
            events.append(MeterPowerUp(push.meter, when, source="push"))
        if not events:
            log.info("push from %s with alarm bits %#x: no power event", push.meter, bits)
            return []
        return await self.feed(events)

    def on_comm(self, meter: str, ok: bool, _failures: int) -> None:
        """Acquisition's callback (called on the loop): one event per poll outcome."""
        event = MeterCommRestored(meter) if ok else MeterCommLost(meter)
        self._tasks.append(asyncio.get_running_loop().create_task(self._feed_quiet([event])))

    async def _feed_quiet(self, events: list[Any]) -> None:
        try:
            await self.feed(events)
        except AmiError:
            log.exception("alarm events %s not processed", events)

    async def _restore_after_reboot(self) -> None:
        """A last gasp without its restore means the DCU went down with its supply and is
        running again: report the restore now, with the outage's duration and meters. (If the
        supply is still failed, the power-fail monitor reports that right after.)"""
        if self._outage is None:
            return
        opened = self._outage.load()
        if opened is None:
            return
        start, meters = opened
        log.warning("DCU restarted after its last gasp at %s: reporting the restore", start)
        await self.feed([DcuPowerRestored(self.clock.now_dt(), outage_start=start, meters=meters)])

    async def _deliver(self, msgs: list[AlarmMessage]) -> None:
        for msg in msgs:
            try:
                await self._send(msg)
                self.sent += 1
                if self._outage is not None:
                    # after the send: the last gasp is durable and on its way; the record's
                    # fsync runs off the event loop so it does not hold up the publish
                    if msg.type is AlarmType.LAST_GASP:
                        await asyncio.to_thread(self._outage.save, msg.event_time, msg.meters)
                    elif msg.type is AlarmType.RESTORE and msg.meter is None:
                        await asyncio.to_thread(self._outage.clear)
            except AmiError as exc:
                # The message could not even be persisted (spool full of alarms, disk gone):
                # nothing else can be done for it here; count it loudly.
                self.failed += 1
                log.error("alarm %s %s lost before persisting: %s", msg.type, msg.id, exc)

    async def _timer_loop(self) -> None:
        while True:
            now = self.clock.now_dt()
            deadline = self.engine.next_deadline()
            wait = 1.0 if deadline is None else max(0.0, min(1.0, (deadline - now).total_seconds()))
            await self.clock.sleep(wait)
            async with self._lock:
                await self._deliver(self.engine.tick(now=self.clock.now_dt()))

    async def _powerfail_loop(self) -> None:
        assert self._powerfail is not None
        monitor = PowerFailMonitor(self._powerfail, clock=self.clock.now_dt)
        async for event in monitor.events():
            log.warning("DCU power signal: %s", type(event).__name__)
            await self.feed([event])
