from __future__ import annotations

import json

import pytest

from bench import anomaly

pytestmark = pytest.mark.slow


def test_bench_smoke(capsys):
    assert anomaly.main(["--meters", "30", "--days", "45", "--repeat", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["windows"] == 30 * 45
    assert out["windows_per_s_batched"] > 0
    assert out["windows_per_s_sklearn_baseline"] > 0
    assert out["model_load_ms_first"] > 0
    base = out["baseline_daily_total_zscore"]
    assert set(out["model"]["auc_per_kind"]) <= set(base["auc_per_kind"])
