"""The uplink over real MQTT: a Mosquitto outage in the middle of a drain loses nothing."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from edge_core.batch import decode_batch
from edge_core.bus.mqtt import MqttBus
from edge_core.bus.settings import MqttSettings
from edge_core.errors import BusUnavailableError
from edge_core.model import DataClass, Topics
from edge_core.uplink import Uplink, UplinkSettings

from .helpers import open_spool, readings

pytestmark = pytest.mark.broker

TOPICS = Topics("dcu-outage")


class GatedBus(MqttBus):
    """The uplink's bus, refusing publishes until the test's cloud subscriber is listening
    again after the restart (Mosquitto drops messages nobody is subscribed to)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.open = asyncio.Event()
        self.open.set()

    async def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        if not self.open.is_set():
            raise BusUnavailableError("cloud side not listening yet")
        await super().publish(topic, payload, qos)


def test_broker_outage_mid_drain_loses_nothing(tmp_path: Path, fresh_broker: Any) -> None:
    broker, local = fresh_broker
    spool = open_spool(tmp_path)
    put = readings(DataClass.INTERVAL, meters=60, per_meter=96) + readings(
        DataClass.DAILY, meters=60, per_meter=10, period=86400
    )
    spool.put(put)
    mqtt = {
        "start_timeout_s": 5.0,
        "publish_timeout_s": 3.0,
        "reconnect_max_s": 1,
        "keep_alive_s": 5,
        "ping_timeout_s": 1,
    }
    settings = UplinkSettings(
        max_batch_values=96,
        max_batch_age_s=0,
        max_publish_per_s=100,
        max_bytes_per_s=512 * 1024,
        max_in_flight=4,
        backoff_min_s=0.05,
        backoff_max_s=0.5,
        poll_interval_s=0.1,
    )
    received: list[bytes] = []

    async def main() -> None:
        cloud = MqttBus(MqttSettings.from_url(broker.url, **mqtt))
        edge = GatedBus(MqttSettings.from_url(broker.url, **mqtt))
        await cloud.start()
        await edge.start()
        arrived = asyncio.Event()

        def on_batch(topic: str, payload: bytes) -> None:
            received.append(payload)
            arrived.set()

        await cloud.subscribe("dt/ami/dcu-outage/#", on_batch)
        async with Uplink(spool, edge, TOPICS, settings) as uplink:
            drain = asyncio.create_task(uplink.drain(timeout=60))
            while len(received) < 5:
                arrived.clear()
                await asyncio.wait_for(arrived.wait(), 10)
            edge.open.clear()
            await asyncio.to_thread(local.stop)  # mid-drain
            assert not drain.done()
            await asyncio.sleep(0.5)
            await asyncio.to_thread(local.start)
            await cloud.wait_connected(20)
            # The cloud subscriber resubscribes on resume; prove it with a probe.
            probe = MqttBus(MqttSettings.from_url(broker.url, **mqtt))
            await probe.start()
            for _ in range(100):
                before = len(received)
                await probe.publish("dt/ami/dcu-outage/probe", b"probe")
                await asyncio.sleep(0.05)
                if len(received) > before:
                    break
            else:
                pytest.fail("cloud subscriber never came back")
            await probe.close()
            edge.open.set()
            await drain
        assert cloud.resumptions >= 1
        assert edge.interruptions >= 1
        await edge.close()
        await cloud.close()

    asyncio.run(main())
    batches = [decode_batch(p) for p in received if p != b"probe"]
    by_id: dict[bytes, list[tuple[Any, ...]]] = defaultdict(list)
    for b in batches:
        by_id[b.batch_id].append(b.readings)
    # Duplicates are allowed only as re-sends of the same batch (same id, same content).
    for copies in by_id.values():
        assert all(c == copies[0] for c in copies)
    keys = [r.key for copies in by_id.values() for r in copies[0]]
    assert len(keys) == len(set(keys))
    assert sorted(keys) == sorted(r.key for r in put)  # zero loss
    assert spool.pending() == []
    spool.close()
