"""On-demand reads end to end: REST API -> Mosquitto -> EdgeApp -> simulated meter -> back.

Everything real except the meters (the project's DLMS simulator on TCP): the local stack
publishes the command on its MQTT connection, the concentrator reads the meter over DLMS and
answers on cmd/ami/{thing}/read/res, the stack's rule completes the request.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from cloud.local import run_local_stack
from cloud.storage.base import MeterRecord
from edge_core.broker import free_port
from edge_core.bus.mqtt import MqttBus
from edge_core.bus.settings import MqttSettings
from edge_core.config import EdgeConfig
from edge_core.dlms.obis import Obis
from edge_core.meter import read_meter
from edge_core.runtime.app import EdgeApp
from edge_core.simulator import serve_meters

KEY = "k-reads"
ENERGY = "1.0.1.8.0.255"
THING = "dcu-reads-e2e"


def _call(url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, headers={"x-api-key": KEY, "Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


async def _read(api: str, body: dict[str, Any], limit_s: float = 30.0) -> dict[str, Any]:
    """POST a read, then poll it until it is no longer pending (bounded)."""
    status, created = await asyncio.to_thread(_call, f"{api}/v1/reads", body)
    assert status == 202, created
    deadline = time.monotonic() + limit_s
    while True:
        status, doc = await asyncio.to_thread(_call, api + created["location"])
        assert status == 200
        if doc["status"] != "pending" or time.monotonic() > deadline:
            return doc
        await asyncio.sleep(0.1)


@pytest.mark.broker
@pytest.mark.slow
def test_on_demand_reads_round_trip(broker: Any, tmp_path: Path) -> None:
    async def main() -> None:
        now = datetime.now(timezone.utc)
        sim = await serve_meters(2, "127.0.0.1", 0, 11, (now - timedelta(days=2)).date())
        stack = edge_bus = app = None
        dead_port = free_port()
        try:
            stack = await run_local_stack(
                broker.host, broker.port, tmp_path / "cloud", 0, KEY, compact_every_s=0
            )
            meters = [
                {"id": mid, "url": f"tcp://127.0.0.1:{port}"}
                for mid, port in zip(sim.meter_ids, sim.ports, strict=True)
            ]
            meters.append({"id": "MTR-DEAD", "url": f"tcp://127.0.0.1:{dead_port}", "timeout_s": 2})
            stack.stores.registry.upsert(
                [MeterRecord(m["id"], THING) for m in meters]
                + [MeterRecord("MTR-ORPHAN", "dcu-nobody-home")]
            )
            config = EdgeConfig.from_mapping(
                {
                    "thing_name": THING,
                    "meters": meters,
                    "schedule": {"profile_read_s": 86400, "jitter_s": 0},
                    "spool": {"path": str(tmp_path / "edge" / "spool.db"), "quota_mb": 16},
                }
            )
            edge_bus = MqttBus(MqttSettings.from_url(broker.url, client_id_prefix="reads-edge"))
            await edge_bus.start()
            app = EdgeApp(config, edge_bus, initial_backfill_s=900)
            await app.start()

            # Registers: the edge's answer against a direct read right after it.
            meter, port = sim.meter_ids[0], sim.ports[0]
            url = f"tcp://127.0.0.1:{port}"
            # A closed past range: the rows must be identical to what the meter serves.
            end = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
            start = end - timedelta(hours=2)
            got = await _read(
                stack.api_url,
                {
                    "meter": meter,
                    "obis": [ENERGY],
                    "profile": {"from": start.isoformat(), "to": end.isoformat()},
                    "timeout_s": 30,
                },
            )
            assert got["status"] == "done", got
            assert got["thing"] == THING
            res = got["response"]
            assert (res["status"], res["meter"], res["id"]) == ("ok", meter, got["id"])
            truth = (
                await read_meter(url, obis=[Obis.parse(ENERGY)], load_profile=(start, end))
            ).to_json()
            [edge_reg] = [r for r in res["registers"] if r["obis"] == ENERGY]
            [true_reg] = [r for r in truth["registers"] if r["obis"] == ENERGY]
            assert (edge_reg["unit"], edge_reg["scaler"]) == (true_reg["unit"], true_reg["scaler"])
            # the register only grows, by the consumption between the two reads
            assert 0 <= true_reg["raw"] - edge_reg["raw"] < 10_000
            assert res["load_profile"]["rows"] == truth["load_profile"]["rows"]
            assert len(res["load_profile"]["rows"]) >= 8  # 2 h of 15-min captures

            # A meter whose port is dead: the edge's typed error comes back.
            dead = await _read(stack.api_url, {"meter": "MTR-DEAD", "timeout_s": 30})
            assert dead["status"] == "error", dead
            assert dead["error"]["type"] in ("MeterUnreachableError", "MeterTimeoutError")
            assert dead["error"]["message"]

            # No concentrator listens for this one: the request times out.
            lost = await _read(stack.api_url, {"meter": "MTR-ORPHAN", "timeout_s": 1}, 10.0)
            assert lost["status"] == "timeout"
            assert lost["response"] is None
            assert lost["thing"] == "dcu-nobody-home"
        finally:
            if app is not None:
                await app.stop()
            if edge_bus is not None:
                await edge_bus.close()
            if stack is not None:
                await stack.close()
            await sim.close()

    asyncio.run(main())
