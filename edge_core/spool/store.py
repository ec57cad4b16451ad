"""The durable spool: the one hand-off between acquisition and the uplink.

Theory of operation
-------------------
* Durability. One SQLite file in WAL mode with ``synchronous=FULL``: every public method that
  changes state runs one ``BEGIN IMMEDIATE ... COMMIT`` transaction and returns only after the
  commit, so a reading whose :meth:`Spool.put` returned survives a kill -9 or power loss.
* Flow. ``put`` stores readings (dedupe on (meter, OBIS, data class, capture time) while they
  are in the spool: a duplicate is counted, not stored). ``seal`` encodes the oldest unsealed
  readings of one class (in insertion order) into one batch and, in one short transaction,
  inserts it into the ``outbox`` and moves the class's *seal watermark*, so a reading is always
  either unsealed (id above the watermark) or in exactly one outbox batch. ``put_message``
  puts a ready payload (alarm, JSON event, on-demand response) straight into the outbox.
  ``pending`` lists the outbox by priority (class, then age), ``ack`` deletes a message after
  the publish was acknowledged, ``nack`` counts an attempt.
  A crash between publish and ack resends the message: delivery is at-least-once and the cloud
  deduplicates by batch id.
* Seal watermark (schema v4). A reading's id is ``(data_class << 56) | sequence``: each class
  is one contiguous range of the rowid B-tree, in insertion order, and ids are handed out under
  the write lock, so a committed id is always above every id committed before it. ``seal_marks``
  keeps per class the highest sealed id; every reading of the class at or below it is sealed
  (its values live in an outbox payload, whose row also records the id range). A seal's write
  transaction is therefore O(1): one outbox row and one mark, whatever the batch size. The
  sealed rows are dead weight from then on and ``reclaim`` deletes them in transactions of at
  most ``_RECLAIM_CHUNK`` rows (seal calls it for its class first, on the bulk thread), releasing
  the write lock between chunks. Recovery needs nothing: the mark is committed with the batch,
  and new ids start above both the largest id present and the mark.
* Integer dictionary (schema v5). Meter ids and OBIS codes live once in ``meters`` and
  ``channels``; readings refer to them by integer (a smaller row and dedupe index, a cheaper
  put). New names are registered in their own short transaction before the put that needs
  them (the in-memory maps only ever hold committed names), so a put rolled back never leaves
  the maps ahead of the file.
* Backfill. ``high_water`` keeps the latest capture time ever stored per (meter, OBIS, data
  class); it is
  updated in the put transaction and survives sealing and acking (``last_capture``).
* Quota and retention. The spool accounts the bytes its rows occupy (an estimate per row: see
  ``_READING_COST``; payloads at their length). When a put would exceed ``quota_bytes``, rows
  are evicted from the lowest class first, outbox before readings within a class (sealed batches
  hold the oldest data), oldest stored first; a put may evict only its own class and lower ones,
  alarms are never evicted, and when nothing evictable is left the put fails with SpoolFullError
  and stores nothing. A filesystem that fills up (SQLITE_FULL) raises SpoolFullError too: the
  transaction is rolled back, every earlier commit stays readable, and puts succeed again once
  space is freed (tests/spool/test_full_disk.py). Per-class ``retention`` (seconds, on capture
  time for readings and creation time for messages) is applied by :meth:`Spool.expire` and by
  ``seal``. Every eviction is counted per class, meter and reason in ``evictions``.
* Corruption. ``open`` runs ``PRAGMA quick_check`` (or ``integrity_check``); a damaged file is
  kept aside and its readable rows salvaged into a fresh one (see :mod:`.salvage`); the outcome
  is logged, recorded and exposed as ``Spool.salvage_report``. A file is never replaced by an
  empty one without that report.
* Threads and short write transactions. One process owns the file; the object may be called
  from any thread. Two connections: writes go through one, serialized by a write lock that
  urgent callers (alarm-lane ``put_message``, ``ack``, ``nack``) take ahead of waiting bulk
  writers; reads (``pending``, ``stats``, the rows a seal encodes) go through the other and
  never wait for a write (WAL readers see the last commit). Every write transaction is short
  and bounded, so an alarm's commit waits at most for one of them: ``seal`` reads its rows and
  encodes them *outside* the write lock, then one O(1) transaction inserts the outbox row and
  moves the mark (if unsealed rows were evicted meanwhile, nothing is written and the seal starts
  again); a group commit carries at most ``_GROUP_MAX_ROWS`` rows; reclaim and quota eviction
  work in bounded chunks. The longest time the write lock was held is kept
  (``SpoolStats.max_write_txn_s``).
* Group commit. Concurrent ``put`` calls (from several threads, or several puts handed over at
  once with ``put_many``) are coalesced: whichever caller gets the write lock commits every
  queued put (up to ``_GROUP_MAX_ROWS`` rows) in one transaction and one fsync, each put in
  its own savepoint (a put refused by the quota rolls back alone). Every caller returns only
  after the commit that contains its rows.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edge_core.batch import (
    DEFAULT_LEVEL,
    IOT_CORE_MAX_MESSAGE_BYTES,
    Columns,
    Runs,
    decode_batch,
    encode_prefix,
    encode_runs,
)
from edge_core.errors import BatchFormatError, SpoolCorruptError, SpoolError, SpoolFullError
from edge_core.model import DataClass, Reading
from edge_core.spool.salvage import SalvageReport, move_aside, salvage_rows
from edge_core.spool.schema import MIGRATIONS, SCHEMA_VERSION

__all__ = ["OutboxItem", "PutResult", "SalvageReport", "Spool", "SpoolStats"]

log = logging.getLogger(__name__)

# Bytes accounted per reading row besides meter and OBIS text (integers, the row header, the
# UNIQUE and class indexes, page slack), measured on a spool of IDIS profile rows.
_READING_COST = 72
_OUTBOX_COST = 96  # per outbox row besides topic and payload
_EVICT_CHUNK_MAX = 2000
# Rows per group commit: bounds a put transaction to about 10-20 ms of the write lock (about
# 7 us a row on a loaded 2-core machine; bench/spool_ingest.py reports the longest).
_GROUP_MAX_ROWS = 2048
_SEAL_RETRIES = 5
# Sealed rows deleted per reclaim transaction (a few ms of the write lock each).
_RECLAIM_CHUNK = 1000
_CLASS_SHIFT = 56
# SQLite page cache per connection, KiB (SQLite's default is 2,000 KiB; two connections).
_CACHE_KIB = 512
_FETCH_ROWS = 2048  # rows per fetch when a seal reads its rows (bounds each GIL hold)
# One row of a seal's packed read: block rank, capture time, value, status (big-endian).
_PACKED_ROW = np.dtype([("r", ">u4"), ("t", ">i8"), ("v", ">i8"), ("s", "u1")])


def _base(c: int) -> int:
    """First id of class ``c``'s range (ids of class c are in [_base(c), _base(c + 1)))."""
    return c << _CLASS_SHIFT


class _WriteLock:
    """A mutex that urgent holders take before waiting non-urgent ones (waits time out and
    re-check, so a lost wake-up costs at most ``_POLL_S``)."""

    _POLL_S = 0.5

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held = False
        self._urgent = 0

    @contextmanager
    def hold(self, urgent: bool) -> Iterator[None]:
        with self._cond:
            if urgent:
                self._urgent += 1
            try:
                while self._held or (not urgent and self._urgent):
                    self._cond.wait(self._POLL_S)
            finally:
                if urgent:
                    self._urgent -= 1
            self._held = True
        try:
            yield
        finally:
            with self._cond:
                self._held = False
                self._cond.notify_all()


@dataclass(slots=True)
class _PutJob:
    """One caller's put waiting for a group commit."""

    by_class: dict[int, list[tuple[Any, ...]]]
    rows: int
    done: bool = False
    result: PutResult | None = None
    error: BaseException | None = None


class _Changed(Exception):
    """Rows a seal read were changed before its write transaction (internal: retry)."""


@dataclass(frozen=True, slots=True)
class PutResult:
    """Outcome of :meth:`Spool.put`: readings stored and duplicates ignored."""

    stored: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A sealed message waiting for publication. ``created`` is epoch s; ``batch_id`` is None
    for messages put without one."""

    id: int
    batch_id: bytes | None
    data_class: DataClass
    topic: str
    payload: bytes
    created: float
    attempts: int


def _per_class() -> dict[DataClass, int]:
    return dict.fromkeys(DataClass, 0)


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """Counters since the file was created (per class), backlog now, and file size.

    ``sealed`` counts readings moved into batches; ``acked`` messages acknowledged;
    ``evicted`` readings plus messages evicted (quota or retention). ``oldest_age_s`` is the age
    of the oldest backlog entry (stored_at / created), None when empty. ``max_write_txn_s``: the
    longest time one write transaction held the write lock since the spool was opened (s).
    """

    stored: dict[DataClass, int] = field(default_factory=_per_class)
    duplicates: dict[DataClass, int] = field(default_factory=_per_class)
    sealed: dict[DataClass, int] = field(default_factory=_per_class)
    acked: dict[DataClass, int] = field(default_factory=_per_class)
    evicted: dict[DataClass, int] = field(default_factory=_per_class)
    backlog_readings: dict[DataClass, int] = field(default_factory=_per_class)
    backlog_messages: dict[DataClass, int] = field(default_factory=_per_class)
    oldest_age_s: float | None = None
    file_bytes: int = 0
    used_bytes: int = 0
    quota_bytes: int | None = None
    salvages: int = 0
    max_write_txn_s: float = 0.0

    @property
    def backlog(self) -> dict[DataClass, int]:
        """Readings plus messages waiting, per class."""
        return {c: self.backlog_readings[c] + self.backlog_messages[c] for c in DataClass}

    def to_dict(self) -> dict[str, Any]:
        def named(d: Mapping[DataClass, int]) -> dict[str, int]:
            return {c.name.lower(): d[c] for c in DataClass}

        return {
            "stored": named(self.stored),
            "duplicates": named(self.duplicates),
            "sealed": named(self.sealed),
            "acked": named(self.acked),
            "evicted": named(self.evicted),
            "backlog_readings": named(self.backlog_readings),
            "backlog_messages": named(self.backlog_messages),
            "oldest_age_s": self.oldest_age_s,
            "file_bytes": self.file_bytes,
            "used_bytes": self.used_bytes,
            "quota_bytes": self.quota_bytes,
            "salvages": self.salvages,
            "max_write_txn_s": self.max_write_txn_s,
        }


def _is_disk_full(exc: sqlite3.Error) -> bool:
    """SQLITE_FULL: the filesystem (not the quota) has no room; the transaction was rolled back
    and everything committed before it is intact, so it is the same condition for callers as a
    full quota (SpoolFullError), and a retry succeeds once space is freed."""
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    text = str(exc).lower()
    return any(k in text for k in ("malformed", "not a database", "corrupt", "disk image"))


class Spool:
    """The durable spool (see the module docstring). Create with :meth:`open`."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        quota_bytes: int | None,
        retention: Mapping[DataClass, int],
        salvage_report: SalvageReport | None,
    ) -> None:
        self._conn = conn
        self._path = path
        self._quota = quota_bytes
        self._retention = dict(retention)
        self._wlock = _WriteLock()
        self._rlock = threading.Lock()
        self._seal_lock = threading.Lock()
        self._gc_lock = threading.Lock()
        self._gc_queue: list[_PutJob] = []
        self._closed = False
        try:
            self._rconn = self._connect(path)
        except BaseException:
            conn.close()
            raise
        self.salvage_report = salvage_report
        self._evict_gen = 0  # bumped whenever unsealed readings are deleted (seal re-checks)
        self._max_txn_s = 0.0
        self._marks, self._next = self._load_marks()
        self._meter_ids, self._channel_ids = self._load_names()
        self._meter_names = {i: m for m, i in self._meter_ids.items()}
        self._obis_names = {i: o for o, i in self._channel_ids.items()}
        self._used = self._measure_used()

    # --- opening --------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        quota_bytes: int | None = None,
        retention: Mapping[DataClass, int] | None = None,
        integrity_check: Literal["quick", "full", "none"] = "quick",
        on_corrupt: Literal["salvage", "raise"] = "salvage",
    ) -> Spool:
        """Open (creating or migrating) the spool at ``path``.

        ``quota_bytes``: accounted bytes limit (None: unlimited). ``retention``: max age in
        seconds per class. A damaged file is salvaged (``on_corrupt="salvage"``: the spool opens
        on the salvaged file, see ``salvage_report``; ``"raise"``: the same salvage, then
        SpoolCorruptError naming both files).
        """
        p = Path(path)
        problem = cls._check(p, integrity_check) if p.exists() and p.stat().st_size else None
        report: SalvageReport | None = None
        if problem is not None:
            kept = move_aside(p)
            conn = cls._connect(p)
            try:
                cls._migrate(conn)
                report = salvage_rows(kept, conn, problem, p)
            except BaseException:
                conn.close()
                raise
            if on_corrupt == "raise":
                conn.close()
                raise SpoolCorruptError(
                    f"spool {p} was damaged ({problem}); salvaged {report.readings} readings "
                    f"and {report.messages} messages",
                    salvaged_to=str(p),
                    kept_at=str(kept),
                )
        else:
            conn = cls._connect(p)
            try:
                cls._migrate(conn)
            except BaseException:
                conn.close()
                raise
        return cls(conn, p, quota_bytes, retention or {}, report)

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=10.0
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=OFF")
            # A small page cache per connection (the hot pages are the B-tree's right edge and
            # the outbox; the OS page cache holds the rest) and sorts of a seal that spill to a
            # temporary file past it: the runtime's RSS stays flat on a long backlog.
            conn.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot open spool {path}: {exc}") from exc
        return conn

    @staticmethod
    def _check(path: Path, mode: str) -> str | None:
        """None if the file looks sound, else a description of the damage."""
        if mode == "none":
            return None
        pragma = "quick_check" if mode == "quick" else "integrity_check"
        try:
            conn = sqlite3.connect(str(path), isolation_level=None)
        except sqlite3.DatabaseError as exc:
            return str(exc)
        try:
            rows = conn.execute(f"PRAGMA {pragma}").fetchall()
            conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        except sqlite3.DatabaseError as exc:
            return str(exc)
        finally:
            conn.close()
        result = "; ".join(str(r[0]) for r in rows[:5])
        return None if result == "ok" else result

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise SpoolError(
                    f"spool schema version {version} is newer than this software "
                    f"({SCHEMA_VERSION}); refusing to downgrade"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for stmt in MIGRATIONS[target - 1].split(";"):
                        if stmt.strip():
                            conn.execute(stmt)
                    conn.execute(f"PRAGMA user_version = {target}")
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                log.info("spool schema migrated to version %d", target)
        except sqlite3.Error as exc:
            raise SpoolError(f"spool migration failed: {exc}") from exc

    # --- plumbing -------------------------------------------------------------------------

    @contextmanager
    def _txn(self, *, urgent: bool = False) -> Iterator[sqlite3.Connection]:
        """One serialized write transaction; sqlite3 errors become SpoolError here (the one
        boundary for sqlite3). ``urgent`` callers go ahead of waiting bulk writers."""
        with self._wlock.hold(urgent):
            if self._closed:
                raise SpoolError(f"spool {self._path} is closed")
            conn = self._conn
            used_before = self._used
            t0 = time.perf_counter()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                    self._max_txn_s = max(self._max_txn_s, time.perf_counter() - t0)
                except BaseException:
                    self._used = used_before
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.DatabaseError as exc:
                if _is_disk_full(exc):
                    raise SpoolFullError(f"spool {self._path}: filesystem full: {exc}") from exc
                if _is_corruption(exc):
                    raise SpoolCorruptError(
                        f"spool {self._path} is damaged: {exc}; reopen to salvage"
                    ) from exc
                raise SpoolError(f"spool {self._path}: {exc}") from exc
            except sqlite3.Error as exc:
                raise SpoolError(f"spool {self._path}: {exc}") from exc

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """The read connection (sees the last commit; never waits for a writer)."""
        with self._rlock:
            if self._closed:
                raise SpoolError(f"spool {self._path} is closed")
            try:
                yield self._rconn
            except sqlite3.DatabaseError as exc:
                if _is_corruption(exc):
                    raise SpoolCorruptError(f"spool {self._path} is damaged: {exc}") from exc
                raise SpoolError(f"spool {self._path}: {exc}") from exc
            except sqlite3.Error as exc:
                raise SpoolError(f"spool {self._path}: {exc}") from exc

    def _load_marks(self) -> tuple[dict[int, int], dict[int, int]]:
        """Seal marks per class and the next id to hand out per class."""
        try:
            marks = {
                int(c): int(t)
                for c, t in self._conn.execute("SELECT data_class, through_id FROM seal_marks")
            }
            nxt: dict[int, int] = {}
            for dc in DataClass:
                c = int(dc)
                marks.setdefault(c, _base(c))
                top = self._conn.execute(
                    "SELECT max(id) FROM readings WHERE id >= ? AND id < ?",
                    (_base(c), _base(c + 1)),
                ).fetchone()[0]
                nxt[c] = max(int(top or 0), marks[c], _base(c)) + 1
        except sqlite3.Error as exc:
            raise SpoolError(f"spool {self._path}: {exc}") from exc
        return marks, nxt

    def _load_names(self) -> tuple[dict[str, int], dict[str, int]]:
        try:
            meters = {str(n): int(i) for i, n in self._conn.execute("SELECT id, name FROM meters")}
            chans = {str(o): int(i) for i, o in self._conn.execute("SELECT id, obis FROM channels")}
        except sqlite3.Error as exc:
            raise SpoolError(f"spool {self._path}: {exc}") from exc
        return meters, chans

    def _register_names(self, group: Sequence[_PutJob]) -> None:
        """Commit the meters and OBIS codes of ``group`` that have no id yet, in one short
        transaction of their own (the caller holds the write lock)."""
        meters: set[str] = set()
        chans: set[str] = set()
        for job in group:
            for rows in job.by_class.values():
                meters.update(r[0] for r in rows if r[0] not in self._meter_ids)
                chans.update(r[1] for r in rows if r[1] not in self._channel_ids)
        if not meters and not chans:
            return
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT OR IGNORE INTO meters (name) VALUES (?)", [(m,) for m in sorted(meters)]
            )
            conn.executemany(
                "INSERT OR IGNORE INTO channels (obis) VALUES (?)", [(o,) for o in sorted(chans)]
            )
            got_m = [
                (m, int(conn.execute("SELECT id FROM meters WHERE name = ?", (m,)).fetchone()[0]))
                for m in meters
            ]
            got_c = [
                (o, int(conn.execute("SELECT id FROM channels WHERE obis = ?", (o,)).fetchone()[0]))
                for o in chans
            ]
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        for m, i in got_m:
            self._meter_ids[m] = i
            self._meter_names[i] = m
        for o, i in got_c:
            self._channel_ids[o] = i
            self._obis_names[i] = o

    def _text_of(self, meter_id: int, channel_id: int) -> int:
        """Characters of a reading's meter and OBIS (the quota's accounting per row)."""
        return len(self._meter_names.get(meter_id, "")) + len(self._obis_names.get(channel_id, ""))

    def _measure_used(self) -> int:
        try:
            r = sum(
                int(
                    self._conn.execute(
                        "SELECT coalesce(sum(length(m.name) + length(c.obis)), 0) + count(*) * ? "
                        "FROM readings r JOIN meters m ON m.id = r.meter_id "
                        "JOIN channels c ON c.id = r.channel_id WHERE r.id > ? AND r.id < ?",
                        (_READING_COST, self._marks[c], _base(c + 1)),
                    ).fetchone()[0]
                )
                for c in self._marks
            )
            m = self._conn.execute(
                "SELECT coalesce(sum(length(payload) + length(topic)), 0) + count(*) * ? "
                "FROM outbox",
                (_OUTBOX_COST,),
            ).fetchone()[0]
        except sqlite3.Error as exc:
            raise SpoolError(f"spool {self._path}: {exc}") from exc
        return int(r) + int(m)

    @staticmethod
    def _bump(conn: sqlite3.Connection, items: Mapping[tuple[int, str], int]) -> None:
        conn.executemany(
            "INSERT INTO counters (data_class, name, value) VALUES (?,?,?) "
            "ON CONFLICT (data_class, name) DO UPDATE SET value = value + excluded.value",
            [(c, n, v) for (c, n), v in items.items() if v],
        )

    # --- writing --------------------------------------------------------------------------

    def put(self, readings: Sequence[Reading]) -> PutResult:
        """Store ``readings``; durable when this returns. Duplicates of unsent readings (same
        meter, OBIS, data class, capture time) are counted and ignored. Raises SpoolFullError
        (nothing stored) when the quota is reached and nothing evictable is left. Concurrent
        calls share transactions (group commit, see the module docstring)."""
        if not readings:
            return PutResult(0, 0)
        job = self._job(readings)
        with self._gc_lock:
            self._gc_queue.append(job)
        self._finish(job)
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def put_many(self, batches: Sequence[Sequence[Reading]]) -> list[PutResult | SpoolError]:
        """Several puts at once, committed together (group commit): per put its result, or the
        SpoolError that refused it (e.g. SpoolFullError: that put alone stored nothing). Every
        put is durable (or refused) when this returns."""
        jobs = [self._job(b) if b else None for b in batches]
        with self._gc_lock:
            self._gc_queue.extend(j for j in jobs if j is not None)
        out: list[PutResult | SpoolError] = []
        for j in jobs:
            if j is None:
                out.append(PutResult(0, 0))
                continue
            self._finish(j)
            if isinstance(j.error, SpoolError):
                out.append(j.error)
            elif j.error is not None:
                raise j.error
            else:
                assert j.result is not None
                out.append(j.result)
        return out

    put.coalesce_with = "put_many"  # type: ignore[attr-defined]

    @staticmethod
    def _job(readings: Sequence[Reading]) -> _PutJob:
        now = time.time()
        by_class: dict[int, list[tuple[Any, ...]]] = {}
        classes = {r.data_class for r in readings}
        for dc in classes:
            c = int(dc)
            rs = readings if len(classes) == 1 else [r for r in readings if r.data_class == dc]
            by_class[c] = [
                (r.meter, r.obis, r.capture_time, r.value, r.scaler, r.unit, r.status, c, now)
                for r in rs
            ]
        return _PutJob(by_class, len(readings))

    def _finish(self, job: _PutJob) -> None:
        """Wait until ``job`` is committed, committing queued puts whenever we hold the lock."""
        while not job.done:
            with self._wlock.hold(False):
                if job.done:
                    return
                with self._gc_lock:
                    take, rows = 0, 0
                    while take < len(self._gc_queue) and (
                        take == 0 or rows + self._gc_queue[take].rows <= _GROUP_MAX_ROWS
                    ):
                        rows += self._gc_queue[take].rows
                        take += 1
                    group = self._gc_queue[:take]
                    del self._gc_queue[:take]
                self._commit_group(group)

    def _commit_group(self, group: list[_PutJob]) -> None:
        """One transaction for ``group`` (the caller holds the write lock)."""
        results: list[tuple[_PutJob, PutResult | None, BaseException | None]] = []
        conn = self._conn
        used_before = self._used
        try:
            if self._closed:
                raise SpoolError(f"spool {self._path} is closed")
            t0 = time.perf_counter()
            self._register_names(group)
            conn.execute("BEGIN IMMEDIATE")
            try:
                for job in group:
                    conn.execute("SAVEPOINT put")
                    used = self._used
                    try:
                        res = self._put_rows(conn, job)
                    except SpoolFullError as exc:
                        conn.execute("ROLLBACK TO put")
                        conn.execute("RELEASE put")
                        self._used = used
                        results.append((job, None, exc))
                        continue
                    conn.execute("RELEASE put")
                    results.append((job, res, None))
                conn.execute("COMMIT")
                self._max_txn_s = max(self._max_txn_s, time.perf_counter() - t0)
            except BaseException:
                self._used = used_before
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except BaseException as exc:
            err: BaseException = exc
            if isinstance(exc, sqlite3.Error) and _is_disk_full(exc):
                err = SpoolFullError(f"spool {self._path}: filesystem full: {exc}")
                err.__cause__ = exc
            elif isinstance(exc, sqlite3.DatabaseError) and _is_corruption(exc):
                err = SpoolCorruptError(f"spool {self._path} is damaged: {exc}; reopen to salvage")
                err.__cause__ = exc
            elif isinstance(exc, sqlite3.Error):
                err = SpoolError(f"spool {self._path}: {exc}")
                err.__cause__ = exc
            for job in group:
                job.error, job.done = err, True
            return
        for job, outcome, e in results:
            job.result, job.error, job.done = outcome, e, True

    def _put_rows(self, conn: sqlite3.Connection, job: _PutJob) -> PutResult:
        bumps: dict[tuple[int, str], int] = {}
        firsts: dict[int, int] = {}
        stored = 0
        for dc, rows in job.by_class.items():
            # Ids of this put: [first, first + len(rows)) in the class's range; ids of ignored
            # duplicates (or of a put rolled back) are simply never used.
            first = self._next[dc]
            self._next[dc] = first + len(rows)
            firsts[dc] = first
            before = conn.total_changes
            mids, cids = self._meter_ids, self._channel_ids
            conn.executemany(
                "INSERT OR IGNORE INTO readings (id, meter_id, channel_id, capture_time, value, "
                "scaler, unit, status, data_class, stored_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [(first + i, mids[r[0]], cids[r[1]], *r[2:]) for i, r in enumerate(rows)],
            )
            n = conn.total_changes - before
            bumps[(dc, "stored")] = n
            bumps[(dc, "duplicates")] = len(rows) - n
            stored += n
            if not n:
                continue
            # Accounting and high-water marks from the rows just inserted (their id range): a
            # duplicate was already counted and marked when it was stored.
            series = conn.execute(
                "SELECT meter_id, channel_id, count(*), max(capture_time) FROM readings "
                "WHERE id >= ? AND id < ? GROUP BY meter_id, channel_id",
                (first, first + len(rows)),
            ).fetchall()
            self._used += n * _READING_COST + sum(
                self._text_of(m, ch) * k for m, ch, k, _ in series
            )
            conn.executemany(
                "INSERT INTO high_water (meter, obis, data_class, capture_time) VALUES (?,?,?,?) "
                "ON CONFLICT (meter, obis, data_class) DO UPDATE SET capture_time = "
                "max(capture_time, excluded.capture_time)",
                [(self._meter_names[m], self._obis_names[ch], dc, t) for m, ch, _, t in series],
            )
        self._bump(conn, bumps)
        self._enforce_quota(conn, DataClass(min(job.by_class)), put_firsts=firsts)
        return PutResult(stored, job.rows - stored)

    def put_message(
        self, data_class: DataClass, topic: str, payload: bytes, *, batch_id: bytes | None = None
    ) -> int:
        """Put a ready message into the outbox; returns its id; durable when this returns."""
        dc = DataClass(data_class)
        urgent = dc in (DataClass.ALARM, DataClass.ON_DEMAND)
        with self._txn(urgent=urgent) as conn:
            cur = conn.execute(
                "INSERT INTO outbox (batch_id, data_class, topic, payload, created, attempts, "
                "n_readings) VALUES (?,?,?,?,?,0,0)",
                (batch_id, int(dc), topic, bytes(payload), time.time()),
            )
            self._used += _OUTBOX_COST + len(payload) + len(topic.encode())
            self._bump(conn, {(int(dc), "messages"): 1})
            self._enforce_quota(conn, dc, max_message_id=int(cur.lastrowid or 0) - 1)
            return int(cur.lastrowid or 0)

    def seal(
        self,
        data_class: DataClass,
        *,
        thing: str,
        topic: str,
        max_values: int,
        min_age_s: float = 0,
        now: float | None = None,
        level: int = DEFAULT_LEVEL,
    ) -> OutboxItem | None:
        """Move up to ``max_values`` of the oldest (by capture time) readings of ``data_class``
        into one batch in the outbox, atomically; returns it, or None when there is nothing to
        seal. With ``min_age_s`` > 0 a partial batch (fewer than ``max_values`` readings) is
        sealed only once its oldest reading was stored at least ``min_age_s`` seconds ago. The
        encoded batch fits IoT Core's 128 KB with ``topic`` (readings that do not fit stay for
        the next seal)."""
        dc = DataClass(data_class)
        when = time.time() if now is None else now
        max_bytes = IOT_CORE_MAX_MESSAGE_BYTES - len(topic.encode())
        with self._seal_lock:
            if self._retention.get(dc) is not None:
                with self._txn() as conn:
                    self._expire_class(conn, dc, when)
            # Keep up with sealing: reclaim (at least) as many dead rows as one batch seals.
            self.reclaim(2 * max(max_values, _RECLAIM_CHUNK), data_class=dc)
            for _ in range(_SEAL_RETRIES):
                try:
                    return self._seal_once(
                        dc,
                        thing=thing,
                        topic=topic,
                        max_values=max_values,
                        min_age_s=min_age_s,
                        when=when,
                        level=level,
                        max_bytes=max_bytes,
                    )
                except _Changed:
                    log.debug("rows of a %s seal changed while encoding; again", dc.name)
        raise SpoolError(f"seal of {dc.name.lower()} kept racing with writers; try again")

    def _seal_once(
        self,
        dc: DataClass,
        *,
        thing: str,
        topic: str,
        max_values: int,
        min_age_s: float,
        when: float,
        level: int,
        max_bytes: int,
    ) -> OutboxItem | None:
        c = int(dc)
        lo, top = self._marks[c], _base(c + 1)  # only seal (under _seal_lock) moves the mark
        gen = self._evict_gen
        limit = max_values
        while True:
            with self._read() as rconn:
                count, oldest, last_id = rconn.execute(
                    "SELECT count(*), min(stored_at), max(id) FROM (SELECT id, stored_at "
                    "FROM readings WHERE id > ? AND id < ? ORDER BY id LIMIT ?)",
                    (lo, top, limit),
                ).fetchone()
                if not count:
                    return None
                if (
                    limit == max_values
                    and min_age_s > 0
                    and count < max_values
                    and when - float(oldest) < min_age_s
                ):
                    return None
            # SQLite (in C, without the GIL) sorts and packs the rows.
            cols = self._columns(lo, int(last_id), int(count), packed=True)
            if cols is None:
                raise _Changed
            batch_id, payload = self._encode(cols, thing, dc, int(when), level)
            if len(payload) <= max_bytes:
                break
            if count == 1:
                raise BatchFormatError(f"one reading does not fit in {max_bytes} bytes")
            # Too big for one message: seal a shorter id range (a batch is one id range).
            limit = max(1, min(int(count * max_bytes / len(payload) * 0.95), int(count) - 1))
        n = int(count)
        text = self._text_bytes(cols)
        try:
            with self._txn() as conn:
                if self._evict_gen != gen:
                    raise _Changed
                cur = conn.execute(
                    "INSERT INTO outbox (batch_id, data_class, topic, payload, created, attempts, "
                    "n_readings, first_id, last_id) VALUES (?,?,?,?,?,0,?,?,?)",
                    (batch_id, c, topic, payload, when, n, lo + 1, int(last_id)),
                )
                conn.execute(
                    "INSERT INTO seal_marks (data_class, through_id) VALUES (?, ?) "
                    "ON CONFLICT (data_class) DO UPDATE SET through_id = excluded.through_id",
                    (c, int(last_id)),
                )
                self._used += _OUTBOX_COST + len(payload) + len(topic.encode())
                self._used -= n * _READING_COST + text
                self._bump(conn, {(c, "sealed"): n, (c, "batches"): 1})
                self._marks[c] = int(last_id)
                item = OutboxItem(int(cur.lastrowid or 0), batch_id, dc, topic, payload, when, 0)
        except BaseException:
            self._marks[c] = lo
            raise
        return item

    @staticmethod
    def _encode(
        cols: Columns | Runs, thing: str, dc: DataClass, created: int, level: int
    ) -> tuple[bytes, bytes]:
        if isinstance(cols, Runs):
            return encode_runs(cols, thing=thing, data_class=dc, created=created, level=level)
        bid, payload, _ = encode_prefix(
            cols, thing=thing, data_class=dc, created=created, max_bytes=1 << 62, level=level
        )
        return bid, payload

    @staticmethod
    def _text_bytes(cols: Columns | Runs) -> int:
        """Meter plus OBIS characters of the rows (the quota's accounting)."""
        if isinstance(cols, Runs):
            return sum(
                (len(k[0]) + len(k[1])) * c for k, c in zip(cols.keys, cols.counts, strict=True)
            )
        return sum(map(len, cols.meters)) + sum(map(len, cols.obis))

    def _columns(self, lo: int, last_id: int, count: int, *, packed: bool) -> Columns | Runs | None:
        """The unsealed rows with ids in (``lo``, ``last_id``] for the encoder; None when there
        are not ``count`` of them (changed meanwhile).

        ``packed``: as :class:`Runs`, read in one snapshot as the channel blocks (a GROUP BY)
        plus one hex string of (block rank, capture time, value, status) per row that numpy
        turns into arrays; rows are put in order by numpy (block, then time), so nothing relies
        on the order in which group_concat sees them. No Python object per reading is built:
        a 50,000-value seal holds the GIL for a few ms instead of tens and needs ~2 MB instead
        of ~15 MB of transient memory, and creates no burst of container objects for the
        cyclic garbage collector to promote and scan. A status outside 0..255 (not encodable)
        makes the lengths disagree and the row path is used. Otherwise: :class:`Columns`,
        rows fetched in bounded chunks (one fetchall of 50,000 rows is one C call holding the
        GIL for tens of ms)."""
        where = (
            "FROM readings r JOIN meters m ON m.id = r.meter_id "
            "JOIN channels c ON c.id = r.channel_id WHERE r.id > ? AND r.id <= ?"
        )
        with self._read() as rconn:
            if packed:
                rconn.execute("BEGIN")
                try:
                    keys = rconn.execute(
                        f"SELECT m.name, c.obis, scaler, unit, count(*) {where} "
                        "GROUP BY m.name, c.obis, scaler, unit "
                        "ORDER BY m.name, c.obis, scaler, unit",
                        (lo, last_id),
                    ).fetchall()
                    got = rconn.execute(
                        "SELECT count(*), group_concat(printf('%08x%016x%016x%02x', r, "
                        "capture_time, value, status), '') FROM (SELECT dense_rank() OVER "
                        "(ORDER BY m.name, c.obis, scaler, unit) - 1 AS r, capture_time, value, "
                        f"status {where})",
                        (lo, last_id),
                    ).fetchone()
                finally:
                    rconn.execute("COMMIT")
                if int(got[0]) != count or sum(k[4] for k in keys) != count:
                    return None
                raw = bytes.fromhex(got[1])
                if len(raw) != count * _PACKED_ROW.itemsize:
                    return self._columns(lo, last_id, count, packed=False)
                arr = np.frombuffer(raw, dtype=_PACKED_ROW)
                rank = arr["r"].astype(np.int64)
                order = np.lexsort((arr["t"], rank))
                counts = [int(k[4]) for k in keys]
                if not np.array_equal(np.bincount(rank, minlength=len(keys)), counts):
                    return None
                return Runs(
                    [(str(k[0]), str(k[1]), int(k[2]), int(k[3])) for k in keys],
                    counts,
                    arr["t"][order].astype(np.int64),
                    arr["v"][order].astype(np.int64),
                    arr["s"][order].astype(np.int64),
                )
            cur = rconn.execute(
                "SELECT m.name, c.obis, capture_time, value, scaler, unit, status "
                f"{where} ORDER BY m.name, c.obis, capture_time",
                (lo, last_id),
            )
            columns: tuple[list[Any], ...] = ([], [], [], [], [], [], [])
            while chunk := cur.fetchmany(_FETCH_ROWS):
                for col, part in zip(columns, zip(*chunk, strict=True), strict=True):
                    col.extend(part)
        if len(columns[0]) != count:
            return None
        return Columns(*columns)

    def reclaim(self, max_rows: int | None = None, *, data_class: DataClass | None = None) -> int:
        """Delete sealed readings (at or below their class's seal mark: their values are in an
        outbox payload) in transactions of at most ``_RECLAIM_CHUNK`` rows, releasing the write
        lock between them; at most ``max_rows`` (None: all). Returns the rows deleted."""
        classes = list(DataClass) if data_class is None else [DataClass(data_class)]
        done = 0
        for dc in classes:
            c = int(dc)
            mark = self._marks[c]
            while max_rows is None or done < max_rows:
                k = _RECLAIM_CHUNK if max_rows is None else min(_RECLAIM_CHUNK, max_rows - done)
                with self._txn() as conn:
                    n = conn.execute(
                        "DELETE FROM readings WHERE id IN (SELECT id FROM readings "
                        "WHERE id >= ? AND id <= ? ORDER BY id LIMIT ?)",
                        (_base(c), mark, k),
                    ).rowcount
                done += max(0, n)
                if n < k:
                    break
        return done

    def ack(self, outbox_id: int) -> None:
        """Delete an outbox message after its publish was acknowledged (unknown ids: no-op)."""
        with self._txn(urgent=True) as conn:
            row = conn.execute(
                "DELETE FROM outbox WHERE id = ? RETURNING data_class, n_readings, "
                "length(payload) + length(topic)",
                (outbox_id,),
            ).fetchone()
            if row is None:
                log.debug("ack of unknown outbox id %d (evicted or acked before)", outbox_id)
                return
            self._used -= _OUTBOX_COST + int(row[2])
            self._bump(conn, {(int(row[0]), "acked"): 1, (int(row[0]), "acked_readings"): row[1]})

    def nack(self, outbox_id: int) -> None:
        """Count a failed publish attempt of an outbox message."""
        with self._txn(urgent=True) as conn:
            conn.execute("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", (outbox_id,))

    def expire(self, now: float | None = None) -> int:
        """Apply per-class retention; returns the number of readings and messages evicted."""
        when = time.time() if now is None else now
        total = 0
        with self._txn() as conn:
            for dc in DataClass:
                total += self._expire_class(conn, dc, when)
        return total

    # --- eviction -------------------------------------------------------------------------

    def _expire_class(self, conn: sqlite3.Connection, dc: DataClass, now: float) -> int:
        max_age = self._retention.get(dc)
        if max_age is None:
            return 0
        cutoff = now - max_age
        # A scan of the class's unsealed range (no time index: retention is a rare setting).
        gone = conn.execute(
            "DELETE FROM readings WHERE id > ? AND id < ? AND capture_time < ? "
            "RETURNING meter_id, channel_id",
            (self._marks[int(dc)], _base(int(dc) + 1), cutoff),
        ).fetchall()
        if gone:
            self._evict_gen += 1
        per_meter = Counter(self._meter_names.get(g[0], "") for g in gone)
        self._used -= sum(_READING_COST + self._text_of(g[0], g[1]) for g in gone)
        msgs = conn.execute(
            "DELETE FROM outbox WHERE data_class = ? AND created < ? "
            "RETURNING payload, batch_id, n_readings, length(payload) + length(topic)",
            (int(dc), cutoff),
        ).fetchall()
        n = len(gone)
        for payload, batch_id, n_readings, size in msgs:
            self._used -= _OUTBOX_COST + int(size)
            n += self._count_message_meters(per_meter, payload, batch_id, n_readings)
        self._record_evictions(conn, dc, per_meter, "retention", n)
        return n

    @staticmethod
    def _count_message_meters(
        per_meter: Counter[str], payload: bytes, batch_id: bytes | None, n_readings: int
    ) -> int:
        if batch_id is not None and n_readings:
            try:
                per_meter.update(r.meter for r in decode_batch(payload).readings)
                return int(n_readings)
            except BatchFormatError:
                pass
        per_meter[""] += max(1, int(n_readings))
        return max(1, int(n_readings))

    def _record_evictions(
        self, conn: sqlite3.Connection, dc: DataClass, per_meter: Counter[str], reason: str, n: int
    ) -> None:
        if not n:
            return
        conn.executemany(
            "INSERT INTO evictions (data_class, meter, reason, count) VALUES (?,?,?,?) "
            "ON CONFLICT (data_class, meter, reason) DO UPDATE SET count = count + excluded.count",
            [(int(dc), m, reason, c) for m, c in per_meter.items()],
        )
        self._bump(conn, {(int(dc), "evicted"): n})
        log.warning("spool evicted %d %s entries (%s)", n, dc.name.lower(), reason)

    def _enforce_quota(
        self,
        conn: sqlite3.Connection,
        incoming: DataClass,
        *,
        put_firsts: Mapping[int, int] | None = None,
        max_message_id: int = 1 << 62,
    ) -> None:
        """Evict until within quota; rows of the put being made (readings from
        ``put_firsts[class]`` on, messages above ``max_message_id``) are never evicted: a put
        that could only evict itself is refused. Unsealed readings go oldest stored first."""
        if self._quota is None or self._used <= self._quota:
            return
        floor = max(int(incoming), int(DataClass.DAILY))  # alarms are never evicted
        for c in range(int(max(DataClass)), floor - 1, -1):
            dc = DataClass(c)
            per_meter: Counter[str] = Counter()
            n = 0
            while self._used > self._quota:
                row = conn.execute(
                    "DELETE FROM outbox WHERE id = (SELECT id FROM outbox WHERE data_class = ? "
                    "AND id <= ? ORDER BY id LIMIT 1) RETURNING payload, batch_id, n_readings, "
                    "length(payload) + length(topic)",
                    (c, max_message_id),
                ).fetchone()
                if row is None:
                    break
                self._used -= _OUTBOX_COST + int(row[3])
                n += self._count_message_meters(per_meter, row[0], row[1], row[2])
            end = (put_firsts or {}).get(c, _base(c + 1))
            while self._used > self._quota:
                chunk = max(1, min(_EVICT_CHUNK_MAX, (self._used - self._quota) // _READING_COST))
                gone = conn.execute(
                    "DELETE FROM readings WHERE id IN (SELECT id FROM readings "
                    "WHERE id > ? AND id < ? ORDER BY id LIMIT ?) "
                    "RETURNING meter_id, channel_id",
                    (self._marks[c], end, chunk),
                ).fetchall()
                if not gone:
                    break
                self._evict_gen += 1
                self._used -= sum(_READING_COST + self._text_of(g[0], g[1]) for g in gone)
                per_meter.update(self._meter_names.get(g[0], "") for g in gone)
                n += len(gone)
            self._record_evictions(conn, dc, per_meter, "quota", n)
            if self._used <= self._quota:
                return
        raise SpoolFullError(
            f"spool quota of {self._quota} bytes reached and nothing of class "
            f"{incoming.name.lower()} or lower is left to evict"
        )

    # --- reading --------------------------------------------------------------------------

    def pending(self, limit: int = 100) -> list[OutboxItem]:
        """Outbox messages in priority order (class, then id)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT id, batch_id, data_class, topic, payload, created, attempts FROM outbox "
                "ORDER BY data_class, id LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            OutboxItem(int(r[0]), r[1], DataClass(r[2]), r[3], bytes(r[4]), float(r[5]), int(r[6]))
            for r in rows
        ]

    def last_capture(
        self, meter: str, obis: str, data_class: DataClass = DataClass.INTERVAL
    ) -> int | None:
        """Latest capture time stored for (meter, OBIS, data class); None if never (epoch s)."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT capture_time FROM high_water WHERE meter = ? AND obis = ? "
                "AND data_class = ?",
                (meter, obis, int(data_class)),
            ).fetchone()
        return None if row is None else int(row[0])

    def evictions(self) -> list[tuple[DataClass, str, str, int]]:
        """(class, meter, reason, count) of every eviction so far ('' meter: a message)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT data_class, meter, reason, count FROM evictions "
                "ORDER BY data_class, meter, reason"
            ).fetchall()
        return [(DataClass(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]

    def stats(self, now: float | None = None) -> SpoolStats:
        """Counters, backlog and sizes (see :class:`SpoolStats`)."""
        when = time.time() if now is None else now
        with self._read() as conn:
            counters = conn.execute("SELECT data_class, name, value FROM counters").fetchall()
            backlog_r = [
                (
                    c,
                    *conn.execute(
                        "SELECT count(*), min(stored_at) FROM readings WHERE id > ? AND id < ?",
                        (self._marks[c], _base(c + 1)),
                    ).fetchone(),
                )
                for c in sorted(self._marks)
            ]
            backlog_m = conn.execute(
                "SELECT data_class, count(*), min(created) FROM outbox GROUP BY data_class"
            ).fetchall()
            salvages = int(conn.execute("SELECT count(*) FROM salvages").fetchone()[0])
        named: dict[str, dict[DataClass, int]] = {
            k: _per_class() for k in ("stored", "duplicates", "sealed", "acked", "evicted")
        }
        for dc, name, value in counters:
            if name in named:
                named[name][DataClass(dc)] = int(value)
        br, bm = _per_class(), _per_class()
        oldest: float | None = None
        for table, rows in ((br, backlog_r), (bm, backlog_m)):
            for dc, count, first in rows:
                if not count:
                    continue
                table[DataClass(dc)] = int(count)
                oldest = first if oldest is None else min(oldest, first)
        file_bytes = sum(
            os.path.getsize(p) for p in (self._path, Path(f"{self._path}-wal")) if os.path.exists(p)
        )
        return SpoolStats(
            **named,
            backlog_readings=br,
            backlog_messages=bm,
            oldest_age_s=None if oldest is None else max(0.0, when - float(oldest)),
            file_bytes=file_bytes,
            used_bytes=self._used,
            quota_bytes=self._quota,
            salvages=salvages,
            max_write_txn_s=self._max_txn_s,
        )

    def take_max_write_txn_s(self) -> float:
        """The longest write transaction (write lock held, s) since the last call or since
        opening; the next measurement starts afresh (a benchmark phase's own maximum)."""
        out, self._max_txn_s = self._max_txn_s, 0.0
        return out

    @property
    def path(self) -> Path:
        return self._path

    def close(self) -> None:
        """Close the file (idempotent)."""
        with self._wlock.hold(True), self._rlock:
            self._closed = True
            try:
                self._rconn.close()
                self._conn.close()
            except sqlite3.Error as exc:
                raise SpoolError(f"closing spool {self._path}: {exc}") from exc

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
