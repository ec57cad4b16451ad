"""The durable spool: flow, dedupe, priority, quota, retention, migration, salvage, CLI."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from edge_core.batch import decode_batch
from edge_core.cli import main as cli_main
from edge_core.errors import SpoolCorruptError, SpoolError, SpoolFullError
from edge_core.model import DataClass, Reading
from edge_core.spool import Spool
from edge_core.spool.schema import SCHEMA_VERSION

T0 = 1_717_372_800
IC = DataClass.INTERVAL


def rows(meters: int, n: int, dc: DataClass = IC, t0: int = T0) -> list[Reading]:
    obis = "1.0.1.8.0.255" if dc == IC else f"1.0.{32 + int(dc)}.7.0.255"
    return [
        Reading(f"m{m:03d}", obis, t0 + 900 * i, 1000 * m + i, 0, 30, 0, dc)
        for m in range(meters)
        for i in range(n)
    ]


def test_put_seal_ack_flow(tmp_path: Path) -> None:
    with Spool.open(tmp_path / "s.db") as s:
        data = rows(4, 10)
        assert s.put(data).stored == 40
        r = s.put(data[:5])
        assert (r.stored, r.duplicates) == (0, 5)
        item = s.seal(IC, thing="dcu", topic="dt/ami/dcu/interval", max_values=25)
        assert item is not None
        batch = decode_batch(item.payload)
        assert len(batch.readings) <= 25
        assert batch.batch_id == item.batch_id
        # the sealed readings left the readings table: the rest seal next
        item2 = s.seal(IC, thing="dcu", topic="dt/ami/dcu/interval", max_values=100)
        assert item2 is not None
        got = {r.key for r in batch.readings} | {
            r.key for r in decode_batch(item2.payload).readings
        }
        assert got == {r.key for r in data}
        assert s.seal(IC, thing="dcu", topic="t", max_values=100) is None
        s.nack(item.id)
        assert [p.attempts for p in s.pending() if p.id == item.id] == [1]
        s.ack(item.id)
        s.ack(item2.id)
        assert s.pending() == []
        st = s.stats()
        assert st.stored[IC] == 40
        assert st.duplicates[IC] == 5
        assert st.sealed[IC] == 40
        assert st.acked[IC] == 2
        assert st.backlog[IC] == 0
        assert s.last_capture("m001", "1.0.1.8.0.255") == T0 + 900 * 9
        assert s.last_capture("m001", "1.0.2.8.0.255") is None


def test_pending_in_priority_order_and_durable(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Spool.open(path) as s:
        s.put(rows(2, 3, DataClass.DIAGNOSTIC))
        s.put(rows(2, 3, IC))
        s.seal(DataClass.DIAGNOSTIC, thing="d", topic="t/diag", max_values=100)
        s.seal(IC, thing="d", topic="t/int", max_values=100)
        s.put_message(DataClass.ON_DEMAND, "cmd/res", b"{}")
        s.put_message(DataClass.ALARM, "alarm/a", b'{"a":1}', batch_id=b"x" * 16)
        s.put_message(DataClass.DAILY, "dt/daily", b"d")
    with Spool.open(path) as s:
        order = [p.data_class for p in s.pending()]
        assert order == sorted(order)
        assert order[0] == DataClass.ALARM
        assert len(order) == 5
        assert s.pending()[0].batch_id == b"x" * 16


def test_min_age_holds_partial_batches(tmp_path: Path) -> None:
    with Spool.open(tmp_path / "s.db") as s:
        s.put(rows(1, 4))
        now = s.stats().oldest_age_s
        assert now is not None
        t = time.time()
        assert s.seal(IC, thing="d", topic="t", max_values=10, min_age_s=60, now=t) is None
        assert s.seal(IC, thing="d", topic="t", max_values=10, min_age_s=60, now=t + 61) is not None


def test_quota_evicts_lowest_class_first_and_never_alarms(tmp_path: Path) -> None:
    with Spool.open(tmp_path / "s.db", quota_bytes=20_000) as s:
        alarms = [s.put_message(DataClass.ALARM, "alarm/p", b"A" * 500) for _ in range(10)]
        s.put(rows(5, 20, DataClass.DIAGNOSTIC))
        s.put(rows(5, 20, IC))  # over quota: diagnostics go first
        st = s.stats()
        assert st.evicted[DataClass.DIAGNOSTIC] > 0
        assert st.backlog_messages[DataClass.ALARM] == 10
        assert st.used_bytes <= 20_000
        # interval keeps arriving: diagnostics gone, then oldest interval evicted
        s.put(rows(5, 16, IC, t0=T0 + 86400))
        st = s.stats()
        assert st.backlog_readings[DataClass.DIAGNOSTIC] == 0
        assert st.evicted[IC] > 0
        assert st.backlog_messages[DataClass.ALARM] == 10
        assert s.last_capture("m000", "1.0.1.8.0.255") == T0 + 86400 + 900 * 15
        ev = s.evictions()
        assert {m for dc, m, why, n in ev if dc == IC} <= {f"m{m:03d}" for m in range(5)}
        assert all(why == "quota" for *_, why, _n in ev)
        # a daily put may evict interval; alarms survive until only alarms remain
        s.put(rows(2, 10, DataClass.DAILY))
        for _ in range(100):
            try:
                s.put_message(DataClass.ALARM, "alarm/p", b"A" * 500)
            except SpoolFullError:
                break
        else:
            pytest.fail("the quota never filled")
        st = s.stats()
        # alarms evicted everything below them before the quota refused one
        assert st.backlog[IC] == 0
        assert st.backlog[DataClass.DAILY] == 0
        assert st.evicted[DataClass.DAILY] == 20
        assert st.backlog_messages[DataClass.ALARM] >= len(alarms)
        before = s.stats().backlog
        with pytest.raises(SpoolFullError):
            s.put(rows(1, 50, IC, t0=T0 + 5 * 86400))
        assert s.stats().backlog == before  # nothing stored by the refused put


def test_retention_expires_old_captures(tmp_path: Path) -> None:
    with Spool.open(tmp_path / "s.db", retention={IC: 86400}) as s:
        s.put(rows(2, 4, IC, t0=T0))
        s.put(rows(2, 4, IC, t0=T0 + 10 * 86400))
        assert s.expire(now=T0 + 10 * 86400 + 3600) == 8
        assert s.stats().backlog[IC] == 8
        assert any(why == "retention" for *_, why, _n in s.evictions())


def test_opens_v1_file_and_migrates(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE readings (id INTEGER PRIMARY KEY, meter TEXT NOT NULL, obis TEXT NOT NULL,
          capture_time INTEGER NOT NULL, value INTEGER NOT NULL, scaler INTEGER NOT NULL,
          unit INTEGER NOT NULL, status INTEGER NOT NULL, data_class INTEGER NOT NULL,
          stored_at REAL NOT NULL, UNIQUE (meter, obis, capture_time));
        CREATE INDEX readings_class_time ON readings (data_class, capture_time);
        CREATE TABLE outbox (id INTEGER PRIMARY KEY, batch_id BLOB, data_class INTEGER NOT NULL,
          topic TEXT NOT NULL, payload BLOB NOT NULL, created REAL NOT NULL,
          attempts INTEGER NOT NULL DEFAULT 0, n_readings INTEGER NOT NULL DEFAULT 0);
        CREATE INDEX outbox_class_id ON outbox (data_class, id);
        CREATE TABLE evictions (data_class INTEGER NOT NULL, meter TEXT NOT NULL,
          reason TEXT NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (data_class, meter, reason));
        INSERT INTO readings VALUES (1, 'm1', '1.0.1.8.0.255', 900, 5, 0, 30, 0, 3, 1.0);
        INSERT INTO readings VALUES (2, 'm1', '1.0.1.8.0.255', 1800, 7, 0, 30, 0, 3, 1.0);
        INSERT INTO outbox VALUES (1, NULL, 0, 'alarm/x', X'7b7d', 1.0, 2, 0);
        PRAGMA user_version = 1;
    """)
    conn.close()
    with Spool.open(path) as s:
        assert s.last_capture("m1", "1.0.1.8.0.255") == 1800
        assert [(p.topic, p.attempts) for p in s.pending()] == [("alarm/x", 2)]
        item = s.seal(IC, thing="d", topic="t", max_values=10)
        assert item is not None
        assert [r.value for r in decode_batch(item.payload).readings] == [5, 7]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    conn.close()


def test_daily_and_interval_captures_at_the_same_midnight_are_both_kept(tmp_path: Path) -> None:
    midnight = 1_700_006_400
    interval = Reading("m1", "1.0.1.8.0.255", midnight, 1000, 0, 30, 0, DataClass.INTERVAL)
    daily = Reading("m1", "1.0.1.8.0.255", midnight, 1000, 0, 30, 0, DataClass.DAILY)
    with Spool.open(tmp_path / "s.db") as s:
        assert s.put([interval]).stored == 1
        assert s.put([daily]).stored == 1  # another stream, not a duplicate
        assert s.put([daily]).duplicates == 1
        assert s.last_capture("m1", "1.0.1.8.0.255", DataClass.DAILY) == midnight
        assert s.last_capture("m1", "1.0.1.8.0.255") == midnight
        assert s.last_capture("m1", "1.0.1.8.0.255", DataClass.ON_DEMAND) is None


def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(SpoolError, match="newer"):
        Spool.open(path)


def _corrupt(path: Path, pages: range, page_size: int = 4096) -> None:
    with open(path, "r+b") as f:
        for p in pages:
            f.seek(p * page_size)
            f.write(bytes([0xA5]) * page_size)


def test_corrupted_file_is_salvaged_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Spool.open(path) as s:
        for day in range(6):
            s.put(rows(30, 96, IC, t0=T0 + day * 86400))
        s.put_message(DataClass.ALARM, "alarm/p", b"keep me")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    _corrupt(path, range(pages // 2, pages // 2 + 3))
    with Spool.open(path) as s:
        rep = s.salvage_report
        assert rep is not None
        assert Path(rep.kept_at).exists()
        assert ".corrupt-" in rep.kept_at
        total = 30 * 96 * 6
        assert 0 < rep.readings < total + 1
        assert s.stats().salvages == 1
        assert s.stats().backlog[IC] == rep.readings
        s.put(rows(1, 2, IC, t0=T0 + 30 * 86400))  # usable afterwards
    with Spool.open(path) as s:  # the next open finds a sound file
        assert s.salvage_report is None
        assert s.stats().salvages == 1


def test_garbage_file_is_kept_aside_not_silently_replaced(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not sqlite" * 500)
    with pytest.raises(SpoolCorruptError) as info:
        Spool.open(path, on_corrupt="raise")
    assert Path(info.value.kept_at).read_bytes().startswith(b"this is not sqlite")
    with Spool.open(path) as s:  # the salvaged (empty) file records what happened
        assert s.stats().salvages == 1


def test_cli_stats_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.db"
    with Spool.open(path) as s:
        s.put(rows(2, 3))
    assert cli_main(["spool", "stats", "--path", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["stored"]["interval"] == 6
    assert out["backlog_readings"]["interval"] == 6
    assert cli_main(["spool", "stats", "--path", str(path)]) == 0
    assert "backlog_readings" in capsys.readouterr().out
    assert cli_main(["spool", "stats", "--path", str(tmp_path / "none.db")]) == 2


def test_concurrent_puts_group_commit_and_each_caller_gets_its_own_result(tmp_path: Path) -> None:
    import threading

    with Spool.open(tmp_path / "s.db") as s:
        results: dict[int, object] = {}
        chunks = [
            [
                Reading(f"g{k:02d}", "1.0.1.8.0.255", T0 + 900 * i, i, 0, 30, 0, IC)
                for i in range(96)
            ]
            for k in range(12)
        ]
        chunks.append(chunks[0])  # a whole duplicate put

        def worker(k: int) -> None:
            results[k] = s.put(chunks[k])

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(chunks))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        stored = [results[k].stored for k in range(len(chunks))]  # type: ignore[attr-defined]
        assert sorted(stored) == [0] + [96] * 12  # one of the two identical puts was a duplicate
        st = s.stats()
        assert st.backlog_readings[IC] == 12 * 96
        assert st.stored[IC] == 12 * 96
        assert st.duplicates[IC] == 96


def test_put_many_refuses_only_the_put_over_quota(tmp_path: Path) -> None:
    with Spool.open(tmp_path / "s.db", quota_bytes=20_000) as s:
        for _ in range(100):
            try:
                s.put_message(DataClass.ALARM, "alarm/p", b"A" * 500)
            except SpoolFullError:
                break

        out = s.put_many([[], rows(1, 5, DataClass.ALARM), rows(3, 40, IC)])
        assert out[0] == s.put_many([[]])[0]
        assert isinstance(out[2], SpoolFullError)
        assert s.stats().backlog_readings[IC] == 0


def test_seal_deletes_exactly_the_rows_it_encoded_and_sorts_by_obis_bytes(tmp_path: Path) -> None:
    with Spool.open(tmp_path / "s.db") as s:
        # "1.0.10.8.0.255" sorts before "1.0.2.8.0.255" as text, after it as OBIS bytes
        mixed = [
            Reading("m1", obis, T0 + 900 * i, 7 * i + k, 0, 30, 0, IC)
            for k, obis in enumerate(("1.0.10.8.0.255", "1.0.2.8.0.255", "1.0.1.8.0.255"))
            for i in range(50)
        ]
        s.put(mixed)
        item = s.seal(IC, thing="t", topic="dt/x", max_values=120)
        assert item is not None
        got = decode_batch(item.payload).readings
        assert len(got) == 120
        assert [r.obis for r in got] == sorted(
            (r.obis for r in got), key=lambda o: bytes(int(x) for x in o.split("."))
        )
        assert s.stats().backlog_readings[IC] == 30
        rest = s.seal(IC, thing="t", topic="dt/x", max_values=1000)
        assert rest is not None
        keys = {r.key for r in got} | {r.key for r in decode_batch(rest.payload).readings}
        assert keys == {r.key for r in mixed}
