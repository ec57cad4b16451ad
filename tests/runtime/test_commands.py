"""On-demand read commands: every bad request gets a typed answer, good ones reach the meter."""

from __future__ import annotations

import asyncio
import json

import pytest

from edge_core.config import EdgeConfig
from edge_core.errors import MeterTimeoutError
from edge_core.runtime.commands import BadCommandError, CommandHandler, ReadRequest

CFG = EdgeConfig.from_mapping(
    {"thing_name": "dcu-t", "meters": [{"id": "M1", "url": "tcp://127.0.0.1:1"}]}
)


def _run(
    payload: bytes, *, fail: bool = False
) -> tuple[list[dict], list[ReadRequest], CommandHandler]:
    sent: list[dict] = []
    asked: list[ReadRequest] = []

    async def read(meter, req):
        asked.append(req)
        if fail:
            raise MeterTimeoutError("no answer within 5 s", meter=meter.id)
        return {
            "clock": "2025-06-15T12:00:00+00:00",
            "registers": [{"obis": "1.0.1.8.0.255", "value": 1234}],
        }

    async def respond(body: bytes) -> None:
        sent.append(json.loads(body))

    handler = CommandHandler(CFG, read, respond, lambda: "2025-06-15T12:00:01+00:00")
    asyncio.run(handler.handle("cmd/ami/dcu-t/read/req", payload))
    return sent, asked, handler


def test_good_request_is_read_and_answered_with_its_id() -> None:
    sent, asked, _ = _run(b'{"v":1,"id":"c-1","meter":"M1","obis":["1-0:1.8.0*255"]}')
    assert asked[0].obis == ("1.0.1.8.0.255",)
    assert sent == [
        {
            "v": 1,
            "id": "c-1",
            "meter": "M1",
            "read_at": "2025-06-15T12:00:01+00:00",
            "status": "ok",
            "clock": "2025-06-15T12:00:00+00:00",
            "registers": [{"obis": "1.0.1.8.0.255", "value": 1234}],
        }
    ]


def test_meter_failure_is_answered_as_a_typed_error() -> None:
    sent, _, _ = _run(b'{"id":"c-2","meter":"M1"}', fail=True)
    assert sent[0]["status"] == "error"
    assert sent[0]["error"]["type"] == "MeterTimeoutError"
    assert "M1" in sent[0]["error"]["message"]


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b'{"id":"c-3","meter":"M1","obis":["1.0.1.8.0.999"]}', "bad OBIS"),
        (b'{"id":"c-4","meter":"M1","obis":"1.0.1.8.0.255"}', "obis must be a list"),
        (b'{"id":"c-5"}', "meter is required"),
        (
            b'{"id":"c-6","meter":"M1","profile":{"from":"2025-06-15T00:00:00","to":"x"}}',
            "ISO-8601",
        ),
        (
            b'{"id":"c-7","meter":"M1","profile":{"from":"2025-06-15T02:00:00+00:00","to":"2025-06-15T01:00:00+00:00"}}',
            "after",
        ),
        (b'{"id":"c-8","meter":"M1","v":2}', "unsupported version"),
    ],
)
def test_bad_request_with_an_id_is_answered_bad_command(payload: bytes, fragment: str) -> None:
    sent, asked, handler = _run(payload)
    assert asked == []
    assert sent[0]["status"] == "error"
    assert sent[0]["error"]["type"] == "BadCommand"
    assert fragment in sent[0]["error"]["message"]
    assert handler.bad_commands == 1


@pytest.mark.parametrize("payload", [b"", b"\xff\xfe", b"[1,2]", b'{"meter":"M1"}', b"{" * 10000])
def test_bad_request_without_an_id_is_counted_not_answered(payload: bytes) -> None:
    sent, asked, handler = _run(payload)
    assert sent == []
    assert asked == []
    assert handler.bad_commands == 1


def test_unknown_meter_is_answered_not_read() -> None:
    sent, asked, _ = _run(b'{"id":"c-9","meter":"NOPE"}')
    assert asked == []
    assert sent[0]["error"]["type"] == "UnknownMeter"


def test_request_parser_raises_typed_errors() -> None:
    with pytest.raises(BadCommandError) as info:
        ReadRequest.from_json(b'{"id":"x","meter":"M1","obis":[1]}')
    assert info.value.request_id == "x"
