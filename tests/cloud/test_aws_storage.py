"""AWS backends against moto (no account, no network)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import pyarrow.parquet as pq
import pytest

boto3 = pytest.importorskip("boto3")
moto = pytest.importorskip("moto")

from cloud import lambda_handlers
from cloud.ingest import Ingestor
from cloud.storage.aws import aws_stores_from_env
from cloud.storage.base import (
    EventRecord,
    FleetEntry,
    HealthReport,
    LatestRead,
    Outage,
    ReadRequestRecord,
    Stores,
)
from cloud.template import TABLES

from .conftest import ENERGY, T0, batch_bytes, readings, registry_records


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stores]:
    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(k, v)
    with moto.mock_aws():
        boto3.client("s3").create_bucket(
            Bucket="raw", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        boto3.client("sqs").create_queue(QueueName="oms")
        ddb = boto3.client("dynamodb")
        env = {"AMI_BUCKET": "raw"}
        for tid, (var, pk, sk) in TABLES.items():
            attrs = [{"AttributeName": pk[0], "AttributeType": pk[1]}]
            keys = [{"AttributeName": pk[0], "KeyType": "HASH"}]
            if sk:
                attrs.append({"AttributeName": sk[0], "AttributeType": sk[1]})
                keys.append({"AttributeName": sk[0], "KeyType": "RANGE"})
            ddb.create_table(
                TableName=tid,
                AttributeDefinitions=attrs,
                KeySchema=keys,
                BillingMode="PAY_PER_REQUEST",
            )
            env[var] = tid
        stores = aws_stores_from_env(env)
        yield stores
        lambda_handlers.reset()


def test_object_store_and_queue_round_trip(aws: Stores) -> None:
    aws.objects.put("raw/thing=a/date=2024-03-01/x.bin", b"\x00\x01")
    aws.objects.put("raw/thing=b/date=2024-03-01/y.json", b"{}", "application/json")
    assert aws.objects.list("raw/thing=a/") == ["raw/thing=a/date=2024-03-01/x.bin"]
    assert aws.objects.get("raw/thing=a/date=2024-03-01/x.bin") == b"\x00\x01"
    aws.queues.send("oms", '{"type": "outage"}')
    assert aws.queues.receive("oms") == ['{"type": "outage"}']
    assert aws.queues.receive("oms") == []


def test_latest_keeps_newest(aws: Stores) -> None:
    aws.latest.update([LatestRead("m", "c", 200, 2.5, "Wh")])
    aws.latest.update([LatestRead("m", "c", 100, 1.0, "Wh"), LatestRead("m", "d", 50, 0.1, "V")])
    got = aws.latest.get("m")
    assert (got["c"].capture_time, got["c"].value) == (200, 2.5)
    assert got["d"].value == 0.1


def test_ingest_on_aws_stores_dedupes_and_writes_the_lake(aws: Stores) -> None:
    aws.registry.upsert(registry_records())
    assert [r.ct_ratio for r in aws.registry.records("m-ct")] == [40.0, 80.0]
    ing = Ingestor(aws)
    first, bid = batch_bytes(readings("m-ct", ENERGY, T0 + 41400, 4, scaler=-1))
    overlap, _ = batch_bytes(readings("m-ct", ENERGY, T0 + 43200, 4, base=1014, scaler=-1))
    assert ing.handle_data("t", first).stored == 4
    assert ing.handle_data("t", first).status == "duplicate"
    assert ing.handle_data("t", overlap).stored == 2
    rows = aws.intervals.query("m-ct", T0, T0 + 86400)
    assert [r.capture_time for r in rows] == [T0 + 41400 + 900 * i for i in range(6)]
    assert [r.value for r in rows] == pytest.approx(
        [(1000 + 7 * i) / 10 * (4000 if i < 2 else 8000) for i in range(6)]
    )
    assert aws.intervals.has_meter("m-ct")
    assert not aws.intervals.has_meter("zz")
    lake = aws.objects.list("lake/intervals/year=2024/month=03/day=01/")
    assert len(lake) == 2
    assert f"{bid.hex()}.parquet" in lake[0] + lake[1]
    n = sum(pq.read_table(io.BytesIO(aws.objects.get(k))).num_rows for k in lake)
    assert n == 6  # each key once in the lake too


def test_outages_and_processed_batches(aws: Stores) -> None:
    aws.outages.save(Outage("m1", "d", 100, None, "last_gasp"))
    aws.outages.save(Outage("m2", "d", 50, 60, "momentary"))
    assert aws.outages.open_outage("m1") == Outage("m1", "d", 100, None, "last_gasp")
    assert aws.outages.open_outage("m2") is None
    assert [o.key for o in aws.outages.list("current")] == ["m1"]
    assert [o.key for o in aws.outages.list("past")] == ["m2"]
    assert aws.batches.add("b1", {"n": 1}) is True
    assert aws.batches.add("b1", {"n": 1}) is False
    assert aws.batches.contains("b1")
    assert not aws.batches.contains("b2")


def test_lambda_handlers_run_the_same_code(aws: Stores) -> None:
    lambda_handlers.reset(aws)
    payload, _ = batch_bytes(readings("m-direct", ENERGY, T0, 3))
    out: dict[str, Any] = lambda_handlers.ingest(
        {"data": base64.b64encode(payload).decode(), "topic": "dt/ami/d/interval"}
    )
    assert out["status"] == "stored"
    assert out["stored"] == 3
    assert (
        lambda_handlers.alarm({"type": "outage", "meter": "m-direct", "time": T0})["action"]
        == "opened"
    )
    resp = lambda_handlers.api({"httpMethod": "GET", "path": "/v1/meters/m-direct/latest"})
    assert resp["statusCode"] == 200
    assert '"1.0.1.8.0.255"' in resp["body"]


def _published() -> list[tuple[str, bytes]]:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.iotdata.models import iotdata_backends

    return list(iotdata_backends[DEFAULT_ACCOUNT_ID]["eu-west-1"].published_payloads)


def test_dashboard_tables_on_dynamodb(aws: Stores) -> None:
    assert aws.reads is not None
    assert aws.fleet is not None
    assert aws.events is not None
    assert aws.health is not None
    rec = ReadRequestRecord("r1", "m", "dcu", 100, 160, "pending", {"v": 1, "id": "r1"})
    aws.reads.create(rec)
    assert aws.reads.get("r1") == rec
    assert aws.reads.get("r2") is None
    assert aws.reads.complete("r1", "done", {"status": "ok"}, 120) is True
    assert aws.reads.complete("r1", "timeout", None, 200) is False  # no longer pending
    assert aws.reads.complete("r2", "done", None, 200) is False
    got = aws.reads.get("r1")
    assert got is not None
    assert (got.status, got.response, got.completed) == ("done", {"status": "ok"}, 120)

    aws.fleet.touch([FleetEntry("m1", "dcu-a", 200), FleetEntry("m2", "dcu-a", 50)])
    aws.fleet.touch([FleetEntry("m1", "dcu-b", 100), FleetEntry("m2", "dcu-b", 60)])
    assert aws.fleet.list() == [FleetEntry("m1", "dcu-a", 200), FleetEntry("m2", "dcu-b", 60)]
    assert aws.fleet.get("m9") is None

    ev = [
        EventRecord("alarm:1", "alarm", "d", "m1", 100, "outage", None, {"x": 1}),
        EventRecord("event:2", "event", "d", "m1", 150, "tamper", None, {}),
        EventRecord("anomaly:3", "anomaly", "d", "m2", 120, "learned", 0.9, {"score": 0.9}),
        EventRecord("anomaly:4", "anomaly", "d", "m2", 300, "learned", 0.7, {}),
    ]
    assert [aws.events.put(e) for e in ev] == [True] * 4
    assert aws.events.put(ev[0]) is False
    assert aws.events.list(["alarm", "event"], 0, 1000) == ev[:2]
    assert aws.events.list(["anomaly"], 120, 300) == [ev[2]]
    assert aws.events.list(["anomaly"], 0, 1000, meter="m1") == []
    assert aws.events.counts("anomaly", 121) == {"m2": 1}

    for t, backlog in ((10, 5), (20, 3), (30, 0)):
        aws.health.put(HealthReport("dcu", t, {"backlog_readings": backlog}))
    latest = aws.health.latest("dcu")
    assert latest is not None
    assert latest.time == 30
    assert [h.doc["backlog_readings"] for h in aws.health.history("dcu", 10, 30)] == [5, 3]
    assert aws.health.latest("other") is None

    aws.registry.upsert(registry_records())
    assert aws.registry.meters() == ["m-ct", "m-direct"]


def test_on_demand_read_through_lambda_and_iot_data(
    aws: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMI_BACKEND", "aws")
    monkeypatch.delenv("AMI_IOT_ENDPOINT", raising=False)
    aws.registry.upsert(registry_records())
    lambda_handlers.reset(aws)
    resp = lambda_handlers.api(
        {"httpMethod": "POST", "path": "/v1/reads", "body": '{"meter": "m-direct"}'}
    )
    assert resp["statusCode"] == 202, resp["body"]
    rid = json.loads(resp["body"])["id"]
    [(topic, payload)] = _published()
    assert topic == "cmd/ami/dcu-1/read/req"
    assert json.loads(payload) == {"v": 1, "id": rid, "meter": "m-direct"}
    # the response rule's Lambda action completes it
    out = lambda_handlers.documents(
        {"topic": "cmd/ami/dcu-1/read/res", "thing": "dcu-1", "id": rid, "status": "ok"}
    )
    assert out == {"action": "done"}
    got = json.loads(lambda_handlers.api({"httpMethod": "GET", "path": f"/v1/reads/{rid}"})["body"])
    assert got["status"] == "done"
    assert got["response"] == {"id": rid, "status": "ok"}
