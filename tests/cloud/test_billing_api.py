"""GET /v1/billing/determinants over the local stack's real stores and Parquet lake, with a
CT change in the middle of the cycle (m-ct: CT 40 then 80, PT 100; m-direct: no CT/PT)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloud.api import ApiApp
from cloud.billing.service import LocalBilling
from cloud.ingest import Ingestor
from cloud.storage.base import Stores

from .conftest import ENERGY, T0, batch_bytes, readings, registry_records
from .test_api import KEY, ev


@pytest.fixture
def billing_app(stores: Stores) -> ApiApp:
    stores.registry.upsert(registry_records())
    ing = Ingestor(stores)
    # One day of +A: 97 captures (00:00 .. 24:00), 7 Wh more every 15 minutes.
    for meter in ("m-ct", "m-direct"):
        payload, _ = batch_bytes(readings(meter, ENERGY, T0, 97, base=1000, inc=7))
        assert ing.handle_data("dt/ami/dcu-1/interval", payload).stored == 97
    root = Path(stores.intervals.objects_root)
    billing = LocalBilling(root, before_query=stores.intervals.compact_dirty)
    return ApiApp(stores, api_key=KEY, billing=billing)


def _get(app: ApiApp, query: dict[str, str]) -> tuple[int, dict]:
    resp = app.handle(ev("/v1/billing/determinants", query))
    return resp["statusCode"], json.loads(resp["body"])


def test_determinants_apply_ct_pt_by_capture_time(billing_app: ApiApp) -> None:
    status, doc = _get(
        billing_app,
        {"from": "2024-03-01T00:00:00Z", "to": "2024-03-02T00:00:00Z", "meters": "m-ct,m-direct"},
    )
    assert status == 200, doc
    by_meter = {d["meter"]: d for d in doc["determinants"]}
    direct = by_meter["m-direct"]
    assert direct["import_kwh"] == pytest.approx(96 * 7 / 1000)
    assert direct["intervals"] == {"expected": 96, "actual": 96, "estimated": 0, "missing": 0}
    # 48 intervals at CT 40 x PT 100, 48 at CT 80 x PT 100 (the change at 12:00).
    ct = by_meter["m-ct"]
    assert ct["import_kwh"] == pytest.approx((48 * 7 * 4000 + 48 * 7 * 8000) / 1000)
    peak = {p["period"]: p["import_kwh"] for p in ct["periods"]}
    assert sum(peak.values()) == pytest.approx(ct["import_kwh"])
    # 15-minute demand: 7 Wh x 8000 in a quarter hour = 224 kW, after the CT change.
    assert ct["max_demand_15"]["kw"] == pytest.approx(7 * 8000 * 4 / 1000)


@pytest.mark.parametrize(
    "query",
    [
        {"from": "2024-03-01T00:07:00Z", "to": "2024-03-02T00:00:00Z"},  # off the 15-min grid
        {"read_day": "40", "month": "2024-03"},
        {"read_day": "1", "month": "March"},
        {"from": "2024-03-01T00:00:00Z", "to": "2024-03-02T00:00:00Z", "read_day": "1"},
        {"from": "2024-03-01T00:00:00Z", "to": "2024-03-02T00:00:00Z", "page_size": "0"},
        {"from": "2024-03-01T00:00:00Z", "to": "2024-03-02T00:00:00Z", "meters": ","},
    ],
)
def test_bad_billing_queries_are_400(billing_app: ApiApp, query: dict[str, str]) -> None:
    status, doc = _get(billing_app, query)
    assert status == 400, doc
    assert doc["error"]["message"]


def test_billing_without_a_lake_configured_is_501(stores: Stores) -> None:
    app = ApiApp(stores, api_key=KEY)
    resp = app.handle(ev("/v1/billing/determinants", {"read_day": "1", "month": "2024-03"}))
    assert resp["statusCode"] == 501


def test_billing_export_cli_writes_the_cycle_csv(
    billing_app: ApiApp, stores: Stores, tmp_path: Path
) -> None:
    from edge_core.cli import main

    data_dir = Path(stores.intervals.objects_root).parent
    out = tmp_path / "sftp-outbox"
    # The cycle of read day 2 ending 2024-03-02 covers the ingested day 2024-03-01.
    assert (
        main(
            [
                "cloud",
                "billing-export",
                "--data-dir",
                str(data_dir),
                "--read-day",
                "2",
                "--month",
                "2024-03",
                "--out",
                str(out),
                "--utility",
                "acme",
            ]
        )
        == 0
    )
    files = sorted(out.glob("*.csv"))
    assert [f.name for f in files] == ["billing_acme_day02_20240302_001.csv"]
    text = files[0].read_text()
    assert "m-ct" in text
    assert "m-direct" in text
