"""End to end: a real Mosquitto, the local stack, a batch published like the edge does."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from cloud.local import run_local_stack
from edge_core.alarms.messages import AlarmMessage, AlarmType, alarm_id
from edge_core.bus.mqtt import MqttBus
from edge_core.bus.settings import MqttSettings
from edge_core.model import Topics

from .conftest import ENERGY, T0, VOLTAGE, batch_bytes, readings, registry_records

KEY = "k-e2e"


def _get(url: str) -> Any:
    req = urllib.request.Request(url, headers={"x-api-key": KEY})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


async def _poll(url: str, ok: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        data = await asyncio.to_thread(_get, url)
        if ok(data) or time.monotonic() > deadline:
            return data
        await asyncio.sleep(0.05)


@pytest.mark.broker
def test_published_batch_is_served_by_the_api(broker: Any, tmp_path: Path) -> None:
    reg = tmp_path / "registry.json"
    reg.write_text(json.dumps({"meters": [r.to_dict() for r in registry_records()]}))
    rs = readings("m-ct", ENERGY, T0 + 40500, 6, scaler=-1) + readings(
        "m-direct", VOLTAGE, T0, 4, base=2301, inc=2, scaler=-1, unit=35
    )
    payload, bid = batch_bytes(rs, thing="dcu-e2e")

    when = datetime(2024, 3, 1, 1, 0, tzinfo=timezone(timedelta(hours=1)))  # = T0

    async def main() -> None:
        stack = await run_local_stack(
            broker.host, broker.port, tmp_path / "data", 0, KEY, registry=reg
        )
        pub = MqttBus(MqttSettings.from_url(broker.url, client_id_prefix="e2e-pub"))
        try:
            await pub.start()
            await pub.publish("dt/ami/dcu-e2e/interval", payload, 1)
            gasp = AlarmMessage(
                type=AlarmType.LAST_GASP,
                dcu="dcu-e2e",
                event_time=when,
                detected_time=when,
                id=alarm_id("dcu-e2e", AlarmType.LAST_GASP, ["m-ct"], when),
                seq=1,
                priority=0,
                meters=("m-ct",),
                count=1,
            )
            await pub.publish(gasp.topic(Topics("dcu-e2e")), gasp.to_json(), 1)
            url = (
                f"{stack.api_url}/v1/meters/m-ct/intervals?from=2024-03-01T00:00:00Z"
                f"&to=2024-03-02T00:00:00Z&channel={ENERGY}"
            )
            data = await _poll(url, lambda d: len(d["rows"]) == 6)
            want = [
                r.value / 10 * (40 if r.capture_time < T0 + 43200 else 80) * 100 for r in rs[:6]
            ]
            assert [row["epoch"] for row in data["rows"]] == [r.capture_time for r in rs[:6]]
            assert [row["value"] for row in data["rows"]] == pytest.approx(want)
            volts = await asyncio.to_thread(
                _get, f"{stack.api_url}/v1/meters/m-direct/intervals?from=2024-03-01&to=2024-03-02"
            )
            assert [v["value"] for v in volts["rows"]] == pytest.approx(
                [r.value / 10 for r in rs[6:]]
            )
            out = await _poll(f"{stack.api_url}/v1/outages", lambda d: len(d["outages"]) == 2)
            assert sorted((o["key"], o["kind"], o["start"]) for o in out["outages"]) == [
                ("dcu-e2e", "last_gasp", "2024-03-01T00:00:00Z"),
                ("m-ct", "last_gasp", "2024-03-01T00:00:00Z"),
            ]
            assert await stack.wait_idle(quiet_s=0.1)
            assert stack.in_flight == 0
            assert len(stack.stores.queues.receive("oms")) == 1
            raw = stack.stores.objects.list("raw/thing=dcu-e2e/")
            assert [stack.stores.objects.get(k) for k in raw if k.endswith(".bin")] == [payload]
            assert stack.stores.batches.contains(bid.hex())
        finally:
            await pub.close()
            await stack.close()

    asyncio.run(main())
    lake = sorted(
        p.relative_to(tmp_path / "data" / "bucket").as_posix()
        for p in (tmp_path / "data" / "bucket" / "lake").rglob("*.parquet")
    )
    assert lake == ["lake/intervals/year=2024/month=03/day=01/part-0.parquet"]
