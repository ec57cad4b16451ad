"""Alarm latency while a big backlog drains, against the same alarms on an idle uplink.

``python -m bench.alarm_latency [--backlog-values 1000000] [--alarms 100] [--interval-ms 50]``
prints one JSON object.

Setup: a private Mosquitto on a free loopback port; a real spool (SQLite, WAL, synchronous=FULL)
in a temporary directory; the uplink over :class:`~edge_core.bus.mqtt.MqttBus` with IoT Core's
per-connection limits (100 publishes/s, 512 KB/s). Latency is measured from the signal (the call
to ``send_alarm``) to the broker's PUBACK (``wait_published`` returning), for alarms raised every
``--interval-ms``:

* baseline: the uplink idle (empty spool);
* draining: ``--backlog-values`` realistic interval readings spooled, the uplink draining them;
  alarms are raised from the start of the drain until it is over (at least ``--alarms``).

Also reported: signal -> durable (``send_alarm`` returning once the spool committed the alarm).
The first publish attempt runs while the spool commits (``alarm_publish_while_persisting``), so
the PUBACK does not wait for a bulk job (a seal) that holds the spool thread; the commit does.

The broker is a stock Mosquitto unless ``--broker-nodelay`` (``set_tcp_nodelay true``): a stock
Mosquitto holds small writes (PUBACKs) under Nagle's algorithm while a bulk batch is being
acknowledged, which can add a ~40 ms delayed ACK to an alarm's PUBACK that no change on the edge
can remove; the flag shows how much of the tail is the broker's.

Target (ARCHITECTURE.md): p99 <= 50 ms with a 1M-value backlog draining.

Power fail (``"powerfail"`` in the JSON; ``--powerfail-cycles 0`` skips it). The latency from
the concentrator's own power-fail signal to the PUBACK of its last gasp, through the real
``PowerFailMonitor``, ``AlarmService`` (its engine with the default ``AlarmSettings``: a DCU
power fail gives its last gasp at once, without qualification, and each restore one DCU
``restore``, so every cycle yields exactly one last gasp), uplink and MQTT bus. The GPIO
input is a temporary value file configured as a user would (``powerfail: {source: gpio, path,
fail_level: 0}``). The clock starts right before the bench writes the "power lost" level into
it (in place, flushed) and stops when the last gasp's PUBACK comes back; then power is
restored, the DCU restore is published, and after ``--interval-ms`` plus a random fraction of
the poll interval (so the input is sampled over its whole poll period) the next cycle starts.
Scenarios, in one run:

* idle: nothing else going on (the baseline);
* draining: ``--backlog-values`` spooled and drained meanwhile (cycles go on until it is over,
  at least ``--powerfail-cycles``);
* meter_read: a simulated meter (own process, DLMS TCP wrapper on 127.0.0.1, every answer
  ``--meter-frame-delay-ms`` late: a slow link) read in a loop by the real reader in this event
  loop, profile and event logs as the acquisition reads them, readings into the spool and the
  outcome into the alarm service; ``failed_while_busy`` counts failures during a read;
* shipped_defaults_idle (with ``--powerfail-defaults-cycles``): idle again with the shipped
  ``poll_interval_s``/``debounce_s``, when the measured scenarios use others.

Mode: a regular file never signals POLLPRI, and the bench writes no ``edge`` file, so the
monitor polls it (``"mode": "polled"``): detection waits for the next poll plus the debounce.
By default the scenarios use the shipped settings (a polled value file: every 5 ms, 2 ms
debounce); ``--powerfail-poll-ms`` and ``--powerfail-debounce-ms`` measure others (the
defaults before this bench existed, 200 ms and 50 ms, gave p99 252 ms: detection is the
budget).
``signal_to_uplink`` (detection and the engine) and ``uplink_to_puback`` split each figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import random
import resource
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench._broker import LocalBroker, backlog
from edge_core.alarms import (
    AlarmMessage,
    AlarmSettings,
    AlarmType,
    PowerFailMonitor,
    PowerFailSettings,
)
from edge_core.bus.mqtt import MqttBus
from edge_core.bus.settings import MqttSettings
from edge_core.clock import SystemClock
from edge_core.errors import MeterUnreachableError
from edge_core.health import percentile
from edge_core.meter import read_meter
from edge_core.model import DataClass, Topics
from edge_core.runtime.alarm_service import AlarmService
from edge_core.simulator import serve_meters
from edge_core.spool.store import Spool
from edge_core.uplink import Uplink, UplinkSettings

__all__ = ["main", "run"]

TOPICS = Topics("dcu-bench")
PUT_CHUNK = 10_000


def _summary(latencies_s: Sequence[float]) -> dict[str, Any]:
    ms = [x * 1000.0 for x in latencies_s]
    return {
        "alarms": len(ms),
        "p50_ms": _r(percentile(ms, 50)),
        "p99_ms": _r(percentile(ms, 99)),
        "max_ms": _r(max(ms) if ms else None),
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


class _TimedBus(MqttBus):
    """MqttBus noting when each alarm's PUBACK came back (by payload)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acked_at: dict[bytes, float] = {}
        self._waiters: dict[bytes, asyncio.Future[float]] = {}

    async def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        await super().publish(topic, payload, qos)
        if topic == TOPICS.alarm_power:
            at = self.acked_at.setdefault(payload, time.perf_counter())
            waiter = self._waiters.pop(payload, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(at)

    async def acked(self, payload: bytes, timeout: float) -> float:
        """When the PUBACK of ``payload`` came back (perf_counter s), waiting for it. Keyed by
        payload, not outbox id: the spool reuses the id of a deleted last row."""
        if payload in self.acked_at:
            return self.acked_at[payload]
        waiter = self._waiters.setdefault(payload, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(asyncio.shield(waiter), timeout)


async def _ticker(out: list[float], period_s: float = 0.002) -> None:
    """How late the event loop wakes a 2 ms sleep (ms): a stalled loop delays every alarm."""
    loop = asyncio.get_running_loop()
    while True:
        t = loop.time()
        await asyncio.sleep(period_s)
        out.append(max(0.0, (loop.time() - t - period_s) * 1000.0))


async def _alarm(uplink: Uplink, bus: _TimedBus, n: int, out: list[tuple[float, float]]) -> None:
    payload = b'{"event":"power_down","n":%d}' % n
    t0 = time.perf_counter()
    oid = await uplink.send_alarm(TOPICS.alarm_power, payload)
    durable = time.perf_counter() - t0
    await uplink.wait_published(oid, timeout=60)
    out.append((bus.acked_at[payload] - t0, durable))


async def _raise_alarms(
    uplink: Uplink,
    bus: _TimedBus,
    *,
    interval_s: float,
    minimum: int,
    until: asyncio.Future[Any] | None,
) -> tuple[list[tuple[float, float]], int]:
    """Raise alarms every ``interval_s`` until ``until`` is done (and at least ``minimum``);
    returns the latencies and how many were raised while ``until`` was still running."""
    latencies: list[tuple[float, float]] = []
    tasks: list[asyncio.Task[None]] = []
    during = 0
    n = 0
    while n < minimum or (until is not None and not until.done()):
        if until is not None and not until.done():
            during += 1
        tasks.append(asyncio.create_task(_alarm(uplink, bus, n, latencies)))
        n += 1
        await asyncio.sleep(interval_s)
    await asyncio.gather(*tasks)
    return latencies, during


async def _phase(
    broker_url: str,
    spool: Spool,
    settings: UplinkSettings,
    args: argparse.Namespace,
    *,
    drain: bool,
) -> dict[str, Any]:
    bus = _TimedBus(MqttSettings.from_url(broker_url, publish_timeout_s=30.0))
    await bus.start()
    out: dict[str, Any] = {}
    try:
        async with Uplink(spool, bus, TOPICS, settings) as uplink:
            run = asyncio.create_task(uplink.run())
            stalls: list[float] = []
            ticker = asyncio.create_task(_ticker(stalls))
            until: asyncio.Future[Any] | None = None
            t0 = time.perf_counter()
            if drain:
                until = asyncio.ensure_future(uplink.drain(timeout=args.drain_timeout_s))
            lat, during = await _raise_alarms(
                uplink, bus, interval_s=args.interval_ms / 1000.0, minimum=args.alarms, until=until
            )
            if until is not None:
                await until
            elapsed = time.perf_counter() - t0
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            snap = uplink.snapshot()
            await uplink.stop()
            await run
        out = _summary([puback for puback, _ in lat])
        out["signal_to_durable"] = _summary([durable for _, durable in lat])
        out["alarms_while_draining"] = during
        out["loop_stall_ms"] = {
            "p99": _r(percentile(stalls, 99)),
            "max": _r(max(stalls) if stalls else None),
            "over_10ms": sum(1 for x in stalls if x > 10.0),
            "ticks": len(stalls),
        }
        if drain:
            out["drain_s"] = round(elapsed, 3)
            out["bulk_messages"] = snap["published_messages"] - snap["alarms_published"]
            out["bulk_values_per_s"] = round(args.backlog_values / elapsed, 1)
    finally:
        await bus.close()
    return out


# ------------------------------------------------------------------ power-fail phase

#: The value file's levels. ``fail_level`` 0: a supervisor's PFO output is usually active low.
POWER_OK = b"1\n"
POWER_LOST = b"0\n"
WAIT_S = 30.0  # bound on every wait of a power-fail cycle; never an expectation


@dataclass(frozen=True, slots=True)
class _Sent:
    """One alarm the service handed to the uplink: when (perf_counter s), as what."""

    type: AlarmType
    payload: bytes
    at: float


class _AlarmSink:
    """The AlarmService's ``send`` (as EdgeApp wires it) that also notes what went out."""

    def __init__(self, uplink: Uplink) -> None:
        self.uplink = uplink
        self.sent: asyncio.Queue[_Sent] = asyncio.Queue()

    async def __call__(self, msg: AlarmMessage) -> None:
        at = time.perf_counter()
        payload = msg.to_json()
        await self.uplink.send_alarm(msg.topic(TOPICS), payload, data_class=msg.data_class)
        self.sent.put_nowait(_Sent(msg.type, payload, at))

    async def next_of(self, type_: AlarmType) -> _Sent:
        while True:
            item = await asyncio.wait_for(self.sent.get(), WAIT_S)
            if item.type is type_:
                return item


class _PowerInput:
    """The GPIO value file the bench drives. The level is rewritten in place (same length, never
    truncated), so the monitor never reads a half-written or empty file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(POWER_OK)
        self.path = path
        self._f = path.open("r+b")

    def set(self, level: bytes) -> None:
        self._f.seek(0)
        self._f.write(level)
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class _Background:
    """What else the concentrator does while its power fails (idle: nothing)."""

    name = "idle"

    async def start(self, uplink: Uplink, alarms: AlarmService) -> None:
        return None

    def busy(self) -> bool:
        """True while the load is on (a power failure now counts as during it)."""
        return False

    def more(self) -> bool:
        """True while power failures should go on past the minimum (until the load ends)."""
        return False

    async def stop(self) -> dict[str, Any]:
        return {}


class _Draining(_Background):
    """The uplink draining a spooled backlog (the bench spools it before the phase)."""

    name = "draining"

    def __init__(self, timeout_s: float, values: int) -> None:
        self.timeout_s = timeout_s
        self.values = values
        self._drain: asyncio.Future[None] | None = None
        self._t0 = 0.0

    async def start(self, uplink: Uplink, alarms: AlarmService) -> None:
        self._t0 = time.perf_counter()
        self._drain = asyncio.ensure_future(uplink.drain(timeout=self.timeout_s))

    def busy(self) -> bool:
        return self._drain is not None and not self._drain.done()

    def more(self) -> bool:
        return self.busy()

    async def stop(self) -> dict[str, Any]:
        assert self._drain is not None
        await self._drain
        return {"drain_s": round(time.perf_counter() - self._t0, 3), "backlog_values": self.values}


class _MeterReading(_Background):
    """A simulated meter read in a loop by the real reader, in this event loop, the way the
    acquisition does it: profile and event logs in one association, readings into the spool,
    the outcome into the alarm service."""

    name = "meter_read"

    def __init__(
        self, spool: Spool, meter_id: str, url: str, days: float, frame_delay_ms: float
    ) -> None:
        self.spool = spool
        self.meter_id = meter_id
        self.url = url
        self.days = days
        self.frame_delay_ms = frame_delay_ms
        self.reading = False
        self.reads = 0
        self.read_s: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self, uplink: Uplink, alarms: AlarmService) -> None:
        self._task = asyncio.create_task(self._loop(uplink, alarms))
        while self.reads == 0:  # one complete read first: the meter answers
            await asyncio.sleep(0.01)
            if self._task.done():
                self._task.result()

    def busy(self) -> bool:
        return self.reading

    async def _loop(self, uplink: Uplink, alarms: AlarmService) -> None:
        while True:
            now = datetime.now(timezone.utc)
            span = (now - timedelta(days=self.days), now)
            self.reading = True
            t0 = time.perf_counter()
            try:
                result = await read_meter(
                    self.url,
                    obis=(),
                    load_profile=span,
                    events=span,
                    timeout=10.0,
                    meter_id=self.meter_id,
                )
            finally:
                self.reading = False
            self.read_s.append(time.perf_counter() - t0)
            self.reads += 1
            readings = (
                result.load_profile.to_readings(self.meter_id, DataClass.INTERVAL)
                if result.load_profile is not None
                else []
            )
            await uplink.worker.call(self.spool.put, readings)
            alarms.on_comm(self.meter_id, True, 0)
            await alarms.feed_meter_records(self.meter_id, list(result.events or ()), readings)

    async def stop(self) -> dict[str, Any]:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return {
            "reads": self.reads,
            "read_s_p50": _r(percentile(self.read_s, 50)),
            "frame_delay_ms": self.frame_delay_ms,
            "profile_days": self.days,
        }


async def _powerfail_cycle(
    power: _PowerInput, sink: _AlarmSink, bus: _TimedBus, bg: _Background
) -> tuple[float, float, bool]:
    """One power failure and its restore. Returns (signal -> last gasp PUBACK, signal ->
    last gasp handed to the uplink) in s, and whether the load was on when power failed."""
    during = bg.busy()
    t0 = time.perf_counter()
    power.set(POWER_LOST)
    gasp = await sink.next_of(AlarmType.LAST_GASP)
    acked = await bus.acked(gasp.payload, WAIT_S)
    power.set(POWER_OK)
    restore = await sink.next_of(AlarmType.RESTORE)
    await bus.acked(restore.payload, WAIT_S)
    return acked - t0, gasp.at - t0, during


async def _powerfail_scenario(
    broker_url: str,
    spool: Spool,
    settings: UplinkSettings,
    workdir: Path,
    pf: Mapping[str, Any],
    *,
    cycles: int,
    bg: _Background,
    meters: Sequence[str],
    seed: int,
    gap_s: float,
) -> dict[str, Any]:
    """``cycles`` power failures, ``gap_s`` after each restore (more while ``bg`` wants them),
    through the real monitor, alarm service, engine, uplink and MQTT bus."""
    power = _PowerInput(workdir / f"gpio-{bg.name}" / "value")
    pf_settings = PowerFailSettings.from_mapping({**pf, "path": str(power.path)})
    poll_s = PowerFailMonitor(pf_settings).poll_interval_s
    rng = random.Random(seed)
    bus = _TimedBus(MqttSettings.from_url(broker_url, publish_timeout_s=30.0))
    await bus.start()
    at_broker: set[bytes] = set()
    watcher = MqttBus(MqttSettings.from_url(broker_url, client_id_prefix="bench-watch"))
    await watcher.start()

    async def heard(_topic: str, payload: bytes) -> None:
        if json.loads(payload)["type"] == AlarmType.LAST_GASP.value:
            at_broker.add(payload)

    await watcher.subscribe(TOPICS.alarm_power, heard)
    results: list[tuple[float, float, bool]] = []
    try:
        async with Uplink(spool, bus, TOPICS, settings) as uplink:
            run = asyncio.create_task(uplink.run())
            sink = _AlarmSink(uplink)
            alarms = AlarmService(
                TOPICS.thing,
                meters,
                SystemClock(),
                sink,
                settings=AlarmSettings(),
                powerfail=pf_settings,
                sequence_path=workdir / f"{bg.name}.alarm-seq",
            )
            await alarms.start()
            stalls: list[float] = []
            ticker = asyncio.create_task(_ticker(stalls))
            try:
                await asyncio.sleep(2 * poll_s)  # the monitor has read "power ok" once
                await bg.start(uplink, alarms)
                while len(results) < cycles or bg.more():
                    # ``gap_s`` apart (like the uplink phases' alarms), plus a random phase
                    # against the monitor's poll timer, so a polled input is sampled over its
                    # whole interval rather than at one lucky offset.
                    await asyncio.sleep(gap_s + rng.uniform(0.0, poll_s))
                    results.append(await _powerfail_cycle(power, sink, bus, bg))
                extra = await bg.stop()
            finally:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
                await alarms.stop()
                await uplink.stop()
                await run
        deadline = time.perf_counter() + WAIT_S
        while len(at_broker) < len(results) and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
    finally:
        await bus.close()
        await watcher.close()
        power.close()
    out = _summary([puback for puback, _, _ in results])
    out["last_gasps"] = out.pop("alarms")
    out["last_gasps_at_broker"] = len(at_broker)
    out["signal_to_uplink"] = _summary([handed for _, handed, _ in results])
    out["signal_to_uplink"].pop("alarms")
    out["uplink_to_puback"] = _summary([puback - handed for puback, handed, _ in results])
    out["uplink_to_puback"].pop("alarms")
    out["failed_while_busy"] = sum(1 for *_, during in results if during)
    out["alarms_failed"] = alarms.failed
    out["loop_stall_ms"] = {
        "p99": _r(percentile(stalls, 99)),
        "max": _r(max(stalls) if stalls else None),
    }
    out.update(extra)
    return out


# ------------------------------------------------------------------ the meter (own process)


def _meter_process(conn: Connection, seed: int, frame_delay_s: float) -> None:
    """Serve one simulated meter over the DLMS TCP wrapper until the parent closes ``conn``.
    Its own process: a real meter does not share the concentrator's CPU or event loop."""
    asyncio.run(_serve_meter(conn, seed, frame_delay_s))


async def _serve_meter(conn: Connection, seed: int, frame_delay_s: float) -> None:
    start = (datetime.now(timezone.utc) - timedelta(days=3)).date()
    handle = await serve_meters(1, "127.0.0.1", 0, seed, start)
    meter = handle.meters[0]
    conn.send((handle.meter_ids[0], handle.url(0)))
    done = asyncio.get_running_loop().run_in_executor(None, _wait_closed, conn)
    try:
        while not done.done():
            # A slow link: every answer leaves frame_delay_s late (the simulator's delay fault,
            # kept topped up).
            if frame_delay_s > 0 and len(meter.script.faults) < 100:
                meter.inject_fault("delay", count=1000, delay_s=frame_delay_s)
            await asyncio.wait({done}, timeout=0.2)
    finally:
        await handle.close()


def _wait_closed(conn: Connection) -> None:
    with contextlib.suppress(EOFError, OSError):
        conn.recv()


@contextlib.contextmanager
def _simulated_meter(seed: int, frame_delay_ms: float) -> Iterator[tuple[str, str]]:
    """(meter id, url) of a simulated meter served by a child process."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(
        target=_meter_process, args=(child, seed, frame_delay_ms / 1000.0), daemon=True
    )
    proc.start()
    child.close()
    try:
        if not parent.poll(60.0):
            raise MeterUnreachableError("the simulated meter did not start")
        meter_id, url = parent.recv()
        yield meter_id, url
    finally:
        parent.close()
        proc.join(10.0)
        if proc.is_alive():
            proc.kill()
            proc.join()


def _uplink_settings(args: argparse.Namespace) -> UplinkSettings:
    return UplinkSettings(
        max_batch_values=args.batch_values,
        max_batch_age_s=300.0,
        max_publish_per_s=100.0,
        max_bytes_per_s=512 * 1024,
        poll_interval_s=0.2,
        health_period_s=3600.0,
    )


def _spool_backlog(spool: Spool, args: argparse.Namespace) -> float:
    """Spool ``--backlog-values`` readings (s taken)."""
    readings = backlog(args.backlog_values, seed=args.seed)
    t0 = time.perf_counter()
    for i in range(0, len(readings), PUT_CHUNK):
        spool.put(readings[i : i + PUT_CHUNK])
    return time.perf_counter() - t0


async def _run(args: argparse.Namespace, workdir: Path, broker_url: str) -> dict[str, Any]:
    settings = _uplink_settings(args)
    spool = Spool.open(workdir / "spool.db")
    try:
        baseline = await _phase(broker_url, spool, settings, args, drain=False)
        put_s = _spool_backlog(spool, args)
        put_txn_ms = round(spool.take_max_write_txn_s() * 1000, 1)
        draining = await _phase(broker_url, spool, settings, args, drain=True)
        left = len(spool.pending())
        max_txn_ms = round(spool.take_max_write_txn_s() * 1000, 1)
    finally:
        spool.close()
    p99_b, p99_d = baseline["p99_ms"], draining["p99_ms"]
    return {
        "benchmark": "alarm_latency",
        "backlog_values": args.backlog_values,
        "batch_values": args.batch_values,
        "interval_ms": args.interval_ms,
        "gil_switch_interval_ms": round(sys.getswitchinterval() * 1000, 3),
        "spool_put_s": round(put_s, 3),
        "baseline_idle": baseline,
        "draining": draining,
        "ratio_p99": round(p99_d / p99_b, 2) if p99_b and p99_d else None,
        "ratio_p50": (
            round(draining["p50_ms"] / baseline["p50_ms"], 2) if baseline["p50_ms"] else None
        ),
        "target_p99_ms": 50.0,
        "meets_target": bool(p99_d is not None and p99_d <= 50.0),
        "outbox_left": left,
        "max_write_txn_ms": {"backlog_puts_of_10000": put_txn_ms, "drain": max_txn_ms},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _pf_config(poll_ms: float | None, debounce_ms: float | None) -> dict[str, Any]:
    """The ``powerfail`` section a user would write (None: the shipped default)."""
    raw: dict[str, Any] = {"source": "gpio", "fail_level": 0, "edge": True}
    if poll_ms is not None:
        raw["poll_interval_s"] = poll_ms / 1000.0
    if debounce_ms is not None:
        raw["debounce_s"] = debounce_ms / 1000.0
    return raw


def _pf_mode(pf: Mapping[str, Any], workdir: Path) -> dict[str, Any]:
    """How the monitor watches a value file like the bench's: edge wake-ups or polling."""
    probe = workdir / "gpio-probe" / "value"
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_bytes(POWER_OK)
    s = PowerFailSettings.from_mapping({**pf, "path": str(probe)})
    monitor = PowerFailMonitor(s)
    return {
        "mode": "edge" if monitor.edge_triggered else "polled",
        "poll_interval_ms": _r(monitor.poll_interval_s * 1000),
        "debounce_ms": _r(s.debounce_s * 1000),
    }


async def _run_powerfail(
    args: argparse.Namespace, workdir: Path, broker_url: str, meter: tuple[str, str]
) -> dict[str, Any]:
    meter_id, url = meter
    meters = [meter_id, *(f"BENCH{i:06d}" for i in range(1, 10))]
    settings = _uplink_settings(args)
    pf = _pf_config(args.powerfail_poll_ms, args.powerfail_debounce_ms)
    out: dict[str, Any] = {**_pf_mode(pf, workdir), "cycles": args.powerfail_cycles}
    common: dict[str, Any] = {
        "meters": meters,
        "seed": args.seed,
        "gap_s": args.interval_ms / 1000.0,
        "cycles": args.powerfail_cycles,
    }
    spool = Spool.open(workdir / "powerfail.db")
    try:
        out["idle"] = await _powerfail_scenario(
            broker_url, spool, settings, workdir, pf, bg=_Background(), **common
        )
        _spool_backlog(spool, args)
        out["draining"] = await _powerfail_scenario(
            broker_url,
            spool,
            settings,
            workdir,
            pf,
            bg=_Draining(args.drain_timeout_s, args.backlog_values),
            **common,
        )
        reader = _MeterReading(
            spool, meter_id, url, args.meter_read_days, args.meter_frame_delay_ms
        )
        out["meter_read"] = await _powerfail_scenario(
            broker_url, spool, settings, workdir, pf, bg=reader, **common
        )
        if args.powerfail_defaults_cycles > 0:
            shipped = _pf_config(None, None)
            out["shipped_defaults_idle"] = {
                **_pf_mode(shipped, workdir),
                **await _powerfail_scenario(
                    broker_url,
                    spool,
                    settings,
                    workdir,
                    shipped,
                    bg=_Background(),
                    meters=meters,
                    seed=args.seed,
                    gap_s=args.interval_ms / 1000.0,
                    cycles=args.powerfail_defaults_cycles,
                ),
            }
    finally:
        spool.close()
    idle_p99 = out["idle"]["p99_ms"]
    for name in ("draining", "meter_read"):
        p99 = out[name]["p99_ms"]
        out[f"ratio_p99_{name}"] = round(p99 / idle_p99, 2) if p99 and idle_p99 else None
    worst = [out[k]["p99_ms"] for k in ("idle", "draining", "meter_read")]
    out["target_p99_le_50ms"] = all(p is not None and p <= 50.0 for p in worst)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    args = _with_defaults(args)
    with (
        tempfile.TemporaryDirectory(prefix="ami-bench-alarm-") as tmp,
        LocalBroker(tcp_nodelay=args.broker_tcp_nodelay) as broker,
    ):
        out = asyncio.run(_run(args, Path(tmp), broker.url))
        out["powerfail"] = None
        if args.powerfail_cycles > 0:
            with _simulated_meter(args.seed, args.meter_frame_delay_ms) as meter:
                out["powerfail"] = asyncio.run(_run_powerfail(args, Path(tmp), broker.url, meter))
    out["broker_tcp_nodelay"] = args.broker_tcp_nodelay
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backlog-values", type=int, default=1_000_000)
    p.add_argument("--batch-values", type=int, default=50_000)
    p.add_argument("--alarms", type=int, default=100, help="minimum alarms per phase")
    p.add_argument("--interval-ms", type=float, default=50.0)
    p.add_argument("--drain-timeout-s", type=float, default=1800.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--switch-interval-ms",
        type=float,
        default=None,
        help="sys.setswitchinterval for the run (default: Python's 5 ms)",
    )
    p.add_argument(
        "--broker-nodelay",
        dest="broker_tcp_nodelay",
        action="store_true",
        help="Mosquitto with set_tcp_nodelay true (default: stock Mosquitto, Nagle on: its "
        "PUBACKs may wait ~40 ms for a delayed ACK while a bulk batch is acknowledged)",
    )
    p.add_argument(
        "--powerfail-cycles",
        type=int,
        default=50,
        help="power failures per scenario (minimum; 0 skips the power-fail phase)",
    )
    p.add_argument(
        "--powerfail-poll-ms",
        type=float,
        default=None,
        help="powerfail.poll_interval_s of the measured scenarios, in ms (default: shipped)",
    )
    p.add_argument(
        "--powerfail-debounce-ms",
        type=float,
        default=None,
        help="powerfail.debounce_s of the measured scenarios, in ms (default: shipped)",
    )
    p.add_argument(
        "--powerfail-defaults-cycles",
        type=int,
        default=0,
        help="power failures with the shipped powerfail defaults, idle (0 skips)",
    )
    p.add_argument(
        "--meter-frame-delay-ms",
        type=float,
        default=20.0,
        help="added delay of every answer of the simulated meter (a slow link)",
    )
    p.add_argument(
        "--meter-read-days", type=float, default=1.0, help="load profile span of each meter read"
    )
    return p


def _with_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` completed with the command line's defaults (callers may pass fewer fields)."""
    return argparse.Namespace(**{**vars(_parser().parse_args([])), **vars(args)})


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.switch_interval_ms is not None:
        sys.setswitchinterval(args.switch_interval_ms / 1000.0)
    logging.basicConfig(level=logging.WARNING)
    # Every simulated power failure is logged as a warning by the service: thousands here.
    logging.getLogger("edge_core.runtime.alarm_service").setLevel(logging.ERROR)
    print(json.dumps(run(args), sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
