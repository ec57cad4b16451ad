"""AWS backends: S3, SQS and DynamoDB through boto3 (imported when a store is built, not here).

Theory of operation
-------------------
* Every botocore exception is mapped to :class:`~cloud.storage.base.StorageError` in
  :func:`_boto`, the one boundary of this module.
* Interval index: DynamoDB table with partition key ``series`` = ``<meter>#<channel>`` and sort
  key ``capture_time``; one conditional put per row (``attribute_not_exists`` or written by the
  same batch) is the (meter, channel, time) dedupe, and a replayed batch after a crash rewrites
  only its own rows. A per-meter item (``series`` = ``<meter>#``, ``capture_time`` 0) lists the
  meter's channels, so a query without a channel knows which series to read.
* Lake: the rows a batch newly stored are written as one Parquet object
  ``lake/intervals/year=/month=/day=/<batch id>.parquet`` per capture day, so Athena over the
  Glue table sees each key once and a replay overwrites instead of duplicating.
* Numbers go to DynamoDB as Decimal (through ``str``, so 0.1 stays 0.1).
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Literal

from cloud.storage.base import (
    IntervalRow,
    LatestRead,
    MeterRecord,
    ObjectStore,
    Outage,
    StorageError,
    Stores,
)

__all__ = [
    "DynamoIntervalStore",
    "DynamoLatestTable",
    "DynamoOutageStore",
    "DynamoProcessedBatches",
    "DynamoRegistry",
    "S3ObjectStore",
    "SqsQueue",
    "aws_stores_from_env",
]

BATCH_TTL_S = 90 * 86400  # processed-batch ids are kept this long (s)


@contextlib.contextmanager
def _boto(what: str) -> Iterator[None]:
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - boto3 is loaded only when an AWS store is built

    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise StorageError(f"{what}: {exc}") from exc


def _boto_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - boto3 is loaded only when an AWS store is built

    return (ClientError, BotoCoreError)


def _conditional_failed(exc: Exception) -> bool:
    """True for DynamoDB's ConditionalCheckFailedException (an expected outcome here)."""
    from botocore.exceptions import ClientError  # noqa: PLC0415 - boto3 is loaded only when an AWS store is built

    return (
        isinstance(exc, ClientError)
        and exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
    )


def _dec(v: float) -> Decimal:
    return Decimal(str(v))


def _resource(service: str, session: Any = None) -> Any:
    import boto3  # noqa: PLC0415 - boto3 is loaded only when an AWS store is built

    return (session or boto3).resource(service)


def _client(service: str, session: Any = None) -> Any:
    import boto3  # noqa: PLC0415 - boto3 is loaded only when an AWS store is built

    return (session or boto3).client(service)


class S3ObjectStore:
    def __init__(self, bucket: str, *, client: Any = None) -> None:
        self.bucket = bucket
        self.s3 = client or _client("s3")

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        with _boto(f"s3 put {key}"):
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def get(self, key: str) -> bytes:
        with _boto(f"s3 get {key}"):
            return bytes(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def list(self, prefix: str = "") -> list[str]:
        out: list[str] = []
        with _boto(f"s3 list {prefix}"):
            for page in self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            ):
                out.extend(o["Key"] for o in page.get("Contents", []))
        return sorted(out)


class SqsQueue:
    """Queues by name; ``urls`` maps a rule's queue name to its URL (else looked up by name)."""

    def __init__(self, urls: Mapping[str, str] | None = None, *, client: Any = None) -> None:
        self.sqs = client or _client("sqs")
        self.urls = dict(urls or {})

    def _url(self, queue: str) -> str:
        if queue not in self.urls:
            with _boto(f"sqs get_queue_url {queue}"):
                self.urls[queue] = self.sqs.get_queue_url(QueueName=queue)["QueueUrl"]
        return self.urls[queue]

    def send(self, queue: str, body: str) -> None:
        with _boto(f"sqs send {queue}"):
            self.sqs.send_message(QueueUrl=self._url(queue), MessageBody=body)

    def receive(self, queue: str, max_messages: int = 10) -> list[str]:
        url = self._url(queue)
        with _boto(f"sqs receive {queue}"):
            msgs = self.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=min(max_messages, 10), WaitTimeSeconds=0
            ).get("Messages", [])
            for m in msgs:
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return [m["Body"] for m in msgs]


class DynamoLatestTable:
    """Items (meter, channel) -> capture_time, value, unit; only newer captures replace."""

    def __init__(self, table: str, *, resource: Any = None) -> None:
        self.table = (resource or _resource("dynamodb")).Table(table)

    def update(self, reads: Iterable[LatestRead]) -> None:
        for r in reads:
            try:
                self.table.put_item(
                    Item={
                        "meter": r.meter,
                        "channel": r.channel,
                        "capture_time": r.capture_time,
                        "value": _dec(r.value),
                        "unit": r.unit,
                    },
                    ConditionExpression="attribute_not_exists(meter) OR capture_time < :t",
                    ExpressionAttributeValues={":t": r.capture_time},
                )
            except _boto_errors() as exc:
                if _conditional_failed(exc):
                    continue  # an equal or newer value is already there
                raise StorageError(f"dynamodb latest put: {exc}") from exc

    def get(self, meter: str) -> dict[str, LatestRead]:
        from boto3.dynamodb.conditions import Key  # noqa: PLC0415 - boto3 is loaded only when an AWS store is built

        with _boto("dynamodb latest query"):
            items = self.table.query(KeyConditionExpression=Key("meter").eq(meter))["Items"]
        return {
            i["channel"]: LatestRead(
                meter, i["channel"], int(i["capture_time"]), float(i["value"]), i["unit"]
            )
            for i in items
        }


class DynamoIntervalStore:
    """Interval index in DynamoDB plus the Parquet lake in S3 (see the module doc)."""

    def __init__(
        self, table: str, *, lake: ObjectStore | None = None, resource: Any = None
    ) -> None:
        self.table = (resource or _resource("dynamodb")).Table(table)
        self.lake = lake

    def put(self, rows: Sequence[IntervalRow]) -> int:
        stored: list[IntervalRow] = []
        for r in rows:
            item = {
                "series": f"{r.meter}#{r.channel}",
                "capture_time": r.capture_time,
                "value": _dec(r.value),
                "unit": r.unit,
                "status": r.status,
                "raw": r.raw,
                "scaler": r.scaler,
                "multiplier": _dec(r.multiplier),
                "data_class": r.data_class,
                "batch_id": r.batch_id,
            }
            try:
                self.table.put_item(
                    Item=item,
                    ConditionExpression="attribute_not_exists(series) OR batch_id = :b",
                    ExpressionAttributeValues={":b": r.batch_id},
                )
            except _boto_errors() as exc:
                if _conditional_failed(exc):
                    continue  # key stored by another batch: first value wins
                raise StorageError(f"dynamodb interval put: {exc}") from exc
            stored.append(r)
        channels: dict[str, set[str]] = {}
        for r in rows:
            channels.setdefault(r.meter, set()).add(r.channel)
        with _boto("dynamodb meter channels"):
            for meter, chans in channels.items():
                self.table.update_item(
                    Key={"series": f"{meter}#", "capture_time": 0},
                    UpdateExpression="ADD channels :c",
                    ExpressionAttributeValues={":c": chans},
                )
        if self.lake is not None and stored:
            self._write_lake(stored)
        return len(stored)

    def _write_lake(self, rows: Sequence[IntervalRow]) -> None:
        import pyarrow.parquet as pq  # noqa: PLC0415 - pyarrow is loaded only when Parquet is written

        from cloud.storage.local import LAKE_PREFIX, rows_to_table  # noqa: PLC0415 - keep CLI registration free of heavy imports

        assert self.lake is not None
        by_day: dict[tuple[int, int, int], list[IntervalRow]] = {}
        for r in rows:
            when = datetime.fromtimestamp(r.capture_time, tz=timezone.utc)
            by_day.setdefault((when.year, when.month, when.day), []).append(r)
        for (y, m, d), day_rows in by_day.items():
            buf = io.BytesIO()
            pq.write_table(rows_to_table(day_rows), buf, compression="zstd")
            key = (
                f"{LAKE_PREFIX}/year={y:04d}/month={m:02d}/day={d:02d}/"
                f"{day_rows[0].batch_id}.parquet"
            )
            self.lake.put(key, buf.getvalue())

    def _channels(self, meter: str) -> list[str]:
        with _boto("dynamodb meter channels"):
            item = self.table.get_item(Key={"series": f"{meter}#", "capture_time": 0}).get("Item")
        return sorted(item["channels"]) if item else []

    def query(
        self, meter: str, start: int, end: int, channel: str | None = None
    ) -> list[IntervalRow]:
        from boto3.dynamodb.conditions import Key  # noqa: PLC0415 - boto3 is loaded only when an AWS store is built

        out: list[IntervalRow] = []
        for ch in [channel] if channel is not None else self._channels(meter):
            cond = Key("series").eq(f"{meter}#{ch}") & Key("capture_time").between(start, end - 1)
            kwargs: dict[str, Any] = {"KeyConditionExpression": cond}
            with _boto("dynamodb interval query"):
                while True:
                    page = self.table.query(**kwargs)
                    for i in page["Items"]:
                        out.append(
                            IntervalRow(
                                meter,
                                ch,
                                int(i["capture_time"]),
                                float(i["value"]),
                                i["unit"],
                                int(i["status"]),
                                int(i["raw"]),
                                int(i["scaler"]),
                                float(i["multiplier"]),
                                int(i["data_class"]),
                                i["batch_id"],
                            )
                        )
                    if "LastEvaluatedKey" not in page:
                        break
                    kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return out

    def has_meter(self, meter: str) -> bool:
        return bool(self._channels(meter))


class DynamoProcessedBatches:
    def __init__(self, table: str, *, resource: Any = None) -> None:
        self.table = (resource or _resource("dynamodb")).Table(table)

    def contains(self, batch_id: str) -> bool:
        with _boto("dynamodb batch get"):
            return "Item" in self.table.get_item(Key={"batch_id": batch_id})

    def add(self, batch_id: str, info: Mapping[str, Any]) -> bool:
        try:
            self.table.put_item(
                Item={
                    "batch_id": batch_id,
                    "info": json.dumps(dict(info), sort_keys=True),
                    "expires": int(time.time()) + BATCH_TTL_S,
                },
                ConditionExpression="attribute_not_exists(batch_id)",
            )
        except _boto_errors() as exc:
            if _conditional_failed(exc):
                return False
            raise StorageError(f"dynamodb batch put: {exc}") from exc
        return True


class DynamoOutageStore:
    """Items (key, start) -> thing, kind, end (absent while current)."""

    def __init__(self, table: str, *, resource: Any = None) -> None:
        self.table = (resource or _resource("dynamodb")).Table(table)

    @staticmethod
    def _outage(i: Mapping[str, Any]) -> Outage:
        end = i.get("end")
        return Outage(
            i["key"], i["thing"], int(i["start"]), None if end is None else int(end), i["kind"]
        )

    def open_outage(self, key: str) -> Outage | None:
        from boto3.dynamodb.conditions import Attr, Key  # noqa: PLC0415 - boto3 is loaded only when an AWS store is built

        with _boto("dynamodb outage query"):
            items = self.table.query(
                KeyConditionExpression=Key("key").eq(key),
                FilterExpression=Attr("end").not_exists(),
                ScanIndexForward=False,
            )["Items"]
        return self._outage(items[0]) if items else None

    def save(self, outage: Outage) -> None:
        item: dict[str, Any] = {
            "key": outage.key,
            "start": outage.start,
            "thing": outage.thing,
            "kind": outage.kind,
        }
        if outage.end is not None:
            item["end"] = outage.end
        with _boto("dynamodb outage put"):
            self.table.put_item(Item=item)

    def list(self, state: Literal["current", "past"], limit: int = 1000) -> list[Outage]:
        from boto3.dynamodb.conditions import Attr  # noqa: PLC0415 - boto3 is loaded only when an AWS store is built

        cond = Attr("end").not_exists() if state == "current" else Attr("end").exists()
        items: list[Any] = []
        kwargs: dict[str, Any] = {"FilterExpression": cond}
        with _boto("dynamodb outage scan"):
            while True:
                page = self.table.scan(**kwargs)
                items.extend(page["Items"])
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        out = sorted((self._outage(i) for i in items), key=lambda o: o.start, reverse=True)
        return out[:limit]


class DynamoRegistry:
    def __init__(self, table: str, *, resource: Any = None) -> None:
        self.table = (resource or _resource("dynamodb")).Table(table)

    def records(self, meter: str) -> list[MeterRecord]:
        from boto3.dynamodb.conditions import Key  # noqa: PLC0415 - boto3 is loaded only when an AWS store is built

        with _boto("dynamodb registry query"):
            items = self.table.query(KeyConditionExpression=Key("meter").eq(meter))["Items"]
        return [
            MeterRecord(
                i["meter"],
                i.get("dcu", ""),
                float(i["ct_ratio"]),
                float(i["pt_ratio"]),
                int(i["valid_from"]),
                None if i.get("valid_to") is None else int(i["valid_to"]),
                i.get("tariff", ""),
            )
            for i in items
        ]

    def upsert(self, records: Iterable[MeterRecord]) -> None:
        with _boto("dynamodb registry put"), self.table.batch_writer() as w:
            for r in records:
                item: dict[str, Any] = {
                    "meter": r.meter,
                    "valid_from": r.valid_from,
                    "dcu": r.dcu,
                    "ct_ratio": _dec(r.ct_ratio),
                    "pt_ratio": _dec(r.pt_ratio),
                    "tariff": r.tariff,
                }
                if r.valid_to is not None:
                    item["valid_to"] = r.valid_to
                w.put_item(Item=item)


def aws_stores_from_env(env: Mapping[str, str]) -> Stores:
    """The stores of a Lambda function, named by the template's environment variables."""
    from edge_core.errors import ConfigError  # noqa: PLC0415 - error tree

    def need(name: str) -> str:
        if not env.get(name):
            raise ConfigError("missing environment variable", path=name)
        return env[name]

    objects = S3ObjectStore(need("AMI_BUCKET"))
    return Stores(
        objects=objects,
        queues=SqsQueue(json.loads(env.get("AMI_QUEUE_URLS", "{}"))),
        latest=DynamoLatestTable(need("AMI_LATEST_TABLE")),
        intervals=DynamoIntervalStore(need("AMI_INTERVALS_TABLE"), lake=objects),
        batches=DynamoProcessedBatches(need("AMI_BATCHES_TABLE")),
        outages=DynamoOutageStore(need("AMI_OUTAGES_TABLE")),
        registry=DynamoRegistry(need("AMI_REGISTRY_TABLE")),
    )
