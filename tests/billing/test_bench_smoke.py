"""Smoke test of bench.billing with tiny sizes."""

from __future__ import annotations

import json

import pytest

from bench import billing


@pytest.mark.slow
def test_bench_billing_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    assert billing.main(["--meters", "8", "--days", "3", "--python-sample", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["meters"] == 8
    assert out["rows"] == 8 * 4 * (3 * 96 + 1)
    assert out["sql_equals_python_on_sample"] is True
    assert out["duckdb_determinants_s"] > 0
