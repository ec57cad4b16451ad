"""Salvage of a damaged spool file.

Theory of operation: a damaged file is never deleted and never silently replaced. It is renamed
aside (``<name>.corrupt-<UTC timestamp>``, with its ``-wal`` beside it so that committed but not
yet checkpointed transactions stay readable), a fresh file is created at the original path, and
every row that SQLite can still read is copied into it table by table in rowid order. A read that
fails (a damaged page) is skipped by probing forward with growing steps, so one bad page costs
the rows on it, not the rest of the table. The outcome is a :class:`SalvageReport`, logged at
ERROR, recorded in the new file's ``salvages`` table and exposed by ``Spool.salvage_report``.
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
_OUTBOX_COLS = "batch_id, data_class, topic, payload, created, attempts, n_readings"
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
    """Every readable row of ``table`` (rowid order) and the number of failed probes."""
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
        rows.extend(tuple(r[1:]) for r in chunk)
        last = int(chunk[-1][0])
    return rows, failures


def _count(conn: sqlite3.Connection, table: str) -> int:
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    except sqlite3.DatabaseError:
        return -1


def salvage_rows(kept: Path, new: sqlite3.Connection, problem: str, path: Path) -> SalvageReport:
    """Copy the readable rows of the damaged file ``kept`` into the (fresh, migrated) ``new``
    connection, record the salvage there and return the report."""
    readings: list[tuple[object, ...]] = []
    messages: list[tuple[object, ...]] = []
    high_water: list[tuple[object, ...]] = []
    claimed = -1
    try:
        old = sqlite3.connect(str(kept), isolation_level=None)
    except sqlite3.DatabaseError:
        old = None
    if old is not None:
        try:
            for table, cols, sink in (
                ("readings", _READING_COLS, readings),
                ("outbox", _OUTBOX_COLS, messages),
                ("high_water", "meter, obis, data_class, capture_time", high_water),
            ):
                try:
                    got, _ = _scan(old, table, cols)
                except sqlite3.DatabaseError:
                    got = []
                sink.extend(got)
            counts = [_count(old, "readings"), _count(old, "outbox")]
            claimed = -1 if -1 in counts else sum(counts)
        finally:
            old.close()
    new.execute("BEGIN IMMEDIATE")
    try:
        new.executemany(
            f"INSERT OR IGNORE INTO readings ({_READING_COLS}) VALUES (?,?,?,?,?,?,?,?,?)",
            [r for r in readings if _reading_ok(r)],
        )
        new.executemany(
            f"INSERT INTO outbox ({_OUTBOX_COLS}) VALUES (?,?,?,?,?,?,?)",
            [m for m in messages if _message_ok(m)],
        )
        new.executemany(
            "INSERT OR IGNORE INTO high_water (meter, obis, data_class, capture_time) "
            "VALUES (?,?,?,?)",
            high_water,
        )
        new.execute(
            "INSERT INTO high_water (meter, obis, data_class, capture_time) "
            "SELECT meter, obis, data_class, MAX(capture_time) FROM readings WHERE true "
            "GROUP BY meter, obis, data_class "
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


def _reading_ok(r: tuple[object, ...]) -> bool:
    meter, obis, t, value, scaler, unit, status, dc, _ = r
    return (
        isinstance(meter, str)
        and isinstance(obis, str)
        and all(isinstance(x, int) for x in (t, value, scaler, unit, status, dc))
    )


def _message_ok(m: tuple[object, ...]) -> bool:
    _, dc, topic, payload, *_ = m
    return isinstance(dc, int) and isinstance(topic, str) and isinstance(payload, bytes)
