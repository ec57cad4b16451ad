"""docs/asyncapi.yaml against the code: topics, schema files, and payloads the code produces."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from edge_core.model import DataClass, Topics

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "asyncapi.yaml"
SCHEMAS = ROOT / "docs" / "schemas"


def _doc() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(DOC.read_text(encoding="utf-8"))
    return doc


def _file_refs(node: Any) -> Iterator[str]:
    """Every $ref in the document that names a file (not a local #/ pointer)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and not value.startswith("#"):
                yield value
            else:
                yield from _file_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _file_refs(item)


def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _cloud_topics(thing: str) -> set[str]:
    """Every topic of Topics(thing) that carries the thing name (i.e. leaves the device)."""
    topics = Topics(thing)
    out = {topics.data(dc) for dc in DataClass}
    for name, attr in vars(Topics).items():
        if isinstance(attr, property):
            value = getattr(topics, name)
            if f"/{thing}/" in value:
                out.add(value)
    return out


def test_document_parses_and_is_asyncapi_2() -> None:
    doc = _doc()
    assert str(doc["asyncapi"]).startswith("2.")
    assert doc["channels"]
    for name, channel in doc["channels"].items():
        ops = [op for op in ("publish", "subscribe") if op in channel]
        assert len(ops) == 1, name
        op = channel[ops[0]]
        assert op["bindings"]["mqtt"]["qos"] in (0, 1), name
        assert "$ref" in op["message"], name
        assert "thing" in channel["parameters"], name


def test_channels_are_exactly_the_topics_of_the_code() -> None:
    doc_topics = {name.replace("{thing}", "T") for name in _doc()["channels"]}
    assert doc_topics == _cloud_topics("T")


def test_direction_matches_the_code() -> None:
    channels = _doc()["channels"]
    topics = Topics("{thing}")
    assert "publish" in channels[topics.read_request]  # the cloud sends, the edge receives
    for name, channel in channels.items():
        if name != topics.read_request:
            assert "subscribe" in channel, name  # the edge sends


def test_every_referenced_schema_exists_and_is_valid() -> None:
    refs = set(_file_refs(_doc()))
    assert refs, "the document references no schema file"
    for ref in refs:
        path = (DOC.parent / ref).resolve()
        assert path.is_file(), ref
        Draft202012Validator.check_schema(json.loads(path.read_text(encoding="utf-8")))
    for path in SCHEMAS.glob("*.json"):
        assert path.resolve() in {(DOC.parent / r).resolve() for r in refs}, path.name


def test_alarm_messages_from_the_engine_validate() -> None:
    from edge_core.alarms import (
        AlarmSettings,
        CounterSequence,
        DcuPowerFail,
        MeterPowerDown,
        MeterPowerUp,
        OutageEngine,
        TamperEvent,
    )

    ref = _doc()["components"]["messages"]["alarm"]["payload"]["$ref"]
    schema = json.loads((DOC.parent / ref).read_text(encoding="utf-8"))
    validator = Draft202012Validator(schema)
    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    engine = OutageEngine(
        "dcu-T", AlarmSettings(), sequence=CounterSequence(), meters=["M1", "M2", "M3"]
    )
    msgs = []
    msgs += engine.handle(MeterPowerDown("M1", t0), now=t0)
    msgs += engine.tick(t0 + timedelta(seconds=40))
    msgs += engine.handle(
        MeterPowerUp("M1", t0 + timedelta(seconds=600)), now=t0 + timedelta(seconds=600)
    )
    msgs += engine.handle(
        TamperEvent("M2", 40, t0 + timedelta(seconds=700)), now=t0 + timedelta(seconds=700)
    )
    msgs += engine.handle(
        DcuPowerFail(t0 + timedelta(seconds=900)), now=t0 + timedelta(seconds=900)
    )
    kinds = {m.type.value for m in msgs}
    assert {"outage", "restore", "tamper", "last_gasp"} <= kinds, kinds
    for msg in msgs:
        validator.validate(json.loads(msg.to_json()))


def test_read_response_from_the_command_handler_validates() -> None:
    from edge_core.bus.memory import MemoryBus
    from edge_core.config import EdgeConfig
    from edge_core.runtime.app import EdgeApp
    from edge_core.runtime.commands import CommandHandler
    from edge_core.simulator.server import serve_meters

    request_v = _validator("read-request.schema.json")
    response_v = _validator("read-response.schema.json")
    sent: list[dict[str, Any]] = []

    async def scenario() -> None:
        sim = await serve_meters(1, "127.0.0.1", 0, seed=5, start=date.today() - timedelta(days=2))
        try:
            config = EdgeConfig.from_mapping(
                {"thing_name": "dcu-T", "meters": [{"id": "M1", "url": sim.url(0), "timeout_s": 5}]}
            )
            app = EdgeApp(config, MemoryBus())  # not started: only its on-demand read is used

            async def respond(body: bytes) -> None:
                sent.append(json.loads(body))

            handler = CommandHandler(
                config, app._on_demand_read, respond, lambda: datetime.now(UTC).isoformat()
            )
            end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
            requests = [
                {"v": 1, "id": "r1", "meter": "M1", "obis": ["1.0.1.8.0.255", "1-0:32.7.0*255"]},
                {
                    "id": "r2",
                    "meter": "M1",
                    "profile": {
                        "from": (end - timedelta(hours=2)).isoformat(),
                        "to": end.isoformat(),
                    },
                },
                {"id": "r3", "meter": "NOPE"},
            ]
            for req in requests:
                request_v.validate(req)
                await handler.handle("cmd/ami/dcu-T/read/req", json.dumps(req).encode())
            await handler.handle("cmd/ami/dcu-T/read/req", b'{"id":"r4","meter":"M1","obis":"x"}')
        finally:
            await sim.close()

    asyncio.run(scenario())
    assert [m["id"] for m in sent] == ["r1", "r2", "r3", "r4"]
    assert [m["status"] for m in sent] == ["ok", "ok", "error", "error"]
    assert sent[1]["load_profile"]["rows"], "the profile request read no rows"
    for msg in sent:
        response_v.validate(msg)


def test_schemas_reject_what_the_edge_refuses() -> None:
    request_v = _validator("read-request.schema.json")
    for bad in (
        {"meter": "M1"},
        {"id": "", "meter": "M1"},
        {"id": "x", "meter": "M1", "obis": ["1.0.1.8"]},
        {"id": "x", "meter": "M1", "profile": {"from": "2026-01-01T00:00:00"}},
    ):
        assert not request_v.is_valid(bad), bad
    response_v = _validator("read-response.schema.json")
    assert not response_v.is_valid(
        {"v": 1, "id": "x", "meter": "M1", "read_at": "2026-01-01T00:00:00+00:00", "status": "ok"}
    )
    assert not response_v.is_valid(
        {"v": 1, "id": "x", "meter": "", "read_at": "2026-01-01T00:00:00+00:00", "status": "error"}
    )


def test_health_snapshot_validates(tmp_path: Path) -> None:
    from edge_core.health import Health
    from edge_core.model import Reading
    from edge_core.spool.store import Spool

    validator = _validator("health.schema.json")
    health = Health(thing="dcu-T")
    validator.validate(json.loads(health.to_json()))  # before anything happened
    spool = Spool.open(tmp_path / "spool.db", quota_bytes=1 << 20)
    try:
        spool.put(
            [Reading("M1", "1.0.1.8.0.255", 1_700_000_000 + 900 * i, 1000 + i) for i in range(8)]
        )
        health.update_spool(spool.stats())
    finally:
        spool.close()
    health.record_publish("bulk", 1234, 0.012)
    health.record_publish("alarm", 300, 0.004)
    health.connected = True
    snap = json.loads(health.to_json())
    assert snap["stored"] == 8
    validator.validate(snap)
    snap["spool"]["stored"]["nonsense"] = 1
    assert not validator.is_valid(snap)


def test_lifecycle_notice_of_the_component_validates() -> None:
    from components.concentrator.app import ConcentratorApp
    from edge_core.bus.memory import MemoryBus
    from edge_core.config import EdgeConfig

    validator = _validator("health.schema.json")
    bus = MemoryBus()
    app = ConcentratorApp()
    app._bus = bus
    app.config = EdgeConfig.from_mapping({"thing_name": "dcu-T"})

    async def scenario() -> None:
        await bus.start()
        await app._health("started")
        await app._health("stopping")
        await bus.close()

    asyncio.run(scenario())
    assert [p.topic for p in bus.published] == [Topics("dcu-T").health] * 2
    for published in bus.published:
        validator.validate(json.loads(published.payload))


@pytest.mark.parametrize(
    "name", ["read-request.schema.json", "read-response.schema.json", "health.schema.json"]
)
def test_schema_examples_validate(name: str) -> None:
    schema = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    validator = _validator(name)
    for example in schema.get("examples", []):
        validator.validate(example)


def test_lifecycle_notices_of_analytics_validate(tmp_path: Path) -> None:
    from components.analytics.app import AnalyticsApp, AnalyticsConfig
    from edge_core.bus.memory import MemoryBus

    validator = _validator("health.schema.json")
    bus = MemoryBus()
    app = AnalyticsApp()
    app._bus = bus
    app.config = AnalyticsConfig.from_mapping(
        {"thing_name": "dcu-T", "model_dir": str(tmp_path), "state_path": str(tmp_path / "s.db")}
    )

    async def scenario() -> None:
        await bus.start()
        await app._health("started")
        app.model_version = "2026.11.1"
        # a folder without a model: refused, reported as model_rejected
        await app.swap_model(str(tmp_path / "missing"))
        await app._health("model_swapped", previous="2026.10.1")
        await app._health("stopping")
        await bus.close()

    asyncio.run(scenario())
    events = [json.loads(p.payload)["event"] for p in bus.published]
    assert events == ["started", "model_rejected", "model_swapped", "stopping"]
    for published in bus.published:
        validator.validate(json.loads(published.payload))


def test_read_requests_sent_by_the_cloud_api_validate(tmp_path: Path) -> None:
    from cloud.api import ApiApp
    from cloud.ingest import Ingestor
    from cloud.storage.local import open_local_stores
    from edge_core.batch import encode_split
    from edge_core.model import Reading

    validator = _validator("read-request.schema.json")
    stores, db = open_local_stores(tmp_path)
    try:
        rows = [Reading("M1", "1.0.1.8.0.255", 1_700_000_000 + 900 * i, 10 + i) for i in range(4)]
        ((_, payload),) = encode_split(rows, thing="dcu-T", data_class=DataClass.INTERVAL)
        Ingestor(stores).handle_data("dt/ami/dcu-T/interval", payload)
        sent: list[tuple[str, bytes]] = []
        app = ApiApp(stores, api_key="k", publisher=lambda t, p: sent.append((t, p)))
        for body in (
            {"meter": "M1"},
            {"meter": "M1", "obis": ["1.0.1.8.0.255"]},
            {
                "meter": "M1",
                "profile": {"from": "2026-03-01T00:00:00Z", "to": "2026-03-01T02:00:00Z"},
            },
        ):
            event = {
                "httpMethod": "POST",
                "path": "/v1/reads",
                "headers": {"x-api-key": "k"},
                "body": json.dumps(body),
            }
            assert app.handle(event)["statusCode"] == 202
    finally:
        db.close()
    assert [t for t, _ in sent] == [Topics("dcu-T").read_request] * 3
    for _, published in sent:
        validator.validate(json.loads(published))
