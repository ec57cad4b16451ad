from __future__ import annotations

import base64
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud.iotsql import (
    RuleEvaluationError,
    filter_covers,
    filters_overlap,
    match_topic,
    parse_sql,
    render_template,
    validate_filter,
)
from cloud.rules import RULES, Rule, RuleEngine, S3Action
from edge_core.errors import ConfigError

T_MS = 1_709_251_200_000 + 3_600_000  # 2024-03-01T01:00:00Z


@pytest.mark.parametrize(
    ("flt", "topic", "want"),
    [
        ("dt/ami/+/#", "dt/ami/dcu-1/interval", True),
        ("dt/ami/+/#", "dt/ami/dcu-1", True),  # '#' matches the parent level too
        ("dt/ami/+/#", "dt/ami", False),
        ("dt/ami/+/interval", "dt/ami/dcu-1/interval", True),
        ("dt/ami/+/interval", "dt/ami/dcu-1/daily", False),
        ("dt/ami/+/interval", "dt/ami/dcu-1/interval/x", False),
        ("alarm/ami/+/#", "dt/ami/dcu-1/interval", False),
        ("#", "anything/at/all", True),
        ("a/+/c", "a//c", True),
    ],
)
def test_topic_filter_matching(flt: str, topic: str, want: bool) -> None:
    assert match_topic(flt, topic) is want


@pytest.mark.parametrize("bad", ["", "a/#/b", "a/b#", "a+/b"])
def test_invalid_filters_rejected(bad: str) -> None:
    with pytest.raises(ConfigError):
        validate_filter(bad)


@pytest.mark.parametrize(
    ("where", "doc", "want"),
    [
        ("type = 'tamper'", {"type": "tamper"}, True),
        ("type = 'tamper'", {"type": "restore"}, False),
        ("type <> 'tamper'", {"type": "restore"}, True),
        ("type <> 'tamper'", {}, False),  # undefined never compares true
        ("type = 'a' OR level > 2", {"type": "b", "level": 3}, True),
        ("type = 'a' AND level > 2", {"type": "a", "level": 2}, False),
        ("type IN ('a', 'b')", {"type": "b"}, True),
        ("type NOT IN ('a', 'b')", {"type": "c"}, True),
        ("NOT (type = 'a')", {"type": "a"}, False),
        ("detail.phase = 2", {"detail": {"phase": 2}}, True),
        ("topic(3) = 'dcu-7'", {}, True),
    ],
)
def test_where_on_json(where: str, doc: dict[str, object], want: bool) -> None:
    q = parse_sql(f"SELECT * FROM 'alarm/ami/+/#' WHERE {where}")
    res = q.evaluate("alarm/ami/dcu-7/power", json.dumps(doc).encode(), timestamp_ms=T_MS)
    assert (res is not None) is want


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM 'a/+' GROUP BY x",
        "SELECT * FROM 'a/#/b'",
        "SELECT upper(type) AS t FROM 'a/+'",
        "SELECT type FROM a",
        "SELECT encode(*, 'hex') AS d FROM 'a'",
        "SELECT * FROM 'a' WHERE x LIKE 'y'",
        "SELECT * FROM 'a' WHERE x = \"y\"",
        "SELECT topic(3) FROM 'a'",  # computed item without AS
        "DELETE FROM 'a'",
        "SELECT * FROM 'a' WHERE x IN (y)",
    ],
)
def test_unsupported_sql_rejected_with_clear_error(sql: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_sql(sql)
    assert str(info.value)


def test_binary_payload_select_star_and_encode() -> None:
    blob = b"AMIB\x01\x00\xff\x00binary"
    star = parse_sql("SELECT * FROM 'dt/ami/+/#'").evaluate(
        "dt/ami/d/interval", blob, timestamp_ms=T_MS
    )
    assert star is not None
    assert star.payload == blob
    enc = parse_sql(
        "SELECT encode(*, 'base64') AS data, topic(3) AS thing, timestamp() AS ts FROM 'dt/ami/+/#'"
    ).evaluate("dt/ami/d/interval", blob, timestamp_ms=T_MS)
    assert enc is not None
    assert enc.payload == {"data": base64.b64encode(blob).decode(), "thing": "d", "ts": T_MS}


def test_field_reference_on_binary_payload_is_an_evaluation_error() -> None:
    q = parse_sql("SELECT * FROM 'dt/ami/+/#' WHERE type = 'x'")
    assert not q.binary_safe
    with pytest.raises(RuleEvaluationError):
        q.evaluate("dt/ami/d/interval", b"\x00\x01", timestamp_ms=T_MS)
    with pytest.raises(ConfigError):
        Rule.define(
            "bad",
            "SELECT * FROM 'dt/#' WHERE type = 'x'",
            [S3Action("k")],
            payload="binary",
            description="",
        )


def test_key_template_expansion() -> None:
    key = render_template(
        "raw/thing=${topic(3)}/date=${parse_time('yyyy-MM-dd', timestamp(), 'UTC')}"
        "/${newuuid()}.bin",
        "dt/ami/dcu-1/interval",
        b"\x00",
        timestamp_ms=T_MS,
        uuid_factory=lambda: "U",
    )
    assert key == "raw/thing=dcu-1/date=2024-03-01/U.bin"


def test_project_rules_route_batches_alarms_and_documents() -> None:
    eng = RuleEngine(clock_ms=lambda: T_MS, uuid_factory=lambda: "u1")
    batch = b"AMIB\x01binary"
    inv = eng.evaluate("dt/ami/dcu-1/interval", batch)
    assert [(i.rule, i.kind, i.target) for i in inv] == [
        ("ami_raw_batches", "s3", "raw/thing=dcu-1/date=2024-03-01/u1.bin"),
        ("ami_ingest", "lambda", "ingest"),
    ]
    assert inv[0].payload == batch
    assert isinstance(inv[1].payload, dict)
    assert base64.b64decode(inv[1].payload["data"]) == batch
    assert inv[1].payload["topic"] == "dt/ami/dcu-1/interval"
    # diagnostics are archived but not ingested
    assert [i.rule for i in eng.evaluate("dt/ami/dcu-1/diagnostic", batch)] == ["ami_raw_batches"]
    doc = json.dumps({"status": "ok"}).encode()
    health = eng.evaluate("dt/ami/dcu-1/health", doc)
    assert [(i.rule, i.target) for i in health] == [
        ("ami_raw_documents", "raw/thing=dcu-1/date=2024-03-01/u1.json"),
        ("ami_documents", "documents"),
    ]
    assert health[1].payload == {
        "status": "ok",
        "topic": "dt/ami/dcu-1/health",
        "thing": "dcu-1",
        "received_ms": T_MS,
    }
    outage = json.dumps({"type": "outage", "meter": "m1", "test": False}).encode()
    got = eng.evaluate("alarm/ami/dcu-1/power", outage)
    assert [(i.kind, i.target) for i in got] == [("sqs", "oms"), ("lambda", "alarm")]
    assert got[0].payload == {
        "type": "outage",
        "meter": "m1",
        "test": False,
        "thing": "dcu-1",
        "received_ms": T_MS,
    }
    tamper = json.dumps({"type": "tamper", "meter": "m1", "test": False}).encode()
    got = eng.evaluate("dt/ami/dcu-1/events", tamper)
    assert [(i.rule, i.target) for i in got] == [
        ("ami_raw_documents", "raw/thing=dcu-1/date=2024-03-01/u1.json"),
        ("ami_documents", "documents"),
        ("ami_events_revenue_protection", "revenue-protection"),
    ]
    drill = json.dumps({"type": "tamper", "meter": "m1", "test": True}).encode()
    assert [i.rule for i in eng.evaluate("dt/ami/dcu-1/events", drill)] == [
        "ami_raw_documents",
        "ami_documents",
    ]
    assert eng.evaluate("cmd/ami/dcu-1/read/req", doc) == []
    res = eng.evaluate("cmd/ami/dcu-1/read/res", json.dumps({"id": "r1"}).encode())
    assert [(i.rule, i.target) for i in res] == [("ami_read_responses", "documents")]
    assert res[0].payload == {
        "id": "r1",
        "topic": "cmd/ami/dcu-1/read/res",
        "thing": "dcu-1",
        "received_ms": T_MS,
    }
    assert eng.errors == 0


def test_subscriptions_are_the_covering_filters() -> None:
    eng = RuleEngine(clock_ms=lambda: T_MS)
    assert eng.topic_filters() == ("dt/ami/+/#", "alarm/ami/+/#", "cmd/ami/+/read/res")
    for rule in RULES:
        assert re.fullmatch(r"[A-Za-z0-9_]+", rule.name)
        assert parse_sql(rule.sql) == rule.query
    partial = [
        Rule.define(n, f"SELECT * FROM '{f}'", [S3Action("k")], payload="json", description="")
        for n, f in (("a", "x/+/c"), ("b", "x/b/+"))
    ]
    with pytest.raises(ConfigError):
        RuleEngine(partial).topic_filters()


@pytest.mark.parametrize(
    ("outer", "inner", "covers", "overlap"),
    [
        ("dt/ami/+/#", "dt/ami/+/events", True, True),
        ("dt/ami/+/events", "dt/ami/+/#", False, True),
        ("dt/ami/+/#", "alarm/ami/+/#", False, False),
        ("a/#", "a", True, True),
        ("a", "a/#", False, True),
        ("a/+/c", "a/b/+", False, True),
        ("a/+", "a/b/c", False, False),
        ("+/+", "a/b", True, True),
    ],
)
def test_filter_relations(outer: str, inner: str, covers: bool, overlap: bool) -> None:
    assert filter_covers(outer, inner) is covers
    assert filters_overlap(outer, inner) is overlap
    assert filters_overlap(inner, outer) is overlap


_level = st.text(alphabet="abcdef-_0123456789", min_size=1, max_size=6)


@given(
    levels=st.lists(_level, min_size=1, max_size=6),
    wild=st.lists(st.booleans(), min_size=6, max_size=6),
    cut=st.integers(min_value=0, max_value=6),
    other=_level,
)
def test_filters_built_from_a_topic_match_it(
    levels: list[str], wild: list[bool], cut: int, other: str
) -> None:
    flt = [("+" if w else lvl) for lvl, w in zip(levels, wild, strict=False)]
    if cut < len(flt):
        flt = [*flt[:cut], "#"]
    text = "/".join(flt)
    topic = "/".join(levels)
    validate_filter(text)
    assert match_topic(text, topic)
    assert filters_overlap(text, topic)
    assert filter_covers(text, topic)
    # changing a level the filter names literally breaks the match
    for i, f in enumerate(flt):
        if f not in ("+", "#") and other != levels[i]:
            changed = [*levels[:i], other, *levels[i + 1 :]]
            assert not match_topic(text, "/".join(changed))
            break
