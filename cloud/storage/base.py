"""Repository interfaces of the cloud package and the value objects they store.

Handlers (ingest, alarms, API) see only these Protocols; :mod:`cloud.storage.local` implements
them with a directory, SQLite and Parquet/DuckDB, :mod:`cloud.storage.aws` with S3, SQS and
DynamoDB. Times are UTC epoch seconds; values are physical (scaled, CT x PT applied) in ``unit``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from edge_core.errors import AmiError

__all__ = [
    "READ_STATUSES",
    "EventRecord",
    "EventStore",
    "FleetEntry",
    "FleetStore",
    "HealthReport",
    "HealthStore",
    "IntervalRow",
    "IntervalStore",
    "LatestRead",
    "LatestTable",
    "MeterRecord",
    "ObjectStore",
    "Outage",
    "OutageStore",
    "ProcessedBatches",
    "Queue",
    "ReadRequestRecord",
    "ReadRequestStore",
    "Registry",
    "StorageError",
    "Stores",
]


class StorageError(AmiError):
    """A storage backend failed (file I/O, SQLite, Parquet, S3/SQS/DynamoDB)."""


@dataclass(frozen=True, slots=True)
class MeterRecord:
    """One validity period of a meter's installation.

    Valid for capture times ``valid_from <= t < valid_to`` (``valid_to`` None: open-ended).
    ``ct_ratio`` and ``pt_ratio`` are the primary/secondary ratios of the instrument
    transformers (1.0 for a direct-connected meter).
    """

    meter: str
    dcu: str
    ct_ratio: float = 1.0
    pt_ratio: float = 1.0
    valid_from: int = 0
    valid_to: int | None = None
    tariff: str = ""

    def covers(self, t: int) -> bool:
        return self.valid_from <= t and (self.valid_to is None or t < self.valid_to)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MeterRecord:
        vt = d.get("valid_to")
        return cls(
            meter=str(d["meter"]),
            dcu=str(d.get("dcu", "")),
            ct_ratio=float(d.get("ct_ratio", 1.0)),
            pt_ratio=float(d.get("pt_ratio", 1.0)),
            valid_from=int(d.get("valid_from", 0)),
            valid_to=None if vt in (None, "") else int(vt),
            tariff=str(d.get("tariff", "")),
        )


@dataclass(frozen=True, slots=True)
class IntervalRow:
    """One stored value. ``value`` = ``raw * 10**scaler * multiplier`` in ``unit``."""

    meter: str
    channel: str
    capture_time: int
    value: float
    unit: str
    status: int
    raw: int
    scaler: int
    multiplier: float
    data_class: int
    batch_id: str

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.meter, self.channel, self.capture_time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IntervalRow:
        return cls(
            meter=str(d["meter"]),
            channel=str(d["channel"]),
            capture_time=int(d["capture_time"]),
            value=float(d["value"]),
            unit=str(d["unit"]),
            status=int(d["status"]),
            raw=int(d["raw"]),
            scaler=int(d["scaler"]),
            multiplier=float(d["multiplier"]),
            data_class=int(d["data_class"]),
            batch_id=str(d["batch_id"]),
        )


@dataclass(frozen=True, slots=True)
class LatestRead:
    """The newest value of one channel of one meter."""

    meter: str
    channel: str
    capture_time: int
    value: float
    unit: str


@dataclass(frozen=True, slots=True)
class Outage:
    """A power outage at ``key`` (a meter id, or the concentrator's thing name).

    ``end`` None: the outage is current. ``kind`` is the alarm type that opened it.
    """

    key: str
    thing: str
    start: int
    end: int | None
    kind: str

    @property
    def duration(self) -> int | None:
        return None if self.end is None else self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["duration_s"] = self.duration
        return d


class ObjectStore(Protocol):
    """A bucket: keys are '/'-separated paths."""

    def put(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> None: ...

    def get(self, key: str) -> bytes: ...

    def list(self, prefix: str = "") -> list[str]: ...


class Queue(Protocol):
    """Named message queues (one per consumer)."""

    def send(self, queue: str, body: str) -> None: ...

    def receive(self, queue: str, max_messages: int = 10) -> list[str]:
        """Take up to ``max_messages`` bodies (deleted once returned)."""
        ...


class LatestTable(Protocol):
    def update(self, reads: Iterable[LatestRead]) -> None:
        """Keep, per (meter, channel), the read with the newest capture time."""

    def get(self, meter: str) -> dict[str, LatestRead]: ...


class IntervalStore(Protocol):
    def put(self, rows: Sequence[IntervalRow]) -> int:
        """Store rows; a (meter, channel, capture time) already stored is skipped.
        Returns the number of rows newly stored."""
        ...

    def query(
        self, meter: str, start: int, end: int, channel: str | None = None
    ) -> list[IntervalRow]:
        """Rows with ``start <= capture_time < end``, ordered by channel then time."""
        ...

    def has_meter(self, meter: str) -> bool: ...


class ProcessedBatches(Protocol):
    def contains(self, batch_id: str) -> bool: ...

    def add(self, batch_id: str, info: Mapping[str, Any]) -> bool:
        """Record a processed batch; False when it was already there (a concurrent twin)."""
        ...


class OutageStore(Protocol):
    def open_outage(self, key: str) -> Outage | None: ...

    def save(self, outage: Outage) -> None:
        """Insert or replace the outage identified by (key, start)."""

    def list(self, state: Literal["current", "past"], limit: int = 1000) -> list[Outage]: ...


@runtime_checkable
class Registry(Protocol):
    def records(self, meter: str) -> list[MeterRecord]: ...

    def upsert(self, records: Iterable[MeterRecord]) -> None: ...

    def meters(self) -> list[str]:
        """Every meter id with at least one record, sorted."""
        ...


READ_STATUSES = ("pending", "done", "error", "timeout")


@dataclass(frozen=True, slots=True)
class ReadRequestRecord:
    """One on-demand read: the command sent to ``thing`` and, once answered, its response.

    ``status`` is pending until the response arrives (done or error, from the edge's status
    field) or ``deadline`` passes without one (timeout). ``request`` is the command document
    published on ``cmd/ami/{thing}/read/req``; ``response`` the edge's answer, verbatim.
    """

    id: str
    meter: str
    thing: str
    created: int
    deadline: int
    status: str
    request: dict[str, Any]
    response: dict[str, Any] | None = None
    completed: int | None = None


class ReadRequestStore(Protocol):
    def create(self, rec: ReadRequestRecord) -> None: ...

    def get(self, rid: str) -> ReadRequestRecord | None: ...

    def complete(
        self, rid: str, status: str, response: Mapping[str, Any] | None, completed: int
    ) -> bool:
        """Move a *pending* request to ``status``; False if unknown or no longer pending."""
        ...


@dataclass(frozen=True, slots=True)
class FleetEntry:
    """What ingest has seen of a meter: the concentrator (thing) whose batches carry it and
    the newest capture time among them (UTC epoch s)."""

    meter: str
    thing: str
    last_read: int


class FleetStore(Protocol):
    def touch(self, entries: Iterable[FleetEntry]) -> None:
        """Record sightings; per meter the newest ``last_read`` wins, with its thing."""

    def get(self, meter: str) -> FleetEntry | None: ...

    def list(self) -> list[FleetEntry]: ...


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A timeline entry: an alarm (``alarm/ami/+/#``), a meter event (``dt/ami/+/events``) or an
    anomaly (``dt/ami/+/anomaly``). ``type`` is the alarm/event type or the anomaly kind;
    ``score`` is set for anomalies; ``doc`` is the message as received."""

    id: str
    kind: str
    thing: str
    meter: str
    time: int
    type: str
    score: float | None = None
    doc: dict[str, Any] = field(default_factory=dict)


class EventStore(Protocol):
    def put(self, rec: EventRecord) -> bool:
        """Store once per id; False when the id was already stored."""
        ...

    def list(
        self,
        kinds: Sequence[str],
        start: int,
        end: int,
        *,
        meter: str | None = None,
        limit: int = 1000,
    ) -> list[EventRecord]:
        """Records of ``kinds`` with ``start <= time < end``, oldest first, at most ``limit``."""
        ...

    def counts(self, kind: str, since: int) -> dict[str, int]:
        """Records of ``kind`` per meter with ``time >= since``."""
        ...


@dataclass(frozen=True, slots=True)
class HealthReport:
    """One health snapshot of a concentrator's uplink (edge_core.health.Health.snapshot)."""

    thing: str
    time: int
    doc: dict[str, Any]


class HealthStore(Protocol):
    def put(self, report: HealthReport) -> None: ...

    def latest(self, thing: str) -> HealthReport | None: ...

    def history(self, thing: str, start: int, end: int, limit: int = 2000) -> list[HealthReport]:
        """Reports with ``start <= time < end``, oldest first (the newest ``limit`` of them)."""
        ...


@dataclass(slots=True)
class Stores:
    """The set of repositories a deployment wires together."""

    objects: ObjectStore
    queues: Queue
    latest: LatestTable
    intervals: IntervalStore
    batches: ProcessedBatches
    outages: OutageStore
    registry: Registry
    # Stores of on-demand reads and the dashboard (None: the deployment does not have them;
    # the endpoints that need one answer 501).
    reads: ReadRequestStore | None = None
    fleet: FleetStore | None = None
    events: EventStore | None = None
    health: HealthStore | None = None
