"""Smoke test of bench/dlms_decode.py (tiny sizes)."""

from __future__ import annotations

import json

from bench.dlms_decode import main


def test_bench_prints_one_json_object(capsys):
    assert main(["--frames", "20", "--info", "16", "--repeat", "1", "--decode-loops", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["hdlc"]["frames"] == 20
    assert out["hdlc"]["ours_frames_per_s"] > 0


def test_bench_profile_rows_section(capsys):
    args = ["--section", "profile_rows", "--repeat", "1", "--decode-loops", "1"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)["profile_rows"]
    assert out["rows"] == 96
    assert out["columns"] == 6
    assert out["ours_rows_per_s"] > 0
    if "faster_peer" in out:
        assert out["ratio_vs_faster_peer"] > 0
