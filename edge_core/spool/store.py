"""The durable spool: the one hand-off between acquisition and the uplink.

Theory of operation
-------------------
* Durability. One SQLite file in WAL mode with ``synchronous=FULL``: every public method that
  changes state runs one ``BEGIN IMMEDIATE ... COMMIT`` transaction and returns only after the
  commit, so a reading whose :meth:`Spool.put` returned survives a kill -9 or power loss.
* Flow. ``put`` stores readings (dedupe on (meter, OBIS, data class, capture time) while they
  are unsent:
  a duplicate is counted, not stored). ``seal`` moves the oldest readings of one class into one
  encoded batch in the ``outbox`` in a single transaction, so a reading is always in exactly one
  of the two tables. ``put_message`` puts a ready payload (alarm, JSON event, on-demand
  response) straight into the outbox. ``pending`` lists the outbox by priority (class, then
  age), ``ack`` deletes a message after the publish was acknowledged, ``nack`` counts an attempt.
  A crash between publish and ack resends the message: delivery is at-least-once and the cloud
  deduplicates by batch id.
* Backfill. ``high_water`` keeps the latest capture time ever stored per (meter, OBIS, data
  class); it is
  updated in the put transaction and survives sealing and acking (``last_capture``).
* Quota and retention. The spool accounts the bytes its rows occupy (an estimate per row: see
  ``_READING_COST``; payloads at their length). When a put would exceed ``quota_bytes``, rows are
  evicted from the lowest class first, outbox before readings within a class (sealed batches
  hold the oldest data), oldest first; a put may evict only its own class and lower ones, alarms
  are never evicted, and when nothing evictable is left the put fails with SpoolFullError and
  stores nothing. Per-class ``retention`` (seconds, on capture time for readings and creation
  time for messages) is applied by :meth:`Spool.expire` and by ``seal``. Every eviction is
  counted per class, meter and reason in ``evictions``.
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
  encodes them *outside* the write lock, then one transaction inserts the outbox row and
  deletes exactly the ids it read (if any of them vanished meanwhile, e.g. evicted, nothing is
  written and the seal starts again); a group commit carries at most ``_GROUP_MAX_ROWS`` rows.
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

from edge_core.batch import (
    DEFAULT_LEVEL,
    IOT_CORE_MAX_MESSAGE_BYTES,
    Columns,
    decode_batch,
    encode_prefix,
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
_EVICT_CHUNK_MAX = 5000
# Rows per group commit: bounds a put transaction to a few tens of ms of the write lock.
_GROUP_MAX_ROWS = 8192
_SEAL_RETRIES = 5


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
    of the oldest backlog entry (stored_at / created), None when empty.
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
        }


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
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    self._used = used_before
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.DatabaseError as exc:
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

    def _measure_used(self) -> int:
        try:
            r = self._conn.execute(
                "SELECT coalesce(sum(length(meter) + length(obis)), 0) + count(*) * ? "
                "FROM readings",
                (_READING_COST,),
            ).fetchone()[0]
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
            except BaseException:
                self._used = used_before
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except BaseException as exc:
            err: BaseException = exc
            if isinstance(exc, sqlite3.DatabaseError) and _is_corruption(exc):
                err = SpoolCorruptError(f"spool {self._path} is damaged: {exc}; reopen to salvage")
                err.__cause__ = exc
            elif isinstance(exc, sqlite3.Error):
                err = SpoolError(f"spool {self._path}: {exc}")
                err.__cause__ = exc
            for job in group:
                job.error, job.done = err, True
            return
        for job, res, e in results:
            job.result, job.error, job.done = res, e, True

    def _put_rows(self, conn: sqlite3.Connection, job: _PutJob) -> PutResult:
        top = int(conn.execute("SELECT coalesce(max(id), 0) FROM readings").fetchone()[0])
        bumps: dict[tuple[int, str], int] = {}
        for dc, rows in job.by_class.items():
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO readings (meter, obis, capture_time, value, scaler, "
                "unit, status, data_class, stored_at) VALUES (?,?,?,?,?,?,?,?,?)",
                rows,
            )
            n = conn.total_changes - before
            bumps[(dc, "stored")] = n
            bumps[(dc, "duplicates")] = len(rows) - n
        # Accounting and high-water marks from the rows just inserted (ids above ``top``), in
        # SQL: a duplicate was already counted and marked when it was stored.
        stored, text = conn.execute(
            "SELECT count(*), coalesce(sum(length(meter) + length(obis)), 0) "
            "FROM readings NOT INDEXED "
            "WHERE id > ?",
            (top,),
        ).fetchone()
        self._used += int(stored) * _READING_COST + int(text)
        conn.execute(
            "INSERT INTO high_water (meter, obis, data_class, capture_time) "
            "SELECT meter, obis, data_class, max(capture_time) FROM readings NOT INDEXED "
            "WHERE id > ? "
            "GROUP BY meter, obis, data_class "
            "ON CONFLICT (meter, obis, data_class) DO UPDATE SET capture_time = "
            "max(capture_time, excluded.capture_time)",
            (top,),
        )
        self._bump(conn, bumps)
        self._enforce_quota(conn, DataClass(min(job.by_class)), max_reading_id=top)
        return PutResult(int(stored), job.rows - int(stored))

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
        oldest_first = (
            "SELECT id FROM readings WHERE data_class = ? ORDER BY capture_time, id LIMIT ?"
        )
        with self._read() as rconn:
            if min_age_s > 0:
                count, oldest = rconn.execute(
                    f"SELECT count(*), min(stored_at) FROM readings WHERE id IN ({oldest_first})",
                    (int(dc), max_values),
                ).fetchone()
                if not count or (count < max_values and when - float(oldest) < min_age_s):
                    return None
            # SQLite (in C, without the GIL) returns the rows in the encoder's order.
            rows = rconn.execute(
                "SELECT id, meter, obis, capture_time, value, scaler, unit, status FROM readings "
                f"WHERE id IN ({oldest_first}) ORDER BY meter, obis, capture_time",
                (int(dc), max_values),
            ).fetchall()
        if not rows:
            return None
        ids, meters, obis, times, values, scalers, units, statuses = zip(*rows, strict=True)
        cols = Columns(meters, obis, times, values, scalers, units, statuses)
        batch_id, payload, n = encode_prefix(
            cols, thing=thing, data_class=dc, created=int(when), max_bytes=max_bytes, level=level
        )
        gone = [(i,) for i in ids[:n]]
        text = sum(len(m) + len(o) for m, o in zip(meters[:n], obis[:n], strict=True))
        with self._txn() as conn:
            before = conn.total_changes
            conn.executemany("DELETE FROM readings WHERE id = ?", gone)
            if conn.total_changes - before != n:
                raise _Changed
            cur = conn.execute(
                "INSERT INTO outbox (batch_id, data_class, topic, payload, created, attempts, "
                "n_readings) VALUES (?,?,?,?,?,0,?)",
                (batch_id, int(dc), topic, payload, when, n),
            )
            self._used += _OUTBOX_COST + len(payload) + len(topic.encode())
            self._used -= n * _READING_COST + text
            self._bump(conn, {(int(dc), "sealed"): n, (int(dc), "batches"): 1})
            return OutboxItem(int(cur.lastrowid or 0), batch_id, dc, topic, payload, when, 0)

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
        gone = conn.execute(
            "DELETE FROM readings WHERE data_class = ? AND capture_time < ? "
            "RETURNING meter, length(meter) + length(obis)",
            (int(dc), cutoff),
        ).fetchall()
        per_meter = Counter(str(g[0]) for g in gone)
        self._used -= sum(_READING_COST + int(g[1]) for g in gone)
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
        max_reading_id: int = 1 << 62,
        max_message_id: int = 1 << 62,
    ) -> None:
        """Evict until within quota; rows newer than the ``max_*_id`` bounds (those of the
        put being made) are never evicted: a put that could only evict itself is refused."""
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
            while self._used > self._quota:
                chunk = max(1, min(_EVICT_CHUNK_MAX, (self._used - self._quota) // _READING_COST))
                gone = conn.execute(
                    "DELETE FROM readings WHERE id IN (SELECT id FROM readings "
                    "WHERE data_class = ? AND id <= ? ORDER BY capture_time, id LIMIT ?) "
                    "RETURNING meter, length(meter) + length(obis)",
                    (c, max_reading_id, chunk),
                ).fetchall()
                if not gone:
                    break
                self._used -= sum(_READING_COST + int(g[1]) for g in gone)
                per_meter.update(str(g[0]) for g in gone)
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
            backlog_r = conn.execute(
                "SELECT data_class, count(*), min(stored_at) FROM readings GROUP BY data_class"
            ).fetchall()
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
        )

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
