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


def test_bench_dlms_wire_smoke(capsys) -> None:  # type: ignore[no-untyped-def]
    from bench.dlms_wire import main

    assert main(["--days", "0.25", "--backfill-days", "0.1", "--baud", "115200"]) == 0
    doc = json.loads(capsys.readouterr().out)
    one = doc["one_day"]
    assert one["ours"]["rows"] == 24
    assert one["same_rows"]
    assert one["ours"]["parameters"]["window_rx"] == 7
    assert one["reference_128_w1"]["parameters"]["max_info_rx"] == 128
    assert one["ours"]["seconds"] >= one["ours"]["ideal_wire_s"] * 0.99
    assert doc["backfill"]["ours"]["rows"] == 9  # 2.4 h of 15-min captures
    assert "backfill_met" in doc["targets"]
    if "gurux" in one:  # gurux-dlms installed: its client read the same rows
        assert one["same_rows_as_gurux"]
        assert one["gurux"]["rows"] == 24
        assert one["bytes_ratio_vs_gurux"] > 0
