"""Spool + uplink throughput to a real Mosquitto, against a bare awscrt publish loop.

``python -m bench.spool [--values 1000000] [--batch-values 50000] [--in-flight 8]`` prints one
JSON object.

Phases, in one run, on a private Mosquitto on a free loopback port:

* store: ``Spool.put`` of ``--values`` realistic interval readings in chunks of ``--put-chunk``
  (each put is one committed transaction, WAL + synchronous=FULL);
* publish: the uplink seals and publishes everything with QoS 1 over MqttBus (pacing lifted to
  measure the machinery, not IoT Core's limits), deleting each batch after its PUBACK;
* baseline: a bare awscrt connection publishing the very same payload bytes with QoS 1 and the
  same number of publishes in flight, nothing else.

Figures: values/s and CPU microseconds per value for each phase (process CPU time, all threads),
the publish phase against the bare loop (ratio), and peak RSS (``ru_maxrss``; includes the
generated readings held in memory by the benchmark itself).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import logging
import resource
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._broker import LocalBroker, backlog
from edge_core.bus.mqtt import MqttBus
from edge_core.bus.settings import MqttSettings
from edge_core.model import Topics
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
    spool: Spool, url: str, args: argparse.Namespace
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
            await uplink.drain(timeout=args.timeout_s)
    finally:
        await bus.close()
    return bus.sent, len(spool.pending())


def run(args: argparse.Namespace) -> dict[str, Any]:
    readings = backlog(args.values, seed=args.seed)
    n = len(readings)
    with tempfile.TemporaryDirectory(prefix="ami-bench-spool-") as tmp, LocalBroker() as broker:
        spool = Spool.open(Path(tmp) / "spool.db")
        try:
            with _Meter() as store:
                for i in range(0, n, args.put_chunk):
                    spool.put(readings[i : i + args.put_chunk])
            with _Meter() as publish:
                sent, left = asyncio.run(_publish_phase(spool, broker.url, args))
        finally:
            spool.close()
        with _Meter() as bare:
            _bare_publish(broker.host, broker.port, sent, args.in_flight)
    payload_bytes = sum(len(p) for _, p in sent)
    pub = publish.figures(n)
    bare_fig = bare.figures(n)
    end_to_end_s = store.wall + publish.wall
    return {
        "benchmark": "spool",
        "values": n,
        "batch_values": args.batch_values,
        "put_chunk": args.put_chunk,
        "in_flight": args.in_flight,
        "messages": len(sent),
        "payload_bytes": payload_bytes,
        "bytes_per_value": round(payload_bytes / n, 3) if n else None,
        "store": store.figures(n),
        "seal_and_publish": pub,
        "bare_awscrt_publish": bare_fig,
        "ratio_publish_vs_bare_s": round(publish.wall / bare.wall, 2) if bare.wall else None,
        "end_to_end_values_per_s": round(n / end_to_end_s, 1) if end_to_end_s else None,
        "outbox_left": left,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--values", type=int, default=1_000_000)
    p.add_argument("--batch-values", type=int, default=50_000)
    p.add_argument("--put-chunk", type=int, default=1_000)
    p.add_argument("--in-flight", type=int, default=8)
    p.add_argument("--timeout-s", type=float, default=1800.0)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(run(args), sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
