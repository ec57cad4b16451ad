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
from dataclasses import dataclass, field
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
    injected: list[tuple[str, list[str], str]] = field(default_factory=list)
    alarms: dict[str, int] = field(default_factory=dict)
    anomalies: list[dict[str, Any]] = field(default_factory=list)
    broker_outage_sim_h: float = 0.0

    def detected(self) -> list[tuple[str, str, bool]]:
        """(kind, meter, found) for each injected anomaly: theft and CT/PT errors should show
        up among the anomaly events, tampers and outages among the alarms."""
        # A theft or a CT/PT error changes the level of consumption: the level rule, the model
        # (source "model") or the register rules may name it; reverse flow or clock findings
        # would be something else.
        flagged = {
            a.get("meter")
            for a in self.anomalies
            if a.get("source") == "model" or a.get("kind") in ("level_drop", "level_rise", "spike")
        }
        out = []
        for kind, meters, _at in self.injected:
            for m in meters:
                if kind in ("theft", "ct_pt_error"):
                    out.append((kind, m, m in flagged))
        return out

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
    p.add_argument("--meters", type=int, default=200, help="simulated meters (default 200)")
    p.add_argument("--days", type=float, default=7.0, help="simulated days (default 7)")
    p.add_argument(
        "--seconds",
        type=float,
        default=180.0,
        help="real seconds the simulated days should take (sets the clock speed; default 180)",
    )
    p.add_argument("--seed", type=int, default=7, help="fleet seed (default 7)")
    p.add_argument(
        "--data-dir", help="where the spool and the local cloud store live (default: a temp dir)"
    )
    p.add_argument("--http-port", type=int, default=0, help="REST API port (default: a free one)")
    p.add_argument("--serve", action="store_true", help="keep the API running after the summary")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument(
        "--history-days",
        type=int,
        default=14,
        help="days of history the first read backfills (analytics baselines; default 14)",
    )
    p.add_argument("--no-analytics", action="store_true", help="skip the anomaly model")
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
                history_days=args.history_days,
                analytics=not args.no_analytics,
            )
        )
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        _print_summary(result)
    return 0 if not result.mismatches and result.cloud_values > 0 else 1


@dataclass(frozen=True)
class Injected:
    """One scripted event of the scenario: what, which meters, when (simulated UTC)."""

    kind: str
    meters: tuple[str, ...]
    at: datetime


def _script(sim: Any, start: datetime, end: datetime) -> list[Injected]:
    """Script the scenario on the simulated meters. Positions are fractions of the run, so a
    short run still shows every event; meters are taken from the end of the fleet downwards
    for anomalies and from the start for outages, so small fleets do not collide."""
    span = end - start
    models = list(sim.meters)
    n = len(models)

    def at(frac: float) -> datetime:
        return (start + span * frac).replace(second=0, microsecond=0)

    out: list[Injected] = []
    transformer = models[: max(2, min(25, n // 8))] if n >= 4 else []
    if transformer:
        t = at(0.25)
        for m in transformer:
            m.outage(t, t + timedelta(hours=6), last_gasp=True)
        out.append(Injected("transformer_outage", tuple(m.meter_id for m in transformer), t))
    blinks = models[len(transformer) : len(transformer) + min(5, max(0, n // 10))]
    if blinks:
        t = at(0.45)
        for m in blinks:
            m.outage(t, t + timedelta(seconds=45), last_gasp=True)
        out.append(Injected("momentary", tuple(m.meter_id for m in blinks), t))
    if n >= 3:
        theft, ct_error, tampered = models[-1], models[-2], models[-3]
        t = at(0.4).replace(hour=0, minute=0)
        theft.set_consumption_factor(t, 0.5)
        out.append(Injected("theft", (theft.meter_id,), t))
        t = at(0.5).replace(hour=0, minute=0)
        ct_error.set_consumption_factor(t, 2.0)
        out.append(Injected("ct_pt_error", (ct_error.meter_id,), t))
        t = at(0.55)
        tampered.tamper(t, "terminal_cover")
        out.append(Injected("tamper", (tampered.meter_id,), t))
    return out


async def _broker_outage(
    broker: Any, clock: Any, at: datetime, real_s: float, state: dict[str, Any]
) -> None:
    """Stop the broker at simulated time ``at`` for ``real_s`` real seconds, then restart it on
    the same port: the concentrator keeps reading into its spool and drains the backlog."""
    while clock.now() < at.timestamp():
        await asyncio.sleep(0.2)
    state["broker"] = "DOWN"
    await asyncio.to_thread(broker.stop)
    await asyncio.sleep(real_s)
    await asyncio.to_thread(broker.start)
    state["broker"] = "up"
    state["outage_sim_h"] = real_s * clock.speed / 3600


async def _demo_model(cache: Path) -> Path:
    """A small anomaly model for the demo, trained once and cached (about ten seconds)."""
    from edge_core.training.train import train_model

    model_dir = cache / "demo-model-v1"
    if not (model_dir / "model-card.json").exists():
        await asyncio.to_thread(
            train_model, model_dir, meters=120, days=56, seed=7, families=("one_class_svm",)
        )
    return model_dir


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
    history_days: int = 14,
    analytics: bool = True,
) -> DemoResult:
    from cloud.local import run_local_stack
    from edge_core.broker import LocalBroker, free_port
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
    history_start = (sim_start - timedelta(days=history_days + 1)).date()
    speed = (sim_end - sim_start).total_seconds() / seconds
    clock = AcceleratedClock(sim_start.timestamp(), speed)
    model_dir = await _demo_model(data_dir / "model-cache") if analytics else None

    broker = LocalBroker().start()
    push_port = free_port()
    state: dict[str, Any] = {"broker": "up"}
    sim = cloud = bus = app = service = None
    tasks: list[asyncio.Task[None]] = []
    try:
        sim = await serve_meters(
            meters,
            "127.0.0.1",
            0,
            seed,
            history_start,
            clock.now_dt,
            push_destination=("127.0.0.1", push_port),
        )
        injected = _script(sim, sim_start, sim_end)
        cloud = await run_local_stack(
            "127.0.0.1", broker.port, data_dir / "cloud", http_port, API_KEY
        )
        config = EdgeConfig.from_mapping(
            {
                "thing_name": "dcu-demo-0001",
                "meters": [
                    {"id": m.meter_id, "url": f"tcp://127.0.0.1:{port}", "pv": m.load.has_pv}
                    for m, port in zip(sim.meters, sim.ports, strict=True)
                ],
                # Each meter is read every 4 simulated hours, by range; the first read
                # backfills the history the analytics baselines need.
                "schedule": {
                    "profile_read_s": 4 * 3600,
                    "jitter_s": 1800,
                    "daily_after_s": 300,
                    # A round trip of 5 ms real is minutes of simulated time: not drift.
                    "max_clock_drift_s": int(max(10.0, 0.5 * speed)),
                },
                "spool": {"path": str(data_dir / "edge" / "spool.db"), "quota_mb": 512},
                # Alarm timers run on the accelerated clock; network delays of a few
                # milliseconds are minutes of simulated time, so the windows scale with it.
                "alarms": {
                    "transformer_min_meters": 5,
                    "correlation_window_s": max(10.0, 0.5 * speed),
                    "qualification_delay_s": max(30.0, 1.0 * speed),
                    "restore_correlation_s": max(60.0, 2.0 * speed),
                    "summary_period_s": max(900.0, 2.0 * speed),
                },
                "push": {"host": "127.0.0.1", "port": push_port},
            }
        )
        bus = MqttBus(MqttSettings.from_url(broker.url, client_id_prefix="ami-demo-edge"))
        await bus.start()
        if model_dir is not None:
            service = await _start_analytics(config, bus, model_dir, data_dir, clock)
        app = EdgeApp(
            config,
            bus,
            clock=clock,
            # Batch ages are in simulated seconds: seal a batch after 2 simulated hours.
            uplink_settings=UplinkSettings.from_config(config.uplink, max_batch_age_s=7200.0),
            initial_backfill_s=history_days * 86400,
            seed=seed,
        )
        await app.start()
        outage_at = sim_start + (sim_end - sim_start) * 0.7
        tasks.append(
            asyncio.create_task(_broker_outage(broker, clock, outage_at, seconds * 0.06, state))
        )
        while clock.now() < sim_end.timestamp():
            await asyncio.sleep(0.5)
            if progress:
                _progress(clock, sim_start, sim_end, app, state)
        if progress:
            sys.stderr.write("\n")
        await asyncio.gather(*tasks)
        await app.stop(drain_timeout=120.0)
        if service is not None:
            await service.close()
        await _wait_cloud_quiet(cloud)
        stats = app.stats()
        acq = stats.get("acquisition", {})
        up = stats.get("uplink", {})
        verified, mismatches, cloud_values = await _verify(cloud.api_url, sim, sim_start, sim_end)
        alarms, anomalies = await asyncio.to_thread(_cloud_findings, cloud.api_url, sim_start)
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
            injected=[(i.kind, list(i.meters), i.at.isoformat()) for i in injected],
            alarms=alarms,
            anomalies=anomalies,
            broker_outage_sim_h=round(float(state.get("outage_sim_h", 0.0)), 1),
        )
        if serve:
            _print_summary(result)
            print(
                f"dashboard: {cloud.api_url}/?key={API_KEY}  (API key {API_KEY}); Ctrl-C stops",
                flush=True,
            )
            try:
                while True:
                    await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass
        return result
    finally:
        for t in tasks:
            t.cancel()
        if app is not None and app.worker is not None:
            await app.stop()
        if service is not None:
            await service.close()
        if bus is not None:
            await bus.close()
        if cloud is not None:
            await cloud.close()
        if sim is not None:
            await sim.close()
        broker.close()


async def _start_analytics(
    config: Any, bus: Any, model_dir: Path, data_dir: Path, clock: Any
) -> Any:
    """The analytics service in this process, wired exactly as the component wires it: stored
    readings in on the local topic, anomaly events out to the concentrator's spool."""
    from edge_core.analytics.detectors import MeterConfig
    from edge_core.analytics.inference import ModelManager
    from edge_core.analytics.service import AnalyticsService
    from edge_core.model import Topics

    topics = Topics(config.thing_name)

    async def publish(payload: bytes) -> None:
        await bus.publish_local(topics.local_anomaly, payload)

    service = AnalyticsService(
        config.thing_name,
        config.timezone,
        ModelManager.from_config({"modelDir": str(model_dir)}),
        state_path=data_dir / "analytics" / "state.db",
        publish=publish,
        meter_settings={m.id: MeterConfig(m.id, has_pv=m.pv) for m in config.meters},
        clock=clock.now,
    )

    async def on_readings(_topic: str, payload: bytes) -> None:
        await service.consume(payload)

    await bus.subscribe_local(topics.local_readings, on_readings)
    return service


def _cloud_findings(api_url: str, since: datetime) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Alarm counts by type and the anomalies, as the cloud received them."""
    from urllib.parse import quote

    start = quote((since - timedelta(days=1)).isoformat())
    q = f"?from={start}&to={quote(datetime.now(timezone.utc).isoformat())}"
    counts: dict[str, int] = {}
    anomalies: list[dict[str, Any]] = []
    try:
        for a in _api_get(api_url, f"/v1/alarms{q}").get("alarms", []):
            counts[a.get("type", "?")] = counts.get(a.get("type", "?"), 0) + 1
        anomalies = list(_api_get(api_url, f"/v1/anomalies{q}").get("anomalies", []))
    except urllib.error.HTTPError as exc:
        log.warning("cloud findings not available: %s", exc)
    return counts, anomalies


def _progress(clock: Any, start: datetime, end: datetime, app: Any, state: dict[str, Any]) -> None:
    frac = min(1.0, (clock.now() - start.timestamp()) / (end - start).total_seconds())
    width = 30
    bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
    stats = app.stats()
    acq = stats.get("acquisition", {})
    up = stats.get("uplink", {})
    sys.stderr.write(
        f"\r[{bar}] {clock.now_dt():%Y-%m-%d %H:%M} reads {acq.get('reads', 0)}"
        f"  stored {acq.get('stored', 0)}  sent {up.get('published_messages', 0)}"
        f"  alarms {stats.get('alarms', {}).get('sent', 0)}  broker {state.get('broker')}   "
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
        ("broker outage (simulated hours)", f"{r.broker_outage_sim_h:g}"),
        (
            "alarms received by the cloud",
            ", ".join(f"{k} {v}" for k, v in sorted(r.alarms.items())) or "none",
        ),
        ("anomaly events received by the cloud", f"{len(r.anomalies)}"),
        ("wall time", f"{r.wall_s:.1f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    print("ami-edge demo summary")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    for m in r.mismatches[:10]:
        print(f"  MISMATCH {m}")
    if r.injected:
        print("scripted events")
        for kind, meters, at in r.injected:
            shown = ", ".join(meters[:4]) + (
                f" and {len(meters) - 4} more" if len(meters) > 4 else ""
            )
            print(f"  {at[:16]}  {kind:<19} {shown}")
    found = r.detected()
    if found:
        hits = sum(1 for *_, ok in found if ok)
        print(f"injected anomalies found by the edge analytics: {hits} of {len(found)}")
        for kind, meter, ok in found:
            print(f"  {kind:<12} {meter}  {'found' if ok else 'missed'}")
    print(f"dashboard: {r.api_url}/?key={API_KEY}")
    print(f"REST API: {r.api_url}  (header x-api-key: {API_KEY})")
    print(f"  e.g. curl -H 'x-api-key: {API_KEY}' {r.api_url}/v1/meters/<meter>/latest")
