from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
import yaml

from cloud.api import ApiApp
from cloud.http import ApiServer
from cloud.ingest import Ingestor
from cloud.storage.base import Stores

from .conftest import ENERGY, T0, batch_bytes, readings, registry_records

KEY = "s3cret"


def ev(
    path: str, query: dict[str, str] | None = None, key: str | None = KEY, method: str = "GET"
) -> dict[str, Any]:
    return {
        "httpMethod": method,
        "path": path,
        "queryStringParameters": query,
        "headers": {"X-Api-Key": key} if key else {},
    }


def body(resp: dict[str, Any]) -> Any:
    return json.loads(resp["body"])


@pytest.fixture
def app(stores: Stores) -> ApiApp:
    stores.registry.upsert(registry_records())
    ing = Ingestor(stores)
    ing.handle_data(
        "dt/ami/dcu-1/interval", batch_bytes(readings("m-ct", ENERGY, T0, 8, scaler=-1))[0]
    )
    ing.handle_alarm({"type": "power_down", "meter": "m-x", "thing": "dcu-1", "time": T0})
    return ApiApp(stores, api_key=KEY)


def test_intervals_return_scaled_rows(app: ApiApp) -> None:
    resp = app.handle(
        ev(
            "/v1/meters/m-ct/intervals",
            {"from": "2024-03-01T00:00:00Z", "to": "2024-03-01T01:00:00Z", "channel": ENERGY},
        )
    )
    assert resp["statusCode"] == 200
    rows = body(resp)["rows"]
    assert [r["capture_time"] for r in rows] == [
        "2024-03-01T00:00:00Z",
        "2024-03-01T00:15:00Z",
        "2024-03-01T00:30:00Z",
        "2024-03-01T00:45:00Z",
    ]
    assert [r["value"] for r in rows] == pytest.approx(
        [(1000 + 7 * i) / 10 * 4000 for i in range(4)]
    )
    assert {r["unit"] for r in rows} == {"Wh"}
    assert {r["status"] for r in rows} == {0}


def test_latest_and_unknown_meter(app: ApiApp) -> None:
    resp = app.handle(ev("/v1/meters/m-ct/latest"))
    assert resp["statusCode"] == 200
    ch = body(resp)["channels"][ENERGY]
    assert ch["capture_time"] == "2024-03-01T01:45:00Z"
    assert ch["value"] == pytest.approx(1049 / 10 * 4000)
    # registered but without data: 200 and empty
    assert body(app.handle(ev("/v1/meters/m-direct/latest")))["channels"] == {}
    for path, query in (
        ("/v1/meters/nope/latest", None),
        ("/v1/meters/nope/intervals", {"from": "2024-03-01", "to": "2024-03-02"}),
    ):
        resp = app.handle(ev(path, query))
        assert resp["statusCode"] == 404
        assert body(resp)["error"]["code"] == "unknown_meter"


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({}, "missing_parameter"),
        ({"from": "2024-03-01"}, "missing_parameter"),
        ({"from": "yesterday", "to": "2024-03-02"}, "invalid_parameter"),
        ({"from": "2024-03-02", "to": "2024-03-01"}, "invalid_range"),
        ({"from": "2024-01-01", "to": "2024-03-01"}, "range_too_large"),
        ({"from": "2024-03-01", "to": "2024-03-02", "channel": "DROP TABLE"}, "invalid_parameter"),
    ],
)
def test_validation_errors_are_400_json(app: ApiApp, query: dict[str, str], code: str) -> None:
    resp = app.handle(ev("/v1/meters/m-ct/intervals", query))
    assert resp["statusCode"] == 400
    err = body(resp)["error"]
    assert err["code"] == code
    assert err["message"]


def test_auth_and_routing(app: ApiApp) -> None:
    assert app.handle(ev("/v1/outages", key=None))["statusCode"] == 401
    assert app.handle(ev("/v1/outages", key="wrong"))["statusCode"] == 401
    assert app.handle(ev("/healthz", key=None))["statusCode"] == 200
    assert app.handle(ev("/v2/nothing"))["statusCode"] == 404
    assert app.handle(ev("/v1/outages", method="POST"))["statusCode"] == 405
    assert app.handle(ev("/v1/meters/bad%20id/latest"))["statusCode"] in (400, 404)


def test_outages(app: ApiApp) -> None:
    cur = body(app.handle(ev("/v1/outages", {"state": "current"})))
    assert [(o["key"], o["end"]) for o in cur["outages"]] == [("m-x", None)]
    assert body(app.handle(ev("/v1/outages", {"state": "past"})))["outages"] == []
    assert app.handle(ev("/v1/outages", {"state": "later"}))["statusCode"] == 400


def test_openapi_document_lists_every_route(app: ApiApp) -> None:
    resp = app.handle(ev("/openapi.yaml", key=None))
    doc = yaml.safe_load(resp["body"])
    assert doc["openapi"].startswith("3.0")
    assert set(doc["paths"]) == {
        "/healthz",
        "/v1/meters/{meter}/latest",
        "/v1/meters/{meter}/intervals",
        "/v1/reads",
        "/v1/reads/{id}",
        "/v1/fleet",
        "/v1/alarms",
        "/v1/anomalies",
        "/v1/dcus/{thing}/health",
        "/v1/outages",
        "/v1/billing/determinants",
    }


def test_http_adapter_serves_the_same_handler(app: ApiApp) -> None:
    server = ApiServer(app.handle, 0)
    server.start()
    try:
        url = (
            server.url + "/v1/meters/m-ct/intervals?from=2024-03-01T00:00:00%2B00:00"
            "&to=2024-03-01T00:30:00Z"
        )
        req = urllib.request.Request(url, headers={"x-api-key": KEY})
        with urllib.request.urlopen(req, timeout=10) as r:
            data = json.loads(r.read())
        assert len(data["rows"]) == 2
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(server.url + "/v1/outages", timeout=10)
        assert info.value.code == 401
        assert json.loads(info.value.read())["error"]["code"] == "unauthorized"
        info.value.close()
    finally:
        server.close()
