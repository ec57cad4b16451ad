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
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
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


def _v3_file(path: Path) -> None:
    """A spool file as schema v3 wrote it (global ids, class/time index, no seal marks)."""
    from edge_core.spool.schema import MIGRATIONS

    conn = sqlite3.connect(path)
    for script in MIGRATIONS[:3]:
        conn.executescript(script)
    conn.executescript("""
        INSERT INTO readings VALUES (1, 'm1', '1.0.1.8.0.255', 900, 5, 0, 30, 0, 3, 1.0);
        INSERT INTO readings VALUES (2, 'm1', '1.0.1.8.0.255', 1800, 7, 0, 30, 0, 3, 1.0);
        INSERT INTO readings VALUES (3, 'm1', '1.0.1.8.0.255', 1800, 7, 0, 30, 0, 1, 1.0);
        INSERT INTO readings VALUES (4, 'm2', '1.0.1.8.0.255', 900, 9, 0, 30, 0, 3, 1.0);
        INSERT INTO outbox VALUES (1, NULL, 0, 'alarm/x', X'7b7d', 1.0, 0, 0);
        INSERT INTO high_water VALUES ('m1', '1.0.1.8.0.255', 3, 1800);
        PRAGMA user_version = 3;
    """)
    conn.close()


def test_opens_v3_file_and_migrates_to_class_ranges(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    _v3_file(path)
    with Spool.open(path) as s:
        st = s.stats()
        assert st.backlog_readings[IC] == 3
        assert st.backlog_readings[DataClass.DAILY] == 1
        assert s.put([Reading("m1", "1.0.1.8.0.255", 900, 5, 0, 30, 0, IC)]).duplicates == 1
        assert s.last_capture("m1", "1.0.1.8.0.255") == 1800
        item = s.seal(IC, thing="d", topic="t", max_values=10)
        assert item is not None
        got = decode_batch(item.payload).readings
        assert [(r.meter, r.capture_time, r.value) for r in got] == [
            ("m1", 900, 5),
            ("m1", 1800, 7),
            ("m2", 900, 9),
        ]
        daily = s.seal(DataClass.DAILY, thing="d", topic="t", max_values=10)
        assert daily is not None
        assert len(decode_batch(daily.payload).readings) == 1
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    ids = [r[0] for r in conn.execute("SELECT id FROM readings ORDER BY id")]
    assert all(i >> 56 in (1, 3) for i in ids)
    conn.close()


def test_seal_moves_the_mark_and_reclaim_deletes_only_sealed_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    data = rows(3, 10)
    with Spool.open(path) as s:
        s.put(data)
        first = s.seal(IC, thing="d", topic="t", max_values=12)
        assert first is not None
        # sealed rows stay until reclaimed, still deduplicating, but are not backlog
        assert s.stats().backlog_readings[IC] == 18
        assert s.put(data[:3]).duplicates == 3
    with Spool.open(path) as s:  # the mark is durable: nothing sealed twice after a reopen
        second = s.seal(IC, thing="d", topic="t", max_values=100)
        assert second is not None
        a = {r.key for r in decode_batch(first.payload).readings}
        b = {r.key for r in decode_batch(second.payload).readings}
        assert not a & b
        assert a | b == {r.key for r in data}
        assert s.reclaim() == 18  # the first batch's rows went at the second seal
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 0
        row = conn.execute(
            "SELECT first_id >> 56, last_id >> 56, last_id - first_id FROM outbox WHERE id = ?",
            (second.id,),
        ).fetchone()
        conn.close()
        assert row[:2] == (int(IC), int(IC))
        # new puts get ids above the mark even though every row below it is gone
        later = rows(1, 2, t0=T0 + 86400)
        assert s.put(later).stored == 2
        third = s.seal(IC, thing="d", topic="t", max_values=100)
        assert third is not None
        assert {r.key for r in decode_batch(third.payload).readings} == {r.key for r in later}
        assert s.stats().max_write_txn_s > 0
        assert s.take_max_write_txn_s() > 0
        assert s.take_max_write_txn_s() == 0.0  # a fresh measurement starts


def test_seal_of_an_oversized_range_seals_a_shorter_range(tmp_path: Path) -> None:
    import random

    rng = random.Random(3)
    data = [
        Reading(f"m{m:04d}", "1.0.1.8.0.255", T0 + 900 * i, rng.getrandbits(60), 0, 30, 0, IC)
        for m in range(40)
        for i in range(400)
    ]
    with Spool.open(tmp_path / "s.db") as s:
        s.put(data)
        seen: set[tuple[object, ...]] = set()
        while (item := s.seal(IC, thing="d", topic="dt/x", max_values=16_000)) is not None:
            assert len(item.payload) + len(item.topic) <= 128 * 1024
            keys = {r.key for r in decode_batch(item.payload).readings}
            assert not keys & seen
            seen |= keys
        assert seen == {r.key for r in data}


def test_packed_and_row_reads_of_a_seal_encode_the_same_readings(tmp_path: Path) -> None:
    import random

    rng = random.Random(5)
    data = []
    for m in range(7):
        t = T0
        for i in range(60):
            t += rng.choice((900, 900, 1800, 17))
            scaler = 0 if i < 30 else -1  # the channel's scaler changes half way
            value = rng.randint(-(1 << 63), (1 << 63) - 1) if i % 11 == 0 else rng.randint(-5, 5)
            data.append(Reading(f"m{m}", "1.0.1.8.0.255", t, value, scaler, 30, i % 3, IC))
            data.append(Reading(f"m{m}", "1.0.10.8.0.255", t, i, 0, 30, 0, IC))
    with Spool.open(tmp_path / "s.db") as s:
        s.put(data)
        lo = s._marks[int(IC)]
        last = lo + len(data)
        packed = s._columns(lo, last, len(data), packed=True)
        rows = s._columns(lo, last, len(data), packed=False)
        assert packed is not None
        assert rows is not None
        a = decode_batch(s._encode(packed, "d", IC, 0, 3)[1]).readings
        b = decode_batch(s._encode(rows, "d", IC, 0, 3)[1]).readings
        assert a == b
        assert sorted(r.key for r in a) == sorted(r.key for r in data)
        assert {(r.key, r.value, r.scaler, r.status) for r in a} == {
            (r.key, r.value, r.scaler, r.status) for r in data
        }
        assert s._columns(lo, last, len(data) + 1, packed=True) is None  # changed meanwhile


def test_opens_v4_file_and_moves_names_into_the_dictionary(tmp_path: Path) -> None:
    from edge_core.spool.schema import MIGRATIONS

    path = tmp_path / "v4.db"
    conn = sqlite3.connect(path)
    for script in MIGRATIONS[:4]:
        conn.executescript(script)
    base = int(IC) << 56
    conn.executescript(f"""
        INSERT INTO readings VALUES ({base + 1}, 'm1', '1.0.1.8.0.255', 900, 5, 0, 30, 0, 3, 1.0);
        INSERT INTO readings VALUES ({base + 2}, 'm1', '1.0.1.8.0.255', 1800, 7, 0, 30, 0, 3, 1.0);
        INSERT INTO readings VALUES ({base + 3}, 'm2', '1.0.2.8.0.255', 900, 9, 0, 30, 0, 3, 1.0);
        UPDATE seal_marks SET through_id = {base + 1} WHERE data_class = 3;
        PRAGMA user_version = 4;
    """)
    conn.close()
    with Spool.open(path) as s:
        assert s.stats().backlog_readings[IC] == 2  # the first is sealed already
        assert s.put([Reading("m2", "1.0.2.8.0.255", 900, 9, 0, 30, 0, IC)]).duplicates == 1
        assert s.put([Reading("m3", "1.0.2.8.0.255", 900, 1, 0, 30, 0, IC)]).stored == 1
        item = s.seal(IC, thing="d", topic="t", max_values=10)
        assert item is not None
        got = [(r.meter, r.obis, r.capture_time) for r in decode_batch(item.payload).readings]
        assert got == [
            ("m1", "1.0.1.8.0.255", 1800),
            ("m2", "1.0.2.8.0.255", 900),
            ("m3", "1.0.2.8.0.255", 900),
        ]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
    assert conn.execute("SELECT count(*) FROM meters").fetchone()[0] == 3
    assert conn.execute("SELECT count(*) FROM channels").fetchone()[0] == 2
    conn.close()


def test_outbox_ids_are_never_reused(tmp_path: Path) -> None:
    # the uplink keys its waiters by outbox id: an acknowledged and deleted newest message must
    # not hand its id to the next one (SQLite's max(id) + 1 without AUTOINCREMENT)
    with Spool.open(tmp_path / "s.db") as s:
        first = s.put_message(DataClass.ALARM, "dt/ami/t/alarm/power", b"last gasp")
        s.ack(first)
        second = s.put_message(DataClass.ALARM, "dt/ami/t/alarm/power", b"restore")
        assert second > first
    with Spool.open(tmp_path / "s.db") as s:  # and across a restart
        s.ack(second)
        assert s.put_message(DataClass.ALARM, "dt/ami/t/alarm/power", b"again") > second


def test_migration_v5_to_v6_keeps_the_outbox(tmp_path: Path) -> None:
    from edge_core.spool.schema import MIGRATIONS

    path = tmp_path / "v5.db"
    conn = sqlite3.connect(path)
    for script in MIGRATIONS[:5]:
        conn.executescript(script)
    conn.executescript("""
        INSERT INTO outbox (id, batch_id, data_class, topic, payload, created, attempts,
            n_readings, first_id, last_id) VALUES (7, NULL, 0, 'dt/ami/t/alarm/power', x'7b7d',
            1.0, 2, 0, 0, -1);
        PRAGMA user_version = 5;
    """)
    conn.close()
    with Spool.open(path) as s:
        assert s.put_message(DataClass.ALARM, "dt/ami/t/alarm/power", b"{}") == 8
        s.ack(8)
        assert s.put_message(DataClass.ALARM, "dt/ami/t/alarm/power", b"{}") == 9
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("SELECT id, attempts, payload FROM outbox ORDER BY id").fetchall()[0] == (
        7,
        2,
        b"{}",
    )
    conn.close()
