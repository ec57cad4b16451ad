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
* Dashboard tables: read requests by id (conditional update pending -> final), the fleet by
  meter, events by (kind, zero-padded time#id) so a time window is one query, health by
  (thing, time). Read commands go out through the IoT data plane (:class:`IotDataPublisher`).
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
    EventRecord,
    FleetEntry,
    HealthReport,
    IntervalRow,
    LatestRead,
    MeterRecord,
    ObjectStore,
    Outage,
    ReadRequestRecord,
    StorageError,
    Stores,
)

__all__ = [
    "DynamoEventStore",
    "DynamoFleet",
    "DynamoHealthStore",
    "DynamoIntervalStore",
    "DynamoLatestTable",
    "DynamoOutageStore",
    "DynamoProcessedBatches",
    "DynamoReadRequests",
    "DynamoRegistry",
    "IotDataPublisher",
    "S3ObjectStore",
    "SqsQueue",
    "aws_stores_from_env",
]

BATCH_TTL_S = 90 * 86400  # processed-batch ids are kept this long (s)
READ_TTL_S = 30 * 86400  # on-demand read requests are kept this long (s)
HEALTH_TTL_S = 90 * 86400  # health reports are kept this long (s)


@contextlib.contextmanager
def _boto(what: str) -> Iterator[None]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise StorageError(f"{what}: {exc}") from exc


def _boto_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError)


def _conditional_failed(exc: Exception) -> bool:
    """True for DynamoDB's ConditionalCheckFailedException (an expected outcome here)."""
    from botocore.exceptions import ClientError

    return (
        isinstance(exc, ClientError)
        and exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
    )


def _dec(v: float) -> Decimal:
    return Decimal(str(v))


def _resource(service: str, session: Any = None) -> Any:
    import boto3

    return (session or boto3).resource(service)


def _client(service: str, session: Any = None) -> Any:
    import boto3

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
        from boto3.dynamodb.conditions import Key

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
        import pyarrow.parquet as pq

        from cloud.storage.local import LAKE_PREFIX, rows_to_table

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
        from boto3.dynamodb.conditions import Key

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
        from boto3.dynamodb.conditions import Attr, Key

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
        from boto3.dynamodb.conditions import Attr

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
        from boto3.dynamodb.conditions import Key

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

    def meters(self) -> list[str]:
        return sorted({i["meter"] for i in _scan(self.table)})

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


class DynamoReadRequests:
    """Items id -> meter, thing, created, deadline, status, request/response (JSON strings);
    ``expires`` (TTL) drops them :data:`READ_TTL_S` after creation."""

    def __init__(self, table: str, *, resource: Any = None) -> None:
        self.table = (resource or _resource("dynamodb")).Table(table)

    def create(self, rec: ReadRequestRecord) -> None:
        item: dict[str, Any] = {
            "id": rec.id,
            "meter": rec.meter,
            "thing": rec.thing,
            "created": rec.created,
            "deadline": rec.deadline,
            "status": rec.status,
            "request": json.dumps(rec.request, sort_keys=True),
            "expires": rec.created + READ_TTL_S,
        }
        if rec.response is not None:
            item["response"] = json.dumps(rec.response, sort_keys=True)
        if rec.completed is not None:
            item["completed"] = rec.completed
        with _boto("dynamodb read put"):
            self.table.put_item(Item=item)

    def get(self, rid: str) -> ReadRequestRecord | None:
        with _boto("dynamodb read get"):
            i = self.table.get_item(Key={"id": rid}).get("Item")
        if i is None:
            return None
        return ReadRequestRecord(
            i["id"],
            i["meter"],
            i["thing"],
            int(i["created"]),
            int(i["deadline"]),
            i["status"],
            json.loads(i["request"]),
            json.loads(i["response"]) if i.get("response") else None,
            None if i.get("completed") is None else int(i["completed"]),
        )

    def complete(
        self, rid: str, status: str, response: Mapping[str, Any] | None, completed: int
    ) -> bool:
        # every attribute through a placeholder: status and response are reserved words
        names = {"#i": "id", "#s": "status", "#c": "completed"}
        values: dict[str, Any] = {":s": status, ":p": "pending", ":c": completed}
        expr = "SET #s = :s, #c = :c"
        if response is not None:
            names["#r"] = "response"
            expr += ", #r = :r"
            values[":r"] = json.dumps(dict(response), sort_keys=True)
        try:
            self.table.update_item(
                Key={"id": rid},
                UpdateExpression=expr,
                ConditionExpression="attribute_exists(#i) AND #s = :p",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except _boto_errors() as exc:
            if _conditional_failed(exc):
                return False
            raise StorageError(f"dynamodb read update: {exc}") from exc
        return True


class DynamoFleet:
    """Items meter -> thing, last_read; a put only replaces an older sighting."""

    def __init__(self, table: str, *, resource: Any = None) -> None:
        self.table = (resource or _resource("dynamodb")).Table(table)

    def touch(self, entries: Iterable[FleetEntry]) -> None:
        for e in entries:
            try:
                self.table.put_item(
                    Item={"meter": e.meter, "thing": e.thing, "last_read": e.last_read},
                    ConditionExpression="attribute_not_exists(meter) OR last_read <= :t",
                    ExpressionAttributeValues={":t": e.last_read},
                )
            except _boto_errors() as exc:
                if _conditional_failed(exc):
                    continue
                raise StorageError(f"dynamodb fleet put: {exc}") from exc

    def get(self, meter: str) -> FleetEntry | None:
        with _boto("dynamodb fleet get"):
            i = self.table.get_item(Key={"meter": meter}).get("Item")
        return None if i is None else FleetEntry(i["meter"], i["thing"], int(i["last_read"]))

    def list(self) -> list[FleetEntry]:
        out = [FleetEntry(i["meter"], i["thing"], int(i["last_read"])) for i in _scan(self.table)]
        return sorted(out, key=lambda e: e.meter)


class DynamoEventStore:
    """Partition key ``kind``, sort key ``sort`` = zero-padded time ``#`` id: a time range is
    one key-condition query, and the same id (whose time is part of its identity) maps to the
    same key, so ``attribute_not_exists`` is the dedupe."""

    def __init__(self, table: str, *, resource: Any = None) -> None:
        self.table = (resource or _resource("dynamodb")).Table(table)

    @staticmethod
    def _sort(t: int, rid: str = "") -> str:
        return f"{max(t, 0):012d}#{rid}"

    def put(self, rec: EventRecord) -> bool:
        item: dict[str, Any] = {
            "kind": rec.kind,
            "sort": self._sort(rec.time, rec.id),
            "id": rec.id,
            "thing": rec.thing,
            "meter": rec.meter,
            "time": rec.time,
            "type": rec.type,
            "doc": json.dumps(rec.doc, sort_keys=True),
        }
        if rec.score is not None:
            item["score"] = _dec(rec.score)
        try:
            self.table.put_item(
                Item=item,
                ConditionExpression="attribute_not_exists(#k)",
                ExpressionAttributeNames={"#k": "kind"},
            )
        except _boto_errors() as exc:
            if _conditional_failed(exc):
                return False
            raise StorageError(f"dynamodb event put: {exc}") from exc
        return True

    def _query(self, kind: str, start: int, end: int) -> list[Any]:
        from boto3.dynamodb.conditions import Key

        cond = Key("kind").eq(kind) & Key("sort").between(
            self._sort(start), self._sort(max(end - 1, 0), "\U0010ffff")
        )
        items: list[Any] = []
        kwargs: dict[str, Any] = {"KeyConditionExpression": cond}
        with _boto("dynamodb event query"):
            while True:
                page = self.table.query(**kwargs)
                items.extend(page["Items"])
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return items

    def list(
        self,
        kinds: Sequence[str],
        start: int,
        end: int,
        *,
        meter: str | None = None,
        limit: int = 1000,
    ) -> list[EventRecord]:
        out = [
            EventRecord(
                i["id"],
                i["kind"],
                i["thing"],
                i["meter"],
                int(i["time"]),
                i["type"],
                None if i.get("score") is None else float(i["score"]),
                json.loads(i["doc"]),
            )
            for kind in kinds
            for i in self._query(kind, start, end)
            if meter is None or i["meter"] == meter
        ]
        out.sort(key=lambda r: (r.time, r.id))
        return out[:limit]

    def counts(self, kind: str, since: int) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in self._query(kind, since, 10**12):
            out[i["meter"]] = out.get(i["meter"], 0) + 1
        return out


class DynamoHealthStore:
    """Items (thing, time) -> doc (JSON string), dropped :data:`HEALTH_TTL_S` after the report."""

    def __init__(self, table: str, *, resource: Any = None) -> None:
        self.table = (resource or _resource("dynamodb")).Table(table)

    def put(self, report: HealthReport) -> None:
        with _boto("dynamodb health put"):
            self.table.put_item(
                Item={
                    "thing": report.thing,
                    "time": report.time,
                    "doc": json.dumps(report.doc, sort_keys=True),
                    "expires": report.time + HEALTH_TTL_S,
                }
            )

    def _page(self, cond: Any, limit: int) -> list[HealthReport]:
        with _boto("dynamodb health query"):
            items = self.table.query(
                KeyConditionExpression=cond, ScanIndexForward=False, Limit=limit
            )["Items"]
        return [HealthReport(i["thing"], int(i["time"]), json.loads(i["doc"])) for i in items]

    def latest(self, thing: str) -> HealthReport | None:
        from boto3.dynamodb.conditions import Key

        got = self._page(Key("thing").eq(thing), 1)
        return got[0] if got else None

    def history(self, thing: str, start: int, end: int, limit: int = 2000) -> list[HealthReport]:
        from boto3.dynamodb.conditions import Key

        cond = Key("thing").eq(thing) & Key("time").between(start, end - 1)
        return list(reversed(self._page(cond, limit)))


def _scan(table: Any) -> list[Any]:
    items: list[Any] = []
    kwargs: dict[str, Any] = {}
    with _boto("dynamodb scan"):
        while True:
            page = table.scan(**kwargs)
            items.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return items


class IotDataPublisher:
    """Publishes read commands through the IoT data plane (QoS 1). ``endpoint`` is the
    account's data endpoint host (``iot:Data-ATS``); None uses the SDK default."""

    def __init__(self, endpoint: str | None = None, *, client: Any = None) -> None:
        if client is None:
            import boto3

            url = (
                None
                if not endpoint
                else (endpoint if endpoint.startswith("https://") else f"https://{endpoint}")
            )
            client = boto3.client("iot-data", endpoint_url=url)
        self.client = client

    def publish(self, topic: str, payload: bytes) -> None:
        with _boto(f"iot-data publish {topic}"):
            self.client.publish(topic=topic, qos=1, payload=payload)


def aws_stores_from_env(env: Mapping[str, str]) -> Stores:
    """The stores of a Lambda function, named by the template's environment variables."""
    from edge_core.errors import ConfigError

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
        # Stacks created before these tables existed run without them (the endpoints say 501).
        reads=DynamoReadRequests(env["AMI_READS_TABLE"]) if env.get("AMI_READS_TABLE") else None,
        fleet=DynamoFleet(env["AMI_FLEET_TABLE"]) if env.get("AMI_FLEET_TABLE") else None,
        events=DynamoEventStore(env["AMI_EVENTS_TABLE"]) if env.get("AMI_EVENTS_TABLE") else None,
        health=DynamoHealthStore(env["AMI_HEALTH_TABLE"]) if env.get("AMI_HEALTH_TABLE") else None,
    )
