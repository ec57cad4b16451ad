from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.api import ApiApp
from cloud.registry import channel_multiplier, load_registry_file, parse_registry
from cloud.storage.base import Stores
from edge_core.errors import ConfigError


@pytest.mark.parametrize(
    ("obis", "want"),
    [
        ("1.0.1.8.0.255", 40 * 100),  # +A energy
        ("1.0.2.29.0.255", 40 * 100),  # -A interval energy
        ("1.0.3.8.0.255", 40 * 100),  # +R
        ("1.0.1.6.0.255", 40 * 100),  # +A max demand
        ("1.0.21.7.0.255", 40 * 100),  # +P L1
        ("1.0.61.7.0.255", 40 * 100),  # +P L3
        ("1.0.31.7.0.255", 40),  # I L1
        ("1.0.91.7.0.255", 40),  # I neutral
        ("1.0.32.7.0.255", 100),  # U L1
        ("1.0.72.7.0.255", 100),  # U L3
        ("1.0.13.7.0.255", 1),  # power factor
        ("1.0.14.7.0.255", 1),  # frequency
        ("0.0.96.7.0.255", 1),  # power failures counter
        ("7.0.3.0.0.255", 1),  # gas volume
    ],
)
def test_channel_multiplier(obis: str, want: float) -> None:
    assert channel_multiplier(obis, 40.0, 100.0) == want


def test_registry_csv_and_json(tmp_path: Path) -> None:
    csv = tmp_path / "r.csv"
    csv.write_text(
        "meter,dcu,ct_ratio,pt_ratio,valid_from,valid_to,tariff\n"
        "m1,d1,40,100,2024-01-01,2024-03-01T12:00:00Z,C1\n"
        "m1,d1,80,100,2024-03-01T12:00:00+00:00,,C1\n"
        "m2,d1,,,0,,R\n"
    )
    recs = load_registry_file(csv)
    assert [(r.meter, r.ct_ratio, r.valid_from, r.valid_to) for r in recs] == [
        ("m1", 40.0, 1704067200, 1709294400),
        ("m1", 80.0, 1709294400, None),
        ("m2", 1.0, 0, None),
    ]
    js = tmp_path / "r.json"
    js.write_text('{"meters": [{"meter": "m1", "ct_ratio": 5, "valid_from": 10}]}')
    assert load_registry_file(js)[0].ct_ratio == 5.0


@pytest.mark.parametrize(
    "bad",
    [
        '[{"meter": "m1", "valid_from": 0, "valid_to": 100}, {"meter": "m1", "valid_from": 50}]',
        '[{"meter": "m1", "ct_ratio": -1}]',
        '[{"meter": "m1", "valid_from": 10, "valid_to": 5}]',
        '[{"dcu": "x"}]',
        '[{"meter": "m1", "valid_from": "tomorrow"}]',
        '{"meters": 3}',
        "not json",
    ],
)
def test_bad_registry_rejected(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_registry(bad, "json")


_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)


@settings(max_examples=150, deadline=None)
@given(
    meter=_text.filter(lambda s: "/" not in s and s != ""),
    query=st.dictionaries(st.sampled_from(["from", "to", "channel", "state", "x"]), _text),
    which=st.sampled_from(["latest", "intervals", "outages"]),
)
def test_bad_input_never_answers_5xx(
    api_stores: Stores, meter: str, query: dict[str, str], which: str
) -> None:
    app = ApiApp(api_stores)
    path = "/v1/outages" if which == "outages" else f"/v1/meters/{meter}/{which}"
    event: dict[str, Any] = {"httpMethod": "GET", "path": path, "queryStringParameters": query}
    resp = app.handle(event)
    assert resp["statusCode"] < 500
