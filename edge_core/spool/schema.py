"""Spool schema and its migrations (``PRAGMA user_version``).

``MIGRATIONS[i]`` takes a file from version ``i`` to ``i + 1``; a new file runs them all. A file
whose version is newer than :data:`SCHEMA_VERSION` is refused (no downgrade).

Version 1: readings, outbox, evictions.
Version 2: high-water marks for backfill (``high_water``), persistent counters (``counters``),
and the salvage log (``salvages``); high_water is filled from the readings present.
Version 3: the data class joins the dedupe key and the high-water mark. A daily (midnight
billing) capture of +A and the load-profile capture of +A at the same midnight are the same
(meter, OBIS, time) but belong to different streams; before v3 the second was refused as a
duplicate and the daily stream lost its midnight values.
Version 4: sealing by watermark. A reading's id is ``(data_class << 56) | sequence``, so each
class is one contiguous, insertion-ordered range of the rowid B-tree (no class/time index). A
seal no longer deletes its readings: it records the id range it encoded in its outbox row
(``first_id``, ``last_id``) and moves the class's watermark (``seal_marks.through_id``: every
reading of the class with an id up to it is sealed). Sealed readings are deleted later, in short
chunks, once no outbox row covers them any more (``Spool.reclaim``). Existing ids are moved into
their class's range (order kept); nothing of a v3 file is sealed yet, so every mark starts at
its class's base.
Version 5: integer dictionary. Meter ids and OBIS codes are stored once (``meters``,
``channels``) and readings refer to them by small integers, so the dedupe key
(meter_id, channel_id, data class, capture time) and the row are about half the size of their
text versions, and a put costs less (a smaller, faster UNIQUE index). The ids of the readings
(their class ranges) are kept.
Version 6: outbox ids are never reused (AUTOINCREMENT). Without it SQLite hands out max(id) + 1,
so once the newest message was acknowledged and deleted, the next alarm could get the id the
uplink was still settling for the previous one, and its waiter was lost.
"""

from __future__ import annotations

from typing import Final

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]

_V1: Final = """
CREATE TABLE readings (
    id INTEGER PRIMARY KEY,
    meter TEXT NOT NULL,
    obis TEXT NOT NULL,
    capture_time INTEGER NOT NULL,
    value INTEGER NOT NULL,
    scaler INTEGER NOT NULL,
    unit INTEGER NOT NULL,
    status INTEGER NOT NULL,
    data_class INTEGER NOT NULL,
    stored_at REAL NOT NULL,
    UNIQUE (meter, obis, capture_time)
);
CREATE INDEX readings_class_time ON readings (data_class, capture_time);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    batch_id BLOB,
    data_class INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    n_readings INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_class_id ON outbox (data_class, id);
CREATE TABLE evictions (
    data_class INTEGER NOT NULL,
    meter TEXT NOT NULL,
    reason TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (data_class, meter, reason)
);
"""

_V2: Final = """
CREATE TABLE high_water (
    meter TEXT NOT NULL,
    obis TEXT NOT NULL,
    capture_time INTEGER NOT NULL,
    PRIMARY KEY (meter, obis)
) WITHOUT ROWID;
INSERT INTO high_water (meter, obis, capture_time)
    SELECT meter, obis, MAX(capture_time) FROM readings GROUP BY meter, obis;
CREATE TABLE counters (
    data_class INTEGER NOT NULL,
    name TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (data_class, name)
) WITHOUT ROWID;
CREATE TABLE salvages (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    kept_at TEXT NOT NULL,
    problem TEXT NOT NULL,
    readings INTEGER NOT NULL,
    messages INTEGER NOT NULL,
    lost_estimate INTEGER NOT NULL
);
"""

_V3: Final = """
CREATE TABLE readings_v3 (
    id INTEGER PRIMARY KEY,
    meter TEXT NOT NULL,
    obis TEXT NOT NULL,
    capture_time INTEGER NOT NULL,
    value INTEGER NOT NULL,
    scaler INTEGER NOT NULL,
    unit INTEGER NOT NULL,
    status INTEGER NOT NULL,
    data_class INTEGER NOT NULL,
    stored_at REAL NOT NULL,
    UNIQUE (meter, obis, data_class, capture_time)
);
INSERT INTO readings_v3 (id, meter, obis, capture_time, value, scaler, unit, status, data_class,
    stored_at)
    SELECT id, meter, obis, capture_time, value, scaler, unit, status, data_class, stored_at
    FROM readings;
DROP TABLE readings;
ALTER TABLE readings_v3 RENAME TO readings;
CREATE INDEX readings_class_time ON readings (data_class, capture_time);
CREATE TABLE high_water_v3 (
    meter TEXT NOT NULL,
    obis TEXT NOT NULL,
    data_class INTEGER NOT NULL,
    capture_time INTEGER NOT NULL,
    PRIMARY KEY (meter, obis, data_class)
) WITHOUT ROWID;
INSERT INTO high_water_v3 (meter, obis, data_class, capture_time)
    SELECT meter, obis, data_class, MAX(capture_time) FROM readings
    GROUP BY meter, obis, data_class;
INSERT INTO high_water_v3 (meter, obis, data_class, capture_time)
    SELECT meter, obis, 3, capture_time FROM high_water WHERE true
    ON CONFLICT (meter, obis, data_class) DO UPDATE SET capture_time =
    max(capture_time, excluded.capture_time);
DROP TABLE high_water;
ALTER TABLE high_water_v3 RENAME TO high_water
"""

_V4: Final = """
CREATE TABLE readings_v4 (
    id INTEGER PRIMARY KEY,
    meter TEXT NOT NULL,
    obis TEXT NOT NULL,
    capture_time INTEGER NOT NULL,
    value INTEGER NOT NULL,
    scaler INTEGER NOT NULL,
    unit INTEGER NOT NULL,
    status INTEGER NOT NULL,
    data_class INTEGER NOT NULL,
    stored_at REAL NOT NULL,
    UNIQUE (meter, obis, data_class, capture_time)
);
INSERT INTO readings_v4 (id, meter, obis, capture_time, value, scaler, unit, status, data_class,
    stored_at)
    SELECT (data_class << 56) | (id & 72057594037927935), meter, obis, capture_time, value,
    scaler, unit, status, data_class, stored_at
    FROM readings ORDER BY id;
DROP TABLE readings;
ALTER TABLE readings_v4 RENAME TO readings;
ALTER TABLE outbox ADD COLUMN first_id INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN last_id INTEGER NOT NULL DEFAULT -1;
CREATE TABLE seal_marks (
    data_class INTEGER PRIMARY KEY,
    through_id INTEGER NOT NULL
);
INSERT INTO seal_marks (data_class, through_id)
    VALUES (0, 0), (1, 1 << 56), (2, 2 << 56), (3, 3 << 56), (4, 4 << 56)
"""

_V5: Final = """
CREATE TABLE meters (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE channels (
    id INTEGER PRIMARY KEY,
    obis TEXT NOT NULL UNIQUE
);
INSERT INTO meters (name) SELECT DISTINCT meter FROM readings ORDER BY meter;
INSERT INTO channels (obis) SELECT DISTINCT obis FROM readings ORDER BY obis;
CREATE TABLE readings_v5 (
    id INTEGER PRIMARY KEY,
    meter_id INTEGER NOT NULL,
    channel_id INTEGER NOT NULL,
    capture_time INTEGER NOT NULL,
    value INTEGER NOT NULL,
    scaler INTEGER NOT NULL,
    unit INTEGER NOT NULL,
    status INTEGER NOT NULL,
    data_class INTEGER NOT NULL,
    stored_at REAL NOT NULL,
    UNIQUE (meter_id, channel_id, data_class, capture_time)
);
INSERT INTO readings_v5 (id, meter_id, channel_id, capture_time, value, scaler, unit, status,
    data_class, stored_at)
    SELECT r.id, m.id, c.id, r.capture_time, r.value, r.scaler, r.unit, r.status, r.data_class,
    r.stored_at
    FROM readings r JOIN meters m ON m.name = r.meter JOIN channels c ON c.obis = r.obis
    ORDER BY r.id;
DROP TABLE readings;
ALTER TABLE readings_v5 RENAME TO readings
"""

_V6: Final = """
CREATE TABLE outbox_v6 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id BLOB,
    data_class INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    n_readings INTEGER NOT NULL DEFAULT 0,
    first_id INTEGER NOT NULL DEFAULT 0,
    last_id INTEGER NOT NULL DEFAULT -1
);
INSERT INTO outbox_v6 (id, batch_id, data_class, topic, payload, created, attempts, n_readings,
    first_id, last_id)
    SELECT id, batch_id, data_class, topic, payload, created, attempts, n_readings, first_id,
    last_id FROM outbox ORDER BY id;
DROP TABLE outbox;
ALTER TABLE outbox_v6 RENAME TO outbox;
CREATE INDEX outbox_class_id ON outbox (data_class, id)
"""

MIGRATIONS: Final[tuple[str, ...]] = (_V1, _V2, _V3, _V4, _V5, _V6)
SCHEMA_VERSION: Final = len(MIGRATIONS)
