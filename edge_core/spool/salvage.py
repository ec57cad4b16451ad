"""Salvage of a damaged spool file.

Theory of operation: a damaged file is never deleted and never silently replaced. It is renamed
aside (``<name>.corrupt-<UTC timestamp>``, with its ``-wal`` beside it so that committed but not
yet checkpointed transactions stay readable), a fresh file is created at the original path, and
every row that SQLite can still read is copied into it table by table in rowid order. A read that
fails (a damaged page) is skipped by probing forward with growing steps, so one bad page costs
the rows on it, not the rest of the table. The outcome is a :class:`SalvageReport`, logged at
ERROR, recorded in the new file's ``salvages`` table and exposed by ``Spool.salvage_report``.

Schema v4 (seal watermarks): a reading keeps its id, moved into its class's id range (files
older than v4 had one global sequence), and readings at or below their class's seal mark (sealed:
their values are in an outbox payload) are not copied. The marks are those of the damaged file,
raised to the id range of every salvaged outbox batch; if neither could be read, sealed readings
whose batch was already acknowledged may be sent a second time (the cloud deduplicates by key).
Schema v5 (integer dictionary): readings of a v5 file are read with their meter and OBIS ids and
named through the file's ``meters`` and ``channels`` (a reading whose name cannot be read is
lost); the new file gets its own dictionary.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SalvageReport", "move_aside", "salvage_rows"]

log = logging.getLogger(__name__)

_READING_COLS = "meter, obis, capture_time, value, scaler, unit, status, data_class, stored_at"
_READING_ID_COLS = (
    "meter_id, channel_id, capture_time, value, scaler, unit, status, data_class, stored_at"
)
_OUTBOX_COLS = "batch_id, data_class, topic, payload, created, attempts, n_readings"
_OUTBOX_RANGE = ", first_id, last_id"
_CLASS_SHIFT = 56  # as edge_core.spool.store: id = (data_class << 56) | sequence
_SEQ_MASK = (1 << _CLASS_SHIFT) - 1
_MAX_PROBES = 64


@dataclass(frozen=True, slots=True)
class SalvageReport:
    """What happened to a damaged spool file.

    ``readings`` / ``messages``: rows copied into the new file; ``lost_estimate``: rows the
    damaged file claimed but that could not be read (-1 when even the count was unreadable).
    """

    path: str
    kept_at: str
    problem: str
    readings: int
    messages: int
    lost_estimate: int
    at: float


def move_aside(path: Path) -> Path:
    """Rename ``path`` (and its -wal/-shm) to ``<name>.corrupt-<timestamp>``; returns the new
    path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    kept = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while kept.exists():
        kept = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    os.replace(path, kept)
    for suffix in ("-wal", "-shm"):
        side = Path(str(path) + suffix)
        if side.exists():
            if suffix == "-shm":
                side.unlink()  # the shared-memory index is rebuilt from the WAL
            else:
                os.replace(side, Path(str(kept) + suffix))
    return kept


def _scan(conn: sqlite3.Connection, table: str, cols: str) -> tuple[list[tuple[object, ...]], int]:
    """Every readable row of ``table`` (rowid order, the rowid first) and the number of failed
    probes."""
    rows: list[tuple[object, ...]] = []
    last = -(1 << 63)
    failures = 0
    step = 1
    while True:
        try:
            chunk = conn.execute(
                f"SELECT rowid, {cols} FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT 512",
                (last,),
            ).fetchall()
        except sqlite3.DatabaseError:
            failures += 1
            if failures > _MAX_PROBES * 64 or last >= (1 << 62):
                break
            # skip forward past the damaged page, growing the step while it keeps failing
            last = max(last, 0) + step
            step = min(step * 2, 1 << 20)
            continue
        if not chunk:
            break
        step = 1
        rows.extend(tuple(r) for r in chunk)
        last = int(chunk[-1][0])
    return rows, failures


def _count(conn: sqlite3.Connection, table: str) -> int:
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    except sqlite3.DatabaseError:
        return -1


def _has_column(conn: sqlite3.Connection, table: str, column: str) -> bool:
    try:
        return any(r[1] == column for r in conn.execute(f"PRAGMA table_info({table})"))
    except sqlite3.DatabaseError:
        return True  # assume the current layout; a failing scan then salvages nothing


def salvage_rows(kept: Path, new: sqlite3.Connection, problem: str, path: Path) -> SalvageReport:
    """Copy the readable rows of the damaged file ``kept`` into the (fresh, migrated) ``new``
    connection, record the salvage there and return the report."""
    readings: list[tuple[object, ...]] = []
    messages: list[tuple[object, ...]] = []
    high_water: list[tuple[object, ...]] = []
    marks_rows: list[tuple[object, ...]] = []
    claimed = -1
    ranged = False
    try:
        old = sqlite3.connect(str(kept), isolation_level=None)
    except sqlite3.DatabaseError:
        old = None
    if old is not None:
        try:
            ranged = _has_column(old, "outbox", "last_id")
            by_id = _has_column(old, "readings", "meter_id")
            for table, cols, sink in (
                ("readings", _READING_ID_COLS if by_id else _READING_COLS, readings),
                ("outbox", _OUTBOX_COLS + (_OUTBOX_RANGE if ranged else ""), messages),
                ("high_water", "meter, obis, data_class, capture_time", high_water),
                ("seal_marks", "data_class, through_id", marks_rows),
            ):
                try:
                    got, _ = _scan(old, table, cols)
                except sqlite3.DatabaseError:
                    got = []
                sink.extend(got)
            if by_id:
                readings = _named(old, readings)
            counts = [_count(old, "readings"), _count(old, "outbox")]
            claimed = -1 if -1 in counts else sum(counts)
        finally:
            old.close()
    good_messages = [m[1:] if ranged else (*m[1:], 0, -1) for m in messages if _message_ok(m)]
    marks: dict[int, int] = {}
    for _, dc, through in marks_rows:
        if isinstance(dc, int) and isinstance(through, int):
            marks[dc] = max(marks.get(dc, 0), through)
    for m in good_messages:
        dc, last = m[1], m[8]
        if isinstance(dc, int) and isinstance(last, int) and last >= 0:
            marks[dc] = max(marks.get(dc, dc << _CLASS_SHIFT), last)
    kept_readings = []
    for r in readings:
        if not _reading_ok(r[1:]):
            continue
        rid, dc = int(r[0]), int(r[8])  # type: ignore[call-overload]
        rid = (dc << _CLASS_SHIFT) | (rid & _SEQ_MASK)
        if rid > marks.get(dc, -1):
            kept_readings.append((rid, *r[1:]))
    new.execute("BEGIN IMMEDIATE")
    try:
        new.executemany(
            "INSERT OR IGNORE INTO meters (name) VALUES (?)",
            sorted({(r[1],) for r in kept_readings}),
        )
        new.executemany(
            "INSERT OR IGNORE INTO channels (obis) VALUES (?)",
            sorted({(r[2],) for r in kept_readings}),
        )
        mids = {str(n): int(i) for i, n in new.execute("SELECT id, name FROM meters")}
        cids = {str(o): int(i) for i, o in new.execute("SELECT id, obis FROM channels")}
        new.executemany(
            f"INSERT OR IGNORE INTO readings (id, {_READING_ID_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
            [(r[0], mids[str(r[1])], cids[str(r[2])], *r[3:]) for r in kept_readings],
        )
        new.executemany(
            f"INSERT INTO outbox ({_OUTBOX_COLS}{_OUTBOX_RANGE}) VALUES (?,?,?,?,?,?,?,?,?)",
            good_messages,
        )
        new.executemany(
            "UPDATE seal_marks SET through_id = max(through_id, ?) WHERE data_class = ?",
            [(t, dc) for dc, t in marks.items()],
        )
        new.executemany(
            "INSERT OR IGNORE INTO high_water (meter, obis, data_class, capture_time) "
            "VALUES (?,?,?,?)",
            [h[1:] for h in high_water],
        )
        new.execute(
            "INSERT INTO high_water (meter, obis, data_class, capture_time) "
            "SELECT m.name, c.obis, r.data_class, MAX(r.capture_time) FROM readings r "
            "JOIN meters m ON m.id = r.meter_id JOIN channels c ON c.id = r.channel_id "
            "WHERE true GROUP BY m.name, c.obis, r.data_class "
            "ON CONFLICT (meter, obis, data_class) DO UPDATE SET capture_time = "
            "max(capture_time, excluded.capture_time)"
        )
        n_readings = int(new.execute("SELECT count(*) FROM readings").fetchone()[0])
        n_messages = int(new.execute("SELECT count(*) FROM outbox").fetchone()[0])
        lost = -1 if claimed < 0 else max(0, claimed - n_readings - n_messages)
        at = time.time()
        new.execute(
            "INSERT INTO salvages (at, kept_at, problem, readings, messages, lost_estimate) "
            "VALUES (?,?,?,?,?,?)",
            (at, str(kept), problem[:2000], n_readings, n_messages, lost),
        )
        new.execute("COMMIT")
    except BaseException:
        new.execute("ROLLBACK")
        raise
    report = SalvageReport(str(path), str(kept), problem, n_readings, n_messages, lost, at)
    log.error(
        "spool %s was damaged (%s): kept aside as %s, salvaged %d readings and %d messages, "
        "about %s rows lost",
        path,
        problem,
        kept,
        n_readings,
        n_messages,
        "an unknown number of" if lost < 0 else lost,
    )
    return report


def _named(old: sqlite3.Connection, rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    """Rows read with (rowid, meter_id, channel_id, ...) as (rowid, meter, obis, ...) through
    the damaged file's dictionary; rows whose names are unreadable are dropped."""
    meters: dict[object, object] = {}
    chans: dict[object, object] = {}
    for table, col, sink in (("meters", "name", meters), ("channels", "obis", chans)):
        try:
            sink.update((r[0], r[1]) for r in _scan(old, table, col)[0])
        except sqlite3.DatabaseError:
            continue
    return [
        (r[0], meters[r[1]], chans[r[2]], *r[3:]) for r in rows if r[1] in meters and r[2] in chans
    ]


def _reading_ok(r: tuple[object, ...]) -> bool:
    meter, obis, t, value, scaler, unit, status, dc, _ = r
    return (
        isinstance(meter, str)
        and isinstance(obis, str)
        and all(isinstance(x, int) for x in (t, value, scaler, unit, status, dc))
    )


def _message_ok(m: tuple[object, ...]) -> bool:
    _, _, dc, topic, payload, *_ = m
    return isinstance(dc, int) and isinstance(topic, str) and isinstance(payload, bytes)
