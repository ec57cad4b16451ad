"""Smoke test of bench/dlms_decode.py (tiny sizes)."""

from __future__ import annotations

import json

from bench.dlms_decode import main


def test_bench_prints_one_json_object(capsys):
    assert main(["--frames", "20", "--info", "16", "--repeat", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["hdlc"]["frames"] == 20
    assert out["hdlc"]["ours_frames_per_s"] > 0
