from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from bench import cloud_ingest
from edge_core.cli import main
from tests.conftest import ROOT, free_port


def test_bench_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cloud_ingest.main(
            [
                "--meters",
                "3",
                "--intervals",
                "4",
                "--channels",
                "2",
                "--batches",
                "1",
                "--repeat",
                "1",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["values"] == 24
    assert out["full_values_per_s_per_core"] > 0
    assert out["full_vs_decode_only"] == pytest.approx(
        out["full_values_per_s_per_core"] / out["decode_only_values_per_s"], abs=0.001
    )


def test_cli_template_prints_a_template(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cloud", "template", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert "AWS::IoT::TopicRule" in {r["Type"] for r in doc["Resources"].values()}


@pytest.mark.broker
@pytest.mark.slow
def test_cloud_serve_prints_url_serves_and_stops_on_sigterm(broker: Any, tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge_core.cli",
            "cloud",
            "serve",
            "--broker",
            broker.url,
            "--data-dir",
            str(tmp_path / "d"),
            "--http-port",
            str(port),
            "--api-key",
            "k",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == f"API: http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
            assert json.loads(r.read()) == {"status": "ok"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()
