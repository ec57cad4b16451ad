"""The shared golden batches (tests/golden) through the cloud ingest and API."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest

from cloud.api import ApiApp
from cloud.http import request_to_event
from cloud.ingest import Ingestor
from cloud.registry import unit_name
from cloud.storage.base import Stores

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
CASES = sorted(p.stem for p in GOLDEN.glob("batch-*.bin"))


@pytest.mark.parametrize("name", CASES)
def test_golden_batch_is_stored_as_specified(stores: Stores, name: str) -> None:
    spec = json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))
    payload = (GOLDEN / f"{name}.bin").read_bytes()
    res = Ingestor(stores).handle_data(f"dt/ami/{spec['thing']}/interval", payload)
    assert res.status == "stored"
    assert res.batch_id == spec["batch_id"]
    assert res.stored == len(spec["readings"])
    app = ApiApp(stores)
    for meter, obis, t, raw, scaler, unit, status in spec["readings"]:
        rows = stores.intervals.query(meter, t, t + 1, obis)
        assert len(rows) == 1
        row = rows[0]
        assert (row.raw, row.scaler, row.status, row.unit) == (raw, scaler, status, unit_name(unit))
        assert row.value == pytest.approx(raw * 10.0**scaler)
        assert row.data_class == spec["data_class"]
        resp = app.handle({"httpMethod": "GET", "path": f"/v1/meters/{meter}/latest"})
        assert resp["statusCode"] == 200, (meter, resp["body"])


def test_golden_set_is_present() -> None:
    assert len(CASES) >= 3


def test_unicode_meter_ids_are_reachable(stores: Stores) -> None:
    payload = (GOLDEN / "batch-edge-values.bin").read_bytes()
    Ingestor(stores).handle_data("dt/ami/x/diagnostic", payload)
    event = request_to_event(
        "GET", "/v1/meters/" + quote("zähler-ü") + "/intervals?from=1970-01-01&to=1970-01-02", {}
    )
    resp = ApiApp(stores).handle(event)
    assert resp["statusCode"] == 200
    assert len(json.loads(resp["body"])["rows"]) == 3
