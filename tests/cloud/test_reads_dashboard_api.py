"""On-demand reads and the dashboard endpoints, through ApiApp with a recording publisher."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from cloud.api import ApiApp
from cloud.events import DocumentIngestor
from cloud.ingest import Ingestor
from cloud.rules import RuleEngine
from cloud.storage.base import Stores
from edge_core.errors import PublishError

from .conftest import ENERGY, T0, batch_bytes, readings, registry_records

KEY = "k"


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.fail = False

    def __call__(self, topic: str, payload: bytes) -> None:
        if self.fail:
            raise PublishError("broker gone")
        self.sent.append((topic, json.loads(payload)))


def ev(method: str, path: str, body: Any = None, query: dict[str, str] | None = None) -> dict:
    return {
        "httpMethod": method,
        "path": path,
        "headers": {"x-api-key": KEY},
        "queryStringParameters": query,
        "body": body if body is None or isinstance(body, str) else json.dumps(body),
    }


def out(resp: dict[str, Any]) -> Any:
    return json.loads(resp["body"])


@pytest.fixture
def setup(stores: Stores) -> tuple[ApiApp, Recorder, Clock, Stores]:
    stores.registry.upsert(registry_records())
    # m-seen is not in the registry: its thing comes from the batch that carried it
    Ingestor(stores).handle_data(
        "dt/ami/dcu-9/interval",
        batch_bytes(readings("m-seen", ENERGY, T0, 4), thing="dcu-9")[0],
    )
    rec, clock = Recorder(), Clock(T0 + 86400)
    return ApiApp(stores, api_key=KEY, publisher=rec, clock=clock), rec, clock, stores


def test_post_read_publishes_the_command_and_the_response_completes_it(setup: Any) -> None:
    app, rec, clock, stores = setup
    body = {
        "meter": "m-ct",
        "obis": [ENERGY],
        "profile": {"from": "2024-03-01T00:00:00Z", "to": "2024-03-01T02:00:00+01:00"},
        "timeout_s": 30,
    }
    resp = app.handle(ev("POST", "/v1/reads", body))
    assert resp["statusCode"] == 202
    doc = out(resp)
    assert doc["status"] == "pending"
    assert doc["location"] == f"/v1/reads/{doc['id']}" == resp["headers"]["Location"]
    assert uuid.UUID(doc["id"]).version == 4
    [(topic, cmd)] = rec.sent
    assert topic == "cmd/ami/dcu-1/read/req"
    assert cmd == {
        "v": 1,
        "id": doc["id"],
        "meter": "m-ct",
        "obis": [ENERGY],
        "profile": {"from": "2024-03-01T00:00:00+00:00", "to": "2024-03-01T01:00:00+00:00"},
    }
    got = out(app.handle(ev("GET", doc["location"])))
    assert (got["status"], got["thing"], got["response"]) == ("pending", "dcu-1", None)
    # the edge answers on cmd/ami/dcu-1/read/res; the rule hands it to the documents handler
    answer = {
        "v": 1,
        "id": doc["id"],
        "meter": "m-ct",
        "status": "ok",
        "read_at": "2024-03-02T00:00:01+00:00",
        "registers": [{"obis": ENERGY, "value": 1234.5, "unit": "Wh", "raw": 12345, "scaler": -1}],
    }
    docs = DocumentIngestor(stores, clock=clock)
    for inv in RuleEngine().evaluate("cmd/ami/dcu-1/read/res", json.dumps(answer).encode()):
        assert docs.handle(inv.payload) == {"action": "done"}  # type: ignore[arg-type]
    got = out(app.handle(ev("GET", doc["location"])))
    assert got["status"] == "done"
    assert got["response"] == answer
    assert got["error"] is None
    # a duplicate delivery changes nothing
    assert docs.handle({**answer, "topic": "cmd/ami/dcu-1/read/res"}) == {"action": "ignored"}


def test_profile_times_are_sent_with_an_offset(setup: Any) -> None:
    app, rec, _, _ = setup
    body = {"meter": "m-ct", "profile": {"from": "2024-03-01T00:00:00", "to": "2024-03-01T02:00Z"}}
    assert app.handle(ev("POST", "/v1/reads", body))["statusCode"] == 202
    assert rec.sent[0][1]["profile"] == {
        "from": "2024-03-01T00:00:00+00:00",
        "to": "2024-03-01T02:00:00+00:00",
    }
    assert "obis" not in rec.sent[0][1]


def test_meter_known_only_from_batches_uses_their_thing(setup: Any) -> None:
    app, rec, _, _ = setup
    assert app.handle(ev("POST", "/v1/reads", {"meter": "m-seen"}))["statusCode"] == 202
    assert rec.sent[0][0] == "cmd/ami/dcu-9/read/req"


def test_edge_error_and_deadline(setup: Any) -> None:
    app, _, clock, stores = setup
    first = out(app.handle(ev("POST", "/v1/reads", {"meter": "m-direct", "timeout_s": 5})))
    second = out(app.handle(ev("POST", "/v1/reads", {"meter": "m-direct", "timeout_s": 5})))
    DocumentIngestor(stores).handle(
        {
            "topic": "cmd/ami/dcu-1/read/res",
            "id": first["id"],
            "status": "error",
            "error": {"type": "MeterUnreachableError", "message": "connection refused"},
        }
    )
    got = out(app.handle(ev("GET", f"/v1/reads/{first['id']}")))
    assert got["status"] == "error"
    assert got["error"]["type"] == "MeterUnreachableError"
    clock.t += 5
    assert out(app.handle(ev("GET", f"/v1/reads/{second['id']}")))["status"] == "pending"
    clock.t += 1
    assert out(app.handle(ev("GET", f"/v1/reads/{second['id']}")))["status"] == "timeout"
    # a late answer does not revive a timed-out request
    DocumentIngestor(stores).handle(
        {"topic": "cmd/ami/dcu-1/read/res", "id": second["id"], "status": "ok"}
    )
    assert out(app.handle(ev("GET", f"/v1/reads/{second['id']}")))["status"] == "timeout"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (None, "invalid_body"),
        ("not json", "invalid_body"),
        ([], "invalid_body"),
        ({}, "invalid_body"),
        ({"meter": 5}, "invalid_body"),
        ({"meter": "m-ct", "extra": 1}, "invalid_body"),
        ({"meter": "m-ct", "obis": "1.0.1.8.0.255"}, "invalid_body"),
        ({"meter": "m-ct", "obis": ["nope"]}, "invalid_body"),
        ({"meter": "m-ct", "timeout_s": 0}, "invalid_body"),
        ({"meter": "m-ct", "timeout_s": 301}, "invalid_body"),
        ({"meter": "m-ct", "timeout_s": True}, "invalid_body"),
        ({"meter": "m-ct", "profile": {"from": "2024-03-02"}}, "invalid_body"),
        ({"meter": "m-ct", "profile": {"from": "x", "to": "y"}}, "invalid_parameter"),
        ({"meter": "m-ct", "profile": {"from": "2024-03-02", "to": "2024-03-01"}}, "invalid_range"),
        (
            {"meter": "m-ct", "profile": {"from": "2024-01-01", "to": "2024-03-01"}},
            "range_too_large",
        ),
    ],
)
def test_bad_bodies_are_400_with_a_message(setup: Any, body: Any, code: str) -> None:
    app, rec, _, _ = setup
    resp = app.handle(ev("POST", "/v1/reads", body))
    assert resp["statusCode"] == 400
    assert out(resp)["error"]["code"] == code
    assert out(resp)["error"]["message"]
    assert rec.sent == []


def test_unknown_meter_and_read_are_404_publish_failure_is_503(setup: Any) -> None:
    app, rec, _, _ = setup
    resp = app.handle(ev("POST", "/v1/reads", {"meter": "nobody"}))
    assert (resp["statusCode"], out(resp)["error"]["code"]) == (404, "unknown_meter")
    resp = app.handle(ev("GET", f"/v1/reads/{uuid.uuid4()}"))
    assert (resp["statusCode"], out(resp)["error"]["code"]) == (404, "unknown_read")
    rec.fail = True
    resp = app.handle(ev("POST", "/v1/reads", {"meter": "m-ct"}))
    assert (resp["statusCode"], out(resp)["error"]["code"]) == (503, "publish_failed")
    assert rec.sent == []


def test_without_publisher_reads_are_501(stores: Stores) -> None:
    stores.registry.upsert(registry_records())
    resp = ApiApp(stores).handle(ev("POST", "/v1/reads", {"meter": "m-ct"}))
    assert resp["statusCode"] == 501


def _health(thing: str, t: float, backlog: int) -> dict[str, Any]:
    return {
        "thing": thing,
        "time": t,
        "connected": True,
        "backlog_readings": backlog,
        "backlog_messages": backlog // 10,
        "backlog_age_s": 12.5,
        "latency": {"bulk": {"p50_ms": 8.0, "p99_ms": 40.0}, "alarm": {"p50_ms": 3.0}},
        "published_messages": 7,
        "publish_errors": 0,
    }


def test_dashboard_endpoints(setup: Any) -> None:
    app, _, clock, stores = setup
    now = int(clock())
    docs = DocumentIngestor(stores)
    engine = RuleEngine()

    def deliver(topic: str, doc: dict[str, Any]) -> None:
        for inv in engine.evaluate(topic, json.dumps(doc).encode()):
            if inv.kind == "lambda" and inv.target == "documents":
                docs.handle(inv.payload)  # type: ignore[arg-type]
            elif inv.kind == "lambda" and inv.target == "alarm":
                Ingestor(stores).handle_alarm(inv.payload)  # type: ignore[arg-type]

    for i, backlog in enumerate([500, 200, 0]):
        deliver("dt/ami/dcu-9/health", _health("dcu-9", now - 3600 + i * 600, backlog))
    anomaly = {
        "v": 1,
        "meter": "m-seen",
        "day": "2024-03-01",
        "window_start": now - 7200,
        "window_end": now - 3600,
        "source": "model",
        "kind": "learned",
        "score": 0.93,
        "threshold": 0.5,
        "model_version": "1.0",
    }
    deliver("dt/ami/dcu-9/anomaly", anomaly)
    deliver("dt/ami/dcu-9/anomaly", anomaly)  # redelivery: stored once
    alarm = {
        "id": "a" * 32,
        "type": "outage",
        "dcu": "dcu-9",
        "meter": "m-seen",
        "test": False,
        "event_time": now - 1800,
        "meters": ["m-seen"],
    }
    deliver("alarm/ami/dcu-9/power", alarm)
    tamper = {
        "id": "b" * 32,
        "type": "tamper",
        "dcu": "dcu-9",
        "meter": "m-seen",
        "test": False,
        "event_time": now - 900,
        "meters": ["m-seen"],
        "code": 40,
    }
    deliver("dt/ami/dcu-9/events", tamper)
    deliver("dt/ami/dcu-9/events", {**tamper, "id": "c" * 32, "test": True})  # drills are not kept

    fleet = {m["meter"]: m for m in out(app.handle(ev("GET", "/v1/fleet")))["meters"]}
    assert set(fleet) == {"m-ct", "m-direct", "m-seen"}
    seen = fleet["m-seen"]
    assert seen["thing"] == "dcu-9"
    assert seen["last_read_epoch"] == T0 + 3 * 900
    assert seen["energy_import"]["value"] == 1000 + 3 * 7
    assert seen["outage"]["kind"] == "outage"
    assert seen["open_anomalies"] == 1
    assert fleet["m-ct"]["thing"] == "dcu-1"
    assert fleet["m-ct"]["last_read"] is None
    assert fleet["m-ct"]["outage"] is None

    alarms = out(app.handle(ev("GET", "/v1/alarms")))["alarms"]
    assert [(a["kind"], a["type"], a["meter"]) for a in alarms] == [
        ("alarm", "outage", "m-seen"),
        ("event", "tamper", "m-seen"),
    ]
    only = out(app.handle(ev("GET", "/v1/alarms", query={"kind": "event"})))["alarms"]
    assert [a["type"] for a in only] == ["tamper"]

    an = out(app.handle(ev("GET", "/v1/anomalies", query={"meter": "m-seen"})))["anomalies"]
    assert [(a["meter"], a["score"], a["threshold"], a["kind"]) for a in an] == [
        ("m-seen", 0.93, 0.5, "learned")
    ]

    health = out(app.handle(ev("GET", "/v1/dcus/dcu-9/health")))
    assert health["latest"]["report"]["backlog_readings"] == 0
    assert [h["backlog_readings"] for h in health["history"]] == [500, 200, 0]
    assert health["history"][0]["bulk_p99_ms"] == 40.0
    assert health["history"][0]["alarm_p99_ms"] is None
    resp = app.handle(ev("GET", "/v1/dcus/dcu-none/health"))
    assert (resp["statusCode"], out(resp)["error"]["code"]) == (404, "unknown_dcu")
    for path, q in [
        ("/v1/alarms", {"from": "2024-03-02", "to": "2024-03-01"}),
        ("/v1/anomalies", {"from": "2024-01-01", "to": "2024-03-01"}),
        ("/v1/alarms", {"kind": "x"}),
        ("/v1/alarms", {"limit": "0"}),
        ("/v1/dcus/a%20b/health", None),
    ]:
        assert app.handle(ev("GET", path, query=q))["statusCode"] == 400, (path, q)


def test_dashboard_page_is_served_without_key(stores: Stores) -> None:
    app = ApiApp(stores, api_key=KEY)
    page = app.handle({"httpMethod": "GET", "path": "/"})
    assert page["statusCode"] == 200
    assert page["headers"]["Content-Type"].startswith("text/html")
    assert '<script src="/static/app.js">' in page["body"]
    js = app.handle({"httpMethod": "GET", "path": "/static/app.js"})
    assert js["statusCode"] == 200
    assert "intervalEnergy" in js["body"]
    assert app.handle({"httpMethod": "GET", "path": "/static/../api.py"})["statusCode"] == 404
    assert app.handle({"httpMethod": "GET", "path": "/static/nope.js"})["statusCode"] == 404
    assert app.handle({"httpMethod": "GET", "path": "/v1/fleet"})["statusCode"] == 401
