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
* This module imports nothing from analytics: the alarm path carries no ML dependency.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from edge_core.alarms import (
    AlarmMessage,
    AlarmSettings,
    MeterCommLost,
    MeterCommRestored,
    OutageEngine,
    PowerFailMonitor,
    PowerFailSettings,
)
from edge_core.clock import Clock
from edge_core.errors import AmiError, SpoolError

__all__ = ["AlarmService", "FileSequence"]

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
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()
        self.sent = 0
        self.failed = 0

    async def start(self) -> None:
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

    def on_comm(self, meter: str, ok: bool, _failures: int) -> None:
        """Acquisition's callback (called on the loop): one event per poll outcome."""
        event = MeterCommRestored(meter) if ok else MeterCommLost(meter)
        self._tasks.append(asyncio.get_running_loop().create_task(self._feed_quiet([event])))

    async def _feed_quiet(self, events: list[Any]) -> None:
        try:
            await self.feed(events)
        except AmiError:
            log.exception("alarm events %s not processed", events)

    async def _deliver(self, msgs: list[AlarmMessage]) -> None:
        for msg in msgs:
            try:
                await self._send(msg)
                self.sent += 1
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
