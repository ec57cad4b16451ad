from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def test_bench_dlms_profile_smoke() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "bench.dlms_profile", "--repeat", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["rows"] == 96
    assert doc["columns"] == 6
    assert doc["decode_ms"] > 0
    assert doc["ratio_vs_json"] > 0
