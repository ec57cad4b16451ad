"""Local backends: a directory laid out like the bucket, SQLite, Parquet queried by DuckDB.

Theory of operation
-------------------
* The bucket is a directory: ``<root>/bucket/<key>``. Writes go to a temporary file renamed into
  place, so a reader never sees half an object.
* One SQLite database (``<root>/cloud.sqlite3``, WAL) holds the small tables: latest reads,
  processed batches, outages, the meter registry, the queues and the **interval index**.
* Interval storage, decided: ingest writes each row into the SQLite index whose primary key is
  (meter, channel, capture_time), so ``INSERT OR IGNORE`` is the dedupe and range queries of the
  API are an index seek (milliseconds, no file scan). The analytical copy is the Parquet lake,
  ``bucket/lake/intervals/year=YYYY/month=MM/day=DD/part-0.parquet`` (hive partitions by capture
  date, UTC), written by :meth:`SqliteIntervalStore.compact_day` from the index: rewriting a day
  is idempotent, so compaction can rerun after late or duplicate data. DuckDB queries the lake
  with the same SQL Athena runs over the Glue table (:func:`query_lake`). Raw batches land as
  objects first (the S3 rule action), so the lake can always be rebuilt.
* The same database holds what on-demand reads and the dashboard need: read requests, the
  fleet (meter -> concentrator, newest capture), alarms/events/anomalies, health snapshots.
* SQLite connections are shared between the MQTT handler thread and HTTP server threads under one
  lock; every statement is short.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from cloud.storage.base import (
    EventRecord,
    FleetEntry,
    HealthReport,
    IntervalRow,
    LatestRead,
    MeterRecord,
    Outage,
    ReadRequestRecord,
    StorageError,
    Stores,
)
from edge_core.errors import ConfigError

__all__ = [
    "LocalObjectStore",
    "SqliteDb",
    "SqliteEventStore",
    "SqliteFleet",
    "SqliteHealthStore",
    "SqliteIntervalStore",
    "SqliteLatestTable",
    "SqliteOutageStore",
    "SqliteProcessedBatches",
    "SqliteQueue",
    "SqliteReadRequests",
    "SqliteRegistry",
    "StorageError",
    "lake_path",
    "open_local_stores",
    "query_lake",
]

LAKE_PREFIX = "lake/intervals"


class LocalObjectStore:
    """A directory laid out like the S3 bucket."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        parts = [p for p in key.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise StorageError(f"invalid object key {key!r}")
        return self.root.joinpath(*parts)

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            raise StorageError(f"cannot write object {key}: {exc}") from exc

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as exc:
            raise StorageError(f"cannot read object {key}: {exc}") from exc

    def list(self, prefix: str = "") -> list[str]:
        out = []
        for p in self.root.rglob("*"):
            if p.is_file() and not p.name.startswith(".tmp-"):
                key = p.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    out.append(key)
        return sorted(out)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS latest (
    meter TEXT NOT NULL, channel TEXT NOT NULL, capture_time INTEGER NOT NULL,
    value REAL NOT NULL, unit TEXT NOT NULL, PRIMARY KEY (meter, channel));
CREATE TABLE IF NOT EXISTS processed_batches (
    batch_id TEXT PRIMARY KEY, info TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outages (
    key TEXT NOT NULL, start INTEGER NOT NULL, thing TEXT NOT NULL, end_time INTEGER,
    kind TEXT NOT NULL, PRIMARY KEY (key, start));
CREATE INDEX IF NOT EXISTS outages_open ON outages (end_time);
CREATE TABLE IF NOT EXISTS meters (
    meter TEXT NOT NULL, valid_from INTEGER NOT NULL, valid_to INTEGER, dcu TEXT NOT NULL,
    ct_ratio REAL NOT NULL, pt_ratio REAL NOT NULL, tariff TEXT NOT NULL,
    PRIMARY KEY (meter, valid_from));
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS intervals (
    meter TEXT NOT NULL, channel TEXT NOT NULL, capture_time INTEGER NOT NULL,
    value REAL NOT NULL, unit TEXT NOT NULL, status INTEGER NOT NULL, raw INTEGER NOT NULL,
    scaler INTEGER NOT NULL, multiplier REAL NOT NULL, data_class INTEGER NOT NULL,
    batch_id TEXT NOT NULL, PRIMARY KEY (meter, channel, capture_time)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS intervals_time ON intervals (capture_time);
CREATE TABLE IF NOT EXISTS read_requests (
    id TEXT PRIMARY KEY, meter TEXT NOT NULL, thing TEXT NOT NULL, created INTEGER NOT NULL,
    deadline INTEGER NOT NULL, status TEXT NOT NULL, request TEXT NOT NULL, response TEXT,
    completed INTEGER);
CREATE TABLE IF NOT EXISTS fleet (
    meter TEXT PRIMARY KEY, thing TEXT NOT NULL, last_read INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, thing TEXT NOT NULL, meter TEXT NOT NULL,
    time INTEGER NOT NULL, type TEXT NOT NULL, score REAL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_time ON events (kind, time);
CREATE TABLE IF NOT EXISTS health (
    thing TEXT NOT NULL, time INTEGER NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (thing, time));
"""


class SqliteDb:
    """One SQLite file shared by the local tables; all access under one lock."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self.lock = threading.RLock()
        try:
            self.conn = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open {self.path}: {exc}") from exc

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A transaction under the lock; sqlite3 errors become StorageError."""
        with self.lock:
            try:
                with self.conn:
                    yield self.conn
            except sqlite3.Error as exc:
                raise StorageError(f"sqlite: {exc}") from exc

    def close(self) -> None:
        with self.lock:
            self.conn.close()


class SqliteQueue:
    def __init__(self, db: SqliteDb) -> None:
        self.db = db

    def send(self, queue: str, body: str) -> None:
        with self.db.tx() as c:
            c.execute("INSERT INTO queue (queue, body) VALUES (?, ?)", (queue, body))

    def receive(self, queue: str, max_messages: int = 10) -> list[str]:
        with self.db.tx() as c:
            rows = c.execute(
                "SELECT id, body FROM queue WHERE queue = ? ORDER BY id LIMIT ?",
                (queue, max_messages),
            ).fetchall()
            c.executemany("DELETE FROM queue WHERE id = ?", [(r[0],) for r in rows])
        return [r[1] for r in rows]


class SqliteLatestTable:
    def __init__(self, db: SqliteDb) -> None:
        self.db = db

    def update(self, reads: Iterable[LatestRead]) -> None:
        with self.db.tx() as c:
            c.executemany(
                "INSERT INTO latest (meter, channel, capture_time, value, unit) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (meter, channel) DO UPDATE SET "
                "capture_time = excluded.capture_time, value = excluded.value, "
                "unit = excluded.unit WHERE excluded.capture_time > latest.capture_time",
                [(r.meter, r.channel, r.capture_time, r.value, r.unit) for r in reads],
            )

    def get(self, meter: str) -> dict[str, LatestRead]:
        with self.db.tx() as c:
            rows = c.execute(
                "SELECT channel, capture_time, value, unit FROM latest WHERE meter = ?", (meter,)
            ).fetchall()
        return {r[0]: LatestRead(meter, r[0], r[1], r[2], r[3]) for r in rows}


class SqliteProcessedBatches:
    def __init__(self, db: SqliteDb) -> None:
        self.db = db

    def contains(self, batch_id: str) -> bool:
        with self.db.tx() as c:
            row = c.execute(
                "SELECT 1 FROM processed_batches WHERE batch_id = ?", (batch_id,)
            ).fetchone()
        return row is not None

    def add(self, batch_id: str, info: Mapping[str, Any]) -> bool:
        with self.db.tx() as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO processed_batches (batch_id, info) VALUES (?, ?)",
                (batch_id, json.dumps(dict(info), sort_keys=True)),
            )
        return cur.rowcount == 1


class SqliteOutageStore:
    def __init__(self, db: SqliteDb) -> None:
        self.db = db

    def open_outage(self, key: str) -> Outage | None:
        with self.db.tx() as c:
            row = c.execute(
                "SELECT key, thing, start, end_time, kind FROM outages "
                "WHERE key = ? AND end_time IS NULL ORDER BY start DESC LIMIT 1",
                (key,),
            ).fetchone()
        return None if row is None else Outage(*row)

    def save(self, outage: Outage) -> None:
        with self.db.tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO outages (key, start, thing, end_time, kind) "
                "VALUES (?, ?, ?, ?, ?)",
                (outage.key, outage.start, outage.thing, outage.end, outage.kind),
            )

    def list(self, state: Literal["current", "past"], limit: int = 1000) -> list[Outage]:
        cond = "end_time IS NULL" if state == "current" else "end_time IS NOT NULL"
        with self.db.tx() as c:
            rows = c.execute(
                f"SELECT key, thing, start, end_time, kind FROM outages WHERE {cond} "
                "ORDER BY start DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [Outage(*r) for r in rows]


class SqliteRegistry:
    """The meter registry (validity periods per meter)."""

    def __init__(self, db: SqliteDb) -> None:
        self.db = db

    def records(self, meter: str) -> list[MeterRecord]:
        with self.db.tx() as c:
            rows = c.execute(
                "SELECT meter, dcu, ct_ratio, pt_ratio, valid_from, valid_to, tariff "
                "FROM meters WHERE meter = ? ORDER BY valid_from",
                (meter,),
            ).fetchall()
        return [MeterRecord(*r) for r in rows]

    def meters(self) -> list[str]:
        with self.db.tx() as c:
            rows = c.execute("SELECT DISTINCT meter FROM meters ORDER BY meter").fetchall()
        return [r[0] for r in rows]

    def upsert(self, records: Iterable[MeterRecord]) -> None:
        with self.db.tx() as c:
            c.executemany(
                "INSERT OR REPLACE INTO meters "
                "(meter, valid_from, valid_to, dcu, ct_ratio, pt_ratio, tariff) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (r.meter, r.valid_from, r.valid_to, r.dcu, r.ct_ratio, r.pt_ratio, r.tariff)
                    for r in records
                ],
            )


class SqliteReadRequests:
    """On-demand read requests (id -> request, status, response)."""

    _COLS = "id, meter, thing, created, deadline, status, request, response, completed"

    def __init__(self, db: SqliteDb) -> None:
        self.db = db

    def create(self, rec: ReadRequestRecord) -> None:
        with self.db.tx() as c:
            c.execute(
                f"INSERT INTO read_requests ({self._COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rec.id,
                    rec.meter,
                    rec.thing,
                    rec.created,
                    rec.deadline,
                    rec.status,
                    json.dumps(rec.request, sort_keys=True),
                    None if rec.response is None else json.dumps(rec.response, sort_keys=True),
                    rec.completed,
                ),
            )

    def get(self, rid: str) -> ReadRequestRecord | None:
        with self.db.tx() as c:
            row = c.execute(
                f"SELECT {self._COLS} FROM read_requests WHERE id = ?", (rid,)
            ).fetchone()
        if row is None:
            return None
        return ReadRequestRecord(
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            json.loads(row[6]),
            None if row[7] is None else json.loads(row[7]),
            row[8],
        )

    def complete(
        self, rid: str, status: str, response: Mapping[str, Any] | None, completed: int
    ) -> bool:
        with self.db.tx() as c:
            cur = c.execute(
                "UPDATE read_requests SET status = ?, response = ?, completed = ? "
                "WHERE id = ? AND status = 'pending'",
                (
                    status,
                    None if response is None else json.dumps(dict(response), sort_keys=True),
                    completed,
                    rid,
                ),
            )
        return cur.rowcount == 1


class SqliteFleet:
    """Meter -> concentrator and newest capture time, as seen by ingest."""

    def __init__(self, db: SqliteDb) -> None:
        self.db = db

    def touch(self, entries: Iterable[FleetEntry]) -> None:
        with self.db.tx() as c:
            c.executemany(
                "INSERT INTO fleet (meter, thing, last_read) VALUES (?, ?, ?) "
                "ON CONFLICT (meter) DO UPDATE SET thing = excluded.thing, "
                "last_read = excluded.last_read WHERE excluded.last_read >= fleet.last_read",
                [(e.meter, e.thing, e.last_read) for e in entries],
            )

    def get(self, meter: str) -> FleetEntry | None:
        with self.db.tx() as c:
            row = c.execute(
                "SELECT meter, thing, last_read FROM fleet WHERE meter = ?", (meter,)
            ).fetchone()
        return None if row is None else FleetEntry(*row)

    def list(self) -> list[FleetEntry]:
        with self.db.tx() as c:
            rows = c.execute("SELECT meter, thing, last_read FROM fleet ORDER BY meter").fetchall()
        return [FleetEntry(*r) for r in rows]


class SqliteEventStore:
    """Alarms, meter events and anomalies (one table, ``kind`` tells them apart)."""

    def __init__(self, db: SqliteDb) -> None:
        self.db = db

    def put(self, rec: EventRecord) -> bool:
        with self.db.tx() as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO events (id, kind, thing, meter, time, type, score, doc) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rec.id,
                    rec.kind,
                    rec.thing,
                    rec.meter,
                    rec.time,
                    rec.type,
                    rec.score,
                    json.dumps(rec.doc, sort_keys=True),
                ),
            )
        return cur.rowcount == 1

    def list(
        self,
        kinds: Sequence[str],
        start: int,
        end: int,
        *,
        meter: str | None = None,
        limit: int = 1000,
    ) -> list[EventRecord]:
        if not kinds:
            return []
        marks = ", ".join("?" for _ in kinds)
        sql = (
            "SELECT id, kind, thing, meter, time, type, score, doc FROM events "
            f"WHERE kind IN ({marks}) AND time >= ? AND time < ?"
        )
        args: list[Any] = [*kinds, start, end]
        if meter is not None:
            sql += " AND meter = ?"
            args.append(meter)
        sql += " ORDER BY time, id LIMIT ?"
        args.append(limit)
        with self.db.tx() as c:
            rows = c.execute(sql, args).fetchall()
        return [
            EventRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7])) for r in rows
        ]

    def counts(self, kind: str, since: int) -> dict[str, int]:
        with self.db.tx() as c:
            rows = c.execute(
                "SELECT meter, COUNT(*) FROM events WHERE kind = ? AND time >= ? GROUP BY meter",
                (kind, since),
            ).fetchall()
        return {r[0]: int(r[1]) for r in rows}


class SqliteHealthStore:
    """Health snapshots per concentrator, keyed by (thing, report time)."""

    def __init__(self, db: SqliteDb) -> None:
        self.db = db

    def put(self, report: HealthReport) -> None:
        with self.db.tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO health (thing, time, doc) VALUES (?, ?, ?)",
                (report.thing, report.time, json.dumps(report.doc, sort_keys=True)),
            )

    def latest(self, thing: str) -> HealthReport | None:
        with self.db.tx() as c:
            row = c.execute(
                "SELECT thing, time, doc FROM health WHERE thing = ? ORDER BY time DESC LIMIT 1",
                (thing,),
            ).fetchone()
        return None if row is None else HealthReport(row[0], row[1], json.loads(row[2]))

    def history(self, thing: str, start: int, end: int, limit: int = 2000) -> list[HealthReport]:
        with self.db.tx() as c:
            rows = c.execute(
                "SELECT thing, time, doc FROM health WHERE thing = ? AND time >= ? AND time < ? "
                "ORDER BY time DESC LIMIT ?",
                (thing, start, end, limit),
            ).fetchall()
        return [HealthReport(r[0], r[1], json.loads(r[2])) for r in reversed(rows)]


_ROW_COLS = (
    "meter, channel, capture_time, value, unit, status, raw, scaler, multiplier, "
    "data_class, batch_id"
)


def lake_path(day: datetime) -> str:
    """The object key of a day's Parquet file in the lake (hive partitions, UTC)."""
    return (
        f"{LAKE_PREFIX}/year={day.year:04d}/month={day.month:02d}/day={day.day:02d}/part-0.parquet"
    )


class SqliteIntervalStore:
    """Interval index in SQLite (dedupe + API queries) and the Parquet lake (analytics)."""

    def __init__(self, db: SqliteDb, objects_root: Path) -> None:
        self.db = db
        self.objects_root = Path(objects_root)
        self._dirty: set[int] = set()  # UTC day numbers written since the last compaction

    def put(self, rows: Sequence[IntervalRow]) -> int:
        days = {r.capture_time // 86400 for r in rows}
        with self.db.tx() as c:
            self._dirty |= days
            before = c.total_changes
            c.executemany(
                f"INSERT OR IGNORE INTO intervals ({_ROW_COLS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.meter,
                        r.channel,
                        r.capture_time,
                        r.value,
                        r.unit,
                        r.status,
                        r.raw,
                        r.scaler,
                        r.multiplier,
                        r.data_class,
                        r.batch_id,
                    )
                    for r in rows
                ],
            )
            return c.total_changes - before

    def query(
        self, meter: str, start: int, end: int, channel: str | None = None
    ) -> list[IntervalRow]:
        sql = (
            f"SELECT {_ROW_COLS} FROM intervals WHERE meter = ? "
            "AND capture_time >= ? AND capture_time < ?"
        )
        args: list[Any] = [meter, start, end]
        if channel is not None:
            sql += " AND channel = ?"
            args.append(channel)
        sql += " ORDER BY channel, capture_time"
        with self.db.tx() as c:
            rows = c.execute(sql, args).fetchall()
        return [IntervalRow(*r) for r in rows]

    def has_meter(self, meter: str) -> bool:
        with self.db.tx() as c:
            row = c.execute("SELECT 1 FROM intervals WHERE meter = ? LIMIT 1", (meter,)).fetchone()
        return row is not None

    def days(self) -> list[datetime]:
        """Capture days (UTC midnights) present in the index."""
        with self.db.tx() as c:
            rows = c.execute(
                "SELECT DISTINCT capture_time / 86400 FROM intervals ORDER BY 1"
            ).fetchall()
        return [datetime.fromtimestamp(int(r[0]) * 86400, tz=timezone.utc) for r in rows]

    def compact_day(self, day: datetime) -> str | None:
        """Write the day's rows (UTC) to the lake; returns the object key, None if no rows."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        start = int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp())
        with self.db.tx() as c:
            rows = c.execute(
                f"SELECT {_ROW_COLS} FROM intervals "
                "WHERE capture_time >= ? AND capture_time < ? "
                "ORDER BY meter, channel, capture_time",
                (start, start + 86400),
            ).fetchall()
        if not rows:
            return None
        table = rows_to_table([IntervalRow(*r) for r in rows])
        key = lake_path(day)
        path = self.objects_root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(".tmp-" + path.name)
        try:
            pq.write_table(table, tmp, compression="zstd")
            os.replace(tmp, path)
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(f"cannot write {key}: {exc}") from exc
        return key

    def compact_all(self) -> list[str]:
        """Rewrite every day of the lake from the index."""
        return [k for d in self.days() if (k := self.compact_day(d)) is not None]

    def compact_dirty(self) -> list[str]:
        """Rewrite only the days written since the last call (a day whose rewrite fails stays
        dirty)."""
        with self.db.lock:
            days = sorted(self._dirty)
            self._dirty.clear()
        keys: list[str] = []
        done = 0
        try:
            for n in days:
                key = self.compact_day(datetime.fromtimestamp(n * 86400, tz=timezone.utc))
                if key is not None:
                    keys.append(key)
                done += 1
        except StorageError:
            with self.db.lock:
                self._dirty.update(days[done:])
            raise
        return keys


def rows_to_table(rows: Sequence[IntervalRow]) -> Any:
    """A pyarrow Table of interval rows (the lake schema, also used by the AWS store)."""
    import pyarrow as pa

    return pa.table(
        {
            "meter": pa.array([r.meter for r in rows], pa.string()),
            "channel": pa.array([r.channel for r in rows], pa.string()),
            "capture_time": pa.array([r.capture_time for r in rows], pa.int64()),
            "value": pa.array([r.value for r in rows], pa.float64()),
            "unit": pa.array([r.unit for r in rows], pa.string()),
            "status": pa.array([r.status for r in rows], pa.int32()),
            "raw": pa.array([r.raw for r in rows], pa.int64()),
            "scaler": pa.array([r.scaler for r in rows], pa.int32()),
            "multiplier": pa.array([r.multiplier for r in rows], pa.float64()),
            "data_class": pa.array([r.data_class for r in rows], pa.int32()),
            "batch_id": pa.array([r.batch_id for r in rows], pa.string()),
        }
    )


def query_lake(objects_root: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run ``sql`` with DuckDB where the table ``intervals`` is the hive-partitioned lake.

    The same statement runs on Athena against the Glue table ``intervals``.
    """
    import duckdb

    glob = (Path(objects_root) / LAKE_PREFIX / "**" / "*.parquet").as_posix()
    con = duckdb.connect()
    try:
        con.execute(
            "CREATE VIEW intervals AS SELECT * FROM "
            f"read_parquet('{glob}', hive_partitioning = true)"
        )
        return [tuple(r) for r in con.execute(sql, list(params)).fetchall()]
    except duckdb.Error as exc:
        raise StorageError(f"lake query failed: {exc}") from exc
    finally:
        con.close()


def open_local_stores(data_dir: Path | str) -> tuple[Stores, SqliteDb]:
    """Every local repository under ``data_dir`` (created if missing)."""
    root = Path(data_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create data dir: {exc}", path="data_dir") from exc
    db = SqliteDb(root / "cloud.sqlite3")
    objects = LocalObjectStore(root / "bucket")
    stores = Stores(
        objects=objects,
        queues=SqliteQueue(db),
        latest=SqliteLatestTable(db),
        intervals=SqliteIntervalStore(db, objects.root),
        batches=SqliteProcessedBatches(db),
        outages=SqliteOutageStore(db),
        registry=SqliteRegistry(db),
        reads=SqliteReadRequests(db),
        fleet=SqliteFleet(db),
        events=SqliteEventStore(db),
        health=SqliteHealthStore(db),
    )
    return stores, db
