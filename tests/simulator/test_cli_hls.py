"""``ami-edge simulate --auth hls-gmac`` and ``ami-edge read --auth hls-gmac`` as separate
processes: a secured read works, its DEBUG log shows no key, wrong keys fail with one line
naming the meter, and the counter file keeps growing across reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port
from tests.simulator.test_cli_e2e import _wait_ready

pytestmark = pytest.mark.slow

EK = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
AK = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
KEYS = ["--auth", "hls-gmac", "--auth-key", AK, "--cipher-key", EK]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "edge_core.cli", *args]


@pytest.fixture(scope="module")
def secured_meter() -> Iterator[int]:
    start = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    port = free_port()
    proc = subprocess.Popen(
        _cli(
            "simulate",
            "--port",
            str(port),
            "--start",
            start,
            *KEYS,
            "--system-title",
            "414d490000000007",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=ENV,
    )
    pump = None
    try:
        _, pump = _wait_ready(proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        if pump is not None:
            pump.join(timeout=5)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def _read(port: int, counters: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _cli(
            "-vv",
            "read",
            "--url",
            f"tcp://127.0.0.1:{port}",
            "--json",
            "--counter-dir",
            str(counters),
            "--meter-id",
            "sim-7",
            *extra,
        ),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=ENV,
        check=False,
    )


def test_secured_read_over_the_cli(secured_meter: int, tmp_path: Path) -> None:
    counters = tmp_path / "ic"
    title = ["--system-title", "4d4d4d0000000001"]
    res = _read(secured_meter, counters, *KEYS, *title, "--load-profile")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert {r["obis"] for r in doc["registers"]} >= {"1.0.1.8.0.255", "1.0.2.8.0.255"}
    assert len(doc["load_profile"]["rows"]) in (96, 97)
    assert "DEBUG" in res.stderr  # the whole session was logged at DEBUG
    for key in (EK, AK):
        assert key not in res.stderr.lower()
        assert key not in res.stdout.lower()
    (first,) = list(counters.iterdir())
    before = first.read_bytes()
    again = _read(secured_meter, counters, *KEYS, *title)
    assert again.returncode == 0, again.stderr
    assert first.read_bytes() != before  # a new reservation, above the first read's

    wrong = _read(
        secured_meter,
        counters,
        "--auth",
        "hls-gmac",
        "--auth-key",
        "00" * 16,
        "--cipher-key",
        EK,
        *title,
    )
    assert wrong.returncode != 0
    last = wrong.stderr.strip().splitlines()[-1]
    assert "sim-7" in last
    assert "association" in last.lower() or "HLS" in last


def test_plain_read_refused_by_a_secured_meter(secured_meter: int, tmp_path: Path) -> None:
    res = _read(secured_meter, tmp_path)
    assert res.returncode != 0
    assert "sim-7" in res.stderr.strip().splitlines()[-1]
