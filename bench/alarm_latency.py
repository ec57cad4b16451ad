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
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._broker import LocalBroker, backlog
from edge_core.bus.mqtt import MqttBus
from edge_core.bus.settings import MqttSettings
from edge_core.health import percentile
from edge_core.model import Topics
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

    async def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        await super().publish(topic, payload, qos)
        if topic == TOPICS.alarm_power:
            self.acked_at.setdefault(payload, time.perf_counter())


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


async def _run(args: argparse.Namespace, workdir: Path, broker_url: str) -> dict[str, Any]:
    settings = UplinkSettings(
        max_batch_values=args.batch_values,
        max_batch_age_s=300.0,
        max_publish_per_s=100.0,
        max_bytes_per_s=512 * 1024,
        poll_interval_s=0.2,
        health_period_s=3600.0,
    )
    spool = Spool.open(workdir / "spool.db")
    try:
        baseline = await _phase(broker_url, spool, settings, args, drain=False)
        readings = backlog(args.backlog_values, seed=args.seed)
        t0 = time.perf_counter()
        for i in range(0, len(readings), PUT_CHUNK):
            spool.put(readings[i : i + PUT_CHUNK])
        put_s = time.perf_counter() - t0
        del readings
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


def run(args: argparse.Namespace) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="ami-bench-alarm-") as tmp,
        LocalBroker(tcp_nodelay=args.broker_tcp_nodelay) as broker,
    ):
        out = asyncio.run(_run(args, Path(tmp), broker.url))
    out["broker_tcp_nodelay"] = args.broker_tcp_nodelay
    return out


def main(argv: Sequence[str] | None = None) -> int:
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
    args = p.parse_args(argv)
    if args.switch_interval_ms is not None:
        sys.setswitchinterval(args.switch_interval_ms / 1000.0)
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(run(args), sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
