"""AWS backends against moto (no account, no network)."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import pyarrow.parquet as pq
import pytest

boto3 = pytest.importorskip("boto3")
moto = pytest.importorskip("moto")

from cloud import lambda_handlers  # noqa: E402
from cloud.ingest import Ingestor  # noqa: E402
from cloud.storage.aws import aws_stores_from_env  # noqa: E402
from cloud.storage.base import LatestRead, Outage, Stores  # noqa: E402
from cloud.template import TABLES  # noqa: E402

from .conftest import ENERGY, T0, batch_bytes, readings, registry_records  # noqa: E402


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
