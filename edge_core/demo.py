"""``ami-edge demo``: a concentrator, its meters and the cloud, all on this machine.

What runs (all in this process, apart from the broker):

* a private Mosquitto broker on a free loopback port;
* ``--meters`` simulated DLMS/COSEM meters, each on its own TCP port (IEC 62056-47 wrapper),
  with consumption history from ``--days`` ago;
* the edge runtime (:class:`~edge_core.runtime.app.EdgeApp`) reading them by range into its
  SQLite spool and publishing compact batches over MQTT (QoS 1);
* the local cloud stack: rules, ingest (CT x PT, dedupe), storage and the REST API.

Simulated time runs ``--speed`` times faster than real time, so days of 15-minute data pass in
about a minute. At the end the demo checks, for every meter, that what the REST API returns is
what the meter itself says, and prints a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

__all__ = ["DemoResult", "register", "run_demo"]

log = logging.getLogger(__name__)

API_KEY = "demo-key"


@dataclass
class DemoResult:
    meters: int
    days: float
    api_url: str
    readings_stored: int
    duplicates: int
    read_failures: int
    batches_published: int
    bytes_published: int
    values_published: int
    cloud_values: int
    verified_meters: int
    mismatches: list[str]
    wall_s: float

    @property
    def bytes_per_value(self) -> float:
        return self.bytes_published / self.values_published if self.values_published else 0.0

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["bytes_per_value"] = round(self.bytes_per_value, 3)
        return d


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="run simulated meters, the edge runtime, a broker and the local cloud stack",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("--meters", type=int, default=50, help="simulated meters (default 50)")
    p.add_argument("--days", type=float, default=2.0, help="simulated days of data (default 2)")
    p.add_argument(
        "--seconds",
        type=float,
        default=60.0,
        help="real seconds the simulated days should take (sets the clock speed; default 60)",
    )
    p.add_argument("--seed", type=int, default=7, help="fleet seed (default 7)")
    p.add_argument(
        "--data-dir", help="where the spool and the local cloud store live (default: a temp dir)"
    )
    p.add_argument("--http-port", type=int, default=0, help="REST API port (default: a free one)")
    p.add_argument("--serve", action="store_true", help="keep the API running after the summary")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    if args.meters < 1 or args.days <= 0 or args.seconds <= 0:
        from edge_core.errors import ConfigError

        raise ConfigError("--meters, --days and --seconds must be positive")
    with tempfile.TemporaryDirectory(prefix="ami-demo-") as tmp:
        data_dir = Path(args.data_dir or tmp)
        result = asyncio.run(
            run_demo(
                meters=args.meters,
                days=args.days,
                seconds=args.seconds,
                seed=args.seed,
                data_dir=data_dir,
                http_port=args.http_port,
                serve=args.serve,
                progress=not args.json,
            )
        )
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        _print_summary(result)
    return 0 if not result.mismatches and result.cloud_values > 0 else 1


async def run_demo(
    *,
    meters: int,
    days: float,
    seconds: float,
    seed: int,
    data_dir: Path,
    http_port: int = 0,
    serve: bool = False,
    progress: bool = True,
) -> DemoResult:
    from cloud.local import run_local_stack
    from edge_core.broker import LocalBroker
    from edge_core.bus.mqtt import MqttBus
    from edge_core.bus.settings import MqttSettings
    from edge_core.clock import AcceleratedClock
    from edge_core.config import EdgeConfig
    from edge_core.runtime.app import EdgeApp
    from edge_core.simulator import serve_meters
    from edge_core.uplink import UplinkSettings

    t0 = time.monotonic()
    data_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    sim_end = now
    sim_start = sim_end - timedelta(days=days)
    history_start = (sim_start - timedelta(days=1)).date()
    speed = (sim_end - sim_start).total_seconds() / seconds
    clock = AcceleratedClock(sim_start.timestamp(), speed)

    broker = LocalBroker().start()
    sim = cloud = bus = app = None
    try:
        sim = await serve_meters(meters, "127.0.0.1", 0, seed, history_start, clock.now_dt)
        cloud = await run_local_stack(
            "127.0.0.1", broker.port, data_dir / "cloud", http_port, API_KEY
        )
        config = EdgeConfig.from_mapping(
            {
                "thing_name": "dcu-demo-0001",
                "meters": [
                    {"id": mid, "url": f"tcp://127.0.0.1:{port}"}
                    for mid, port in zip(sim.meter_ids, sim.ports, strict=True)
                ],
                # Read each meter every 4 simulated hours, by range: 16 intervals a read.
                "schedule": {"profile_read_s": 4 * 3600, "jitter_s": 600, "daily_after_s": 300},
                "spool": {"path": str(data_dir / "edge" / "spool.db"), "quota_mb": 256},
            }
        )
        bus = MqttBus(MqttSettings.from_url(broker.url, client_id_prefix="ami-demo-edge"))
        await bus.start()
        app = EdgeApp(
            config,
            bus,
            clock=clock,
            # Batch ages are in simulated seconds: seal a batch after 2 simulated hours.
            uplink_settings=UplinkSettings.from_config(config.uplink, max_batch_age_s=7200.0),
            initial_backfill_s=int(timedelta(hours=1).total_seconds()),
            seed=seed,
        )
        await app.start()
        while clock.now() < sim_end.timestamp():
            await asyncio.sleep(0.5)
            if progress:
                _progress(clock, sim_start, sim_end, app)
        if progress:
            sys.stderr.write("\n")
        await app.stop(drain_timeout=60.0)
        await _wait_cloud_quiet(cloud)
        stats = app.stats()
        acq = stats.get("acquisition", {})
        up = stats.get("uplink", {})
        verified, mismatches, cloud_values = await _verify(cloud.api_url, sim, sim_start, sim_end)
        result = DemoResult(
            meters=meters,
            days=days,
            api_url=cloud.api_url,
            readings_stored=int(acq.get("stored", 0)),
            duplicates=int(acq.get("duplicates", 0)),
            read_failures=int(acq.get("failures", 0)),
            batches_published=int(up.get("published_messages", 0)),
            bytes_published=int(up.get("published_bytes", 0)),
            # After the final drain every stored reading has been published and acknowledged.
            values_published=int(acq.get("stored", 0)),
            cloud_values=cloud_values,
            verified_meters=verified,
            mismatches=mismatches,
            wall_s=round(time.monotonic() - t0, 1),
        )
        if serve:
            _print_summary(result)
            print(
                f"serving the API at {cloud.api_url} (x-api-key: {API_KEY}); Ctrl-C stops",
                flush=True,
            )
            try:
                while True:
                    await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass
        return result
    finally:
        if app is not None and app.worker is not None:
            await app.stop()
        if bus is not None:
            await bus.close()
        if cloud is not None:
            await cloud.close()
        if sim is not None:
            await sim.close()
        broker.close()


def _progress(clock: Any, start: datetime, end: datetime, app: Any) -> None:
    frac = min(1.0, (clock.now() - start.timestamp()) / (end - start).total_seconds())
    width = 30
    bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
    stats = app.stats()
    acq = stats.get("acquisition", {})
    up = stats.get("uplink", {})
    sys.stderr.write(
        f"\r[{bar}] {clock.now_dt():%Y-%m-%d %H:%M} reads {acq.get('reads', 0)}"
        f"  stored {acq.get('stored', 0)}  messages sent {up.get('published_messages', 0)}   "
    )
    sys.stderr.flush()


async def _wait_cloud_quiet(cloud: Any, quiet_s: float = 1.0, limit_s: float = 30.0) -> None:
    """Wait until the local stack has received nothing new for ``quiet_s``."""
    deadline = time.monotonic() + limit_s
    last = -1
    while time.monotonic() < deadline:
        if cloud.messages == last:
            return
        last = cloud.messages
        await asyncio.sleep(quiet_s)


def _api_get(base: str, path: str) -> Any:
    req = urllib.request.Request(base + path, headers={"x-api-key": API_KEY})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


async def _verify(
    api_url: str, sim: Any, start: datetime, end: datetime
) -> tuple[int, list[str], int]:
    """For every meter, compare what the REST API serves with what the meter itself answers
    over DLMS for the same range (+A, scaled, CT x PT = 1 in the demo registry)."""
    from urllib.parse import quote

    from edge_core.meter import read_meter

    verified = 0
    total = 0
    mismatches: list[str] = []
    q = f"?from={quote(start.isoformat())}&to={quote(end.isoformat())}&channel=1.0.1.8.0.255"
    for mid, port in zip(sim.meter_ids, sim.ports, strict=True):
        try:
            doc = await asyncio.to_thread(_api_get, api_url, f"/v1/meters/{mid}/intervals{q}")
        except urllib.error.HTTPError as exc:
            mismatches.append(f"{mid}: the API answered {exc.code}")
            continue
        served = {int(r["epoch"]): float(r["value"]) for r in doc.get("rows", [])}
        total += len(served)
        if not served:
            mismatches.append(f"{mid}: no intervals served")
            continue
        first, last = min(served), max(served)
        truth = await read_meter(
            f"tcp://127.0.0.1:{port}",
            obis=(),
            load_profile=(
                datetime.fromtimestamp(first, timezone.utc),
                datetime.fromtimestamp(last, timezone.utc),
            ),
        )
        assert truth.load_profile is not None
        meter_says = {
            r.capture_time: r.scaled
            for r in truth.load_profile.to_readings(mid)
            if r.obis == "1.0.1.8.0.255"
        }
        bad = sum(1 for t, v in served.items() if abs(meter_says.get(t, float("nan")) - v) > 1e-6)
        gaps = len(set(meter_says) - set(served))
        if bad or gaps:
            mismatches.append(f"{mid}: {bad} values differ, {gaps} intervals missing")
        else:
            verified += 1
    return verified, mismatches, total


def _print_summary(r: DemoResult) -> None:
    rows = [
        ("meters", f"{r.meters}"),
        ("simulated days", f"{r.days:g}"),
        ("readings stored in the spool", f"{r.readings_stored:,}"),
        ("duplicates refused by the spool", f"{r.duplicates:,}"),
        ("failed meter reads", f"{r.read_failures:,}"),
        ("messages published (QoS 1, acknowledged)", f"{r.batches_published:,}"),
        ("bytes published", f"{r.bytes_published:,}"),
        ("bytes per value", f"{r.bytes_per_value:.3f}"),
        ("+A intervals served by the REST API", f"{r.cloud_values:,}"),
        ("meters whose API data match the meter", f"{r.verified_meters} of {r.meters}"),
        ("wall time", f"{r.wall_s:.1f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    print("ami-edge demo summary")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    for m in r.mismatches[:10]:
        print(f"  MISMATCH {m}")
    print(f"REST API: {r.api_url}  (header x-api-key: {API_KEY})")
    print(f"  e.g. curl -H 'x-api-key: {API_KEY}' {r.api_url}/v1/meters/<meter>/latest")
