from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from cloud.ingest import Ingestor
from cloud.storage.base import Stores
from cloud.storage.local import SqliteIntervalStore, query_lake
from edge_core.alarms.messages import AlarmMessage, AlarmType, alarm_id

from .conftest import ENERGY, T0, VOLTAGE, batch_bytes, readings, registry_records


def test_ct_pt_change_mid_range_scales_each_interval_by_its_own_ratio(stores: Stores) -> None:
    stores.registry.upsert(registry_records())
    rs = readings("m-ct", ENERGY, T0 + 41400, 4, scaler=-1) + readings(
        "m-ct", VOLTAGE, T0 + 41400, 4, base=2300, inc=1, scaler=-1, unit=35
    )
    payload, bid = batch_bytes(rs)
    result = Ingestor(stores).handle_data("dt/ami/dcu-1/interval", payload)
    assert result.status == "stored"
    assert result.batch_id == bid.hex()
    assert result.stored == 8
    rows = stores.intervals.query("m-ct", T0, T0 + 86400, ENERGY)
    # two intervals before the change (CT 40), two after (CT 80); PT 100 throughout
    assert [r.capture_time for r in rows] == [r.capture_time for r in rs[:4]]
    want = [r.value * 0.1 * (40 if r.capture_time < T0 + 43200 else 80) * 100 for r in rs[:4]]
    assert [r.value for r in rows] == pytest.approx(want)
    assert {r.multiplier for r in rows} == {4000.0, 8000.0}
    volts = stores.intervals.query("m-ct", T0, T0 + 86400, VOLTAGE)
    assert [r.value for r in volts] == pytest.approx([x.value * 0.1 * 100 for x in rs[4:]])
    assert volts[0].unit == "V"
    latest = stores.latest.get("m-ct")
    assert latest[ENERGY].capture_time == rs[3].capture_time
    assert latest[ENERGY].value == pytest.approx(rs[3].value * 0.1 * 8000)
    assert latest[ENERGY].unit == "Wh"


def test_same_batch_twice_is_counted_once(stores: Stores) -> None:
    payload, _ = batch_bytes(readings("m-direct", ENERGY, T0, 96))
    ing = Ingestor(stores)
    assert ing.handle_data("dt/ami/dcu-1/interval", payload).stored == 96
    again = ing.handle_data("dt/ami/dcu-1/interval", payload)
    assert again.status == "duplicate"
    assert len(stores.intervals.query("m-direct", T0, T0 + 86400)) == 96


def test_overlapping_batches_store_each_key_once(stores: Stores) -> None:
    ing = Ingestor(stores)
    first, _ = batch_bytes(readings("m-direct", ENERGY, T0, 10))
    # re-read of intervals 5..14 under a new batch id
    second, _ = batch_bytes(readings("m-direct", ENERGY, T0 + 5 * 900, 10, base=1035))
    assert ing.handle_data("t", first).stored == 10
    res = ing.handle_data("t", second)
    assert (res.status, res.readings, res.stored) == ("stored", 10, 5)
    rows = stores.intervals.query("m-direct", T0, T0 + 86400)
    assert [r.capture_time for r in rows] == [T0 + i * 900 for i in range(15)]
    assert [r.value for r in rows] == [1000 + 7 * i for i in range(15)]


def test_malformed_batch_goes_to_dead_letter_without_affecting_a_good_one(stores: Stores) -> None:
    ing = Ingestor(stores, clock=lambda: T0 + 100)
    good, _ = batch_bytes(readings("m-direct", ENERGY, T0, 4))
    bad = good[:20] + b"\xff" * 30
    r_bad = ing.handle_data("dt/ami/dcu-9/interval", bad)
    r_good = ing.handle_data("dt/ami/dcu-1/interval", good)
    assert r_bad.status == "dead_letter"
    assert r_good.status == "stored"
    assert r_bad.dead_letter_key.startswith("dead-letter/2024-03-01/")
    assert stores.objects.get(r_bad.dead_letter_key) == bad
    reason = json.loads(stores.objects.get(r_bad.dead_letter_key[:-4] + ".json"))
    assert reason["topic"] == "dt/ami/dcu-9/interval"
    assert reason["reason"]
    assert len(stores.intervals.query("m-direct", T0, T0 + 86400)) == 4


def test_lambda_event_with_bad_base64_is_dead_lettered(stores: Stores) -> None:
    res = Ingestor(stores).handle_event({"topic": "dt/ami/x/interval", "data": "***"})
    assert res.status == "dead_letter"
    assert stores.objects.list("dead-letter/")


def _alarm(
    type_: AlarmType, at: int, meter: str | None = None, meters: tuple[str, ...] = (), **kw: Any
) -> dict[str, Any]:
    when = datetime.fromtimestamp(at, tz=timezone(timedelta(hours=2)))
    ms = meters or ((meter,) if meter else ())
    msg = AlarmMessage(
        type=type_,
        dcu="d",
        event_time=when,
        detected_time=when,
        id=alarm_id("d", type_, ms, when),
        seq=1,
        priority=1,
        meter=meter,
        meters=ms,
        **kw,
    )
    doc: dict[str, Any] = msg.to_dict()
    return doc


def test_alarm_messages_maintain_outages(stores: Stores) -> None:
    ing = Ingestor(stores)
    assert ing.handle_alarm(_alarm(AlarmType.OUTAGE, T0, "m1")).keys == ("m1",)
    gasp = _alarm(AlarmType.LAST_GASP, T0 + 60, meters=("m1", "m2"), count=2)
    res = ing.handle_alarm(gasp)
    assert (res.action, res.keys) == ("opened", ("d", "m2"))  # m1 was already open
    assert ing.handle_alarm(gasp).action == "duplicate"
    current = {o.key: o for o in stores.outages.list("current")}
    assert {k: (o.start, o.kind) for k, o in current.items()} == {
        "m1": (T0, "outage"),
        "d": (T0 + 60, "last_gasp"),
        "m2": (T0 + 60, "last_gasp"),
    }
    # the DCU's restore closes its own outage and those its last gasp opened, not m1's
    dcu_up = _alarm(AlarmType.RESTORE, T0 + 600, duration_s=540, interruption="sustained")
    assert ing.handle_alarm(dcu_up).keys == ("d", "m2")
    assert [o.key for o in stores.outages.list("current")] == ["m1"]
    ing.handle_alarm(
        _alarm(AlarmType.RESTORE, T0 + 900, "m1", duration_s=900, interruption="sustained")
    )
    # a restore for an outage never reported records what it says
    ing.handle_alarm(
        _alarm(AlarmType.RESTORE, T0 + 1000, "m3", duration_s=30, interruption="momentary")
    )
    ing.handle_alarm(
        _alarm(AlarmType.MOMENTARY, T0 + 1100, "m4", duration_s=3, count=2, window_s=900)
    )
    ing.handle_alarm(_alarm(AlarmType.TRANSFORMER_OUTAGE, T0 + 2000, meters=("m5", "m6"), count=2))
    assert {o.key for o in stores.outages.list("current")} == {"m5", "m6"}
    ing.handle_alarm(
        _alarm(
            AlarmType.TRANSFORMER_RESTORE,
            T0 + 2600,
            meters=("m5", "m6"),
            count=2,
            duration_s=600,
            durations_s=(600, 590),
        )
    )
    assert stores.outages.list("current") == []
    past = {o.key: (o.start, o.end, o.kind) for o in stores.outages.list("past")}
    assert past == {
        "d": (T0 + 60, T0 + 600, "last_gasp"),
        "m2": (T0 + 60, T0 + 600, "last_gasp"),
        "m1": (T0, T0 + 900, "outage"),
        "m3": (T0 + 970, T0 + 1000, "restore"),
        "m4": (T0 + 1097, T0 + 1100, "momentary"),
        "m5": (T0 + 2000, T0 + 2600, "transformer_outage"),
        "m6": (T0 + 2000, T0 + 2600, "transformer_outage"),
    }
    test_gasp = _alarm(AlarmType.LAST_GASP, T0 + 3000, meters=("m7",), count=1, test=True)
    assert ing.handle_alarm(test_gasp).action == "ignored"
    assert ing.handle_alarm(_alarm(AlarmType.TAMPER, T0, "m1", code=40)).action == "ignored"
    assert stores.outages.list("current") == []


def test_compaction_writes_hive_partitions_that_duckdb_reads(stores: Stores) -> None:
    ing = Ingestor(stores)
    rs = readings("m-direct", ENERGY, T0 + 86400 - 1800, 4)  # crosses midnight
    ing.handle_data("t", batch_bytes(rs)[0])
    ivs = stores.intervals
    assert isinstance(ivs, SqliteIntervalStore)
    keys = ivs.compact_all()
    assert keys == [
        "lake/intervals/year=2024/month=03/day=01/part-0.parquet",
        "lake/intervals/year=2024/month=03/day=02/part-0.parquet",
    ]
    assert ivs.compact_all() == keys  # idempotent rewrite
    got = query_lake(
        ivs.objects_root,
        "SELECT day, count(*), sum(value) FROM intervals WHERE meter = ? GROUP BY day ORDER BY day",
        ["m-direct"],
    )
    assert [(int(d), n, v) for d, n, v in got] == [
        (1, 2, float(rs[0].value + rs[1].value)),
        (2, 2, float(rs[2].value + rs[3].value)),
    ]
    assert datetime.fromtimestamp(rs[2].capture_time, tz=timezone.utc).day == 2


def test_compact_dirty_rewrites_only_days_written_since(stores: Stores) -> None:
    ivs = stores.intervals
    assert isinstance(ivs, SqliteIntervalStore)
    ing = Ingestor(stores)
    ing.handle_data("t", batch_bytes(readings("m-direct", ENERGY, T0, 2))[0])
    assert ivs.compact_dirty() == ["lake/intervals/year=2024/month=03/day=01/part-0.parquet"]
    assert ivs.compact_dirty() == []
    ing.handle_data("t", batch_bytes(readings("m-direct", ENERGY, T0 + 86400, 2))[0])
    assert ivs.compact_dirty() == ["lake/intervals/year=2024/month=03/day=02/part-0.parquet"]
