"""The alarm path of the running concentrator, against the simulator and a real Mosquitto.

Scripted on the simulator's clock (accelerated 120x): a transformer outage with last-gasp pushes
from three of four meters, a tamper, and the DCU's own power failure through a GPIO value file.
What reaches the broker must be the engine's decisions: one transformer alarm listing the
meters, one transformer restore with durations, the tamper as an event, the last gasp first.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_core.bus.mqtt import MqttBus
from edge_core.bus.settings import MqttSettings
from edge_core.clock import AcceleratedClock
from edge_core.config import EdgeConfig
from edge_core.runtime.app import EdgeApp
from edge_core.simulator import serve_meters
from edge_core.uplink import UplinkSettings
from tests.conftest import Broker, free_port

pytestmark = [pytest.mark.broker, pytest.mark.slow]

SPEED = 120.0


async def _scenario(broker: Broker, tmp: Path) -> list[tuple[str, dict]]:
    t0 = datetime.now(UTC).replace(second=0, microsecond=0)
    clock = AcceleratedClock(t0.timestamp(), SPEED)
    push_port = free_port()
    sim = await serve_meters(
        4,
        "127.0.0.1",
        0,
        5,
        (t0 - timedelta(days=1)).date(),
        clock.now_dt,
        push_destination=("127.0.0.1", push_port),
        push_poll_s=0.05,
    )
    gpio = tmp / "gpio-value"
    gpio.write_text("1\n")
    # Script on simulated time: three meters lose supply 2 min from now for 10 min.
    for m in sim.meters[:3]:
        m.outage(t0 + timedelta(minutes=2), t0 + timedelta(minutes=12), last_gasp=True)
    sim.meters[3].tamper(t0 + timedelta(minutes=3), "terminal_cover", push=False)
    config = EdgeConfig.from_mapping(
        {
            "thing_name": "dcu-alarm-1",
            "meters": [
                {"id": mid, "url": f"tcp://127.0.0.1:{port}", "timeout_s": 2}
                for mid, port in zip(sim.meter_ids, sim.ports, strict=True)
            ],
            "schedule": {"profile_read_s": 300, "jitter_s": 5},
            "spool": {"path": str(tmp / "spool.db")},
            "alarms": {"transformer_min_meters": 3, "qualification_delay_s": 30},
            "powerfail": {
                "source": "gpio",
                "path": str(gpio),
                "edge": False,
                "poll_interval_s": 0.05,
            },
            "push": {"host": "127.0.0.1", "port": push_port},
        }
    )
    received: list[tuple[str, dict]] = []
    watcher = MqttBus(MqttSettings.from_url(broker.url, client_id_prefix="watch"))
    await watcher.start()

    async def on_msg(topic: str, payload: bytes) -> None:
        received.append((topic, json.loads(payload)))

    await watcher.subscribe("alarm/ami/+/#", on_msg)
    await watcher.subscribe("dt/ami/+/events", on_msg)
    bus = MqttBus(MqttSettings.from_url(broker.url, client_id_prefix="edge"))
    await bus.start()
    app = EdgeApp(
        config,
        bus,
        clock=clock,
        uplink_settings=UplinkSettings.from_config(config.uplink, max_batch_age_s=60.0),
        initial_backfill_s=3600,
    )
    await app.start()
    try:
        # 20 simulated minutes: outage from 2 to 12, restore read on the next polls.
        while clock.now() < (t0 + timedelta(minutes=20)).timestamp():
            await asyncio.sleep(0.2)
        gpio.write_text("0\n")  # the DCU's own supply fails
        await asyncio.sleep(1.0)
    finally:
        await app.stop()
        await bus.close()
        await asyncio.sleep(0.3)
        await watcher.close()
        await sim.close()
    return received


def test_transformer_outage_tamper_and_last_gasp_reach_the_broker(
    broker: Broker, tmp_path: Path
) -> None:
    received = asyncio.run(_scenario(broker, tmp_path))
    types = [m["type"] for _, m in received]
    # The exact sequence: the outage (qualified at 2.5 min), the tamper read from the fraud log
    # at the next poll, the restore once the meters answer again, and the DCU's last gasp.
    assert types == ["transformer_outage", "tamper", "transformer_restore", "last_gasp"]
    power = [(t, m) for t, m in received if t.startswith("alarm/")]
    outage = [m for _, m in power if m["type"] == "transformer_outage"]
    assert len(outage) == 1, types
    assert sorted(outage[0]["meters"]) == sorted(f"SIM05{i:06d}" for i in (1, 2, 3))
    restore = [m for _, m in power if m["type"] == "transformer_restore"]
    assert len(restore) == 1, types
    # No per-meter outage alarm for a meter the transformer alarm already covers.
    assert not [m for _, m in power if m["type"] == "outage"], types
    assert "tamper" in types
    gasp = [m for _, m in power if m["type"] == "last_gasp"]
    assert len(gasp) == 1, types
    assert gasp[0]["dcu"] == "dcu-alarm-1"
    seqs = [m["seq"] for _, m in received]
    assert len(set(seqs)) == len(seqs)  # every message has its own sequence number


async def _per_meter_scenarios(broker: Broker, tmp: Path) -> dict[str | None, list[str]]:
    """One meter out for 20 min, one phase lost for 5 min, a 20 s blink, and a meter flapping
    (ten 10-s interruptions 20 s apart), all with power pushes, on one concentrator."""
    t0 = datetime.now(UTC).replace(second=0, microsecond=0)
    clock = AcceleratedClock(t0.timestamp(), SPEED)
    push_port = free_port()
    sim = await serve_meters(
        5,
        "127.0.0.1",
        0,
        9,
        (t0 - timedelta(days=1)).date(),
        clock.now_dt,
        push_destination=("127.0.0.1", push_port),
        push_poll_s=0.02,
    )
    one, phase, blink, flap, _quiet = sim.meters
    at = t0 + timedelta(minutes=2)
    one.outage(at, at + timedelta(minutes=20), last_gasp=True)
    phase.phase_loss(2, at, at + timedelta(minutes=5))
    blink.outage(at, at + timedelta(seconds=20), last_gasp=True)
    for k in range(10):
        s = at + timedelta(seconds=20 * k)
        flap.outage(s, s + timedelta(seconds=10), last_gasp=True)
    config = EdgeConfig.from_mapping(
        {
            "thing_name": "dcu-alarm-2",
            "meters": [
                {"id": mid, "url": f"tcp://127.0.0.1:{port}", "timeout_s": 2}
                for mid, port in zip(sim.meter_ids, sim.ports, strict=True)
            ],
            "schedule": {"profile_read_s": 300, "jitter_s": 5},
            "spool": {"path": str(tmp / "spool.db")},
            # Real delivery jitter is seconds of simulated time at 120x: keep the aggregation
            # window below the spread of unrelated meters, and summaries short.
            "alarms": {"summary_period_s": 600, "transformer_min_meters": 5},
            "push": {"host": "127.0.0.1", "port": push_port},
        }
    )
    received: list[dict] = []
    watcher = MqttBus(MqttSettings.from_url(broker.url, client_id_prefix="watch2"))
    await watcher.start()

    async def on_msg(_topic: str, payload: bytes) -> None:
        received.append(json.loads(payload))

    await watcher.subscribe("alarm/ami/+/#", on_msg)
    await watcher.subscribe("dt/ami/+/events", on_msg)
    bus = MqttBus(MqttSettings.from_url(broker.url, client_id_prefix="edge2"))
    await bus.start()
    app = EdgeApp(config, bus, clock=clock, initial_backfill_s=600)
    await app.start()
    try:
        while clock.now() < (t0 + timedelta(minutes=40)).timestamp():
            await asyncio.sleep(0.2)
    finally:
        await app.stop()
        await bus.close()
        await asyncio.sleep(0.3)
        await watcher.close()
        await sim.close()
    by_meter: dict[str | None, list[str]] = {}
    for m in received:
        by_meter.setdefault(m.get("meter"), []).append(m["type"])
    by_meter["_ids"] = [m["id"] for m in received]
    by_meter["_names"] = list(sim.meter_ids)
    return by_meter


def test_one_meter_one_phase_a_blink_and_flapping_reach_the_broker_as_expected(
    broker: Broker, tmp_path: Path
) -> None:
    got = asyncio.run(_per_meter_scenarios(broker, tmp_path))
    one, phase, blink, flap, quiet = got["_names"]
    assert got.get(one) == ["outage", "restore"]
    assert got.get(phase) == ["phase_loss", "phase_restore"]
    assert got.get(blink) == ["momentary"]
    assert got.get(flap, [])[:1] == ["flapping"]
    assert "outage" not in got.get(flap, [])  # flapping suppresses per-interruption alarms
    assert quiet not in got
    assert len(set(got["_ids"])) == len(got["_ids"])  # nothing reached the broker twice
