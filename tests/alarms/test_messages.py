"""The alarm message: codec, schema, identity, routing, size."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta, timezone

import jsonschema
import pytest

from edge_core.alarms import AlarmMessage, AlarmType, Priority, alarm_id, load_schema
from edge_core.errors import DecodeError
from edge_core.model import DataClass, Topics

from .harness import DCU, T0, check_message


def _msg(**kw: object) -> AlarmMessage:
    base: dict[str, object] = {
        "type": AlarmType.OUTAGE,
        "dcu": DCU,
        "event_time": T0,
        "detected_time": T0 + timedelta(seconds=30),
        "id": alarm_id(DCU, AlarmType.OUTAGE, ["m1"], T0),
        "seq": 7,
        "priority": Priority.POWER,
        "meter": "m1",
        "meters": ("m1",),
    }
    base.update(kw)
    return AlarmMessage(**base)  # type: ignore[arg-type]


def test_encoding_is_compact_ordered_and_symmetric() -> None:
    m = _msg()
    payload = m.to_json()
    assert b" " not in payload
    assert payload.startswith(b'{"v":1,"id":"')
    assert json.loads(payload)["event_time"] == "2026-03-02T10:00:00+01:00"
    assert AlarmMessage.from_json(payload) == m
    assert len(payload) < 1024
    check_message(m, 1024)


def test_id_is_deterministic_and_offset_independent() -> None:
    utc = T0.astimezone(timezone.utc)
    a = alarm_id(DCU, AlarmType.OUTAGE, ["b", "a"], T0)
    assert a == alarm_id(DCU, AlarmType.OUTAGE, ["a", "b"], utc)
    assert len(a) == 32
    assert a != alarm_id(DCU, AlarmType.RESTORE, ["a", "b"], T0)
    assert a != alarm_id(DCU, AlarmType.OUTAGE, ["a"], T0)
    assert a != alarm_id("dcu-other", AlarmType.OUTAGE, ["a", "b"], T0)
    assert a != alarm_id(DCU, AlarmType.OUTAGE, ["a", "b"], T0 + timedelta(seconds=1))
    t = alarm_id(DCU, AlarmType.TAMPER, ["a"], T0, code=40)
    assert t != alarm_id(DCU, AlarmType.TAMPER, ["a"], T0, code=41)


def test_topic_routing() -> None:
    topics = Topics("dcu-0042")
    assert _msg().topic(topics) == "alarm/ami/dcu-0042/power"
    tamper = _msg(type=AlarmType.TAMPER, code=40, priority=Priority.EVENT)
    assert tamper.topic(topics) == "dt/ami/dcu-0042/events"
    assert _msg().data_class is DataClass.ALARM


def test_schema_is_draft_2020_12_and_rejects_bad_messages() -> None:
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    good = json.loads(_msg().to_json())
    validator.validate(good)
    for broken in (
        {**good, "type": "explosion"},
        {**good, "meter": None},  # an outage names its meter
        {**good, "extra": 1},
        {**good, "phase": "L4"},
        {k: v for k, v in good.items() if k != "seq"},
        {**good, "type": "restore", "duration_s": None, "interruption": "momentary"},
        {**good, "type": "last_gasp", "priority": 1, "meter": None, "count": 0},
    ):
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(broken)


def test_decode_errors_are_ours() -> None:
    with pytest.raises(DecodeError):
        AlarmMessage.from_json(b"not json")
    with pytest.raises(DecodeError):
        AlarmMessage.from_json(b"[]")
    with pytest.raises(DecodeError):
        AlarmMessage.from_json(b'{"v":1}')
    bad_version = json.loads(_msg().to_json()) | {"v": 2}
    with pytest.raises(DecodeError):
        AlarmMessage.from_dict(bad_version)


def test_alarm_package_pulls_in_no_ml_dependency() -> None:
    code = (
        "import sys, edge_core.alarms\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('numpy', 'onnxruntime')"
        " or m.startswith('edge_core.analytics')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
