"""Spool + uplink throughput to a real Mosquitto, against a bare awscrt publish loop.

``python -m bench.spool [--meters 1000] [--days 7] [--batch-values 50000] [--in-flight 8]``
prints one JSON object.

Phases, in one run, on a private Mosquitto on a free loopback port:

* store: a child process generates ``--meters`` x ``--days`` of realistic interval readings
  (x 96 x 4) and spools them in puts of ``--put-chunk`` (each put one committed transaction,
  WAL + synchronous=FULL); the generator's memory is not the runtime's;
* publish: the uplink seals and publishes everything with QoS 1 over MqttBus (pacing lifted to
  measure the machinery, not IoT Core's limits), deleting each batch after its PUBACK;
* baseline: a bare awscrt connection publishing the very same payload bytes with QoS 1 and the
  same number of publishes in flight, nothing else.

Figures: values/s and CPU microseconds per value for each phase (process CPU time, all threads),
the publish phase against the bare loop (ratio), and this process's RSS (VmRSS) at start, with
the spool open, sampled every 0.25 s during the drain, and after (target: <= 60 MB, flat).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import logging
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._broker import LocalBroker
from edge_core.bus.mqtt import MqttBus
from edge_core.bus.settings import MqttSettings
from edge_core.model import Topics
from edge_core.runtime.memory import tune_malloc
from edge_core.spool.store import Spool
from edge_core.uplink import Uplink, UplinkSettings

__all__ = ["main", "run"]

TOPICS = Topics("dcu-bench")


class _RecordingBus(MqttBus):
    """MqttBus that keeps what it published, for the baseline to replay."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[tuple[str, bytes]] = []

    async def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        await super().publish(topic, payload, qos)
        self.sent.append((topic, payload))


class _Meter:
    def __enter__(self) -> _Meter:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0

    def figures(self, values: int) -> dict[str, float]:
        return {
            "seconds": round(self.wall, 3),
            "values_per_s": round(values / self.wall, 1) if self.wall else 0.0,
            "cpu_us_per_value": round(self.cpu * 1e6 / values, 3) if values else 0.0,
        }


def _bare_publish(host: str, port: int, messages: list[tuple[str, bytes]], in_flight: int) -> None:
    """QoS 1 publishes on a plain awscrt connection, at most ``in_flight`` unacknowledged."""
    from awscrt import mqtt

    conn = mqtt.Connection(
        client=mqtt.Client(None, None),
        host_name=host,
        port=port,
        client_id=f"bench-bare-{uuid.uuid4().hex[:8]}",
        clean_session=True,
        keep_alive_secs=30,
    )
    conn.connect().result(10)
    try:
        window: set[concurrent.futures.Future[Any]] = set()
        for topic, payload in messages:
            if len(window) >= in_flight:
                done, window = concurrent.futures.wait(
                    window, timeout=30, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for f in done:
                    f.result()
            fut, _ = conn.publish(topic, payload, mqtt.QoS.AT_LEAST_ONCE)
            window.add(fut)
        for f in concurrent.futures.as_completed(window, timeout=30):
            f.result()
    finally:
        conn.disconnect().result(10)


async def _publish_phase(
    spool: Spool, url: str, args: argparse.Namespace, samples: list[float]
) -> tuple[list[tuple[str, bytes]], int]:
    settings = UplinkSettings(
        max_batch_values=args.batch_values,
        max_batch_age_s=0.0,
        max_publish_per_s=1e6,
        max_bytes_per_s=1e12,
        max_in_flight=args.in_flight,
        poll_interval_s=0.2,
        health_period_s=3600.0,
    )
    bus = _RecordingBus(MqttSettings.from_url(url, publish_timeout_s=60.0))
    await bus.start()
    try:
        async with Uplink(spool, bus, TOPICS, settings) as uplink:

            async def sample() -> None:
                while True:
                    samples.append(_rss_mb())
                    await asyncio.sleep(0.25)

            sampler = asyncio.create_task(sample())
            try:
                await uplink.drain(timeout=args.timeout_s)
            finally:
                sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler
    finally:
        await bus.close()
    return bus.sent, len(spool.pending())


def _rss_mb() -> float:
    """This process's resident set now (VmRSS), in MB."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _generate_into(path: str, meters: int, days: int, seed: int, put_chunk: int) -> int:
    """Child process: generate the backlog chunk by chunk (100 meters at a time) and spool it
    as a DCU's profile reads would; returns the values stored. Its memory is not the
    runtime's."""
    import dataclasses

    from bench.uplink import generate_readings

    spool = Spool.open(path)
    stored = 0
    try:
        for k in range(0, meters, 100):
            rs = generate_readings(min(100, meters - k), days, seed=seed + k)
            rs = [dataclasses.replace(r, meter=f"{k:05d}{r.meter}") for r in rs]
            for i in range(0, len(rs), put_chunk):
                stored += spool.put(rs[i : i + put_chunk]).stored
    finally:
        spool.close()
    return stored


def run(args: argparse.Namespace) -> dict[str, Any]:
    import multiprocessing

    with (
        tempfile.TemporaryDirectory(prefix="ami-bench-spool-") as tmp,
        LocalBroker(tcp_nodelay=False) as broker,
    ):
        path = str(Path(tmp) / "spool.db")
        ctx = multiprocessing.get_context("spawn")
        with _Meter() as store, ctx.Pool(1) as pool:
            n = pool.apply(
                _generate_into, (path, args.meters, args.days, args.seed, args.put_chunk)
            )
        rss: dict[str, float] = {"start": _rss_mb()}
        spool = Spool.open(path)
        rss["spool_open"] = _rss_mb()
        samples: list[float] = []
        try:
            with _Meter() as publish:
                sent, left = asyncio.run(_publish_phase(spool, broker.url, args, samples))
            max_txn_ms = round(spool.stats().max_write_txn_s * 1000, 1)
        finally:
            spool.close()
        rss["after_drain"] = _rss_mb()
        with _Meter() as bare:
            _bare_publish(broker.host, broker.port, sent, args.in_flight)
    payload_bytes = sum(len(p) for _, p in sent)
    pub = publish.figures(n)
    bare_fig = bare.figures(n)
    during = samples or [rss["spool_open"]]
    half = len(during) // 2
    return {
        "benchmark": "spool",
        "meters": args.meters,
        "days": args.days,
        "values": n,
        "batch_values": args.batch_values,
        "put_chunk": args.put_chunk,
        "in_flight": args.in_flight,
        "messages": len(sent),
        "payload_bytes": payload_bytes,
        "bytes_per_value": round(payload_bytes / n, 3) if n else None,
        "store_in_child_process": store.figures(n),
        "seal_and_publish": pub,
        "bare_awscrt_publish": bare_fig,
        "ratio_publish_vs_bare_s": round(publish.wall / bare.wall, 2) if bare.wall else None,
        "outbox_left": left,
        "max_write_txn_ms": max_txn_ms,
        "runtime_rss_mb": {
            "start": round(rss["start"], 1),
            "spool_open": round(rss["spool_open"], 1),
            "during_drain_max": round(max(during), 1),
            "during_drain_first_half_max": round(max(during[: max(1, half)]), 1),
            "during_drain_second_half_max": round(max(during[half:] or during), 1),
            "during_drain_samples": len(samples),
            "after_drain": round(rss["after_drain"], 1),
        },
        "target_rss_le_60_mb": max(during) <= 60.0,
        "note": "RSS is this process only (the readings were generated and spooled by a child "
        "process); the published payloads are kept in memory for the bare-awscrt baseline "
        f"({payload_bytes / 1e6:.1f} MB), which is included",
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--meters", type=int, default=1000)
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--batch-values", type=int, default=50_000)
    p.add_argument("--put-chunk", type=int, default=384)
    p.add_argument("--in-flight", type=int, default=8)
    p.add_argument("--timeout-s", type=float, default=1800.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--no-malloc-tuning",
        action="store_true",
        help="leave glibc malloc as it is (the runtime tunes it at start, as this bench does)",
    )
    args = p.parse_args(argv)
    # what run_component does before the runtime starts its threads
    applied = {} if args.no_malloc_tuning else tune_malloc()
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps({**run(args), "malloc_tuning": applied}, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
